package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// restrictive draws a policy built to shut IPv6 out: groups without rules
// (deny all inbound), ICMPv6 allowed only from one block, udp 546 allowed
// only from a global block (not link-local), outbound restricted to one
// port, IPv6-only prefix lists; or, one time in four, an IPv4-only policy
// (the IPv6 table unmanaged, or emptied of what the last policy put there).
func restrictive(rnd *rand.Rand, rev uint64) protocol.DesiredState {
	var groups []protocol.SecurityGroup
	var lists []protocol.PrefixList
	if rnd.IntN(4) == 0 {
		groups = []protocol.SecurityGroup{{ID: "sec_grp_v4", Name: "v4", Rules: []protocol.Rule{
			{ID: "fltr_v4", Direction: protocol.Inbound, Order: 1, Protocol: 6, Port: "22", Address: "198.18.0.0/24"},
		}}}
		return doc(rev, groups, nil)
	}
	for g := range 1 + rnd.IntN(3) {
		groups = append(groups, protocol.SecurityGroup{ID: fmt.Sprintf("sec_grp_%d", g), Name: fmt.Sprint(g)})
	}
	lists = append(lists, protocol.PrefixList{ID: "prfx_lst_six", Name: "six", CIDRs: []string{pick(rnd, narrowBlocks6)}})
	candidates := []protocol.Rule{
		{ID: "fltr_icmp6", Direction: protocol.Inbound, Protocol: 58, Address: pick(rnd, narrowBlocks6)},
		{ID: "fltr_dhcp6", Direction: protocol.Inbound, Protocol: 17, Port: "546", Address: pick(rnd, narrowBlocks6)},
		{ID: "fltr_list6", Direction: protocol.Inbound, Protocol: 6, Port: "443", Address: "prfx_lst_six"},
		{ID: "fltr_ping6", Direction: protocol.Inbound, Protocol: 58, Address: "prfx_lst_six"},
		{ID: "fltr_out6", Direction: protocol.Outbound, Protocol: 6, Port: "443", Address: pick(rnd, narrowBlocks6)},
		{ID: "fltr_out4", Direction: protocol.Outbound, Protocol: 17, Port: "53", Address: "198.18.0.53/32"},
	}
	for _, r := range candidates {
		if rnd.IntN(2) == 0 {
			continue
		}
		r.Order = 1 + rnd.IntN(40)
		g := &groups[rnd.IntN(len(groups))]
		r.ID = fmt.Sprintf("%s_%d", r.ID, rnd.IntN(3)) // sometimes a new id: add-then-remove
		g.Rules = append(g.Rules, r)
	}
	if rnd.IntN(3) == 0 {
		lists = append(lists, protocol.PrefixList{ID: "prfx_lst_dual", Name: "dual", CIDRs: []string{pick(rnd, narrowBlocks), pick(rnd, narrowBlocks6)}})
	}
	return doc(rev, groups, lists)
}

// TestIPv6UplinkSurvivesAnyPolicy: no policy, however restrictive, and no
// intermediate state of moving between such policies (or to and from an
// IPv4-only one), drops a neighbour solicitation, advertisement or router
// advertisement, or a DHCPv6 reply from a link-local address, arriving
// from the WAN (uplinkProbes, checked by gapChecker.check in every state).
// Every fifth transition is applied with the API connection dropped after a
// random number of commands, the agent retrying from the half-applied
// state.
//
//	RAMPART_NOGAP_SEEDS=2000 go test -run TestIPv6UplinkSurvivesAnyPolicy -count=1 ./agent/
func TestIPv6UplinkSurvivesAnyPolicy(t *testing.T) {
	n := nogapSeeds(150)
	ctx := context.Background()
	r := newSim(t, rossim.Options{})
	s := newSimAgent(t, r)
	rnd := rand.New(rand.NewPCG(18, 6))
	prev := doc(1, nil, nil)
	s.apply(t, prev)
	states := 0
	for i := range n {
		d := restrictive(rnd, uint64(i+2))
		label, drop := fmt.Sprintf("transition %d", i), -1
		if i%5 == 4 {
			drop = rnd.IntN(12)
			label += fmt.Sprintf(" (dropped after %d commands)", drop)
		}
		states += checkedTransition(ctx, t, r, s, label, d, aimedProbes(8, prev, d), drop)
		prev = d
	}
	if rest := s.remaining(t); len(rest) > 0 {
		t.Fatalf("not converged: %v", rest)
	}
	t.Logf("%d transitions, %d states probed, each with %d uplink probes", n, states, len(uplinkProbes()))
}
