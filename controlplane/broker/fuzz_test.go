package broker

import (
	"bytes"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/protocol"
)

// recordConn keeps what mochi read through it from a limitConn.
type recordConn struct {
	*limitConn
	mu   sync.Mutex
	read bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.limitConn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// oversized returns the first packet header in b whose packet is larger than
// the limit of its stage (before login: MaxConnectBytes; after a CONNECT that
// mochi accepted: login), parsed independently of framer.
func oversized(b []byte, limitAfterFirst int64) (size int64, found bool) {
	limit := int64(MaxConnectBytes)
	for i := 0; i < len(b); {
		var n int64
		var shift uint
		j := i + 1
		for ; j < len(b) && j-i <= 4; j++ {
			n |= int64(b[j]&0x7f) << shift
			shift += 7
			if b[j]&0x80 == 0 {
				break
			}
		}
		if j >= len(b) {
			return 0, false // a header cut short: mochi waits for more
		}
		if j-i > 4 {
			return 0, false // malformed length, handed over only in part
		}
		size := int64(j-i+1) + n
		if size > limit {
			return size, true
		}
		i = j + 1 + int(n)
		limit = limitAfterFirst
	}
	return 0, false
}

// FuzzPacketReading feeds arbitrary bytes to the real embedded broker
// through the listener's limits (a net.Pipe in place of the socket) and
// checks that mochi is never handed the header of a packet above the
// connection's limit, and that the bytes allocated while serving the input
// stay bounded by the input, not by lengths the input announces.
//
// The seed corpus holds a control plane's and a site's login followed by
// packets at and above their limits, the 200 MB announcement of #13 and
// malformed lengths. Run it with
//
//	go test -run '^$' -fuzz FuzzPacketReading -fuzztime 3m ./controlplane/broker/
func FuzzPacketReading(f *testing.F) {
	b, err := Start(Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })

	cp := connectPacket(f, keys.ControlPlaneMQTTUser, testKey.ControlPlaneMQTTPassword())
	site := connectPacket(f, protocol.SiteMQTTUser("org_x", "site_a"), testKey.SiteSecret("org_x", "site_a"))
	status := func(n int) []byte {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
			TopicName: protocol.StatusTopic(root, "org_x", "site_a"), PacketID: 1, Payload: bytes.Repeat([]byte("s"), n)}
		var buf bytes.Buffer
		if err := pk.PublishEncode(&buf); err != nil {
			f.Fatal(err)
		}
		return buf.Bytes()
	}
	f.Add(announce(packets.Connect, 200<<20))
	f.Add(append(bytes.Clone(site), announce(packets.Publish, 200<<20)...))
	f.Add(append(bytes.Clone(site), status(100)...))
	f.Add(append(bytes.Clone(site), status(protocol.MaxStatusBytes+1)...))
	f.Add(append(bytes.Clone(cp), announce(packets.Publish, MaxControlPlanePacketBytes+1)...))
	f.Add(append(bytes.Clone(cp), announce(packets.Publish, 1000)...))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add(append(bytes.Clone(site), 0xc0, 0x00, 0x30, 0x80))
	f.Add(cp[:7])

	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)

		client, server := net.Pipe()
		rec := &recordConn{limitConn: newLimitConn(server, MaxConnectBytes, func(string) {})}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = b.srv.EstablishConnection("tcp", rec)
		}()
		go func() {
			_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = client.Write(data)
			_ = client.Close()
		}()
		go func() { // drain what the broker answers
			buf := make([]byte, 4096)
			for {
				if _, err := client.Read(buf); err != nil {
					return
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the broker did not finish with the connection")
		}
		runtime.ReadMemStats(&after)

		rec.mu.Lock()
		read := rec.read.Bytes()
		rec.mu.Unlock()
		if !bytes.HasPrefix(data, read) {
			t.Fatalf("mochi read %x, which is not a prefix of the input", read)
		}
		// Which limit applies after the first packet depends on whether
		// mochi accepted it as a login; the site's is the tighter, so a
		// violation of the control plane's is always one.
		if size, found := oversized(read, MaxControlPlanePacketBytes); found {
			t.Fatalf("mochi was handed the header of a %d-byte packet", size)
		}
		if !bytes.HasPrefix(data, cp) && !bytes.HasPrefix(data, site) {
			if size, found := oversized(read, MaxConnectBytes); found {
				t.Fatalf("mochi was handed the header of a %d-byte packet without a login", size)
			}
		}
		// mochi allocates at most one packet it has not received whole, and
		// a control plane's packet is at most MaxControlPlanePacketBytes.
		if alloc, bound := after.TotalAlloc-before.TotalAlloc, uint64(2*MaxControlPlanePacketBytes+64*len(data)+4<<20); alloc > bound {
			t.Fatalf("serving %d bytes allocated %d bytes, more than %d", len(data), alloc, bound)
		}
	})
}
