package main

// Decommissioning a site end to end (#16 item 4): the real control plane
// with its embedded broker, real agents on simulated routers (package
// fleet), real HTTP and a real MQTT client for the old credentials.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/internal/metrictest"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// TestDecommissionEndToEnd: DELETE /vpc/sites/{id} of one of two sites
// that share a group and a prefix list. The managed rules leave its
// router, the site leaves the API and the metrics, its retained topics are
// cleared, its old credentials are refused by the embedded broker (and
// counted), and nothing of the other site changes. Enrolling it again
// lets it in, and what it is then given has a higher revision than
// anything before.
func TestDecommissionEndToEnd(t *testing.T) {
	l := newLoop(t, false, 2*time.Minute) // the agent's confirmation, not the deadline, must forget the site
	f := l.fleet(2, "site_d")
	ids := f.SiteIDs()
	gone, kept := ids[0], ids[1]

	var list cp.PrefixList
	// Dual stack: the agent manages rows in both families' tables.
	l.must(201, "POST", "/vpc/prefix-lists", `{"name":"Office","prefixes":[{"cidr":"203.0.113.0/24","description":"HQ"},{"cidr":"2001:db8::/32","description":"HQ v6"}],"sites":`+sitesJSON(ids...)+`}`, &list)
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", list.ID, ids...), &g)
	l.waitStatus("/vpc/security-groups/"+g.ID, cp.StatusActive)
	l.waitStatus("/vpc/prefix-lists/"+list.ID, cp.StatusActive)
	if fl, al := managed(f.Router(0)); len(fl) == 0 || len(al) == 0 {
		t.Fatalf("%s before: filter %v, address lists %v", gone, fl, al)
	}
	if rows := rampartRows(f.Router(0).Snapshot()); !strings.Contains(strings.Join(rows, "\n"), "ipv6") {
		t.Fatalf("%s before: no IPv6 rows among %v", gone, rows)
	}
	before := f.Router(1).Snapshot()
	var keptBefore cp.Site
	l.must(200, "GET", "/vpc/sites/"+kept, "", &keptBefore)

	var dec cp.Site
	l.must(202, "DELETE", "/vpc/sites/"+gone, "", &dec)
	if dec.State != cp.SiteDecommissioning {
		t.Fatalf("DELETE answered %+v", dec)
	}
	eventually(t, "the managed rules leave "+gone, func() string {
		if fl, al := managed(f.Router(0)); len(fl)+len(al) > 0 {
			return fmt.Sprintf("%d filter rows, %d address-list entries left", len(fl), len(al))
		}
		return ""
	})
	l.waitGone("/vpc/sites/" + gone)
	// None of rampart's rows is left, in either family.
	if rows := rampartRows(f.Router(0).Snapshot()); len(rows) > 0 {
		t.Errorf("%s keeps managed rows: %v", gone, rows)
	}

	// Gone from the API and the metrics.
	var sites []cp.Site
	l.must(200, "GET", "/vpc/sites", "", &sites)
	if len(sites) != 1 || sites[0].ID != kept {
		t.Errorf("sites after the decommission: %+v", sites)
	}
	mfs, err := l.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "rampart_sites" {
			for _, m := range mf.GetMetric() {
				counted[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if diff := cmp.Diff(map[string]float64{"in_sync": 1, "syncing": 0, "failed": 0, "offline": 0, "unknown": 0, "decommissioning": 0}, counted); diff != "" {
		t.Errorf("rampart_sites after the decommission (-want +got):\n%s", diff)
	}

	// Its retained status and presence are cleared (the broker replays
	// what it retains, in process).
	var retained []string
	stop := l.m.MQTT.Broker.SubscribeReports(func(topic string, payload []byte, isRetained bool) {
		if isRetained && strings.Contains(topic, "/"+gone+"/") {
			retained = append(retained, topic+" "+string(payload))
		}
	})
	stop()
	if len(retained) > 0 {
		t.Errorf("retained after the site was forgotten: %q", retained)
	}

	// Its old credentials are refused by the embedded broker, and counted.
	refused := func() float64 {
		return metrictest.Counter(t, l.reg, "rampart_broker_refused_total", "reason", "decommissioned")
	}
	n0 := refused()
	// dialSite logs in with the secret derived from the key: the old one.
	if _, err := dialSite(t, l.m.MQTT.AgentURL, l.m.Key, l.org, gone, nil); err == nil {
		t.Fatal("the decommissioned site's old secret logged in")
	}
	if n := refused(); n < n0+1 {
		t.Errorf("rampart_broker_refused_total{reason=\"decommissioned\"} = %v, want at least %v", n, n0+1)
	}

	// Nothing of the other site changed: its router, its record.
	after := f.Router(1).Snapshot()
	if diff := cmp.Diff(before.Filter, after.Filter); diff != "" {
		t.Errorf("%s's filter changed (-before +after):\n%s", kept, diff)
	}
	if diff := cmp.Diff(before.AddressList, after.AddressList); diff != "" {
		t.Errorf("%s's address lists changed (-before +after):\n%s", kept, diff)
	}
	if diff := cmp.Diff(before.Filter6, after.Filter6); diff != "" {
		t.Errorf("%s's IPv6 filter changed (-before +after):\n%s", kept, diff)
	}
	if diff := cmp.Diff(before.AddressList6, after.AddressList6); diff != "" {
		t.Errorf("%s's IPv6 address lists changed (-before +after):\n%s", kept, diff)
	}
	var keptAfter cp.Site
	l.must(200, "GET", "/vpc/sites/"+kept, "", &keptAfter)
	if keptAfter.DesiredRevision != keptBefore.DesiredRevision || keptAfter.AppliedRevision != keptBefore.AppliedRevision || keptAfter.State != cp.SiteInSync {
		t.Errorf("%s before %+v, after %+v", kept, keptBefore, keptAfter)
	}
	var cur cp.SecurityGroup
	l.must(200, "GET", "/vpc/security-groups/"+g.ID, "", &cur)
	if diff := cmp.Diff([]string{kept}, cur.Sites); diff != "" || cur.Status != cp.StatusActive {
		t.Errorf("group after the decommission: %q, sites (-want +got):\n%s", cur.Status, diff)
	}

	// Enrolled again through the API: the same secret logs in, its cleared
	// desired topic holds nothing, and a new policy comes with a revision
	// above the one it had.
	l.must(200, "GET", "/vpc/sites/"+gone+"/enrollment", "", nil)
	c, err := dialSite(t, l.m.MQTT.AgentURL, l.m.Key, l.org, gone, nil)
	if err != nil {
		t.Fatalf("enrolled again, refused: %v", err)
	}
	l.must(200, "PUT", "/vpc/security-groups/"+g.ID, groupBody("443", list.ID, ids...), nil)
	eventually(t, "a document after enrolling again", func() string {
		docs := c.received()
		if len(docs) == 0 {
			return "none"
		}
		// The first is the new one: the cleared topic retained nothing.
		if d := docs[0]; d.Revision <= dec.DesiredRevision || len(d.SecurityGroups) != 1 {
			t.Fatalf("first document after enrolling again: revision %d (the decommission's %d), %d groups", d.Revision, dec.DesiredRevision, len(d.SecurityGroups))
		}
		return ""
	})
}

// rampartRows describes every row of a router's firewall, in both
// families, that the agent manages: in its chains, jumping to them, or in
// its address lists.
func rampartRows(fw rossim.Firewall) []string {
	var out []string
	for _, t := range []struct {
		name string
		rows []rossim.Item
	}{{"ip filter", fw.Filter}, {"ip address-list", fw.AddressList}, {"ipv6 filter", fw.Filter6}, {"ipv6 address-list", fw.AddressList6}} {
		for _, row := range t.rows {
			if strings.HasPrefix(row["chain"], "rampart-") || strings.HasPrefix(row["jump-target"], "rampart-") ||
				strings.HasPrefix(row["list"], "rampart-") || strings.HasPrefix(row["comment"], "rampart:") {
				out = append(out, fmt.Sprintf("%s %v", t.name, row))
			}
		}
	}
	return out
}

// TestDecommissionUnansweredSite: a router that is already gone never
// confirms its empty document; its site is forgotten at the sync
// deadline, across a restart of the control plane, and its credentials
// stay refused after another restart.
func TestDecommissionUnansweredSite(t *testing.T) {
	l := newLoop(t, false, 3*time.Second)
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", "site_ghost"), &g)
	l.waitStatus("/vpc/security-groups/"+g.ID, cp.StatusFailed) // the deadline passed: no longer locked
	var dec cp.Site
	l.must(202, "DELETE", "/vpc/sites/site_ghost", "", &dec)
	l.restart()
	var s cp.Site
	if st := l.call("GET", "/vpc/sites/site_ghost", "", &s); st == 200 && s.State != cp.SiteDecommissioning {
		t.Errorf("after a restart: %+v", s)
	}
	l.waitGone("/vpc/sites/site_ghost") // at the deadline
	l.restart()
	if _, err := dialSite(t, l.m.MQTT.AgentURL, l.m.Key, l.org, "site_ghost", nil); err == nil {
		t.Fatal("a decommissioned site's secret logged in after a restart")
	}
	if n := metrictest.Counter(t, l.reg, "rampart_broker_refused_total", "reason", "decommissioned"); n != 1 {
		t.Errorf("rampart_broker_refused_total{reason=\"decommissioned\"} = %v, want 1", n)
	}
	var cur cp.SecurityGroup
	l.must(200, "GET", "/vpc/security-groups/"+g.ID, "", &cur)
	if len(cur.Sites) != 0 || cur.Status != cp.StatusActive {
		t.Errorf("group after its only site was decommissioned: %q, sites %v", cur.Status, cur.Sites)
	}
}

// TestDecommissionExternalBroker: with an external broker (Mosquitto,
// RAMPART_TEST_MQTT_URL) the rules leave the router, the site is
// forgotten and its retained topics are cleared through the control
// plane's own connection; refusing its credentials is the broker's
// operator's part (README).
func TestDecommissionExternalBroker(t *testing.T) {
	l := newLoop(t, true, 2*time.Minute)
	f := l.fleet(2, "site_x")
	ids := f.SiteIDs()
	gone, kept := ids[0], ids[1]
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", ids...), &g)
	l.waitStatus("/vpc/security-groups/"+g.ID, cp.StatusActive)
	l.must(202, "DELETE", "/vpc/sites/"+gone, "", nil)
	l.waitGone("/vpc/sites/" + gone)
	if rows := rampartRows(f.Router(0).Snapshot()); len(rows) > 0 {
		t.Errorf("%s keeps managed rows: %v", gone, rows)
	}
	// The broker retains nothing of the site: one subscription to its
	// topics and, after them, to the kept site's presence, which is
	// retained; Mosquitto sends a subscription's retained messages in the
	// order of its filters, so once that one is in, the site's would be.
	root := protocol.DefaultTopicRoot
	got := make(chan string, 16)
	o := paho.NewClientOptions().AddBroker(l.mqttURL).SetClientID("e2e-decom-watch").SetAutoReconnect(false).SetProtocolVersion(4)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(converge) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", l.mqttURL, tok.Error())
	}
	defer c.Disconnect(100)
	filters := map[string]byte{root + "/" + l.org + "/" + gone + "/#": 1, protocol.PresenceTopic(root, l.org, kept): 1}
	tok := c.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) { got <- m.Topic() + " " + string(m.Payload()) })
	if !tok.WaitTimeout(converge) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	for {
		select {
		case m := <-got:
			if strings.Contains(m, "/"+gone+"/") {
				t.Fatalf("retained after the site was forgotten: %s", m)
			}
			return // the kept site's presence: nothing of gone came before it
		case <-time.After(converge):
			t.Fatal("the kept site's retained presence never came")
		}
	}
}
