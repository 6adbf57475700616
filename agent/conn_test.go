package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/internal/syncbuf"
	"github.com/rampart-fw/rampart/internal/wait"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// logBuf collects an agent's JSON log, as its container log would.
type logBuf struct{ syncbuf.Buffer }

// lines returns the log lines whose message contains every one of subs.
func (l *logBuf) lines(subs ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		var rec struct{ Msg string }
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if !slices.ContainsFunc(subs, func(s string) bool { return !strings.Contains(rec.Msg, s) }) {
			out = append(out, rec.Msg)
		}
	}
	return out
}

// logged runs opts with a logger into a new logBuf.
func logged(opts Options) (Options, *logBuf) {
	l := &logBuf{}
	opts.Logger = slog.New(slog.NewJSONHandler(l, nil))
	return opts, l
}

// explainsWithin waits for a log line containing every one of subs: the
// issue's bound for an agent explaining itself is 5 s from its start.
func explainsWithin(t *testing.T, l *logBuf, within time.Duration, subs ...string) {
	t.Helper()
	wait.Until(t, within, "the log line "+strings.Join(subs, " … "), func() string {
		if len(l.lines(subs...)) > 0 {
			return ""
		}
		return "log so far:\n" + l.String()
	})
}

// gate is a broker hook standing in for the control plane's: it checks the
// password, counts CONNECTs and their protocol versions, and can refuse
// subscriptions to the desired topic (SUBACK 0x80) or drop status
// publishes unacknowledged, as a clustered broker electing leaders does.
type gate struct {
	mochi.HookBase
	secret   string
	connects atomic.Int64
	denySubs atomic.Int64 // refuse this many subscriptions to desired
	dropPubs atomic.Int64 // drop this many status publishes, no PUBACK
	mu       sync.Mutex
	versions []byte
}

func (h *gate) ID() string { return "test-gate" }

func (h *gate) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck || b == mochi.OnPublish
}

func (h *gate) OnConnectAuthenticate(_ *mochi.Client, pk packets.Packet) bool {
	h.connects.Add(1)
	h.mu.Lock()
	h.versions = append(h.versions, pk.ProtocolVersion)
	h.mu.Unlock()
	return h.secret == "" || string(pk.Connect.Password) == h.secret
}

func (h *gate) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	if !write && strings.HasSuffix(topic, "/"+protocol.KindDesired) && h.denySubs.Add(-1) >= 0 {
		return false
	}
	return true
}

