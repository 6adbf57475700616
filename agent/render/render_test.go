package render

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/protocol"
)

func sample() *protocol.DesiredState {
	d := &protocol.DesiredState{OrgID: "o", SiteID: "site_a", Epoch: "e", Revision: 1,
		SecurityGroups: []protocol.SecurityGroup{
			{ID: "sec_grp_b", Rules: []protocol.Rule{
				{ID: "fltr_3", Direction: "inbound", Order: 10, Protocol: 17, Port: "53", Address: "10.0.0.0/8"},
			}},
			{ID: "sec_grp_a", Rules: []protocol.Rule{
				{ID: "fltr_2", Direction: "inbound", Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "web\nline"},
				{ID: "fltr_1", Direction: "inbound", Order: 5, Protocol: 0, Address: "prfx_lst_x"},
				{ID: "fltr_4", Direction: "outbound", Order: 1, Protocol: 47, Address: "192.0.2.1/32"},
			}},
		},
		PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_x", CIDRs: []string{"198.51.100.0/24", "192.0.2.9/32"}}, {ID: "prfx_lst_unused", CIDRs: []string{"10.1.0.0/16"}}},
	}
	d.Seal()
	return d
}

type row struct {
	Key   string
	Props Props
}

func rows(rs []Rule) []row {
	out := make([]row, len(rs))
	for i, r := range rs {
		out[i] = row{r.Key, r.Props}
	}
	return out
}

