package broker

import (
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/protocol"
)

// deniedSites is a changing set of decommissioned sites, as the store's.
type deniedSites struct {
	mu sync.Mutex
	m  map[string]bool
}

func (d *deniedSites) set(org, site string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[org+"/"+site] = on
}

func (d *deniedSites) has(org, site string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[org+"/"+site]
}

// TestDecommissionedSite: a decommissioned site's connection is closed
// without its last will, its real secret no longer logs in (counted as
// refused, reason decommissioned), a wrong one is an ordinary auth
// failure, other sites are untouched, and lifting the refusal lets it in.
func TestDecommissionedSite(t *testing.T) {
	reg := prometheus.NewRegistry()
	denied := &deniedSites{m: map[string]bool{}}
	b, err := Start(Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quietLogger(), Registry: reg, Decommissioned: denied.has})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	presence := protocol.PresenceTopic(root, "org_x", "site_a")
	a, err := dial(t, b, protocol.SiteMQTTUser("org_x", "site_a"), testKey.SiteSecret("org_x", "site_a"), "agent-a", func(o *paho.ClientOptions) {
		o.SetBinaryWill(presence, protocol.OfflinePayload, 1, true)
	})
	if err != nil {
		t.Fatal(err)
	}
	other := site(t, b, "org_x", "site_b")

	denied.set("org_x", "site_a", true)
	if n := b.Disconnect("org_x", "site_a"); n != 1 {
		t.Fatalf("Disconnect closed %d connections, want 1", n)
	}
	select {
	case <-a.lost:
	case <-time.After(waitFor):
		t.Fatal("the decommissioned site's connection stayed open")
	}
	// Its will was not retained: nothing retained on its presence.
	var retained []string
	stop := b.SubscribeReports(func(topic string, payload []byte, isRetained bool) {
		if isRetained && topic == presence {
			retained = append(retained, string(payload))
		}
	})
	stop()
	if len(retained) != 0 {
		t.Errorf("the disconnected site's will was retained: %q", retained)
	}
	if !other.IsConnectionOpen() {
		t.Error("another site was disconnected")
	}

	refused := func() float64 { return testutil.ToFloat64(b.metrics().refused.WithLabelValues(refusedDecommissioned)) }
	authFailures := func() float64 { return testutil.ToFloat64(b.metrics().authFailures) }
	if _, err := dial(t, b, protocol.SiteMQTTUser("org_x", "site_a"), testKey.SiteSecret("org_x", "site_a"), "", nil); err == nil {
		t.Fatal("a decommissioned site's secret logged in")
	}
	if refused() != 1 || authFailures() != 0 {
		t.Errorf("refused{decommissioned} = %v, auth failures %v; want 1, 0", refused(), authFailures())
	}
	if _, err := dial(t, b, protocol.SiteMQTTUser("org_x", "site_a"), "wrong", "", nil); err == nil {
		t.Fatal("a wrong password logged in")
	}
	if refused() != 1 || authFailures() != 1 {
		t.Errorf("after a wrong password: refused{decommissioned} = %v, auth failures %v; want 1, 1", refused(), authFailures())
	}
	if _, err := dial(t, b, protocol.SiteMQTTUser("org_y", "site_a"), testKey.SiteSecret("org_y", "site_a"), "", nil); err != nil {
		t.Errorf("the same site id in another organisation: %v", err)
	}

	denied.set("org_x", "site_a", false)
	if _, err := dial(t, b, protocol.SiteMQTTUser("org_x", "site_a"), testKey.SiteSecret("org_x", "site_a"), "", nil); err != nil {
		t.Errorf("enrolled again, refused: %v", err)
	}
}
