package bus

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	mochipk "github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/internal/freeport"
	"github.com/rampart-fw/rampart/protocol"
)

// TestStartsWithoutBroker reproduces #13 item 9 at the bus: New returns at
// once with the broker down, Ready says so, and the bus connects and
// publishes once the broker comes up.
func TestStartsWithoutBroker(t *testing.T) {
	addr := freeport.Addr(t)
	b, err := New(Options{URLs: []string{"tcp://" + addr}, Username: "rampart-controlplane", Password: testKey.ControlPlaneMQTTPassword(),
		Logger: quietLogger(), MaxReconnectInterval: 200 * time.Millisecond, Ingester: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Ready(); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Ready() with the broker down = %v, want ErrNotConnected", err)
	}
	if err := b.PublishDesired(context.Background(), doc("org_x", "site_a", 1, "0.0.0.0/0")); err == nil {
		t.Fatal("PublishDesired succeeded with no broker")
	}
	time.Sleep(300 * time.Millisecond) // a few failed attempts

	brk, err := broker.Start(broker.Options{Listen: addr, Key: testKey, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready() once connected = %v", err)
	}
	e := &env{url: brk.URL(), root: protocol.DefaultTopicRoot, site: embeddedSite}
	a := connectAgent(t, e, "org_x", "site_a")
	want := doc("org_x", "site_a", 1, "0.0.0.0/0")
	if err := b.PublishDesired(ctx, want); err != nil {
		t.Fatal(err)
	}
	a.waitDoc(t, "the document published once the broker is up", want)
}

// TestFailoverBetweenURLs: with several URLs the bus connects to the first
// that answers and moves to another when its broker goes away.
func TestFailoverBetweenURLs(t *testing.T) {
	first, second := embedded(t), embedded(t)
	rec := &recorder{}
	b := connectBus(t, &env{url: first.url + "," + second.url, root: protocol.DefaultTopicRoot, cpUser: first.cpUser, cpPass: first.cpPass}, rec, nil, nil)
	if got := first.broker.Clients(); got != 1 {
		t.Fatalf("clients of the first broker = %d, want the bus", got)
	}
	first.broker.Close()
	poll(t, "the bus on the second broker", func() bool { return second.broker.Clients() == 1 && b.Ready() == nil })
	a := connectAgent(t, second, "org_x", "site_a")
	a.publish(t, protocol.StatusTopic(second.root, "org_x", "site_a"), mustJSON(t, status("org_x", "site_a", 1, protocol.StateApplied)))
	poll(t, "a status through the second broker", func() bool { s, _ := rec.snapshot(); return len(s) >= 1 })
}

// refuseFirst is a mochi hook that refuses the first n subscriptions to
// the control plane's status filter (SUBACK 0x80), as a NATS cluster does
// while it elects JetStream leaders, and allows everything else (mochi
// grants what any hook allows, so this is the only hook).
type refuseFirst struct {
	mqtt.HookBase
	n atomic.Int32
}

func (h *refuseFirst) ID() string { return "refuse-first" }
func (h *refuseFirst) Provides(b byte) bool {
	return b == mqtt.OnACLCheck || b == mqtt.OnConnectAuthenticate
}
func (h *refuseFirst) OnConnectAuthenticate(*mqtt.Client, mochipk.Packet) bool { return true }
func (h *refuseFirst) OnACLCheck(_ *mqtt.Client, topic string, write bool) bool {
	if !write && topic == protocol.DefaultTopicRoot+"/+/+/status" {
		return h.n.Add(-1) < 0
	}
	return true
}

// TestRefusedSubscriptionRetried reproduces #15 item 3 at the bus: a broker
// that refuses the subscription for a while no longer leaves status
// unread until the next connection. The bus retries on the same connection.
func TestRefusedSubscriptionRetried(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: quietLogger()})
	h := &refuseFirst{}
	const refusals = 3
	h.n.Store(refusals)
	if err := srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{url: "tcp://" + tcp.Address(), root: protocol.DefaultTopicRoot, site: func(string, string) (string, string) { return "", "" }}

	rec := &recorder{}
	b := connectBus(t, e, rec, nil, nil) // returns once subscribed
	if got := testutil.ToFloat64(b.m.refused.WithLabelValues("subscribe")); got != refusals {
		t.Errorf("refused subscriptions = %v, want %d", got, refusals)
	}
	if got := testutil.ToFloat64(b.m.connects); got != 1 {
		t.Errorf("connections = %v, want 1: the retry must not wait for a reconnection", got)
	}
	a := connectAgent(t, e, "org_x", "site_a")
	a.publish(t, protocol.StatusTopic(e.root, "org_x", "site_a"), mustJSON(t, status("org_x", "site_a", 1, protocol.StateApplied)))
	// The status may arrive twice: mochi sends a new subscription's retained
	// messages after the SUBACK, so a publish right after it can come both
	// live and retained (see the package doc); the Ingester is idempotent.
	poll(t, "a status after the refusals", func() bool { s, _ := rec.snapshot(); return len(s) >= 1 })
}

// TestResyncRequestTeachesStatus reproduces #13 item 11: a control plane
// that starts after the agents learns their status without any retained
// delivery. The agent here answers the resync request as the real agent
// does, but publishes its status only then and not retained, so the status
// can only have come through the request.
func TestResyncRequestTeachesStatus(t *testing.T) {
	envs(t, func(t *testing.T, e *env) {
		a := connectAgent(t, e, "org_x", "site_a")
		asked := make(chan protocol.ResyncRequest, 4)
		st := mustJSON(t, status("org_x", "site_a", 7, protocol.StateApplied))
		tok := a.Subscribe(protocol.ResyncTopic(e.root), 1, func(c paho.Client, m paho.Message) {
			var r protocol.ResyncRequest
			if err := json.Unmarshal(m.Payload(), &r); err != nil {
				t.Errorf("resync request %q: %v", m.Payload(), err)
			}
			if m.Retained() {
				t.Error("the resync request was retained")
			}
			asked <- r
			c.Publish(protocol.StatusTopic(e.root, "org_x", "site_a"), 1, false, st)
		})
		if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Fatalf("subscribe to the resync topic: %v", tok.Error())
		}

		rec := &recorder{}
		start := time.Now()
		b := connectBus(t, e, rec, nil, nil)
		poll(t, "the status the agent sent on request", func() bool {
			s, _ := rec.snapshot()
			return len(s) == 1 && s[0].Revision == 7
		})
		r := <-asked
		if r.Schema != protocol.StatusSchema || r.At.Before(start.Add(-time.Second)) || r.At.After(time.Now()) {
			t.Errorf("resync request %+v: want schema %d and the time it was sent", r, protocol.StatusSchema)
		}
		if got := testutil.ToFloat64(b.m.resyncs); got != 1 {
			t.Errorf("resync requests = %v, want 1", got)
		}
	})
}
