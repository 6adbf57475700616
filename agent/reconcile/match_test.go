package reconcile

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/protocol"
)

func TestWithin(t *testing.T) {
	lists := func(string, moment) ([]span, bool) { return nil, false }
	tests := []struct {
		name   string
		a, b   map[string]string
		within bool
	}{
		{"same", Item{"protocol": "tcp", "dst-port": "80"}, Item{"protocol": "6", "dst-port": "80"}, true},
		{"more ports", Item{"protocol": "tcp", "dst-port": "80"}, Item{"protocol": "tcp", "dst-port": "80,443"}, true},
		{"fewer ports", Item{"protocol": "tcp", "dst-port": "80,443"}, Item{"protocol": "tcp", "dst-port": "443"}, false},
		{"range inside range", Item{"protocol": "udp", "dst-port": "1500"}, Item{"protocol": "udp", "dst-port": "1000-2000"}, true},
		{"touching ranges merge", Item{"protocol": "udp", "dst-port": "1000-1999"}, Item{"protocol": "udp", "dst-port": "1000-1500,1501-2000"}, true},
		{"other protocol", Item{"protocol": "tcp"}, Item{"protocol": "udp"}, false},
		{"any protocol holds icmp", Item{"protocol": "icmp"}, Item{}, true},
		{"icmp does not hold any", Item{}, Item{"protocol": "icmp"}, false},
		{"ports need a port protocol", Item{"protocol": "tcp", "dst-port": "22"}, Item{"dst-port": "22"}, true},
		{"address narrowed", Item{"src-address": "198.18.0.0/23"}, Item{"src-address": "198.18.0.0/24"}, false},
		{"address widened", Item{"src-address": "198.18.0.0/24"}, Item{"src-address": "198.18.0.0/23"}, true},
		{"everywhere", Item{"src-address": "198.18.0.7"}, Item{}, true},
		{"negated address", Item{"src-address": "10.0.0.1"}, Item{"src-address": "!10.0.0.0/8"}, false},
		{"outside a negation", Item{"src-address": "11.0.0.1"}, Item{"src-address": "!10.0.0.0/8"}, true},
		{"disabled holds nothing", Item{"disabled": "true", "protocol": "tcp"}, Item{"protocol": "udp"}, true},
		{"into disabled", Item{"protocol": "udp"}, Item{"disabled": "true", "protocol": "udp"}, false},
		{"states", Item{"connection-state": "established"}, Item{"connection-state": "established,related"}, true},
		{"other matcher equal", Item{"in-interface": "ether1", "protocol": "tcp"}, Item{"in-interface": "ether1"}, true},
		{"other matcher added", Item{"protocol": "tcp"}, Item{"in-interface": "ether1", "protocol": "tcp"}, false},
		{"unknown list", Item{"src-address-list": "office"}, Item{}, false},
		{"empty port set (tcp with 70000) unreadable", Item{"protocol": "tcp", "dst-port": "70000"}, Item{}, false},
		{"IPv6 block widened", Item{"src-address": "2001:db8:1::/48"}, Item{"src-address": "2001:db8::/32"}, true},
		{"IPv6 block narrowed", Item{"src-address": "2001:db8::/32"}, Item{"src-address": "2001:db8:1::/48"}, false},
		{"IPv6 host bare or /128", Item{"src-address": "2001:db8::7/128"}, Item{"src-address": "2001:db8::7"}, true},
		{"outside an IPv6 negation", Item{"src-address": "2001:db9::/32"}, Item{"src-address": "!2001:db8::/32"}, true},
		{"inside an IPv6 negation", Item{"src-address": "2001:db8:1::/48"}, Item{"src-address": "!2001:db8::/32"}, false},
		{"IPv6 is not IPv4", Item{"src-address": "2001:db8::/32"}, Item{"src-address": "0.0.0.0/1"}, false},
		{"icmpv6 by name or number", Item{"protocol": "icmpv6"}, Item{"protocol": "58"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := matchOf(tt.a, lists, atStart), matchOf(tt.b, lists, atStart)
			if got := within(a, b); got != tt.within {
				t.Errorf("within = %v, want %v", got, tt.within)
			}
		})
	}
}

