package bus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"
	mochipk "github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/protocol"

	"github.com/rampart-fw/rampart/internal/wait"
)

const waitFor = 20 * time.Second

var testKey = keys.FromBytes([]byte("0123456789abcdef0123456789abcdef"))

func quietLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// env is a broker to test against: the embedded one, or the external one
// named by RAMPART_TEST_MQTT_URL (anonymous, as .ci/run starts Mosquitto).
type env struct {
	name    string
	url     string
	root    string
	cpUser  string
	cpPass  string
	site    func(org, site string) (user, pass string)
	broker  *broker.Broker // embedded only
	reports ReportSource   // in-process ingestion, if tested
}

func embedded(t *testing.T) *env {
	t.Helper()
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &env{
		name: "embedded", url: b.URL(), root: protocol.DefaultTopicRoot,
		cpUser: keys.ControlPlaneMQTTUser, cpPass: testKey.ControlPlaneMQTTPassword(),
		site:   embeddedSite,
		broker: b,
	}
}

func embeddedSite(org, site string) (string, string) {
	return protocol.SiteMQTTUser(org, site), testKey.SiteSecret(org, site)
}

func external(t *testing.T) *env {
	t.Helper()
	url := os.Getenv("RAMPART_TEST_MQTT_URL")
	if url == "" {
		t.Skip("RAMPART_TEST_MQTT_URL is not set; no external broker to test against")
	}
	// A root of its own, so runs never see each other's retained messages.
	var r [6]byte
	_, _ = rand.Read(r[:])
	return &env{
		name: "external", url: url, root: "rampart-test/" + hex.EncodeToString(r[:]) + "/v1",
		site: func(string, string) (string, string) { return "", "" },
	}
}

// envs runs f against every broker available: the embedded one with
// ingestion over MQTT and in process, and the external one.
func envs(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("embedded", func(t *testing.T) { f(t, embedded(t)) })
	t.Run("embedded-inline", func(t *testing.T) {
		e := embedded(t)
		e.reports = e.broker
		f(t, e)
	})
	t.Run("external", func(t *testing.T) { f(t, external(t)) })
}

// recorder is an Ingester that keeps what it is given.
type recorder struct {
	mu       sync.Mutex
	statuses []protocol.SiteStatus
	presence []string // "org/site state"
}

func (r *recorder) SiteStatus(_ context.Context, org, site string, st protocol.SiteStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = append(r.statuses, st)
}

func (r *recorder) SitePresence(_ context.Context, org, site string, p protocol.Presence) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.presence = append(r.presence, org+"/"+site+" "+p.State)
}

func (r *recorder) snapshot() ([]protocol.SiteStatus, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]protocol.SiteStatus(nil), r.statuses...), append([]string(nil), r.presence...)
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, waitFor, what, cond)
}

func connectBus(t *testing.T, e *env, ing Ingester, reg prometheus.Registerer, onConnect func(context.Context)) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	b, err := Connect(ctx, Options{
		URLs: strings.Split(e.url, ","), Username: e.cpUser, Password: e.cpPass, TopicRoot: e.root,
		Ingester: ing, Reports: e.reports, OnConnect: onConnect, Registry: reg, Logger: quietLogger(),
		MaxReconnectInterval: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("connect bus to %s: %v", e.url, err)
	}
	t.Cleanup(b.Close)
	return b
}

// agent is a site's paho connection, as an agent would hold it.
type agent struct {
	paho.Client
	mu   sync.Mutex
	docs []protocol.DesiredState
}

// waitDoc waits for want and checks that the agent received nothing else. A
// document may arrive twice (live, then the retained copy, when the publish
// follows the subscription closely); agents ignore a revision they have, so
// duplicates are fine, other documents are not.
func (a *agent) waitDoc(t *testing.T, what string, want protocol.DesiredState) {
	t.Helper()
	poll(t, what, func() bool { return len(a.received()) >= 1 })
	for _, got := range a.received() {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: agent received (-want +got):\n%s", what, diff)
		}
	}
}

func (a *agent) received() []protocol.DesiredState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]protocol.DesiredState(nil), a.docs...)
}

