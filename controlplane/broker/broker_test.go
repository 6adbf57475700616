package broker

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/internal/metrictest"
	"github.com/rampart-fw/rampart/protocol"
)

const (
	root    = protocol.DefaultTopicRoot
	waitFor = 20 * time.Second
)

var testKey = keys.FromBytes([]byte("0123456789abcdef0123456789abcdef"))

func quietLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func startBroker(t *testing.T, reg prometheus.Registerer) *Broker {
	t.Helper()
	b, err := Start(Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quietLogger(), Registry: reg})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// client is a paho connection that records what it receives and whether it
// lost its connection.
type client struct {
	paho.Client
	mu   sync.Mutex
	got  []paho.Message
	lost chan error
}

func (c *client) messages() []paho.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]paho.Message(nil), c.got...)
}

// waitMessage waits until a message on topic with payload arrives and
// returns everything received up to then.
func (c *client) waitMessage(t *testing.T, topic, payload string) []paho.Message {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		msgs := c.messages()
		for _, m := range msgs {
			if m.Topic() == topic && string(m.Payload()) == payload {
				return msgs
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no message %q on %s within %v; got %v", payload, topic, waitFor, describe(c.messages()))
	return nil
}

func describe(msgs []paho.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "[%s %q] ", m.Topic(), m.Payload())
	}
	return b.String()
}

