package agent

import (
	"context"
	"maps"
	"net/netip"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// dualDoc is sampleDoc with the office list gone dual stack, an IPv6 rule
// and an IPv6 outbound rule.
func dualDoc(rev uint64) protocol.DesiredState {
	d := sampleDoc(rev)
	d.SecurityGroups[0].Rules = append(d.SecurityGroups[0].Rules,
		protocol.Rule{ID: "fltr_web6", Direction: "inbound", Order: 20, Protocol: 6, Port: "443", Address: "3fff:0:2::/48", Description: "HTTPS over IPv6"},
		protocol.Rule{ID: "fltr_dns6", Direction: "outbound", Order: 6, Protocol: 17, Port: "53", Address: "3fff:53::53/128", Description: "DNS over IPv6"},
	)
	d.PrefixLists[0].CIDRs = append(d.PrefixLists[0].CIDRs, "3fff:0:1::/48")
	d.Seal()
	return d
}

// table6 is a state's IPv6 firewall without counters.
func table6(f rossim.Firewall) []rossim.Item {
	var out []rossim.Item
	for _, it := range append(append([]rossim.Item{}, f.Filter6...), f.AddressList6...) {
		c := maps.Clone(it)
		delete(c, "bytes")
		delete(c, "packets")
		out = append(out, c)
	}
	return out
}

func TestDualStackApply(t *testing.T) {
	r := newSim(t, rossim.Options{})
	defconf6 := table6(r.Snapshot())
	s := newSimAgent(t, r)

	// An IPv4-only document writes nothing to the IPv6 tables.
	s.apply(t, sampleDoc(1))
	if diff := cmp.Diff(defconf6, table6(r.Snapshot())); diff != "" {
		t.Fatalf("an IPv4-only document changed the IPv6 firewall (-defconf +now):\n%s", diff)
	}

	// The list goes dual stack, an IPv6 rule in each direction arrives.
	s.apply(t, dualDoc(2))
	if rest := s.remaining(t); len(rest) > 0 {
		t.Fatalf("not converged: %v", rest)
	}
	// IPv4: 3 jumps, 5 in, 5 out; IPv6: 3 jumps, in: est, invalid,
	// icmpv6, dhcpv6, ssh (office list), web6, drop; out: est, invalid,
	// dns6, drop (no IPv6 guard: the agent's broker is 127.0.0.1).
	if s.status.State != protocol.StateApplied || s.status.Rules != 13+3+7+4 || s.status.AddressEntries != 3+1 {
		t.Errorf("status %+v, want applied with 27 rules and 4 entries", s.status)
	}
	office6 := netip.MustParseAddr("3fff:0:1::9")
	fw := r.Snapshot()
	for _, tc := range []struct {
		p    rossim.Packet
		want string
	}{
		{rossim.Packet{Chain: "input", InInterface: "ether1", Src: office6, Dst: routerHost6, Protocol: 6, DstPort: 22, ConnState: "new"}, "accept"},
		{rossim.Packet{Chain: "input", InInterface: "ether1", Src: netip.MustParseAddr("3fff:0:7::9"), Dst: routerHost6, Protocol: 6, DstPort: 22, ConnState: "new"}, "drop"},
		{rossim.Packet{Chain: "forward", InInterface: "ether1", OutInterface: "bridge", Src: netip.MustParseAddr("3fff:0:2::5"), Dst: lanHost6, Protocol: 6, DstPort: 443, ConnState: "new"}, "accept"},
		{rossim.Packet{Chain: "forward", InInterface: "ether1", OutInterface: "bridge", Src: netip.MustParseAddr("3fff:0:3::5"), Dst: lanHost6, Protocol: 6, DstPort: 443, ConnState: "new"}, "drop"},
		{rossim.Packet{Chain: "forward", InInterface: "bridge", OutInterface: "ether1", Src: lanHost6, Dst: netip.MustParseAddr("3fff:53::53"), Protocol: 17, DstPort: 53, ConnState: "new"}, "accept"},
		{rossim.Packet{Chain: "forward", InInterface: "bridge", OutInterface: "ether1", Src: lanHost6, Dst: netip.MustParseAddr("3fff:53::54"), Protocol: 17, DstPort: 53, ConnState: "new"}, "drop"},
		// IPv4 as before.
		{inbound(443), "accept"},
		{inbound(80), "drop"},
	} {
		if v := fw.Evaluate(tc.p); v.Action != tc.want {
			t.Errorf("%+v: %s, want %s\n%v", tc.p, v.Action, tc.want, v.Trace)
		}
	}
	for _, p := range uplinkProbes() {
		if v := fw.Evaluate(p); v.Action != "accept" {
			t.Errorf("uplink %+v: %s\n%v", p, v.Action, v.Trace)
		}
	}

	// Drift in the IPv6 table is repaired by the resync, like IPv4's.
	ids6 := map[string]string{}
	for _, it := range fw.Filter6 {
		if k, _, ok := render.ParseComment(it["comment"]); ok {
			ids6[k] = it[".id"]
		}
	}
	mustExec(t, r, "/ipv6/firewall/filter/disable", "=.id="+ids6[render.KeyInICMPv6])
	mustExec(t, r, "/ipv6/firewall/filter/set", "=.id="+ids6["fltr_web6"], "=dst-port=444")
	for _, it := range fw.AddressList6 {
		if it["list"] == "rampart-prfx_lst_office" {
			mustExec(t, r, "/ipv6/firewall/address-list/remove", "=.id="+it[".id"])
		}
	}
	if err := s.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rest := s.remaining(t); len(rest) > 0 || s.status.DriftRepairs == 0 {
		t.Fatalf("IPv6 drift not repaired (%d repairs): %v", s.status.DriftRepairs, rest)
	}

	// The site loses IPv6: what the agent put there goes, defconf stays.
	s.apply(t, sampleDoc(3))
	if diff := cmp.Diff(defconf6, table6(r.Snapshot())); diff != "" {
		t.Fatalf("IPv6 config left after the policy lost IPv6 (-defconf +now):\n%s", diff)
	}
	if s.status.Rules != 13 || s.status.AddressEntries != 3 {
		t.Errorf("status %+v, want 13 rules and 3 entries", s.status)
	}
}

// TestIPv6Guard: an agent whose broker is reached over IPv6 keeps its own
// IPv6 traffic out of rampart-out in the IPv6 table, in every state of an
// apply that turns outbound filtering on, and has no IPv4 guard.
func TestIPv6Guard(t *testing.T) {
	r := newSim(t, rossim.Options{})
	cfg := testConfig(t, r.Addr())
	u, _ := url.Parse("tcp://[::1]:1")
	cfg.MQTTURLs = []*url.URL{u}
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.router.Close() })
	s := &simAgent{a, r}
	// ::1 is the one IPv6 address every test machine has, and defconf
	// drops it in forward as bad_ipv6: that rule goes first, so the check
	// below is about rampart-out alone.
	for _, it := range r.Snapshot().Filter6 {
		if it["comment"] == "defconf: drop packets with bad src ipv6" {
			mustExec(t, r, "/ipv6/firewall/filter/remove", "=.id="+it[".id"])
		}
	}
	before := r.Snapshot()
	r.ForgetHistory()
	d := dualDoc(1)
	s.apply(t, d)
	want := [render.NumFamilies]netip.Addr{render.IPv6: netip.MustParseAddr("::1")}
	if s.lastGuard != want {
		t.Fatalf("guards %v, want %v", s.lastGuard, want)
	}
	newGapChecker(aimedProbes(8, d), before, r.Snapshot()).check(t, "outbound filtering turned on", r.History(), s.lastGuard)
	guards := 0
	for _, it := range r.Snapshot().Filter6 {
		if k, _, _ := render.ParseComment(it["comment"]); k == render.KeyOutGuard {
			guards++
			if it["src-address"] != "::1/128" {
				t.Errorf("guard %v", it)
			}
		}
	}
	if guards != 1 {
		t.Errorf("%d IPv6 guards, want 1", guards)
	}
}
