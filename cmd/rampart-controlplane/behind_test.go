package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/internal/metrictest"
	"github.com/rampart-fw/rampart/protocol"
)

// TestRepublishWhenSiteBehind: a broker loses a site's retained document
// after acknowledging it (nats-server 2.9.10 did, after a node died). The
// site reconnects, gets nothing, and reports the older revision it holds,
// as an agent does on every connection; the control plane publishes the
// site's document again, and the site catches up. A site that keeps
// reporting the old revision gets the document again at most once per
// BehindInterval, not once per report.
func TestRepublishWhenSiteBehind(t *testing.T) { bothBrokers(t, testRepublishWhenSiteBehind) }

func testRepublishWhenSiteBehind(t *testing.T, external bool) {
	const interval = 2 * time.Second
	l := newLoop(t, external, 2*time.Minute, func(m *Main) { m.BehindInterval = interval })
	const site = "site_behind"
	url := l.m.MQTT.AgentURL
	report := func(c *siteClient, d protocol.DesiredState, state string) {
		t.Helper()
		b, _ := json.Marshal(protocol.SiteStatus{Schema: protocol.SchemaVersion, OrgID: l.org, SiteID: site, Epoch: d.Epoch,
			Revision: d.Revision, State: state, AgentVersion: "test"})
		if tok := c.Publish(protocol.StatusTopic(protocol.DefaultTopicRoot, l.org, site), 1, true, b); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish status: %v", tok.Error())
		}
	}
	// docAt waits until c received a document of revision rev.
	docAt := func(c *siteClient, rev uint64) protocol.DesiredState {
		t.Helper()
		var got protocol.DesiredState
		eventually(t, fmt.Sprintf("document of revision %d", rev), func() string {
			for _, d := range c.received() {
				if d.Revision == rev {
					got = d
					return ""
				}
			}
			return fmt.Sprintf("%d documents received", len(c.received()))
		})
		return got
	}
	siteRev := func() uint64 {
		var s cp.Site
		l.must(200, "GET", "/vpc/sites/"+site, "", &s)
		return s.DesiredRevision
	}

	c, err := dialSite(t, url, l.m.Key, l.org, site, nil)
	if err != nil {
		t.Fatal(err)
	}
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", site), &g)
	gpath := "/vpc/security-groups/" + g.ID
	old := docAt(c, siteRev())
	report(c, old, protocol.StateApplied)
	l.waitStatus(gpath, cp.StatusActive)

	// The site is away while its next document is published, and the
	// broker then loses that document (a retained publish of nothing
	// deletes it).
	c.Disconnect(100)
	l.must(200, "PUT", gpath, groupBody("8443", "192.0.2.0/24", site), nil)
	want := siteRev()
	if want <= old.Revision {
		t.Fatalf("revision %d after the write, want more than %d", want, old.Revision)
	}
	eventually(t, "the write published", func() string {
		if !l.m.MQTT.Syncer.Idle() {
			return "syncer busy"
		}
		return ""
	})
	o := paho.NewClientOptions().AddBroker(url).SetProtocolVersion(4).SetConnectTimeout(10 * time.Second)
	if !external {
		o.SetUsername(keys.ControlPlaneMQTTUser).SetPassword(l.m.Key.ControlPlaneMQTTPassword())
	}
	lose := paho.NewClient(o)
	if tok := lose.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", url, tok.Error())
	}
	if tok := lose.Publish(protocol.DesiredTopic(protocol.DefaultTopicRoot, l.org, site), 1, true, []byte{}); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("delete the retained document: %v", tok.Error())
	}
	lose.Disconnect(100)

	// Back, the site reports what it holds: the control plane sends the
	// document again.
	c, err = dialSite(t, url, l.m.Key, l.org, site, nil)
	if err != nil {
		t.Fatal(err)
	}
	report(c, old, protocol.StateApplied)
	docAt(c, want)

	// It keeps reporting the old revision: one more document within the
	// interval at most, however many reports.
	before := len(c.received())
	for range 5 {
		report(c, old, protocol.StateApplied)
	}
	eventually(t, "the deferred republish", func() string {
		if n := len(c.received()) - before; n < 1 {
			return fmt.Sprintf("%d documents since", n)
		}
		return ""
	})
	time.Sleep(2 * interval)
	if n := len(c.received()) - before; n > 2 {
		t.Errorf("%d documents for 5 reports behind within %s; want at most 2 (one per interval)", n, interval)
	}
	for _, d := range c.received()[before:] {
		if d.Revision != want {
			t.Errorf("republished revision %d, want %d", d.Revision, want)
		}
	}

	// It applies the document: the group is active, the site in sync.
	report(c, docAt(c, want), protocol.StateApplied)
	l.waitStatus(gpath, cp.StatusActive)
	var s cp.Site
	l.must(200, "GET", "/vpc/sites/"+site, "", &s)
	if s.State != cp.SiteInSync || s.AppliedRevision != want {
		t.Errorf("site %s, applied %d; want in_sync at %d", s.State, s.AppliedRevision, want)
	}
	if n := metrictest.Counter(t, l.reg, "rampart_status_reports_total", "result", "behind"); n < 6 {
		t.Errorf("rampart_status_reports_total{result=\"behind\"} = %v, want at least 6", n)
	}
}