func (h *gate) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if !cl.Net.Inline && strings.HasSuffix(pk.TopicName, "/"+protocol.KindStatus) && h.dropPubs.Add(-1) >= 0 {
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// restartOn starts a new broker on addr once the port is free again.
func restartOn(t *testing.T, addr string, hooks ...mochi.Hook) *broker {
	t.Helper()
	var b *broker
	eventually(t, "the port "+addr+" to be free again", func() bool {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		b = startBrokerOn(t, ln, hooks...)
		return true
	})
	return b
}

func appliedOn(b *broker, rev uint64) func() bool {
	return func() bool {
		st := b.status()
		return st.State == protocol.StateApplied && st.Revision == rev
	}
}

// TestReconnectsFastAfterEachOfThreeOutages: the broker goes away three
// times in a row, for outages of different lengths, each longer than the
// old backoff's first steps; each time the agent is back and has
// republished its status soon after the broker returns. What is asserted
// is the backoff policy itself (no wait between attempts ever longer than
// the 1 s cap while no broker answers, and the backoff reset after each
// connection that held), plus a generous bound on the time; the measured
// times are logged.
func TestReconnectsFastAfterEachOfThreeOutages(t *testing.T) {
	b := startBroker(t)
	addr := b.addr
	r := newSim(t, rossim.Options{})
	cfg := testConfig(t, r.Addr())
	cfg.MQTTURLs = mustURLs(t, "tcp://"+addr)
	b.publish(t, marshal(t, sampleDoc(1)), true)
	opts := testOptions()
	opts.MQTTMaxReconnect = 0 // the production cap
	opts.MQTTHeldAfter = 300 * time.Millisecond
	a, _ := runAgentWith(t, cfg, opts)
	eventually(t, "applied", appliedOn(b, 1))

	for i, outage := range []time.Duration{300 * time.Millisecond, 3 * time.Second, 1500 * time.Millisecond} {
		time.Sleep(opts.MQTTHeldAfter) // the connection holds
		b.stop()
		eventually(t, "the agent to notice", func() bool { return testutil.ToFloat64(a.m.mqttConnected) == 0 })
		time.Sleep(outage)
		b = restartOn(t, addr)
		back := time.Now()
		eventually(t, "reconnected", func() bool { return testutil.ToFloat64(a.m.mqttConnected) == 1 })
		took := time.Since(back)
		eventually(t, "the status republished to the new broker", appliedOn(b, 1))
		longest, _ := a.mq.Backoff()
		t.Logf("outage %d (%s): reconnected %s after the broker returned; longest wait so far %s", i+1, outage, took.Round(time.Millisecond), longest.Round(time.Millisecond))
		if longest > time.Second {
			t.Errorf("outage %d: the agent waited %s between attempts, more than the 1 s cap", i+1, longest)
		}
		if took > 5*time.Second {
			t.Errorf("outage %d: reconnected %s after the broker returned", i+1, took)
		}
	}
}

// TestOneConnectPerAttemptAndAWrongSecretExplained: with a wrong site
// secret the agent says so in one line naming the variable within 5 s,
// makes exactly one MQTT 3.1.1 CONNECT per attempt (no fallback to 3.1),
// and does not repeat the line at every retry.
func TestOneConnectPerAttemptAndAWrongSecretExplained(t *testing.T) {
	g := &gate{secret: "right"}
	b := startBrokerOn(t, listen(t), g)
	_, cfg := simSite(t, b)
	opts, logs := logged(testOptions())
	a, _ := runAgentWith(t, cfg, opts)
	explainsWithin(t, logs, 5*time.Second, "refused the site's credentials", protocol.EnvSiteSecret)
	eventually(t, "several attempts", func() bool { return g.connects.Load() >= 4 })
	a.mq.Close() // stop attempting, to compare the counts
	_, failures := a.mq.Backoff()
	// One more CONNECT than counted failures is the attempt Close cut
	// short; a fallback to 3.1 would make twice as many.
	if n := g.connects.Load(); n < int64(failures) || n > int64(failures)+1 {
		t.Errorf("%d CONNECTs for %d failed attempts, want one each", n, failures)
	}
	g.mu.Lock()
	for _, v := range g.versions {
		if v != 4 {
			t.Errorf("CONNECT with protocol version %d, want only 4 (3.1.1)", v)
		}
	}
	g.mu.Unlock()
	if n := len(logs.lines("refused the site's credentials")); n != 1 {
		t.Errorf("the explanation was logged %d times over %d attempts, want once (ComplainEvery)", n, failures)
	}
}

func TestUnreachableBrokerExplained(t *testing.T) {
	r := newSim(t, rossim.Options{})
	cfg := testConfig(t, r.Addr())
	cfg.MQTTURLs = mustURLs(t, "tcp://"+deadAddr(t))
	opts, logs := logged(testOptions())
	runAgentWith(t, cfg, opts)
	explainsWithin(t, logs, 5*time.Second, "cannot reach the MQTT broker", protocol.EnvMQTTURL)
}

// TestRouterProblemsExplained: with nothing to apply yet (no cache, no
// broker), a router the agent cannot use is in its log within 5 s, naming
// the setting; a user without the write policy is explained at the first
// write (the trap RouterOS sends, "not enough permissions (9)", is injected
// into the simulator until it models user policies).
func TestRouterProblemsExplained(t *testing.T) {
	t.Run("wrong password", func(t *testing.T) {
		r := newSim(t, rossim.Options{Password: "secret"})
		cfg := testConfig(t, r.Addr())
		cfg.MQTTURLs = mustURLs(t, "tcp://"+deadAddr(t))
		opts, logs := logged(testOptions())
		runAgentWith(t, cfg, opts)
		explainsWithin(t, logs, 5*time.Second, "refused the login", protocol.EnvRouterOSPassword)
	})
	t.Run("unreachable", func(t *testing.T) {
		cfg := testConfig(t, deadAddr(t))
		cfg.MQTTURLs = mustURLs(t, "tcp://"+deadAddr(t))
		opts, logs := logged(testOptions())
		runAgentWith(t, cfg, opts)
		explainsWithin(t, logs, 5*time.Second, "cannot reach the RouterOS API", protocol.EnvRouterOSAddr)
	})
	t.Run("no write policy", func(t *testing.T) {
		b := startBroker(t)
		r := newSim(t, rossim.Options{})
		r.InjectTrap("/ip/firewall/filter/add", "not enough permissions (9)", 1000)
		cfg := testConfig(t, r.Addr())
		cfg.MQTTURLs = mustURLs(t, "tcp://"+b.addr)
		b.publish(t, marshal(t, sampleDoc(1)), true)
		opts, logs := logged(testOptions())
		runAgentWith(t, cfg, opts)
		explainsWithin(t, logs, 5*time.Second, "lacks permissions", "write")
		eventually(t, "a failed status that says so", func() bool {
			st := b.status()
			return st.State == protocol.StateFailed && strings.Contains(st.Error, "lacks permissions")
		})
	})
}

// TestFlappingRouterConnectionIsNotReportedFailed: the RouterOS API
// connection is cut five times inside one apply; the agent tries again on
// a new session each time and reports applied, never failed.
func TestFlappingRouterConnectionIsNotReportedFailed(t *testing.T) {
	b := startBroker(t)
	r, cfg := simSite(t, b)
	a, _ := runAgentWith(t, cfg, testOptions())
	eventually(t, "the agent to log in to the router", func() bool { return r.Stats().Logins >= 1 })
	r.SetLatency(3 * time.Millisecond) // so the watcher below arms each drop before the session's third command

	// Arm a drop for the open session and then for every new one, five in
	// all: each comes a few commands into the session, after its reads,
	// so it is mid-apply, and each attempt gets one write further.
	stop := make(chan struct{})
	done := make(chan struct{})
	logins := r.Stats().Logins
	r.DropAfter(2)
	go func() {
		defer close(done)
		seen, armed := logins, 1
		for armed < 5 {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if n := r.Stats().Logins; n > seen {
				seen = n
				r.DropAfter(2 + armed)
				armed++
			}
		}
	}()
	b.publish(t, marshal(t, sampleDoc(1)), true)
	eventually(t, "applied", appliedOn(b, 1))
	close(stop)
	<-done
	if n := r.Stats().Logins - logins; n < 5 {
		t.Fatalf("%d new sessions: the five drops did not all happen", n)
	}
	if got := strings.Join(b.states(), " "); strings.Contains(got, protocol.StateFailed) {
		t.Errorf("statuses %s: a flapping connection was reported failed", got)
	}
	if n := testutil.ToFloat64(a.m.applies.WithLabelValues("interrupted")); n < 5 {
		t.Errorf("%v interrupted attempts, want the 5 drops inside the apply", n)
	}
	check := newSimAgent(t, r) // not the running agent: its state is its own goroutine's
	d := sampleDoc(1)
	check.desired = &d
	if rest := check.remaining(t); len(rest) > 0 {
		t.Errorf("not converged: %v", rest)
	}
}

// TestPersistentRouterFailureIsReported: a connection that fails at every
// attempt is reported failed once the apply's budget is spent, saying
// what it was.
func TestPersistentRouterFailureIsReported(t *testing.T) {
	b := startBroker(t)
	cfg := testConfig(t, deadAddr(t))
	cfg.MQTTURLs = mustURLs(t, "tcp://"+b.addr)
	b.publish(t, marshal(t, sampleDoc(1)), true)
	opts := testOptions()
	opts.ApplyAttempts = 3
	runAgentWith(t, cfg, opts)
	eventually(t, "failed, naming the API", func() bool {
		st := b.status()
		return st.State == protocol.StateFailed && strings.Contains(st.Error, "cannot reach the RouterOS API") && strings.Contains(st.Error, protocol.EnvRouterOSAddr)
	})
}

// tlsPair makes a CA and a server certificate for 127.0.0.1 signed by it.
func tlsPair(t *testing.T, name string) (caPEM []byte, server tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSBroker: the agent connects over ssl:// with the CA it was given
// in RAMPART_MQTT_CA and the whole loop runs; given another CA it refuses
// the broker and says why, naming the variable.
func TestTLSBroker(t *testing.T) {
	caPEM, cert := tlsPair(t, "broker")
	otherPEM, _ := tlsPair(t, "other")
	g := &gate{}
	ln := tls.NewListener(listen(t), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	b := startBrokerOn(t, ln, g)
	b.publish(t, marshal(t, sampleDoc(1)), true)
	dir := t.TempDir()
	for name, pemBytes := range map[string][]byte{"ca.pem": caPEM, "other.pem": otherPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("the right CA", func(t *testing.T) {
		r := newSim(t, rossim.Options{})
		cfg := testConfig(t, r.Addr())
		cfg.MQTTURLs = mustURLs(t, "ssl://"+b.addr)
		cfg.MQTTCA = filepath.Join(dir, "ca.pem")
		_, stop := runAgentWith(t, cfg, testOptions())
		eventually(t, "applied over TLS", appliedOn(b, 1))
		stop()
	})
	t.Run("another CA", func(t *testing.T) {
		before := g.connects.Load()
		r := newSim(t, rossim.Options{})
		cfg := testConfig(t, r.Addr())
		cfg.MQTTURLs = mustURLs(t, "ssl://"+b.addr)
		cfg.MQTTCA = filepath.Join(dir, "other.pem")
		opts, logs := logged(testOptions())
		a, _ := runAgentWith(t, cfg, opts)
		explainsWithin(t, logs, 5*time.Second, "certificate is not trusted", protocol.EnvMQTTCA)
		if testutil.ToFloat64(a.m.mqttConnected) != 0 || g.connects.Load() != before {
			t.Error("the agent sent its credentials to a broker it does not trust")
		}
	})
}

// TestFailsOverBetweenURLs: with several URLs the agent uses whichever
// broker answers, and moves when that one goes away.
func TestFailsOverBetweenURLs(t *testing.T) {
	first := deadAddr(t)
	b2 := startBroker(t)
	b2.publish(t, marshal(t, sampleDoc(1)), true)
	r := newSim(t, rossim.Options{})
	cfg := testConfig(t, r.Addr())
	cfg.MQTTURLs = mustURLs(t, "tcp://"+first, "tcp://"+b2.addr)
	runAgent(t, cfg)
	eventually(t, "applied through the second URL", appliedOn(b2, 1))

	b1 := restartOn(t, first)
	b1.publish(t, marshal(t, sampleDoc(2)), true)
	b2.stop()
	eventually(t, "revision 2 through the first URL", appliedOn(b1, 2))
}

// TestRefusedSubscriptionIsRetriedOnTheSameConnection: SUBACK 0x80 for
// the desired topic three times; the agent retries on the same connection
// and gets its document, without reconnecting.
func TestRefusedSubscriptionIsRetriedOnTheSameConnection(t *testing.T) {
	g := &gate{}
	g.denySubs.Store(3)
	b := startBrokerOn(t, listen(t), g)
	b.publish(t, marshal(t, sampleDoc(1)), true)
	_, cfg := simSite(t, b)
	opts, logs := logged(testOptions())
	runAgentWith(t, cfg, opts)
	eventually(t, "applied", appliedOn(b, 1))
	if n := g.connects.Load(); n != 1 {
		t.Errorf("%d connections, want 1: a refused subscription must not wait for a new connection", n)
	}
	if n := len(logs.lines("subscribe failed")); n < 3 {
		t.Errorf("%d subscribe failures logged, want 3", n)
	}
}

// TestUnacknowledgedPublishIsRetried: the broker drops the first two status
// publishes without a PUBACK; the agent publishes again until one is
// acknowledged, on the same connection.
func TestUnacknowledgedPublishIsRetried(t *testing.T) {
	g := &gate{}
	g.dropPubs.Store(2)
	b := startBrokerOn(t, listen(t), g)
	b.publish(t, marshal(t, sampleDoc(1)), true)
	_, cfg := simSite(t, b)
	runAgent(t, cfg)
	eventually(t, "applied", appliedOn(b, 1))
	if n := g.connects.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	if g.dropPubs.Load() >= 0 {
		t.Errorf("the broker dropped fewer publishes than asked (%d left)", g.dropPubs.Load())
	}
}

// TestResyncRequestRepublishes: a resync request from the control plane
// makes the agent publish its status and presence again within the 2 s of
// random delay (plus slack), and OnStatus still sees each status once.
func TestResyncRequestRepublishes(t *testing.T) {
	b := startBroker(t)
	b.publish(t, marshal(t, sampleDoc(1)), true)
	_, cfg := simSite(t, b)
	var mu sync.Mutex
	var seen []string
	opts := testOptions()
	opts.PresenceInterval = time.Hour
	opts.OnStatus = func(st protocol.SiteStatus) {
		mu.Lock()
		seen = append(seen, st.State)
		mu.Unlock()
	}
	runAgentWith(t, cfg, opts)
	eventually(t, "applied", appliedOn(b, 1))
	count := func(kind string) int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.hist[protocol.Topic(protocol.DefaultTopicRoot, "org_demo", "site_hq", kind)])
	}
	eventually(t, "presence online", func() bool { return count(protocol.KindPresence) >= 1 })
	statuses, presences := count(protocol.KindStatus), count(protocol.KindPresence)
	req, _ := json.Marshal(map[string]any{"schema": 1, "at": time.Now().UTC()})
	if err := b.srv.Publish(protocol.ResyncTopic(protocol.DefaultTopicRoot), req, false, 1); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "status and presence again", func() bool {
		return count(protocol.KindStatus) > statuses && count(protocol.KindPresence) > presences
	})
	if !appliedOn(b, 1)() {
		t.Errorf("republished status %+v", b.status())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != protocol.StateApplied {
		t.Errorf("OnStatus saw %v, want the one applied status once", seen)
	}
}
