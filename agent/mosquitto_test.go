package agent

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// TestAgainstExternalBroker runs the agent against a real broker
// (Mosquitto in .ci/run) when RAMPART_TEST_MQTT_URL is set.
func TestAgainstExternalBroker(t *testing.T) {
	raw := os.Getenv("RAMPART_TEST_MQTT_URL")
	if raw == "" {
		t.Skip("RAMPART_TEST_MQTT_URL not set")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	site := fmt.Sprintf("site_t%d", rand.Uint32()) // retained messages outlive the test
	r := newSim(t, rossim.Options{})
	cfg := testConfig(t, r.Addr())
	cfg.MQTTURLs, cfg.SiteID = []*url.URL{u}, site

	c := paho.NewClient(paho.NewClientOptions().AddBroker(raw).SetClientID("rampart-test-" + site))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", raw, tok.Error())
	}
	defer c.Disconnect(100)
	topic := func(kind string) string { return protocol.Topic(protocol.DefaultTopicRoot, "org_demo", site, kind) }
	var mu sync.Mutex
	var last protocol.SiteStatus
	c.Subscribe(topic(protocol.KindStatus), 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		json.Unmarshal(m.Payload(), &last)
	}).WaitTimeout(10 * time.Second)
	defer func() {
		for _, k := range []string{protocol.KindDesired, protocol.KindStatus, protocol.KindPresence} {
			c.Publish(topic(k), 1, true, []byte{}).WaitTimeout(5 * time.Second)
		}
	}()

	d := sampleDoc(1)
	d.SiteID = site
	d.Seal()
	b, _ := json.Marshal(d)
	c.Publish(topic(protocol.KindDesired), 1, true, b).WaitTimeout(10 * time.Second)
	runAgent(t, cfg)
	eventually(t, "applied over the external broker", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return last.State == protocol.StateApplied && last.Revision == 1
	})
	if managedRows(r) != 13 {
		t.Errorf("%d managed rows", managedRows(r))
	}
}
