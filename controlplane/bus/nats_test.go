package bus

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/internal/natstest"
	"github.com/rampart-fw/rampart/internal/wait"
	"github.com/rampart-fw/rampart/protocol"
)

// TestNATSClusterFailover is #15 item 3 on a real 3-node NATS cluster with
// MQTT and JetStream: the bus is given every node's URL, the node it is
// connected to is killed, and it moves to another node, where JetStream may
// refuse its QoS 1 subscriptions while it elects new leaders; the bus
// retries them on that connection until they are granted, asks the agents
// to report again, and ingests a status published on the third node.
func TestNATSClusterFailover(t *testing.T) {
	c := natstest.Start(t)
	urls := c.MQTTURLs()
	root := "rampart-test/nats/v1"
	e := &env{url: strings.Join(urls, ","), root: root, site: func(string, string) (string, string) { return "", "" }}

	rec := &recorder{}
	b := connectBus(t, e, rec, nil, nil)
	agentEnv := *e
	agentEnv.url = urls[2] // the agent's node last, so the bus is not on it
	a := connectAgent(t, &agentEnv, "org_x", "site_a")
	st := mustJSON(t, status("org_x", "site_a", 1, protocol.StateApplied))
	a.publish(t, protocol.StatusTopic(root, "org_x", "site_a"), st)
	poll(t, "a status before the failover", func() bool { s, _ := rec.snapshot(); return len(s) >= 1 })

	on := slices.Index(urls, b.Server())
	if on < 0 || on == 2 {
		t.Fatalf("the bus is on %q: want the first or second node of %v", b.Server(), urls)
	}
	killed := time.Now()
	c.Kill(on)
	// JetStream elects new leaders for a while (about 10 s here, 10-15 s
	// measured with Debian's nats-server 2.9.10): a bound well above that.
	wait.For(t, time.Minute, "the bus on another node with its subscriptions", func() bool {
		return testutil.ToFloat64(b.m.connects) >= 2 && b.Ready() == nil
	})
	recovered := time.Since(killed)
	// JetStream may refuse the agent's retained publish too while it elects
	// (NATS then closes the agent's connection): publish again until it is
	// taken, as the real agent does.
	st2 := mustJSON(t, status("org_x", "site_a", 2, protocol.StateApplied))
	wait.Until(t, time.Minute, "the agent's status taken after the failover", func() string {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(urls[2]).SetProtocolVersion(4).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Sprintf("connect: %v", tok.Error())
		}
		defer c.Disconnect(100)
		if tok := c.Publish(protocol.StatusTopic(root, "org_x", "site_a"), 1, true, st2); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Sprintf("publish: %v", tok.Error())
		}
		return ""
	})
	wait.For(t, time.Minute, "a status after the failover", func() bool {
		s, _ := rec.snapshot()
		return len(s) >= 2 && s[len(s)-1].Revision == 2
	})
	// The resync request is a QoS 1 publish that JetStream may refuse too;
	// the bus publishes it again until it is taken, once per connection.
	wait.For(t, time.Minute, "a resync request taken on the new connection", func() bool {
		return testutil.ToFloat64(b.m.resyncs) >= 2
	})
	t.Logf("node killed -> bus subscribed on another node: %s; refused meanwhile: %v subscriptions, %v resync requests",
		recovered.Round(time.Millisecond), testutil.ToFloat64(b.m.refused.WithLabelValues("subscribe")), testutil.ToFloat64(b.m.refused.WithLabelValues("resync")))
}
