package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/internal/buildinfo"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"

	"github.com/rampart-fw/rampart/internal/wait"
)

// broker is an in-process mochi-mqtt broker that records what agents
// publish.
type broker struct {
	srv  *mochi.Server
	addr string

	mu    sync.Mutex
	last  map[string][]byte   // topic → last payload
	hist  map[string][][]byte // topic → every payload
	close sync.Once
}

func (b *broker) stop() { b.close.Do(func() { b.srv.Close() }) }

func startBroker(t *testing.T) *broker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startBrokerOn(t, ln)
}

// startBrokerOn serves a broker on ln; without hooks it allows everyone
// everything (auth.AllowHook).
func startBrokerOn(t *testing.T, ln net.Listener, hooks ...mochi.Hook) *broker {
	t.Helper()
	b := &broker{addr: ln.Addr().String(), last: map[string][]byte{}, hist: map[string][][]byte{}}
	b.srv = mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if len(hooks) == 0 {
		hooks = []mochi.Hook{new(auth.AllowHook)}
	}
	for _, h := range hooks {
		if err := b.srv.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Serve(); err != nil {
		t.Fatal(err)
	}
	err := b.srv.Subscribe("rampart/v1/#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		b.mu.Lock()
		b.last[pk.TopicName] = append([]byte(nil), pk.Payload...)
		b.hist[pk.TopicName] = append(b.hist[pk.TopicName], b.last[pk.TopicName])
		b.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.stop)
	return b
}

func (b *broker) publish(t *testing.T, payload []byte, retain bool) {
	t.Helper()
	if err := b.srv.Publish(protocol.DesiredTopic(protocol.DefaultTopicRoot, "org_demo", "site_hq"), payload, retain, 1); err != nil {
		t.Fatal(err)
	}
}

func (b *broker) get(kind string) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last[protocol.Topic(protocol.DefaultTopicRoot, "org_demo", "site_hq", kind)]
}

// states lists the state and revision of every status published so far.
func (b *broker) states() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, p := range b.hist[protocol.Topic(protocol.DefaultTopicRoot, "org_demo", "site_hq", protocol.KindStatus)] {
		var st protocol.SiteStatus
		json.Unmarshal(p, &st)
		out = append(out, fmt.Sprintf("%s@%d", st.State, st.Revision))
	}
	return out
}

func (b *broker) status() protocol.SiteStatus {
	var st protocol.SiteStatus
	json.Unmarshal(b.get(protocol.KindStatus), &st)
	return st
}

// eventually polls cond for up to 20 s: generous for a loaded CI machine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 20*time.Second, what, cond)
}

// testOptions are fast retries for tests.
func testOptions() Options {
	return Options{RetryBase: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, Throttle: 10 * time.Millisecond, MQTTMaxReconnect: 200 * time.Millisecond, MQTTConnectTimeout: time.Second, PresenceInterval: 200 * time.Millisecond}
}

// runAgent runs an agent until the test ends; stop ends it early.
func runAgent(t *testing.T, cfg Config) (a *Agent, stop func()) {
	t.Helper()
	return runAgentWith(t, cfg, testOptions())
}