func TestSpans(t *testing.T) {
	s, ok := parseAddrs([]string{"10.0.0.0/25", "10.0.0.128/25", "10.0.1.5", "10.0.1.6-10.0.1.9", "not an address"})
	if !ok {
		t.Fatal("not parsed")
	}
	str := func(s []span) []string {
		var out []string
		for _, x := range s {
			out = append(out, x.lo.String()+"-"+x.hi.String())
		}
		return out
	}
	if diff := cmp.Diff([]string{"10.0.0.0-10.0.0.255", "10.0.1.5-10.0.1.9"}, str(s)); diff != "" {
		t.Errorf("normalize (-want +got):\n%s", diff)
	}
	c := complement(s, v4Universe)
	if diff := cmp.Diff([]string{"0.0.0.0-9.255.255.255", "10.0.1.0-10.0.1.4", "10.0.1.10-255.255.255.255"}, str(c)); diff != "" {
		t.Errorf("complement (-want +got):\n%s", diff)
	}
	if !subset(s, union(s, c)) || subset(c, s) || len(intersect(s, c)) != 0 {
		t.Error("set algebra broken")
	}
	// The last IPv4 address and the first IPv6 one are not neighbours.
	s, _ = parseAddrs([]string{"255.255.255.0/24", "::/1", "8000::/1"})
	if diff := cmp.Diff([]string{"255.255.255.0-255.255.255.255", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, str(s)); diff != "" {
		t.Errorf("normalize across families (-want +got):\n%s", diff)
	}
	c = complement(s[1:], universeOf(s[1:]))
	if len(c) != 0 {
		t.Errorf("complement of all IPv6 = %v", str(c))
	}
}

// TestSetPhase: which changes of a kept rule are a set, and when; the rest
// are an add and a remove.
func TestSetPhase(t *testing.T) {
	entry := func(list, addr string) Entry {
		return Entry{ID: "*E" + addr, List: list, Address: addr, Comment: "rampart:x"}
	}
	observed := []Entry{
		entry("rampart-prfx_lst_grows", "198.18.0.0/24"),
		entry("rampart-prfx_lst_shrinks", "198.18.0.0/24"), entry("rampart-prfx_lst_shrinks", "198.18.9.0/24"),
	}
	wanted := []render.Entry{
		{List: "rampart-prfx_lst_grows", Address: "198.18.0.0/24"}, {List: "rampart-prfx_lst_grows", Address: "198.18.1.0/24"},
		{List: "rampart-prfx_lst_new", Address: "198.18.0.0/24"},
		{List: "rampart-prfx_lst_shrinks", Address: "198.18.0.0/24"},
	}
	lists := (&planner{}).addressLists(observed, wanted)
	const replace Phase = -1
	tests := []struct {
		name     string
		old, new map[string]string
		want     Phase
	}{
		{"description only", Item{"protocol": "tcp"}, Item{"protocol": "tcp", "comment": "other"}, PhaseChains},
		{"ports widened", Item{"protocol": "tcp", "dst-port": "80"}, Item{"protocol": "tcp", "dst-port": "80,443"}, PhaseChains},
		{"ports narrowed", Item{"protocol": "tcp", "dst-port": "80,443"}, Item{"protocol": "tcp", "dst-port": "80"}, PhaseChainRemove},
		{"tcp to udp", Item{"protocol": "tcp", "dst-port": "80"}, Item{"protocol": "udp", "dst-port": "80"}, replace},
		{"everywhere to a block", Item{"protocol": "tcp"}, Item{"protocol": "tcp", "src-address": "198.18.250.0/24"}, PhaseChainRemove},
		{"block to a new list holding it", Item{"src-address": "198.18.0.0/24"}, Item{"src-address-list": "rampart-prfx_lst_new"}, PhaseChains},
		{"growing list to a block holding it all", Item{"src-address-list": "rampart-prfx_lst_grows"}, Item{"src-address": "198.18.0.0/16"}, PhaseRepoint},
		{"block to a shrinking list inside it", Item{"src-address": "198.18.0.0/16"}, Item{"src-address-list": "rampart-prfx_lst_shrinks"}, PhaseRepointBack},
		{"growing list to a shrinking one", Item{"src-address-list": "rampart-prfx_lst_grows"}, Item{"src-address-list": "rampart-prfx_lst_shrinks"}, replace},
		{"disabled re-enabled", Item{"protocol": "udp", "disabled": "true"}, Item{"protocol": "udp"}, PhaseChains},
		{"negated list", Item{"src-address-list": "!rampart-prfx_lst_grows"}, Item{}, replace},
		{"the chain's drop (by hand)", Item{"action": "drop", "protocol": "tcp"}, Item{"action": "drop"}, PhaseChains},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := Item{"chain": render.ChainIn, "action": "accept", "comment": "rampart:r:1"}
			for k, v := range tt.old {
				it[k] = v
			}
			want := render.Rule{Key: "r", Props: render.Props{"chain": render.ChainIn, "action": "accept"}, Comment: "rampart:r:1"}
			for k, v := range tt.new {
				if k == "comment" {
					want.Comment = v
				} else {
					want.Props[k] = v
				}
			}
			set := Diff(it, want)
			got, ok := setPhase(it, want, set, content(lists), lists)
			if !ok {
				got = replace
			}
			if got != tt.want {
				t.Errorf("phase %d, want %d (set %v)", got, tt.want, set)
			}
		})
	}
}

