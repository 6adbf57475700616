package broker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/internal/testcert"
	"github.com/rampart-fw/rampart/protocol"
)

// connectPacket encodes an MQTT 3.1.1 CONNECT.
func connectPacket(t testing.TB, user, pass string) []byte {
	t.Helper()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "raw",
			UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass),
		},
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// announce is a fixed header of packet type typ stating a remaining length
// of n, and nothing after it.
func announce(typ byte, n int) []byte {
	b := []byte{typ << 4}
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// waitClosed reads from c until the broker closes it, and fails if it
// does not within waitFor.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the broker did not close the connection within %s", waitFor)
	}
}

func refusedCount(b *Broker, reason string) float64 {
	return testutil.ToFloat64(b.metrics().refused.WithLabelValues(reason))
}

// TestHugePacketAnnouncedIsNotAllocated reproduces #13 item 1: two
// connections announcing 200 MB each took the process from 38 to 438 MB.
// Now the connection is closed at the header, before login and after, and
// the bytes allocated meanwhile stay far below one such packet.
func TestHugePacketAnnouncedIsNotAllocated(t *testing.T) {
	b := startBroker(t, nil)
	const huge = 200 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	for range 2 {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(announce(packets.Connect, huge)); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c)
	}

	// A site that logged in may not announce one either.
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(connectPacket(t, protocol.SiteMQTTUser("org_x", "site_a"), testKey.SiteSecret("org_x", "site_a"))); err != nil {
		t.Fatal(err)
	}
	connack := make([]byte, 4)
	if _, err := io.ReadFull(c, connack); err != nil || connack[3] != 0 {
		t.Fatalf("connack %x, %v: want an accepted connection", connack, err)
	}
	if _, err := c.Write(announce(packets.Publish, huge)); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)

	runtime.ReadMemStats(&after)
	t.Logf("allocated %d KiB while refusing three 200 MB announcements", (after.TotalAlloc-before.TotalAlloc)>>10)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 20<<20 {
		t.Errorf("the broker allocated %d MB while refusing three 200 MB announcements; want far less than one", alloc>>20)
	}
	if got := refusedCount(b, refusedTooLargeLogin); got != 2 {
		t.Errorf("refused %s = %v, want 2", refusedTooLargeLogin, got)
	}
	if got := refusedCount(b, refusedTooLarge); got != 1 {
		t.Errorf("refused %s = %v, want 1", refusedTooLarge, got)
	}
}

