package render

import (
	"net/netip"
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
	w := Render(sample(), Options{WANList: "WAN", Guard: netip.MustParseAddr("172.17.0.2")})
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
	}{{"jumps", rows(w.Jumps), wantJumps}, {"in", rows(w.In), wantIn}, {"out", rows(w.Out), wantOut}} {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	wantEntries := []string{"rampart-prfx_lst_unused 10.1.0.0/16", "rampart-prfx_lst_x 192.0.2.9", "rampart-prfx_lst_x 198.51.100.0/24"}
	var got []string
	for _, e := range w.Entries {
		got = append(got, e.List+" "+e.Address)
		if !strings.HasPrefix(e.Comment, CommentPrefix) {
			t.Errorf("entry comment %q", e.Comment)
		}
	}
	if diff := cmp.Diff(wantEntries, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	for _, r := range w.Rules() {
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
	w := Render(d, Options{WANList: "WAN", Guard: netip.MustParseAddr("172.17.0.2")})
	if len(w.Out) != 0 || len(w.Jumps) != 2 {
		t.Errorf("no outbound rules: out %d rows, %d jumps; want 0 and 2", len(w.Out), len(w.Jumps))
	}
	d.SecurityGroups = nil
	w = Render(d, Options{WANList: "WAN"})
	if len(w.In)+len(w.Out)+len(w.Jumps) != 0 || len(w.Entries) != 3 {
		t.Errorf("no groups: %d rules, %d entries; want 0 and 3 (lists attached to the site stay)", len(w.Rules()), len(w.Entries))
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
	}
	var r Renderer
	for i, d := range seq {
		if diff := cmp.Diff(Render(d, Options{}), r.Render(d, Options{})); diff != "" {
			t.Errorf("document %d (-fresh +renderer):\n%s", i, diff)
		}
	}
}