// TestNarrowWhileAnotherWidens is the transition of issue 12: the widening
// set comes before any narrowing one, whatever their order in the chain.
func TestNarrowWhileAnotherWidens(t *testing.T) {
	policy := func(first, later string) render.Wanted {
		g := protocol.SecurityGroup{ID: "sec_grp_a", Rules: []protocol.Rule{
			{ID: "fltr_first", Direction: "inbound", Order: 1, Protocol: 6, Port: "10249", Address: first},
			{ID: "fltr_later", Direction: "inbound", Order: 2, Protocol: 6, Port: "10249", Address: later},
		}}
		return render.Render(&protocol.DesiredState{SecurityGroups: []protocol.SecurityGroup{g}}, render.Options{WANList: "WAN"})
	}
	rows := router(policy("0.0.0.0/0", "198.19.251.0/25"))
	ops := Plan(Observed{render.IPv4: {Filter: rows}}, policy("198.19.250.0/24", "198.19.251.0/24"))
	if diff := cmp.Diff([]string{"set fltr_later", "set fltr_first"}, summary(ops)); diff != "" {
		t.Fatalf("plan (-want +got):\n%s", diff)
	}
	if ops[0].Phase >= ops[1].Phase {
		t.Errorf("widening in phase %d, narrowing in %d: the narrowing must come after", ops[0].Phase, ops[1].Phase)
	}
	// Two rules swapping what they match: neither set is safe alone.
	rows = router(policy("198.19.250.0/24", "198.19.251.0/24"))
	ops = Plan(Observed{render.IPv4: {Filter: rows}}, policy("198.19.251.0/24", "198.19.250.0/24"))
	if diff := cmp.Diff([]string{"add fltr_later", "add fltr_first", "remove stale rows of owned chains"}, summary(ops)); diff != "" {
		t.Fatalf("swap (-want +got):\n%s", diff)
	}
}

func TestWrittenListsAndReplaceLists(t *testing.T) {
	observed := []Entry{
		{ID: "*1", List: "rampart-a", Address: "10.0.0.1"},
		{ID: "*2", List: "rampart-b", Address: "10.0.0.2"},
		{ID: "*3", List: "rampart-c", Address: "10.0.0.3"},
		{ID: "*4", List: "office", Address: "10.0.0.4", Comment: "rampart:1"},
	}
	ops := []Op{
		{Kind: Add, Path: AddressListPath, Entry: &render.Entry{List: "rampart-d", Address: "10.0.0.9"}},
		{Kind: Add, Path: AddressListPath, Props: map[string]string{"list": "rampart-old-a", "address": "10.0.0.1"}},
		{Kind: Set, Path: AddressListPath, ID: "*2", Props: map[string]string{"comment": "x"}},
		{Kind: Remove, Path: AddressListPath, IDs: []string{"*4", "+1"}},
		{Kind: Remove, Path: FilterPath, IDs: []string{"*3"}},
	}
	lists := WrittenLists(ops, AddressListPath, observed)
	if diff := cmp.Diff([]string{"office", "rampart-b", "rampart-d", "rampart-old-a"}, lists); diff != "" {
		t.Errorf("written lists (-want +got):\n%s", diff)
	}
	SortEntries(observed)
	read := []Entry{{ID: "*9", List: "rampart-d", Address: "10.0.0.9"}, {ID: "*2", List: "rampart-b", Address: "10.0.0.2", Comment: "x"}}
	got := ReplaceLists(observed, lists, read)
	want := []Entry{
		{ID: "*1", List: "rampart-a", Address: "10.0.0.1"},
		{ID: "*2", List: "rampart-b", Address: "10.0.0.2", Comment: "x"},
		{ID: "*3", List: "rampart-c", Address: "10.0.0.3"},
		{ID: "*9", List: "rampart-d", Address: "10.0.0.9"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replaced (-want +got):\n%s", diff)
	}
}

// TestPlanUnsortedObservation: an observation in the router's order plans
// exactly as the same observation sorted (SortEntries), op for op.
func TestPlanUnsortedObservation(t *testing.T) {
	d := &protocol.DesiredState{PrefixLists: []protocol.PrefixList{
		{ID: "prfx_lst_a", CIDRs: []string{"10.0.0.0/24", "10.0.0.10/32", "10.0.0.9/32", "10.0.1.0/24"}},
		{ID: "prfx_lst_b", CIDRs: []string{"192.0.2.0/24"}},
	}}
	w := render.Render(d, render.Options{})
	observed := []Entry{
		{ID: "*5", List: "rampart-prfx_lst_b", Address: "192.0.2.0/24", Comment: "stale comment"},
		{ID: "*1", List: "rampart-prfx_lst_a", Address: "10.0.0.9"},
		{ID: "*2", List: "rampart-prfx_lst_a", Address: "10.0.0.0/24", Disabled: true},
		{ID: "*3", List: "rampart-prfx_lst_gone", Address: "10.9.0.0/16"},
		{ID: "*4", List: "rampart-prfx_lst_a", Address: "10.0.0.10", Dynamic: true},
		{ID: "*6", List: "office", Address: "10.0.0.9"},
	}
	sorted := slices.Clone(observed)
	SortEntries(sorted)
	got, want := Plan(Observed{render.IPv4: {Entries: observed}}, w), Plan(Observed{render.IPv4: {Entries: sorted}}, w)
	if diff := cmp.Diff(summary(want), summary(got)); diff != "" {
		t.Errorf("(-sorted +unsorted):\n%s", diff)
	}
	if len(got) == 0 {
		t.Fatal("nothing planned")
	}
}