// TestIdleConnectionsClosedAtConnectDeadline reproduces #13 item 1: 500
// idle TCP connections were all open after 20 s. A connection that logs in
// in time is not affected by the deadline.
func TestIdleConnectionsClosedAtConnectDeadline(t *testing.T) {
	reg := prometheus.NewRegistry()
	const timeout = 300 * time.Millisecond
	b, err := Start(Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quietLogger(), Registry: reg, ConnectTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	logged := site(t, b, "org_x", "site_a")

	const idle = 50
	conns := make([]net.Conn, idle)
	for i := range conns {
		if conns[i], err = net.Dial("tcp", b.Addr()); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	// One sends half a CONNECT and stops: the deadline is for the whole
	// packet, not for each read.
	if _, err := conns[0].Write(connectPacket(t, "org_x/site_a", "x")[:10]); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		waitClosed(t, c)
	}
	if got := refusedCount(b, refusedConnectTimeout); got != idle {
		t.Errorf("refused %s = %v, want %d", refusedConnectTimeout, got, idle)
	}
	// Well past the deadline, the site that logged in still publishes.
	publish(t, logged, protocol.StatusTopic(root, "org_x", "site_a"), "{}", 1)
	select {
	case err := <-logged.lost:
		t.Fatalf("a logged-in site lost its connection: %v", err)
	default:
	}
}

// TestOversizedStatusRefused reproduces #13 item 5: sites could retain
// 32 MB statuses. A status above protocol.MaxStatusBytes is refused before
// it is retained and the site's connection closed; one at the bound is
// retained.
func TestOversizedStatusRefused(t *testing.T) {
	b := startBroker(t, nil)
	topic := protocol.StatusTopic(root, "org_x", "site_a")
	retained := func() string {
		msgs := b.srv.Topics.Messages(topic)
		if len(msgs) != 1 {
			return ""
		}
		return string(msgs[0].Payload)
	}
	atBound := strings.Repeat("a", protocol.MaxStatusBytes)
	publish(t, site(t, b, "org_x", "site_a"), topic, atBound, 1)
	if retained() != atBound {
		t.Fatalf("a status of exactly MaxStatusBytes was not retained")
	}

	for _, tc := range []struct {
		size   int
		reason string
	}{
		{protocol.MaxStatusBytes + 1, refusedStatusTooLarge}, // fits the packet limit, not the status bound
		{32 << 20, refusedTooLarge},                          // the 32 MB, refused at the header
	} {
		a := site(t, b, "org_x", "site_a")
		tok := a.Publish(topic, 1, true, strings.Repeat("b", tc.size))
		select {
		case <-a.lost:
		case <-time.After(waitFor):
			t.Fatalf("a %d-byte status did not close the site's connection", tc.size)
		}
		tok.WaitTimeout(time.Second)
		if got := refusedCount(b, tc.reason); got != 1 {
			t.Errorf("%d bytes: refused %s = %v, want 1", tc.size, tc.reason, got)
		}
		if retained() != atBound {
			t.Errorf("%d bytes: the retained status changed", tc.size)
		}
	}
}

// TestTLSListener: with Options.TLS the broker serves ssl://, a client that
// trusts the CA logs in over it, one given another CA refuses the server's
// certificate, and one that never starts the handshake is closed at the
// connect deadline.
func TestTLSListener(t *testing.T) {
	certs := testcert.New(t)
	b, err := Start(Options{Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", TLS: certs.ServerConfig(t), Key: testKey, Logger: quietLogger(),
		ConnectTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The deadline covers the TLS handshake: a connection that never starts
	// one is closed and counted like one that never sends its CONNECT.
	idle, err := net.Dial("tcp", b.TLSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitClosed(t, idle)
	if got := refusedCount(b, refusedConnectTimeout); got != 1 {
		t.Errorf("refused %s = %v after an idle TLS connection, want 1", refusedConnectTimeout, got)
	}
	if !strings.HasPrefix(b.TLSURL(), "ssl://127.0.0.1:") {
		t.Fatalf("TLSURL() = %q, want ssl://127.0.0.1:port", b.TLSURL())
	}
	dialTLS := func(pool *x509.CertPool) error {
		o := paho.NewClientOptions().AddBroker(b.TLSURL()).SetClientID("tls").SetProtocolVersion(4).
			SetUsername(protocol.SiteMQTTUser("org_x", "site_a")).SetPassword(testKey.SiteSecret("org_x", "site_a")).
			SetAutoReconnect(false).SetConnectTimeout(waitFor).SetTLSConfig(&tls.Config{RootCAs: pool})
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(waitFor) {
			return errors.New("connect timed out")
		}
		if tok.Error() == nil {
			c.Disconnect(100)
		}
		return tok.Error()
	}
	if err := dialTLS(certs.CAPool); err != nil {
		t.Fatalf("connect over ssl:// with the CA: %v", err)
	}
	err = dialTLS(testcert.New(t).CAPool)
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok {
		t.Fatalf("connect over ssl:// with another CA: %v, want x509.UnknownAuthorityError", err)
	}
}

// TestResyncTopicACL: every site may read the resync request, only the
// control plane may write it.
func TestResyncTopicACL(t *testing.T) {
	b := startBroker(t, nil)
	topic := protocol.ResyncTopic(root)
	a, other := site(t, b, "org_x", "site_a"), site(t, b, "org_y", "site_b")
	for _, s := range []*client{a, other} {
		if !subscribe(t, s, topic) {
			t.Fatalf("a site may not subscribe to %s", topic)
		}
	}
	// A site's publish (QoS 0: refused silently) reaches nobody; the control
	// plane's reaches every site.
	if tok := other.Publish(topic, 0, false, "from a site"); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	publish(t, controlPlane(t, b), topic, "from the control plane", 1)
	for _, s := range []*client{a, other} {
		msgs := s.waitMessage(t, topic, "from the control plane")
		for _, m := range msgs {
			if string(m.Payload()) == "from a site" {
				t.Errorf("a site's publish on %s was delivered", topic)
			}
		}
	}
}

// BenchmarkFramerScan is the cost limitConn adds to every read: following
// the framing of a stream of 1 KiB status publishes, in the 2 KiB reads of
// mochi's buffered reader.
func BenchmarkFramerScan(b *testing.B) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName: protocol.StatusTopic(root, "org_x", "site_a"), PacketID: 1, Payload: bytes.Repeat([]byte("s"), 1024)}
	var one bytes.Buffer
	if err := pk.PublishEncode(&one); err != nil {
		b.Fatal(err)
	}
	stream := bytes.Repeat(one.Bytes(), 1024)
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		var f framer
		for rest := stream; len(rest) > 0; {
			n := min(2048, len(rest))
			if _, err := f.scan(rest[:n], MaxSitePacketBytes); err != nil {
				b.Fatal(err)
			}
			rest = rest[n:]
		}
	}
}