func dial(t *testing.T, b *Broker, user, pass, clientID string, will func(*paho.ClientOptions)) (*client, error) {
	t.Helper()
	c := &client{lost: make(chan error, 1)}
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID(clientID).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(waitFor).SetCleanSession(true).
		// Without a fixed version paho retries a refused 3.1.1 connection
		// as 3.1, and every refusal would count twice.
		SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			c.mu.Lock()
			c.got = append(c.got, m)
			c.mu.Unlock()
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	if will != nil {
		will(o)
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitFor) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func mustDial(t *testing.T, b *Broker, user, pass string) *client {
	t.Helper()
	c, err := dial(t, b, user, pass, "", nil)
	if err != nil {
		t.Fatalf("connect as %q: %v", user, err)
	}
	return c
}

func site(t *testing.T, b *Broker, org, s string) *client {
	return mustDial(t, b, protocol.SiteMQTTUser(org, s), testKey.SiteSecret(org, s))
}

func controlPlane(t *testing.T, b *Broker) *client {
	return mustDial(t, b, keys.ControlPlaneMQTTUser, testKey.ControlPlaneMQTTPassword())
}

// subscribe returns the broker's verdict per filter: true if granted.
func subscribe(t *testing.T, c *client, filter string) bool {
	t.Helper()
	tok := c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(waitFor) {
		t.Fatalf("subscribe %s: timed out", filter)
	}
	if err := tok.Error(); err != nil {
		return false
	}
	// paho keys results by the filter without a $share prefix; one filter
	// was sent, so take the one result.
	res := tok.(*paho.SubscribeToken).Result()
	if len(res) != 1 {
		t.Fatalf("subscribe %s: %d results", filter, len(res))
	}
	for _, code := range res {
		return code <= 2
	}
	return false
}

func publish(t *testing.T, c *client, topic, payload string, qos byte) {
	t.Helper()
	tok := c.Publish(topic, qos, true, payload)
	if !tok.WaitTimeout(waitFor) {
		t.Fatalf("publish %s: timed out", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func TestSiteReadsOnlyItsOwnDesiredState(t *testing.T) {
	b := startBroker(t, nil)
	cp := controlPlane(t, b)
	// Retained documents for three sites, two organisations, before anyone
	// subscribes: a retained message must not leak through a wildcard.
	for _, s := range []struct{ org, site string }{{"org_x", "site_a"}, {"org_x", "site_b"}, {"org_y", "site_a"}} {
		publish(t, cp, protocol.DesiredTopic(root, s.org, s.site), "retained "+s.org+"/"+s.site, 1)
	}

	a := site(t, b, "org_x", "site_a")
	for _, filter := range []string{
		"#",
		root + "/#",
		root + "/+/+/desired",
		root + "/org_x/+/desired",
		root + "/org_x/site_b/desired",
		root + "/org_y/site_a/desired",
		root + "/org_x/site_a/+",
		root + "/org_x/site_a/status",
		"$SYS/#",
		"$share/g/" + root + "/org_x/site_b/desired",
	} {
		if subscribe(t, a, filter) {
			t.Errorf("site org_x/site_a was granted subscription %q", filter)
		}
	}
	own := protocol.DesiredTopic(root, "org_x", "site_a")
	if !subscribe(t, a, own) {
		t.Fatalf("site was refused its own desired topic %s", own)
	}
	a.waitMessage(t, own, "retained org_x/site_a")

	// Live publishes: the other sites' documents go first, then a sentinel
	// for site_a. Messages to one client are delivered in order, so once the
	// sentinel is in, anything leaked would be too.
	publish(t, cp, protocol.DesiredTopic(root, "org_x", "site_b"), "live org_x/site_b", 1)
	publish(t, cp, protocol.DesiredTopic(root, "org_y", "site_a"), "live org_y/site_a", 1)
	publish(t, cp, own, "sentinel", 1)
	msgs := a.waitMessage(t, own, "sentinel")
	for _, m := range msgs {
		if m.Topic() != own {
			t.Errorf("site org_x/site_a received %s: %q", m.Topic(), m.Payload())
		}
	}
}

func TestSiteWritesOnlyItsOwnStatusAndPresence(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := startBroker(t, reg)
	cp := controlPlane(t, b)
	for _, f := range []string{root + "/+/+/status", root + "/+/+/presence", root + "/+/+/desired"} {
		subscribe(t, cp, f) // desired is refused for the control plane; checked below
	}
	a := site(t, b, "org_x", "site_a")
	// QoS 0: the broker drops a refused publish silently.
	for _, topic := range []string{
		protocol.StatusTopic(root, "org_x", "site_b"),
		protocol.PresenceTopic(root, "org_x", "site_b"),
		protocol.StatusTopic(root, "org_y", "site_a"),
		protocol.DesiredTopic(root, "org_x", "site_a"),
		protocol.DesiredTopic(root, "org_x", "site_b"),
		root + "/org_x/site_a/other",
	} {
		publish(t, a, topic, "forged", 0)
	}
	status := protocol.StatusTopic(root, "org_x", "site_a")
	presence := protocol.PresenceTopic(root, "org_x", "site_a")
	publish(t, a, presence, "own presence", 1)
	publish(t, a, status, "own status", 1)
	msgs := cp.waitMessage(t, status, "own status")
	for _, m := range msgs {
		if m.Topic() != status && m.Topic() != presence {
			t.Errorf("control plane received %s: %q from a site that may not publish it", m.Topic(), m.Payload())
		}
	}
	if got := metrictest.Counter(t, reg, "rampart_broker_acl_denied_total", "access", "write"); got < 6 {
		t.Errorf("rampart_broker_acl_denied_total{access=write} = %v, want at least 6", got)
	}

	// QoS 1: MQTT 3.1.1 has no negative PUBACK, so mochi disconnects.
	tok := a.Publish(protocol.StatusTopic(root, "org_x", "site_b"), 1, true, "forged")
	tok.WaitTimeout(time.Second)
	select {
	case <-a.lost:
	case <-time.After(waitFor):
		t.Fatal("a QoS 1 publish to another site's status did not disconnect the site")
	}
}

func TestControlPlaneAccess(t *testing.T) {
	b := startBroker(t, nil)
	cp := controlPlane(t, b)
	for filter, want := range map[string]bool{
		root + "/+/+/status":                  true,
		root + "/+/+/presence":                true,
		root + "/org_x/site_a/status":         true,
		"$share/cp/" + root + "/+/+/status":   true,
		root + "/+/+/desired":                 false,
		root + "/#":                           false,
		"#":                                   false,
		root + "/org_x/site_a/desired":        false,
		"other/+/+/status":                    false,
		root + "/+/+/+":                       false,
		"$share/cp/" + root + "/+/+/desired":  false,
		root + "/org_x/site_a/status/extra":   false,
		root + "/org_x/not_a_site_id/status":  false,
		root + "/org_x/site_a/status" + "/#":  false,
		root + "/org_x/site_a/" + "presence2": false,
	} {
		if got := subscribe(t, cp, filter); got != want {
			t.Errorf("control plane subscribe %q granted = %v, want %v", filter, got, want)
		}
	}
	// The control plane may publish desired state; a site listening for it
	// gets it.
	a := site(t, b, "org_x", "site_a")
	own := protocol.DesiredTopic(root, "org_x", "site_a")
	subscribe(t, a, own)
	publish(t, cp, own, "doc", 1)
	a.waitMessage(t, own, "doc")
}

func TestAuthentication(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := startBroker(t, reg)
	tests := []struct {
		name, user, pass string
		will             func(*paho.ClientOptions)
		ok               bool
	}{
		{"site with its secret", "org_x/site_a", testKey.SiteSecret("org_x", "site_a"), nil, true},
		{"control plane", keys.ControlPlaneMQTTUser, testKey.ControlPlaneMQTTPassword(), nil, true},
		{"site with its own presence as will", "org_x/site_a", testKey.SiteSecret("org_x", "site_a"), func(o *paho.ClientOptions) {
			o.SetBinaryWill(protocol.PresenceTopic(root, "org_x", "site_a"), protocol.OfflinePayload, 1, true)
		}, true},
		{"anonymous", "", "", nil, false},
		{"wrong password", "org_x/site_a", "nope", nil, false},
		{"another site's secret", "org_x/site_a", testKey.SiteSecret("org_x", "site_b"), nil, false},
		{"another org's secret", "org_x/site_a", testKey.SiteSecret("org_y", "site_a"), nil, false},
		{"secret from another key", "org_x/site_a", keys.FromBytes([]byte("another key of thirty-two bytes!")).SiteSecret("org_x", "site_a"), nil, false},
		{"control plane user with a site secret", keys.ControlPlaneMQTTUser, testKey.SiteSecret("org_x", "site_a"), nil, false},
		{"wildcard org", "+/site_a", testKey.SiteSecret("+", "site_a"), nil, false},
		{"site id not topic-safe", "org_x/site_#", testKey.SiteSecret("org_x", "site_#"), nil, false},
		{"extra level", "org_x/site_a/x", testKey.SiteSecret("org_x", "site_a/x"), nil, false},
		{"will on another site's presence", "org_x/site_a", testKey.SiteSecret("org_x", "site_a"), func(o *paho.ClientOptions) {
			o.SetBinaryWill(protocol.PresenceTopic(root, "org_x", "site_b"), protocol.OfflinePayload, 1, true)
		}, false},
		{"will on its own desired state", "org_x/site_a", testKey.SiteSecret("org_x", "site_a"), func(o *paho.ClientOptions) {
			o.SetBinaryWill(protocol.DesiredTopic(root, "org_x", "site_a"), []byte("{}"), 1, true)
		}, false},
	}
	refused := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dial(t, b, tt.user, tt.pass, "", tt.will)
			if tt.ok && err != nil {
				t.Fatalf("connect refused: %v", err)
			}
			if !tt.ok {
				refused++
				if err == nil {
					c.Disconnect(0)
					t.Fatal("connect accepted")
				}
			}
		})
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP rampart_broker_auth_failures_total MQTT connections refused: unknown user, wrong password, or a last will on a topic the user may not publish.
# TYPE rampart_broker_auth_failures_total counter
rampart_broker_auth_failures_total %d
`, refused)), "rampart_broker_auth_failures_total"); err != nil {
		t.Error(err)
	}
}

// TestClientIDCannotTakeOverAnotherSite: mochi lets a connection with an
// existing client id take over that session. Ids are namespaced per user, so
// site_b reusing site_a's id neither disconnects site_a nor inherits its
// subscription.
func TestClientIDCannotTakeOverAnotherSite(t *testing.T) {
	b := startBroker(t, nil)
	cp := controlPlane(t, b)
	a, err := dial(t, b, "org_x/site_a", testKey.SiteSecret("org_x", "site_a"), "agent", nil)
	if err != nil {
		t.Fatal(err)
	}
	own := protocol.DesiredTopic(root, "org_x", "site_a")
	subscribe(t, a, own)
	bb, err := dial(t, b, "org_x/site_b", testKey.SiteSecret("org_x", "site_b"), "agent", nil)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, cp, own, "after takeover attempt", 1)
	a.waitMessage(t, own, "after takeover attempt")
	select {
	case err := <-a.lost:
		t.Fatalf("site_a lost its connection when site_b used its client id: %v", err)
	default:
	}
	// site_b's own subscription proves it is connected and receiving; it
	// must not see site_a's document.
	ownB := protocol.DesiredTopic(root, "org_x", "site_b")
	subscribe(t, bb, ownB)
	publish(t, cp, ownB, "b sentinel", 1)
	for _, m := range bb.waitMessage(t, ownB, "b sentinel") {
		if m.Topic() != ownB {
			t.Errorf("site_b received %s", m.Topic())
		}
	}
}

func TestClientsMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := startBroker(t, reg)
	controlPlane(t, b)
	a := site(t, b, "org_x", "site_a")
	waitGauge(t, reg, 2)
	a.Disconnect(100)
	waitGauge(t, reg, 1)
}

func waitGauge(t *testing.T, reg *prometheus.Registry, want int) {
	t.Helper()
	expected := fmt.Sprintf(`
# HELP rampart_broker_clients MQTT clients connected to the embedded broker (sites and the control plane).
# TYPE rampart_broker_clients gauge
rampart_broker_clients %d
`, want)
	var err error
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = testutil.GatherAndCompare(reg, strings.NewReader(expected), "rampart_broker_clients"); err == nil {
			return
		}
	}
	t.Fatal(err)
}

func TestStartValidatesOptions(t *testing.T) {
	if _, err := Start(Options{Listen: "127.0.0.1:0"}); err != ErrNoKey {
		t.Errorf("Start without a key: %v, want ErrNoKey", err)
	}
	for _, r := range []string{"a/+/b", "#", "a//b", "/a", "$SYS/x"} {
		if _, err := Start(Options{Listen: "127.0.0.1:0", Key: testKey, TopicRoot: r}); err == nil {
			t.Errorf("Start with topic root %q: no error", r)
		}
	}
}

func TestRestartOnSamePort(t *testing.T) {
	b := startBroker(t, nil)
	addr := b.Addr()
	b.Close()
	b2, err := Start(Options{Listen: addr, Key: testKey, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	defer b2.Close()
	controlPlane(t, b2)
}