func connectAgent(t *testing.T, e *env, org, site string) *agent {
	t.Helper()
	user, pass := e.site(org, site)
	a := &agent{}
	o := paho.NewClientOptions().AddBroker(e.url).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(waitFor)
	a.Client = paho.NewClient(o)
	if tok := a.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("agent %s/%s connect: %v", org, site, tok.Error())
	}
	t.Cleanup(func() { a.Disconnect(100) })
	topic := protocol.DesiredTopic(e.root, org, site)
	tok := a.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		if len(m.Payload()) == 0 {
			return // a cleared retained message, as clearRetained sends
		}
		var d protocol.DesiredState
		if err := json.Unmarshal(m.Payload(), &d); err != nil {
			t.Errorf("agent %s/%s: undecodable desired state %q: %v", org, site, m.Payload(), err)
			return
		}
		a.mu.Lock()
		a.docs = append(a.docs, d)
		a.mu.Unlock()
	})
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("agent subscribe %s: %v", topic, tok.Error())
	}
	return a
}

func (a *agent) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	a.publishRetain(t, topic, payload, true)
}

func (a *agent) publishRetain(t *testing.T, topic string, payload []byte, retain bool) {
	t.Helper()
	tok := a.Publish(topic, 1, retain, payload)
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("agent publish %s: %v", topic, tok.Error())
	}
}

// clearRetained removes what a test left retained on an external broker.
func clearRetained(t *testing.T, e *env, topics ...string) {
	if e.broker != nil {
		return
	}
	t.Cleanup(func() {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(e.url).SetProtocolVersion(4))
		if tok := c.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			return
		}
		for _, topic := range topics {
			c.Publish(topic, 1, true, []byte{}).WaitTimeout(waitFor)
		}
		c.Disconnect(100)
	})
}

func doc(org, site string, revision uint64, cidr string) protocol.DesiredState {
	d := protocol.DesiredState{
		OrgID: org, SiteID: site, Epoch: "ep1", Revision: revision,
		SecurityGroups: []protocol.SecurityGroup{{ID: "sec_grp_web", Name: "Web", Rules: []protocol.Rule{
			{ID: "fltr_1", Direction: protocol.Inbound, Order: 1, Protocol: 6, Port: "443", Address: cidr, Description: "https"},
		}}},
	}
	d.Seal()
	return d
}

