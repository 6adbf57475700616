package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/internal/fleet"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// TestOldAgentRefusesDualStack: an agent that reads schema 1 only (the
// version switch, agent.Options.MaxSchema) keeps working with IPv4-only
// policy, refuses a dual-stack document whole through the real broker, and
// the control plane shows the site failed with the upgrade sentence; the
// router is not written. A later IPv4-only revision applies again.
func TestOldAgentRefusesDualStack(t *testing.T) { bothBrokers(t, testOldAgentRefusesDualStack) }

func testOldAgentRefusesDualStack(t *testing.T, external bool) {
	l := newLoop(t, external, 2*time.Minute)
	f, err := fleet.Start(context.Background(), fleet.Options{N: 1, Org: l.org, SitePrefix: "site_old", BrokerURL: l.m.MQTT.AgentURL,
		Key: l.m.Key, DataDir: t.TempDir(), ResyncInterval: time.Hour, MaxSchema: protocol.SchemaIPv4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	site, r := f.SiteIDs()[0], f.Router(0)

	// IPv4 only: schema 1, which the old agent reads.
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", site), &g)
	gpath := "/vpc/security-groups/" + g.ID
	l.waitStatus(gpath, cp.StatusActive)
	if !hasRule(r, "443", "0.0.0.0/0") {
		t.Fatal("the IPv4 policy did not reach the old agent's router")
	}
	before := r.Snapshot()
	r.ResetStats()

	// Dual stack: schema 2, refused whole.
	dual := `{"name":"Web","description":"e2e","rules":[
	  {"direction":"inbound","order":10,"protocol":6,"port":"8443","address":"0.0.0.0/0","description":"new IPv4 port"},
	  {"direction":"inbound","order":20,"protocol":6,"port":"443","address":"2001:db8::/32","description":"IPv6"}],
	  "sites":` + sitesJSON(site) + `}`
	l.must(200, "PUT", gpath, dual, nil)
	var s cp.Site
	want := (&protocol.SchemaTooNewError{Schema: protocol.SchemaDualStack, Max: protocol.SchemaIPv4}).Error()
	eventually(t, "the site failed with the upgrade sentence", func() string {
		l.must(200, "GET", "/vpc/sites/"+site, "", &s)
		if s.State != cp.SiteFailed || s.LastError != want || s.DesiredRevision != 2 {
			return fmt.Sprintf("site %+v", s)
		}
		return ""
	})
	l.waitStatus(gpath, cp.StatusFailed)
	if st := f.Site(0).Status(); st.State != protocol.StateFailed || st.Revision != 2 || st.Error != want {
		t.Errorf("agent's status %+v", st)
	}
	if diff := cmp.Diff(rossim.Stats{Writes: map[string]int{}}.Writes, r.Stats().Writes); diff != "" {
		t.Errorf("the refused document wrote to the router (-none +got):\n%s", diff)
	}
	after := r.Snapshot()
	for name, tables := range map[string][2][]rossim.Item{
		"/ip/firewall/filter":         {before.Filter, after.Filter},
		"/ip/firewall/address-list":   {before.AddressList, after.AddressList},
		"/ipv6/firewall/filter":       {before.Filter6, after.Filter6},
		"/ipv6/firewall/address-list": {before.AddressList6, after.AddressList6},
	} {
		if diff := cmp.Diff(tables[0], tables[1]); diff != "" {
			t.Errorf("%s changed (-before +after):\n%s", name, diff)
		}
	}
	if hasRule(r, "8443", "0.0.0.0/0") {
		t.Error("half of the refused document (its IPv4 rule) reached the router")
	}

	// Back to IPv4 only: schema 1 again, revision 3, applied.
	l.must(200, "PUT", gpath, groupBody("9443", "192.0.2.0/24", site), nil)
	l.waitStatus(gpath, cp.StatusActive)
	l.must(200, "GET", "/vpc/sites/"+site, "", &s)
	if s.State != cp.SiteInSync || s.AppliedRevision != 3 || s.LastError != "" || !hasRule(r, "9443", "0.0.0.0/0") {
		t.Errorf("after an IPv4-only revision: site %+v", s)
	}
}
