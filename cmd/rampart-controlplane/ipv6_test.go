package main

import (
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// ipv6Table is a router's IPv6 firewall without counters.
func ipv6Table(r *rossim.Router) []rossim.Item {
	fw := r.Snapshot()
	var out []rossim.Item
	for _, it := range append(append([]rossim.Item{}, fw.Filter6...), fw.AddressList6...) {
		c := maps.Clone(it)
		delete(c, "bytes")
		delete(c, "packets")
		out = append(out, c)
	}
	return out
}

// TestIPv6EndToEnd: an IPv6 policy through the REST API, the broker, the
// agent and the simulated router. An IPv4-only policy leaves the router's
// IPv6 firewall as defconf made it; the office prefix list going dual
// stack, then an IPv6 rule, are enforced in /ipv6/firewall (verdicts by
// the packet evaluator) while the router keeps its IPv6 uplink; the policy
// losing IPv6 again leaves the IPv6 firewall exactly as defconf made it.
func TestIPv6EndToEnd(t *testing.T) { bothBrokers(t, testIPv6EndToEnd) }

func testIPv6EndToEnd(t *testing.T, external bool) {
	l := newLoop(t, external, 2*time.Minute)
	f := l.fleet(1, "site_six")
	site, r := f.SiteIDs()[0], f.Router(0)
	defconf6 := ipv6Table(r)

	// IPv4 only.
	var list cp.PrefixList
	l.must(201, "POST", "/vpc/prefix-lists", `{"name":"Office","prefixes":[{"cidr":"203.0.113.0/24","description":"HQ"}]}`, &list)
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", list.ID, site), &g)
	gpath, lpath := "/vpc/security-groups/"+g.ID, "/vpc/prefix-lists/"+list.ID
	l.waitStatus(gpath, cp.StatusActive)
	if diff := cmp.Diff(defconf6, ipv6Table(r)); diff != "" {
		t.Fatalf("an IPv4-only policy changed the IPv6 firewall (-defconf +now):\n%s", diff)
	}

	office6, web6, other6 := netip.MustParseAddr("3fff:0:1::9"), netip.MustParseAddr("3fff:0:2::9"), netip.MustParseAddr("3fff:0:7::9")
	router6 := netip.MustParseAddr("3fff:fff::1")
	in := func(src netip.Addr, port int) rossim.Packet {
		return rossim.Packet{Chain: "input", InInterface: "ether1", Src: src, Dst: router6, Protocol: 6, SrcPort: 40000, DstPort: port, ConnState: "new"}
	}
	type verdict struct {
		p    rossim.Packet
		want string
	}
	uplink := []verdict{
		{rossim.Packet{Chain: "input", InInterface: "ether1", Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("ff02::1:ff00:9"), Protocol: 58, ICMPType: 135, ConnState: "new"}, "accept"},
		{rossim.Packet{Chain: "input", InInterface: "ether1", Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("fe80::2"), Protocol: 17, SrcPort: 547, DstPort: 546, ConnState: "new"}, "accept"},
	}
	expect := func(stage string, vs ...verdict) {
		t.Helper()
		fw := r.Snapshot()
		for _, v := range append(vs, uplink...) {
			if got := fw.Evaluate(v.p); got.Action != v.want {
				t.Errorf("%s: %+v gets %s, want %s\n%v", stage, v.p, got.Action, v.want, got.Trace)
			}
		}
	}
	inSync := func(stage string) {
		t.Helper()
		eventually(t, stage+": site in sync", func() string {
			var s cp.Site
			l.must(200, "GET", "/vpc/sites/"+site, "", &s)
			if s.State != cp.SiteInSync || s.AppliedRevision != s.DesiredRevision {
				return fmt.Sprintf("%+v", s)
			}
			return ""
		})
	}

	// The office list goes dual stack: the SSH rule arrives in IPv6 with
	// the list's IPv6 prefix, and IPv6 inbound is now filtered.
	l.must(200, "PUT", lpath, `{"name":"Office","prefixes":[{"cidr":"203.0.113.0/24","description":"HQ"},{"cidr":"3fff:0:1::/48","description":"HQ v6"}]}`, nil)
	l.waitStatus(lpath, cp.StatusActive)
	inSync("list dual stack")
	addrList := "rampart-" + list.ID
	if !listHas(r, addrList, "203.0.113.0/24") {
		t.Errorf("the IPv4 entry left the IPv4 list")
	}
	found := false
	for _, it := range r.Snapshot().AddressList6 {
		found = found || it["list"] == addrList && it["address"] == "3fff:0:1::/48"
	}
	if !found {
		t.Errorf("no IPv6 entry 3fff:0:1::/48 in %s: %v", addrList, r.Snapshot().AddressList6)
	}
	expect("list dual stack",
		verdict{in(office6, 22), "accept"}, verdict{in(other6, 22), "drop"}, verdict{in(web6, 443), "drop"},
		verdict{rossim.Packet{Chain: "input", InInterface: "ether1", Src: netip.MustParseAddr("203.0.113.5"), Dst: netip.MustParseAddr("198.18.0.1"), Protocol: 6, SrcPort: 40000, DstPort: 22, ConnState: "new"}, "accept"})
	if st := f.Site(0).Status(); st.State != protocol.StateApplied || st.Rules <= 13 {
		t.Errorf("agent status %+v: want applied, counting the rules of both families", st)
	}

	// An IPv6 rule: HTTPS from 3fff:0:2::/48.
	dual := `{"name":"Web","description":"e2e","rules":[
	  {"direction":"inbound","order":10,"protocol":6,"port":"443","address":"0.0.0.0/0","description":"Allow HTTPS"},
	  {"direction":"inbound","order":15,"protocol":6,"port":"443","address":"3fff:0:2::/48","description":"HTTPS over IPv6"},
	  {"direction":"inbound","order":20,"protocol":6,"port":"22","address":"` + list.ID + `","description":"SSH from office"}],
	  "sites":` + sitesJSON(site) + `}`
	l.must(200, "PUT", gpath, dual, nil)
	l.waitStatus(gpath, cp.StatusActive)
	inSync("IPv6 rule")
	expect("IPv6 rule", verdict{in(web6, 443), "accept"}, verdict{in(other6, 443), "drop"}, verdict{in(office6, 22), "accept"})

	// IPv6 gone from the policy: the IPv6 firewall is defconf's again.
	l.must(200, "PUT", lpath, `{"name":"Office","prefixes":[{"cidr":"203.0.113.0/24","description":"HQ"}]}`, nil)
	l.must(200, "PUT", gpath, groupBody("443", list.ID, site), nil)
	l.waitStatus(gpath, cp.StatusActive)
	inSync("IPv6 gone")
	if diff := cmp.Diff(defconf6, ipv6Table(r)); diff != "" {
		t.Errorf("IPv6 rows left after the policy lost IPv6 (-defconf +now):\n%s", diff)
	}
}