func status(org, site string, revision uint64, state string) protocol.SiteStatus {
	return protocol.SiteStatus{
		Schema: protocol.SchemaVersion, OrgID: org, SiteID: site, Epoch: "ep1", Revision: revision,
		State: state, AppliedAt: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), DurationMS: 41, Rules: 5,
		AgentVersion: "test", RouterOSVersion: "7.16", Board: "RB5009UG+S+",
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishAndIngestRoundTrip(t *testing.T) {
	envs(t, func(t *testing.T, e *env) {
		rec := &recorder{}
		reg := prometheus.NewRegistry()
		b := connectBus(t, e, rec, reg, nil)
		a := connectAgent(t, e, "org_x", "site_a")
		other := connectAgent(t, e, "org_x", "site_b")
		clearRetained(t, e,
			protocol.DesiredTopic(e.root, "org_x", "site_a"), protocol.DesiredTopic(e.root, "org_x", "site_b"),
			protocol.StatusTopic(e.root, "org_x", "site_a"), protocol.PresenceTopic(e.root, "org_x", "site_a"))

		want := []protocol.DesiredState{doc("org_x", "site_a", 1, "0.0.0.0/0"), doc("org_x", "site_b", 1, "10.0.0.0/8")}
		if err := b.PublishDesired(context.Background(), want...); err != nil {
			t.Fatalf("PublishDesired: %v", err)
		}
		a.waitDoc(t, "site_a's document", want[0])
		other.waitDoc(t, "site_b's document", want[1])

		// Retained: an agent connecting later gets the document at once.
		late := connectAgent(t, e, "org_x", "site_a")
		late.waitDoc(t, "retained document for a late agent", want[0])

		st := status("org_x", "site_a", 1, protocol.StateApplied)
		a.publish(t, protocol.PresenceTopic(e.root, "org_x", "site_a"), mustJSON(t, protocol.Presence{State: protocol.PresenceOnline, At: time.Now()}))
		a.publish(t, protocol.StatusTopic(e.root, "org_x", "site_a"), mustJSON(t, st))
		a.publish(t, protocol.PresenceTopic(e.root, "org_x", "site_a"), protocol.OfflinePayload)
		// A broker may deliver a retained message twice around a
		// subscription (see the package doc), so compare without
		// consecutive duplicates.
		poll(t, "status and presence ingested", func() bool {
			s, p := rec.snapshot()
			return len(s) >= 1 && len(p) >= 2 && p[len(p)-1] == "org_x/site_a offline"
		})
		s, p := rec.snapshot()
		if diff := cmp.Diff(st, s[0]); diff != "" {
			t.Errorf("ingested status (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"org_x/site_a online", "org_x/site_a offline"}, slices.Compact(p)); diff != "" {
			t.Errorf("ingested presence, in order (-want +got):\n%s", diff)
		}
		if got := testutil.ToFloat64(b.m.publishes.WithLabelValues("ok")); got != 2 {
			t.Errorf("rampart_desired_publishes_total{result=ok} = %v, want 2", got)
		}
	})
}

func TestMalformedReportsIgnoredAndCounted(t *testing.T) {
	envs(t, func(t *testing.T, e *env) {
		rec := &recorder{}
		reg := prometheus.NewRegistry()
		connectBus(t, e, rec, reg, nil)
		a := connectAgent(t, e, "org_x", "site_a")
		statusTopic := protocol.StatusTopic(e.root, "org_x", "site_a")
		presenceTopic := protocol.PresenceTopic(e.root, "org_x", "site_a")
		clearRetained(t, e, statusTopic, presenceTopic)

		claimsOther := status("org_x", "site_b", 3, protocol.StateApplied)
		otherOrg := status("org_y", "site_a", 3, protocol.StateApplied)
		badState := status("org_x", "site_a", 3, "done")
		badSchema := status("org_x", "site_a", 3, protocol.StateApplied)
		badSchema.Schema = protocol.SchemaVersion + 1
		for _, payload := range [][]byte{
			[]byte("not json"),
			[]byte(`{"schema":1,"org_id":"org_x","site_id":"site_a","revision":"three"}`),
			mustJSON(t, claimsOther),
			mustJSON(t, otherOrg),
			mustJSON(t, badState),
			mustJSON(t, badSchema),
		} {
			a.publishRetain(t, statusTopic, payload, false)
		}
		a.publishRetain(t, presenceTopic, []byte(`{"state":"sleeping"}`), false)
		a.publishRetain(t, presenceTopic, []byte(`[`), false)
		sentinel := status("org_x", "site_a", 4, protocol.StateFailed)
		sentinel.Error = "RouterOS said no"
		a.publishRetain(t, statusTopic, mustJSON(t, sentinel), false)
		a.publishRetain(t, presenceTopic, mustJSON(t, protocol.Presence{State: protocol.PresenceOnline}), false)

		poll(t, "the valid reports", func() bool {
			s, p := rec.snapshot()
			return len(s) >= 1 && len(p) >= 1
		})
		s, p := rec.snapshot()
		if diff := cmp.Diff([]protocol.SiteStatus{sentinel}, s); diff != "" {
			t.Errorf("ingested statuses (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"org_x/site_a online"}, p); diff != "" {
			t.Errorf("ingested presence (-want +got):\n%s", diff)
		}
		// Not retained, so that no broker replays a copy and every message
		// is counted exactly once.
		err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP rampart_site_reports_total Status and presence messages received from sites, by kind and result: accepted, malformed, mismatch (names another site than its topic), stale (a retained copy of a message superseded on this connection).
# TYPE rampart_site_reports_total counter
rampart_site_reports_total{kind="presence",result="accepted"} 1
rampart_site_reports_total{kind="presence",result="malformed"} 2
rampart_site_reports_total{kind="presence",result="stale"} 0
rampart_site_reports_total{kind="status",result="accepted"} 1
rampart_site_reports_total{kind="status",result="malformed"} 4
rampart_site_reports_total{kind="status",result="mismatch"} 2
rampart_site_reports_total{kind="status",result="stale"} 0
`), "rampart_site_reports_total")
		if err != nil {
			t.Error(err)
		}
	})
}

func TestInvalidDesiredStateIsNotPublished(t *testing.T) {
	envs(t, func(t *testing.T, e *env) {
		b := connectBus(t, e, &recorder{}, nil, nil)
		a := connectAgent(t, e, "org_x", "site_a")
		clearRetained(t, e, protocol.DesiredTopic(e.root, "org_x", "site_a"))

		noRevision := doc("org_x", "site_a", 0, "0.0.0.0/0")
		badHash := doc("org_x", "site_a", 2, "0.0.0.0/0")
		badHash.Hash = "sha256:00"
		noEpoch := doc("org_x", "site_a", 2, "0.0.0.0/0")
		noEpoch.Epoch = ""
		badSite := doc("org_x", "site_a", 2, "0.0.0.0/0")
		badSite.SiteID = "site_+"
		good := doc("org_x", "site_a", 3, "192.0.2.0/24")
		err := b.PublishDesired(context.Background(), noRevision, badHash, noEpoch, badSite, good)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("PublishDesired error = %v, want ErrInvalid", err)
		}
		if n := strings.Count(err.Error(), "invalid desired state"); n != 4 {
			t.Errorf("error names %d invalid documents, want 4: %v", n, err)
		}
		a.waitDoc(t, "the valid document", good)
	})
}

// TestReconnectAfterBrokerRestart stops the embedded broker and starts a new
// one on the same port: the bus reconnects, subscribes again, and its
// OnConnect republishes the retained state the new broker lost.
func TestReconnectAfterBrokerRestart(t *testing.T) {
	e := embedded(t)
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	var n int
	var mu sync.Mutex
	current := doc("org_x", "site_a", 1, "0.0.0.0/0")
	var b *Bus
	ready := make(chan struct{})
	b = connectBus(t, e, rec, reg, func(ctx context.Context) {
		<-ready
		if err := b.PublishDesired(ctx, current); err != nil {
			t.Errorf("republish on connect: %v", err)
		}
		mu.Lock()
		n++
		mu.Unlock()
	})
	close(ready)
	a := connectAgent(t, e, "org_x", "site_a")
	a.waitDoc(t, "the first publish", current)

	addr := e.broker.Addr()
	e.broker.Close()
	poll(t, "the bus to notice", func() bool { return !b.Connected() })
	nb, err := broker.Start(broker.Options{Listen: addr, Key: testKey, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("restart broker on %s: %v", addr, err)
	}
	t.Cleanup(func() { nb.Close() })
	e.broker = nb

	poll(t, "the bus to reconnect and republish", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return n == 2 && b.Connected()
	})
	a2 := connectAgent(t, e, "org_x", "site_a")
	a2.waitDoc(t, "the republished retained document after the restart", current)
	// The subscription is back: a status reaches the ingester.
	a2.publish(t, protocol.StatusTopic(e.root, "org_x", "site_a"), mustJSON(t, status("org_x", "site_a", 1, protocol.StateApplied)))
	poll(t, "a status after the restart", func() bool { s, _ := rec.snapshot(); return len(s) >= 1 })
	if got := testutil.ToFloat64(b.m.connects); got != 2 {
		t.Errorf("rampart_controlplane_mqtt_connects_total = %v, want 2", got)
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	e := embedded(t)
	addr := e.broker.Addr()
	e.broker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Connect(ctx, Options{URLs: []string{"tcp://" + addr}, Logger: quietLogger()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect to a closed port: %v, want context.DeadlineExceeded", err)
	}
}

func TestWrongCredentialsFail(t *testing.T) {
	e := embedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := Connect(ctx, Options{URLs: []string{e.url}, Username: keys.ControlPlaneMQTTUser, Password: "wrong", Logger: quietLogger()})
	if err == nil {
		t.Fatal("Connect with a wrong password succeeded")
	}
	// Refused credentials are reported at once: Connect does not wait for
	// the context to end.
	if ctx.Err() != nil || !errors.Is(err, ErrCredentials) {
		t.Errorf("Connect with a wrong password: %v; want an immediate ErrCredentials", err)
	}
}

func TestPublishManySitesPipelined(t *testing.T) {
	envs(t, func(t *testing.T, e *env) {
		b := connectBus(t, e, nil, nil, nil)
		const n = 2000
		docs := make([]protocol.DesiredState, n)
		var topics []string
		for i := range docs {
			docs[i] = doc("org_x", fmt.Sprintf("site_%d", i), 1, "0.0.0.0/0")
			topics = append(topics, protocol.DesiredTopic(e.root, "org_x", docs[i].SiteID))
		}
		clearRetained(t, e, topics...)
		if err := b.PublishDesired(context.Background(), docs...); err != nil {
			t.Fatalf("PublishDesired(%d): %v", n, err)
		}
		if got := testutil.ToFloat64(b.m.publishes.WithLabelValues("ok")); got != n {
			t.Errorf("acknowledged %v publishes, want %d", got, n)
		}
		// Spot-check that the last one is retained.
		last := connectAgent(t, e, "org_x", docs[n-1].SiteID)
		last.waitDoc(t, "the last site's retained document", docs[n-1])
	})
}

// TestStaleRetainedDropped covers the rule for a retained copy that a broker
// delivers after a live message of the same site and kind.
func TestStaleRetainedDropped(t *testing.T) {
	b := &Bus{live: map[liveKey]struct{}{}}
	a := liveKey{"org_x", "site_a", protocol.KindStatus}
	other := liveKey{"org_x", "site_b", protocol.KindStatus}
	steps := []struct {
		k        liveKey
		retained bool
		stale    bool
	}{
		{a, true, false},     // replay right after subscribing: news
		{a, false, false},    // live
		{a, true, true},      // replayed copy after a live one: stale
		{other, true, false}, // another site is unaffected
	}
	for i, st := range steps {
		if got := b.staleRetained(st.k, st.retained); got != st.stale {
			t.Errorf("step %d (%v retained=%v): stale = %v, want %v", i, st.k, st.retained, got, st.stale)
		}
	}
}

// TestManyRetainedStatusesIngestedInProcess: a control plane starting
// against the embedded broker must see every retained status. Over MQTT,
// mochi drops retained messages that do not fit the subscriber's
// pending-write queue (made tiny here to show it with few sites); the
// in-process feed has no such queue.
func TestManyRetainedStatusesIngestedInProcess(t *testing.T) {
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quietLogger(), MaxPendingWrites: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	e := &env{
		url: b.URL(), root: protocol.DefaultTopicRoot, broker: b, reports: b,
		cpUser: keys.ControlPlaneMQTTUser, cpPass: testKey.ControlPlaneMQTTPassword(),
		site: func(org, site string) (string, string) {
			return protocol.SiteMQTTUser(org, site), testKey.SiteSecret(org, site)
		},
	}
	const n = 60
	for i := range n {
		site := fmt.Sprintf("site_%d", i)
		a := connectAgent(t, e, "org_x", site)
		a.publish(t, protocol.StatusTopic(e.root, "org_x", site), mustJSON(t, status("org_x", site, 1, protocol.StateApplied)))
		a.Disconnect(0)
	}
	rec := &recorder{}
	connectBus(t, e, rec, nil, nil)
	// Count sites, not messages: the last publish can reach the feed twice
	// (mochi acknowledges a publish before routing it, so the new
	// subscription may get it live as well as replayed).
	sites := func() int {
		s, _ := rec.snapshot()
		seen := map[string]bool{}
		for _, st := range s {
			seen[st.SiteID] = true
		}
		return len(seen)
	}
	poll(t, fmt.Sprintf("%d retained statuses", n), func() bool { return sites() == n })
	// A status published now still arrives, after the replay.
	a := connectAgent(t, e, "org_x", "site_new")
	a.publish(t, protocol.StatusTopic(e.root, "org_x", "site_new"), mustJSON(t, status("org_x", "site_new", 1, protocol.StateApplied)))
	poll(t, "a live status", func() bool { return sites() == n+1 })
}

// TestLastWillReachesIngester: an agent that vanishes without DISCONNECT
// (power cut, crash) has its last will published by the broker, which must
// pass the ACL and reach the Ingester as presence offline. paho cannot drop
// a connection without DISCONNECT, so the agent here is a raw TCP client.
func TestLastWillReachesIngester(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			e := embedded(t)
			if inline {
				e.reports = e.broker
			}
			rec := &recorder{}
			connectBus(t, e, rec, nil, nil)

			user, pass := e.site("org_x", "site_a")
			pk := mochipk.Packet{
				FixedHeader:     mochipk.FixedHeader{Type: mochipk.Connect},
				ProtocolVersion: 4,
				Connect: mochipk.ConnectParams{
					ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "agent",
					UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass),
					WillFlag: true, WillTopic: protocol.PresenceTopic(e.root, "org_x", "site_a"),
					WillPayload: protocol.OfflinePayload, WillQos: 1, WillRetain: true,
				},
			}
			var buf bytes.Buffer
			if err := pk.ConnectEncode(&buf); err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("tcp", e.broker.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			connack := make([]byte, 4)
			conn.SetReadDeadline(time.Now().Add(waitFor))
			if _, err := io.ReadFull(conn, connack); err != nil {
				t.Fatalf("read CONNACK: %v", err)
			}
			if connack[0] != 0x20 || connack[3] != 0 {
				t.Fatalf("CONNACK % x: connection refused", connack)
			}
			conn.Close() // no DISCONNECT: the broker publishes the will

			poll(t, "the last will as presence offline", func() bool {
				_, p := rec.snapshot()
				return slices.Contains(p, "org_x/site_a offline")
			})
		})
	}
}