func TestRender(t *testing.T) {
	w := Render(sample(), Options{WANList: "WAN", Guards: [NumFamilies]netip.Addr{IPv4: netip.MustParseAddr("172.17.0.2")}})
	wantJumps := []row{
		{KeyJumpInput, Props{"chain": "input", "action": "jump", "jump-target": ChainIn, "in-interface-list": "WAN"}},
		{KeyJumpFwdIn, Props{"chain": "forward", "action": "jump", "jump-target": ChainIn, "in-interface-list": "WAN"}},
		{KeyJumpFwdOut, Props{"chain": "forward", "action": "jump", "jump-target": ChainOut, "out-interface-list": "WAN"}},
	}
	wantIn := []row{
		{KeyInEst, Props{"chain": ChainIn, "action": "accept", "connection-state": "established,related,untracked"}},
		{KeyInInvalid, Props{"chain": ChainIn, "action": "drop", "connection-state": "invalid"}},
		{"fltr_1", Props{"chain": ChainIn, "action": "accept", "src-address-list": "rampart-prfx_lst_x"}},
		// order 10 twice: group id breaks the tie (sec_grp_a before sec_grp_b).
		{"fltr_2", Props{"chain": ChainIn, "action": "accept", "protocol": "tcp", "dst-port": "443"}},
		{"fltr_3", Props{"chain": ChainIn, "action": "accept", "protocol": "udp", "dst-port": "53", "src-address": "10.0.0.0/8"}},
		{KeyInDrop, Props{"chain": ChainIn, "action": "drop"}},
	}
	wantOut := []row{
		{KeyOutEst, Props{"chain": ChainOut, "action": "accept", "connection-state": "established,related,untracked"}},
		{KeyOutInvalid, Props{"chain": ChainOut, "action": "drop", "connection-state": "invalid"}},
		{KeyOutGuard, Props{"chain": ChainOut, "action": "accept", "src-address": "172.17.0.2"}},
		{"fltr_4", Props{"chain": ChainOut, "action": "accept", "protocol": "47", "dst-address": "192.0.2.1"}},
		{KeyOutDrop, Props{"chain": ChainOut, "action": "drop"}},
	}
	for _, c := range []struct {
		name      string
		got, want []row
	}{{"jumps", rows(w[IPv4].Jumps), wantJumps}, {"in", rows(w[IPv4].In), wantIn}, {"out", rows(w[IPv4].Out), wantOut}} {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	wantEntries := []string{"rampart-prfx_lst_unused 10.1.0.0/16", "rampart-prfx_lst_x 192.0.2.9", "rampart-prfx_lst_x 198.51.100.0/24"}
	var got []string
	for _, e := range w[IPv4].Entries {
		got = append(got, e.List+" "+e.Address)
		if !strings.HasPrefix(e.Comment, CommentPrefix) {
			t.Errorf("entry comment %q", e.Comment)
		}
	}
	if diff := cmp.Diff(wantEntries, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Table{}, w[IPv6]); diff != "" {
		t.Errorf("an IPv4-only document renders IPv6 rows (-want +got):\n%s", diff)
	}
	for _, r := range w[IPv4].Rules() {
		key, hash, ok := ParseComment(r.Comment)
		if !ok || key != r.Key || hash != Hash(r.Props) {
			t.Errorf("comment %q does not carry key %s and hash %s", r.Comment, r.Key, Hash(r.Props))
		}
		if strings.ContainsAny(r.Comment, "\n\r") {
			t.Errorf("comment %q has a line break", r.Comment)
		}
	}
}

func TestRenderWithoutOutboundOrGroups(t *testing.T) {
	d := sample()
	for _, g := range d.SecurityGroups {
		for i := range g.Rules {
			g.Rules[i].Direction = "inbound"
		}
	}
	w := Render(d, Options{WANList: "WAN", Guards: [NumFamilies]netip.Addr{IPv4: netip.MustParseAddr("172.17.0.2")}})
	if len(w[IPv4].Out) != 0 || len(w[IPv4].Jumps) != 2 {
		t.Errorf("no outbound rules: out %d rows, %d jumps; want 0 and 2", len(w[IPv4].Out), len(w[IPv4].Jumps))
	}
	d.SecurityGroups = nil
	w = Render(d, Options{WANList: "WAN"})
	if w.Rules() != 0 || w.Entries() != 3 {
		t.Errorf("no groups: %d rules, %d entries; want 0 and 3 (lists attached to the site stay)", w.Rules(), w.Entries())
	}
}

func TestHashChangesWithContent(t *testing.T) {
	a := Hash(Props{"chain": "x", "dst-port": "1"})
	if a != Hash(Props{"dst-port": "1", "chain": "x"}) {
		t.Error("hash depends on map order")
	}
	if a == Hash(Props{"chain": "x", "dst-port": "2"}) {
		t.Error("hash ignores a value")
	}
}

func TestParseComment(t *testing.T) {
	for in, want := range map[string][3]any{
		"rampart:fltr_1:abcd1234 Allow web": {"fltr_1", "abcd1234", true},
		"rampart:jump/input:00ff00ff":       {"jump/input", "00ff00ff", true},
		"rampart:1a2b3c4d":                  {"", "1a2b3c4d", true},
		"defconf: drop invalid":             {"", "", false},
		"rampart":                           {"", "", false},
	} {
		k, h, ok := ParseComment(in)
		if got := [3]any{k, h, ok}; got != want {
			t.Errorf("ParseComment(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestProtocolNumber(t *testing.T) {
	for in, want := range map[string]int{"tcp": 6, "6": 6, "udp-lite": 136, "ipencap": 4, "ip-encap": 4, "47": 47, "gre": 47} {
		if n, ok := ProtocolNumber(in); !ok || n != want {
			t.Errorf("ProtocolNumber(%q) = %d, %v", in, n, ok)
		}
	}
	if _, ok := ProtocolNumber("bogus"); ok {
		t.Error("accepted bogus")
	}
}

// TestRendererMatchesRender: a Renderer that remembers earlier documents
// renders each document of a sequence exactly as a fresh Render does.
func TestRendererMatchesRender(t *testing.T) {
	doc := func(lists map[string][]string) *protocol.DesiredState {
		d := &protocol.DesiredState{}
		for _, id := range []string{"prfx_lst_a", "prfx_lst_b", "prfx_lst_c"} {
			if c, ok := lists[id]; ok {
				d.PrefixLists = append(d.PrefixLists, protocol.PrefixList{ID: id, CIDRs: c})
			}
		}
		return d
	}
	seq := []*protocol.DesiredState{
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.10/32", "10.0.0.0/24"}, "prfx_lst_b": {"192.0.2.0/24"}}),
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.10/32", "10.0.0.0/24"}, "prfx_lst_b": {"192.0.2.0/24", "192.0.2.7/32"}}),
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.10/32", "10.0.0.0/24"}, "prfx_lst_b": {"192.0.2.0/24", "192.0.2.7/32"}}), // same lists: entries reused whole
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.10/32", "10.0.0.0/24"}}),                                                 // one list fewer
		doc(map[string][]string{"prfx_lst_b": {"192.0.2.0/24", "192.0.2.7/32"}, "prfx_lst_c": {"198.51.100.0/24"}}),
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32"}, "prfx_lst_b": {"192.0.2.0/24", "192.0.2.7/32"}}),
		doc(nil),
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32"}}),
		// Lists out of order (the entries are sorted after the copy, so
		// each list's remembered range must be found again), then reused.
		{PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_c", CIDRs: []string{"198.51.100.0/24"}}, {ID: "prfx_lst_a", CIDRs: []string{"10.0.0.1/32", "10.0.0.2/32"}}}},
		{PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_c", CIDRs: []string{"198.51.100.0/24"}}, {ID: "prfx_lst_a", CIDRs: []string{"10.0.0.1/32", "10.0.0.2/32"}}, {ID: "prfx_lst_b", CIDRs: []string{"192.0.2.7/32"}}}},
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.2/32"}, "prfx_lst_c": {"198.51.100.0/24", "198.51.100.9/32"}}),
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.2/32"}, "prfx_lst_b": {"192.0.2.7/32"}, "prfx_lst_c": {"198.51.100.0/24", "198.51.100.9/32"}}),
		// A list going dual stack, then IPv6 only, then back.
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.2/32", "2001:db8::/32"}, "prfx_lst_b": {"192.0.2.7/32"}}),
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.2/32", "2001:db8::/32"}, "prfx_lst_b": {"192.0.2.7/32", "2001:db8:b::1/128"}}),
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32", "10.0.0.2/32", "2001:db8::/32"}, "prfx_lst_b": {"192.0.2.7/32", "2001:db8:b::1/128"}}),
		doc(map[string][]string{"prfx_lst_a": {"2001:db8::/32"}, "prfx_lst_b": {"192.0.2.7/32", "2001:db8:b::1/128"}}),
		doc(map[string][]string{"prfx_lst_a": {"10.0.0.1/32"}, "prfx_lst_b": {"192.0.2.7/32"}}),
	}
	var r Renderer
	for i, d := range seq {
		if diff := cmp.Diff(Render(d, Options{}), r.Render(d, Options{})); diff != "" {
			t.Errorf("document %d (-fresh +renderer):\n%s", i, diff)
		}
	}
}

func dualStack() *protocol.DesiredState {
	d := &protocol.DesiredState{OrgID: "o", SiteID: "site_a", Epoch: "e", Revision: 1,
		SecurityGroups: []protocol.SecurityGroup{{ID: "sec_grp_a", Rules: []protocol.Rule{
			{ID: "fltr_list", Direction: "inbound", Order: 1, Protocol: 6, Port: "22", Address: "prfx_lst_dual"},
			{ID: "fltr_v6", Direction: "inbound", Order: 2, Protocol: 6, Port: "443", Address: "2001:db8::/32"},
			{ID: "fltr_any6", Direction: "inbound", Order: 3, Protocol: 17, Port: "500", Address: "::/0"},
			{ID: "fltr_v4", Direction: "inbound", Order: 4, Protocol: 6, Port: "80", Address: "0.0.0.0/0"},
			{ID: "fltr_ping", Direction: "inbound", Order: 5, Protocol: 1, Address: "prfx_lst_dual"},
			{ID: "fltr_ping6", Direction: "inbound", Order: 6, Protocol: 58, Address: "prfx_lst_dual"},
			{ID: "fltr_empty", Direction: "inbound", Order: 7, Protocol: 6, Address: "prfx_lst_empty"}, // in neither
			{ID: "fltr_only6", Direction: "inbound", Order: 8, Protocol: 1, Address: "prfx_lst_six"},
			{ID: "fltr_dns4", Direction: "outbound", Order: 1, Protocol: 17, Port: "53", Address: "192.0.2.53/32"},
			{ID: "fltr_host6", Direction: "outbound", Order: 2, Protocol: 17, Port: "53", Address: "2001:db8::53/128"},
		}}},
		PrefixLists: []protocol.PrefixList{
			{ID: "prfx_lst_dual", CIDRs: []string{"198.51.100.0/24", "2001:db8:1::/48", "2001:db8:2::7/128"}},
			{ID: "prfx_lst_empty"},
			{ID: "prfx_lst_six", CIDRs: []string{"2001:db8:6::/48"}},
		},
	}
	d.Seal()
	return d
}

// TestRenderDualStack: each rule lands in the tables of its family, each
// list in each table holding that family's CIDRs, the IPv6 guards ahead of
// every policy rule, and each table's outbound guard only of its family.
func TestRenderDualStack(t *testing.T) {
	guards := [NumFamilies]netip.Addr{IPv4: netip.MustParseAddr("172.17.0.2"), IPv6: netip.MustParseAddr("2001:db8:ff::2")}
	w := Render(dualStack(), Options{WANList: "WAN", Guards: guards})
	in := func(key string, p Props) row { p["chain"], p["action"] = ChainIn, "accept"; return row{key, p} }
	out := func(key string, p Props) row { p["chain"], p["action"] = ChainOut, "accept"; return row{key, p} }
	frame := func(chain, prefix string) []row {
		return []row{
			{prefix + "/est", Props{"chain": chain, "action": "accept", "connection-state": "established,related,untracked"}},
			{prefix + "/invalid", Props{"chain": chain, "action": "drop", "connection-state": "invalid"}},
		}
	}
	drop := func(chain, key string) row { return row{key, Props{"chain": chain, "action": "drop"}} }
	want := map[Family][]row{
		IPv4: append(append(frame(ChainIn, "in"),
			in("fltr_list", Props{"protocol": "tcp", "dst-port": "22", "src-address-list": "rampart-prfx_lst_dual"}),
			in("fltr_v4", Props{"protocol": "tcp", "dst-port": "80"}),
			in("fltr_ping", Props{"protocol": "icmp", "src-address-list": "rampart-prfx_lst_dual"}),
			drop(ChainIn, KeyInDrop)), append(frame(ChainOut, "out"),
			out(KeyOutGuard, Props{"src-address": "172.17.0.2"}),
			out("fltr_dns4", Props{"protocol": "udp", "dst-port": "53", "dst-address": "192.0.2.53"}),
			drop(ChainOut, KeyOutDrop))...),
		IPv6: append(append(frame(ChainIn, "in"),
			in(KeyInICMPv6, Props{"protocol": "icmpv6"}),
			in(KeyInDHCPv6, Props{"protocol": "udp", "dst-port": "546", "src-address": "fe80::/10"}),
			in("fltr_list", Props{"protocol": "tcp", "dst-port": "22", "src-address-list": "rampart-prfx_lst_dual"}),
			in("fltr_v6", Props{"protocol": "tcp", "dst-port": "443", "src-address": "2001:db8::/32"}),
			in("fltr_any6", Props{"protocol": "udp", "dst-port": "500"}),
			in("fltr_ping6", Props{"protocol": "icmpv6", "src-address-list": "rampart-prfx_lst_dual"}),
			drop(ChainIn, KeyInDrop)), append(frame(ChainOut, "out"),
			out(KeyOutGuard, Props{"src-address": "2001:db8:ff::2"}),
			out("fltr_host6", Props{"protocol": "udp", "dst-port": "53", "dst-address": "2001:db8::53"}),
			drop(ChainOut, KeyOutDrop))...),
	}
	wantEntries := map[Family][]string{
		IPv4: {"rampart-prfx_lst_dual 198.51.100.0/24"},
		IPv6: {"rampart-prfx_lst_dual 2001:db8:1::/48", "rampart-prfx_lst_dual 2001:db8:2::7", "rampart-prfx_lst_six 2001:db8:6::/48"},
	}
	for _, f := range Families {
		if diff := cmp.Diff(want[f], rows(append(slices.Clone(w[f].In), w[f].Out...))); diff != "" {
			t.Errorf("%s chains (-want +got):\n%s", f, diff)
		}
		if n := len(w[f].Jumps); n != 3 {
			t.Errorf("%s: %d jumps, want 3", f, n)
		}
		var got []string
		for _, e := range w[f].Entries {
			got = append(got, e.List+" "+e.Address)
		}
		if diff := cmp.Diff(wantEntries[f], got); diff != "" {
			t.Errorf("%s entries (-want +got):\n%s", f, diff)
		}
	}

	// Without an IPv6 guard address, IPv6's rampart-out has no guard; an
	// IPv6 address is never a guard in IPv4 and the other way round.
	w = Render(dualStack(), Options{WANList: "WAN", Guards: [NumFamilies]netip.Addr{IPv4: guards[IPv6], IPv6: guards[IPv4]}})
	for _, f := range Families {
		for _, r := range w[f].Out {
			if r.Key == KeyOutGuard {
				t.Errorf("%s: guard %v from an address of the other family", f, r.Props)
			}
		}
	}
}

// TestRenderWhenIPv6IsManaged: the IPv6 table is rendered exactly when the
// document carries an IPv6 CIDR, and then its chains exist on IPv4's
// conditions.
func TestRenderWhenIPv6IsManaged(t *testing.T) {
	for _, tc := range []struct {
		name            string
		rules           []protocol.Rule
		lists           []protocol.PrefixList
		wantIn, wantOut int // IPv6 rows
	}{
		{"IPv4 only", []protocol.Rule{{ID: "fltr_a", Direction: "outbound", Address: "10.0.0.0/8"}}, []protocol.PrefixList{{ID: "prfx_lst_a", CIDRs: []string{"10.1.0.0/16"}}}, 0, 0},
		{"an unused list with an IPv6 CIDR", nil, []protocol.PrefixList{{ID: "prfx_lst_a", CIDRs: []string{"2001:db8::/32"}}}, 5, 0},
		{"an IPv6 rule", []protocol.Rule{{ID: "fltr_a", Address: "2001:db8::/32", Direction: "inbound"}}, nil, 6, 0},
		{"IPv4 outbound rules restrict IPv6 outbound too", []protocol.Rule{
			{ID: "fltr_a", Address: "2001:db8::/32", Direction: "inbound"},
			{ID: "fltr_b", Address: "10.0.0.0/8", Direction: "outbound"},
		}, nil, 6, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &protocol.DesiredState{SecurityGroups: []protocol.SecurityGroup{{ID: "sec_grp_a", Rules: tc.rules}}, PrefixLists: tc.lists}
			w := Render(d, Options{WANList: "WAN"})
			if got := [2]int{len(w[IPv6].In), len(w[IPv6].Out)}; got != [2]int{tc.wantIn, tc.wantOut} {
				t.Errorf("IPv6 in, out: %v rows, want %v\n%v", got, [2]int{tc.wantIn, tc.wantOut}, rows(w[IPv6].Rules()))
			}
		})
	}
}