// runAgentWith is runAgent with opts.
func runAgentWith(t *testing.T, cfg Config, opts Options) (a *Agent, stop func()) {
	t.Helper()
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func managedRows(r *rossim.Router) int {
	n := 0
	for _, it := range r.Snapshot().Filter {
		if strings.HasPrefix(it["comment"], render.CommentPrefix) {
			n++
		}
	}
	return n
}

func marshal(t *testing.T, d protocol.DesiredState) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRunOverMQTT(t *testing.T) {
	b := startBroker(t)
	r, cfg := simSite(t, b)
	cfg.MetricsAddr = "127.0.0.1:0"
	b.publish(t, marshal(t, sampleDoc(1)), true)
	a, stop := runAgent(t, cfg)

	eventually(t, "status applied for revision 1", func() bool {
		st := b.status()
		return st.State == protocol.StateApplied && st.Revision == 1
	})
	st := b.status()
	if st.Rules != 13 || st.AddressEntries != 3 || st.Operations == 0 || st.RouterOSVersion == "" || st.Board == "" || st.Epoch != "e1" || st.AgentVersion != buildinfo.Version() {
		t.Errorf("status %+v", st)
	}
	p, err := protocol.ParsePresence(b.get(protocol.KindPresence))
	if err != nil || p.State != protocol.PresenceOnline || p.At.IsZero() {
		t.Errorf("presence %s: %+v %v", b.get(protocol.KindPresence), p, err)
	}
	if managedRows(r) != 13 {
		t.Fatalf("%d managed rows on the router", managedRows(r))
	}

	// Junk never reaches the router: stale, malformed, empty, for another
	// site, tampered.
	r.ResetStats()
	stale := sampleDoc(1)
	stale.SecurityGroups = nil
	stale.Seal()
	other := sampleDoc(5)
	other.SiteID = "site_other"
	tampered := sampleDoc(6)
	tampered.SecurityGroups[0].Rules[0].Port = "1"
	for _, junk := range [][]byte{marshal(t, stale), []byte("{not json"), []byte(" "), marshal(t, other), marshal(t, tampered)} {
		b.publish(t, junk, false)
	}
	eventually(t, "the junk to be looked at", func() bool {
		return testutil.ToFloat64(a.m.documents.WithLabelValues("invalid"))+testutil.ToFloat64(a.m.documents.WithLabelValues("stale")) >= 5
	})
	if got := testutil.ToFloat64(a.m.documents.WithLabelValues("stale")); got != 1 {
		t.Errorf("stale documents %v, want 1", got)
	}
	if n := writes(r.Stats()); n != 0 {
		t.Fatalf("junk caused %d writes", n)
	}

	// A newer revision applies.
	d2 := sampleDoc(2)
	d2.SecurityGroups[0].Rules = d2.SecurityGroups[0].Rules[1:] // drops the outbound DNS rule (sorted first)
	d2.Seal()
	b.publish(t, marshal(t, d2), true)
	eventually(t, "status applied for revision 2", func() bool {
		st := b.status()
		return st.State == protocol.StateApplied && st.Revision == 2
	})
	// Two writes: applied without an applying first (announceWrites).
	if got := strings.Join(b.states(), " "); !strings.HasSuffix(got, "applied@1 applied@2") {
		t.Errorf("statuses %s: want applied for revision 1, then applied for revision 2 alone", got)
	}
	if managedRows(r) != 2+5 {
		t.Errorf("%d managed rows after revision 2, want 7", managedRows(r))
	}

	// Metrics and health.
	get := func(path string) string {
		resp, err := http.Get("http://" + a.MetricsAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		return string(body)
	}
	if h := get("/healthz"); !strings.Contains(h, "ok") {
		t.Errorf("/healthz: %q", h)
	}
	m := get("/metrics")
	for _, want := range []string{"rampart_agent_applied_revision 2", "rampart_agent_desired_revision 2", "rampart_agent_mqtt_connected 1", "rampart_agent_managed_rules 7", `rampart_agent_routeros_operations_total{kind="add"}`, `rampart_agent_applies_total{result="applied"}`, `rampart_build_info{component="agent",`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if problems, err := testutil.GatherAndLint(a.reg); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %+v", err, problems)
	}

	// A clean stop says offline.
	stop()
	eventually(t, "presence offline after a clean stop", func() bool {
		p, err := protocol.ParsePresence(b.get(protocol.KindPresence))
		return err == nil && p.State == protocol.PresenceOffline
	})
}

func TestRestartEnforcesCacheWithBrokerDown(t *testing.T) {
	b := startBroker(t)
	_, cfg := simSite(t, b)
	b.publish(t, marshal(t, sampleDoc(4)), true)
	_, stop := runAgent(t, cfg)
	eventually(t, "applied", func() bool { return b.status().State == protocol.StateApplied })
	stop()
	b.stop()

	// A new router (say, reset) and no broker at all: the cache still
	// drives the firewall.
	r2 := newSim(t, rossim.Options{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	cfg2 := cfg
	cfg2.RouterOSAddr = r2.Addr()
	cfg2.MQTTURLs = mustURLs(t, "tcp://"+dead)
	a2, _ := runAgent(t, cfg2)
	eventually(t, "the cached policy on the new router", func() bool { return managedRows(r2) == 13 })
	eventually(t, "applied revision 4", func() bool { return testutil.ToFloat64(a2.m.appliedRevision) == 4 })
}

func TestResyncRepairsDriftAndReports(t *testing.T) {
	b := startBroker(t)
	r, cfg := simSite(t, b)
	cfg.ResyncInterval = 100 * time.Millisecond
	b.publish(t, marshal(t, sampleDoc(1)), true)
	a, _ := runAgent(t, cfg)
	eventually(t, "applied", func() bool { return b.status().State == protocol.StateApplied })
	ids := managedIDs(r.Snapshot())
	mustExec(t, r, "/ip/firewall/filter/remove", "=.id="+ids["in/drop"])
	eventually(t, "the drop to come back", func() bool { return managedRows(r) == 13 })
	eventually(t, "a status with the repair", func() bool { return b.status().DriftRepairs >= 1 })
	if got := testutil.ToFloat64(a.m.driftRepairs); got < 1 {
		t.Errorf("drift repairs metric %v", got)
	}
}

func TestFailedApplyIsReportedAndRetried(t *testing.T) {
	b := startBroker(t)
	r, cfg := simSite(t, b)
	r.InjectTrap("/ip/firewall/filter/add", "failure: simulated", 2)
	b.publish(t, marshal(t, sampleDoc(1)), true)
	runAgent(t, cfg)
	eventually(t, "a failed status", func() bool { return b.status().State == protocol.StateFailed })
	if e := b.status().Error; !strings.Contains(e, "simulated") {
		t.Errorf("error %q", e)
	}
	eventually(t, "applied after retries", func() bool { return b.status().State == protocol.StateApplied })
}

func TestBrokerRestartResubscribes(t *testing.T) {
	b := startBroker(t)
	_, cfg := simSite(t, b)
	b.publish(t, marshal(t, sampleDoc(1)), true)
	a, err := New(cfg, Options{RetryBase: 50 * time.Millisecond, Throttle: 10 * time.Millisecond, MQTTMaxReconnect: 200 * time.Millisecond, MQTTConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "applied", func() bool { return b.status().State == protocol.StateApplied })

	// The broker restarts on the same address with no retained state.
	b.stop()
	eventually(t, "the agent to notice", func() bool { return testutil.ToFloat64(a.m.mqttConnected) == 0 })
	var b2 *broker
	eventually(t, "the port to be free again", func() bool {
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			return false
		}
		b2 = startBrokerOn(t, ln)
		return true
	})
	eventually(t, "the status republished to the new broker", func() bool { return b2.status().State == protocol.StateApplied })
	b2.publish(t, marshal(t, sampleDoc(2)), true)
	eventually(t, "revision 2 through the new subscription", func() bool {
		st := b2.status()
		return st.State == protocol.StateApplied && st.Revision == 2
	})
}

func TestLastWillSaysOffline(t *testing.T) {
	b := startBroker(t)
	_, cfg := simSite(t, b)
	runAgent(t, cfg)
	eventually(t, "online", func() bool {
		p, err := protocol.ParsePresence(b.get(protocol.KindPresence))
		return err == nil && p.State == protocol.PresenceOnline
	})
	// Cut the agent's connection without a DISCONNECT, as a crash or a
	// network failure would: the broker publishes the will.
	cl, ok := b.srv.Clients.Get("rampart-agent-org_demo-site_hq")
	if !ok {
		t.Fatal("agent's client not found on the broker")
	}
	cl.Stop(fmt.Errorf("test: connection cut"))
	eventually(t, "the will", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.hist[protocol.Topic(protocol.DefaultTopicRoot, "org_demo", "site_hq", protocol.KindPresence)] {
			if string(p) == string(protocol.OfflinePayload) {
				return true
			}
		}
		return false
	})
	eventually(t, "online again after the reconnect", func() bool {
		p, err := protocol.ParsePresence(b.get(protocol.KindPresence))
		return err == nil && p.State == protocol.PresenceOnline
	})
}

func mustURLs(t testing.TB, raw ...string) []*url.URL {
	t.Helper()
	var out []*url.URL
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// simSite is a simulated router and the configuration of an agent for it
// whose broker is b.
func simSite(t *testing.T, b *broker) (*rossim.Router, Config) {
	t.Helper()
	r := newSim(t, rossim.Options{})
	cfg := testConfig(t, r.Addr())
	cfg.MQTTURLs = mustURLs(t, "tcp://"+b.addr)
	return r, cfg
}
