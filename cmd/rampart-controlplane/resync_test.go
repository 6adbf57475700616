package main

import (
	"context"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/internal/fleet"
	"github.com/rampart-fw/rampart/protocol"
)

// TestStatusLearnedAfterRestart reproduces #13 item 11 with the real
// agents: a change is published, the control plane stops before any site
// reports it, the sites apply it meanwhile, and (on Mosquitto) their
// retained statuses are then wiped, as RabbitMQ 3.x never delivers them to
// the control plane's wildcard subscription. The restarted control plane
// learns every site's status from the answers to its resync request: the
// group turns active, long before its sync deadline would fail it. With the
// embedded broker the broker restarts with the control plane, so no
// retained status survives either.
func TestStatusLearnedAfterRestart(t *testing.T) { bothBrokers(t, testStatusLearnedAfterRestart) }

func testStatusLearnedAfterRestart(t *testing.T, external bool) {
	l := newLoop(t, external, 2*time.Minute)
	ids := []string{"site_y1", "site_y2"}
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", ids...), &g)
	gpath := "/vpc/security-groups/" + g.ID
	// Slow routers: an apply takes several round trips of 300 ms, so the
	// control plane can stop between publishing a change and its reports.
	f, err := fleet.Start(context.Background(), fleet.Options{N: len(ids), Org: l.org, SitePrefix: "site_y", BrokerURL: l.m.MQTT.AgentURL,
		Key: l.m.Key, DataDir: t.TempDir(), ResyncInterval: time.Hour, Latency: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	l.waitStatus(gpath, cp.StatusActive)

	l.must(200, "PUT", gpath, groupBody("9443", "192.0.2.0/24", ids...), nil)
	want := map[string]uint64{}
	for _, id := range ids {
		var s cp.Site
		l.must(200, "GET", "/vpc/sites/"+id, "", &s)
		want[id] = s.DesiredRevision
	}
	eventually(t, "the change published", func() string {
		if !l.m.MQTT.Syncer.Idle() {
			return "syncer busy"
		}
		return ""
	})
	l.http = l.m.Addr.String()
	if l.m.MQTT.Broker != nil {
		l.listen = l.m.MQTT.Broker.Addr()
	}
	if err := l.m.Close(); err != nil {
		t.Fatal(err)
	}
	l.m = nil

	ctx, cancel := context.WithTimeout(context.Background(), converge)
	defer cancel()
	if err := f.WaitApplied(ctx, func(i int) uint64 { return want[ids[i]] }); err != nil {
		t.Fatal(err)
	}
	if external {
		clearSiteReports(t, l.mqttURL, l.org, ids)
	}

	l.start()
	l.waitStatus(gpath, cp.StatusActive)
	for _, id := range ids {
		var s cp.Site
		l.must(200, "GET", "/vpc/sites/"+id, "", &s)
		if s.State != cp.SiteInSync || s.AppliedRevision != want[id] {
			t.Errorf("%s after the restart: %s, applied %d; want in_sync at %d", id, s.State, s.AppliedRevision, want[id])
		}
	}
}

// clearSiteReports deletes the retained status and presence of each site
// from an external broker (an empty retained publish).
func clearSiteReports(t *testing.T, url, org string, sites []string) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetProtocolVersion(4).SetConnectTimeout(10 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", url, tok.Error())
	}
	defer c.Disconnect(100)
	for _, s := range sites {
		for _, topic := range []string{protocol.StatusTopic(protocol.DefaultTopicRoot, org, s), protocol.PresenceTopic(protocol.DefaultTopicRoot, org, s)} {
			if tok := c.Publish(topic, 1, true, []byte{}); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
				t.Fatalf("clear %s: %v", topic, tok.Error())
			}
		}
	}
}
