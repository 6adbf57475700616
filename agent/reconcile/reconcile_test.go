package reconcile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/protocol"
)

// wanted renders a small policy: inbound rules r1..rN in that order.
func wanted(ruleIDs ...string) render.Wanted {
	g := protocol.SecurityGroup{ID: "sec_grp_a"}
	for i, id := range ruleIDs {
		g.Rules = append(g.Rules, protocol.Rule{ID: id, Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + int(id[len(id)-1])), Address: "0.0.0.0/0"})
	}
	d := &protocol.DesiredState{SecurityGroups: []protocol.SecurityGroup{g}}
	return render.Render(d, render.Options{WANList: "WAN"})
}

// router lays the rows of w out as a router would print them after a clean
// apply, with ids *1, *2... behind a dynamic dummy rule and one foreign rule.
func router(w render.Wanted) []Item {
	out := []Item{{".id": "*FFFFFFFE", "chain": "forward", "action": "passthrough", "dynamic": "true"}}
	n := 0
	add := func(r render.Rule) {
		n++
		it := Item{".id": fmt.Sprintf("*%X", n), "comment": r.Comment, "disabled": "false", "dynamic": "false", "bytes": "7"}
		for k, v := range r.Props {
			it[k] = v
		}
		out = append(out, it)
	}
	for _, j := range w[render.IPv4].Jumps {
		add(j)
	}
	out = append(out, Item{".id": "*100", "chain": "input", "action": "drop", "in-interface-list": "!LAN", "comment": "defconf"})
	for _, r := range w[render.IPv4].In {
		add(r)
	}
	return out
}

func byID(rows []Item, key string) string {
	for _, it := range rows {
		if k, _, _ := render.ParseComment(it["comment"]); k == key {
			return it[".id"]
		}
	}
	return ""
}

func summary(ops []Op) []string {
	var s []string
	for _, o := range ops {
		s = append(s, fmt.Sprintf("%s %s", o.Kind, o.Label()))
	}
	return s
}

func TestPlanTable(t *testing.T) {
	base := wanted("fltr_a", "fltr_b", "fltr_c", "fltr_d")
	tests := []struct {
		name  string
		rows  func() []Item
		want  render.Wanted
		plan  []string
		check func(t *testing.T, rows []Item, ops []Op)
	}{
		{"converged", func() []Item { return router(base) }, base, nil, nil},
		{"empty router", func() []Item { return nil }, wanted("fltr_a"), []string{
			// Built from the end of the chain, each row before the next.
			"add in/drop", "add fltr_a", "add in/invalid", "add in/est", "add jump/input", "add jump/forward-in"}, nil},
		{"one rule replaced", func() []Item { return router(base) }, wanted("fltr_a", "fltr_x", "fltr_c", "fltr_d"),
			[]string{"add fltr_x", "remove stale rows of owned chains"}, func(t *testing.T, rows []Item, ops []Op) {
				if ops[0].Before != byID(rows, "fltr_c") {
					t.Errorf("new rule placed before %s, want before fltr_c", ops[0].Before)
				}
				if want := []string{byID(rows, "fltr_b")}; !cmp.Equal(ops[1].IDs, want) {
					t.Errorf("removed %v, want %v", ops[1].IDs, want)
				}
			}},
		{"last rule moved first: one move", func() []Item { return router(base) }, wanted("fltr_d", "fltr_a", "fltr_b", "fltr_c"),
			[]string{"move fltr_d"}, func(t *testing.T, rows []Item, ops []Op) {
				if ops[0].Before != byID(rows, "fltr_a") {
					t.Errorf("moved before %s, want fltr_a", ops[0].Before)
				}
			}},
		{"first rule moved last: one move", func() []Item { return router(base) }, wanted("fltr_b", "fltr_c", "fltr_d", "fltr_a"),
			[]string{"move fltr_a"}, nil},
		{"drift: disabled and edited", func() []Item {
			rows := router(base)
			for _, it := range rows {
				if k, _, _ := render.ParseComment(it["comment"]); k == "fltr_b" {
					it["disabled"] = "true"
					it["src-port"] = "99"
				}
			}
			return rows
		}, base, []string{"set fltr_b"}, func(t *testing.T, _ []Item, ops []Op) {
			want := map[string]string{"disabled": "no", "!src-port": ""}
			if diff := cmp.Diff(want, ops[0].Props); diff != "" {
				t.Errorf("set (-want +got):\n%s", diff)
			}
		}},
		{"drift: unmarked row in owned chain, duplicate managed row", func() []Item {
			rows := router(base)
			rows = append(rows, Item{".id": "*200", "chain": render.ChainIn, "action": "accept"})
			dup := Item{}
			for k, v := range rows[len(rows)-2] {
				dup[k] = v
			}
			dup[".id"] = "*201"
			return append(rows, dup)
		}, base, []string{"remove stale rows of owned chains"}, func(t *testing.T, _ []Item, ops []Op) {
			if !cmp.Equal(ops[0].IDs, []string{"*200", "*201"}) {
				t.Errorf("removed %v", ops[0].IDs)
			}
		}},
		{"policy gone: jumps first", func() []Item { return router(base) }, render.Wanted{},
			[]string{"remove stale jumps", "remove stale rows of owned chains"}, nil},
		{"protocol printed by name or number, /32 bare", func() []Item {
			w := wanted("fltr_a")
			rows := router(w)
			for _, it := range rows {
				if it["protocol"] == "tcp" {
					it["protocol"] = "6"
				}
			}
			return rows
		}, wanted("fltr_a"), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := tt.rows()
			ops := Plan(Observed{render.IPv4: {Filter: rows}}, tt.want)
			if diff := cmp.Diff(tt.plan, summary(ops)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			for _, o := range ops {
				for _, id := range append([]string{o.ID, o.Before}, o.IDs...) {
					if id == "*100" || id == "*FFFFFFFE" {
						t.Errorf("%s touches foreign or dynamic row %s", o, id)
					}
				}
			}
			if tt.check != nil {
				tt.check(t, rows, ops)
			}
		})
	}
}

func TestPlanAddressLists(t *testing.T) {
	d := &protocol.DesiredState{PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_a", CIDRs: []string{"192.0.2.0/24", "198.51.100.7/32"}}}}
	w := render.Render(d, render.Options{})
	rows := []Entry{
		{ID: "*1", List: "rampart-prfx_lst_a", Address: "192.0.2.0/24", Comment: w[render.IPv4].Entries[0].Comment},
		{ID: "*2", List: "rampart-prfx_lst_a", Address: "10.0.0.1"},
		{ID: "*3", List: "office", Address: "10.0.0.1"},
		{ID: "*4", List: "rampart-prfx_lst_gone", Address: "10.9.9.9", Comment: "rampart:00000000"},
	}
	ops := Plan(Observed{render.IPv4: {Entries: rows}}, w)
	want := []string{"add rampart-prfx_lst_a 198.51.100.7", "remove stale entries of rampart lists"}
	if diff := cmp.Diff(want, summary(ops)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if !cmp.Equal(ops[1].IDs, []string{"*2", "*4"}) {
		t.Errorf("removed %v; the foreign list's entry must stay", ops[1].IDs)
	}
	if got := strings.Join(ops[0].Words(func(s string) string { return s }), " "); !strings.Contains(got, "=list=rampart-prfx_lst_a") || !strings.Contains(got, "=address=198.51.100.7") {
		t.Errorf("words %q", got)
	}
}

func TestLIS(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want int
	}{{nil, 0}, {[]int{0, 1, 2}, 3}, {[]int{3, 0, 1, 2}, 3}, {[]int{1, 2, 3, 0}, 3}, {[]int{2, 1, 0}, 1}, {[]int{0, 4, 1, 2, 3}, 4}} {
		got := lis(tc.in)
		if len(got) != tc.want {
			t.Errorf("lis(%v) = %v, want length %d", tc.in, got, tc.want)
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] || tc.in[got[i]] <= tc.in[got[i-1]] {
				t.Errorf("lis(%v) = %v is not increasing", tc.in, got)
			}
		}
	}
}

// dual renders inbound rule fltr_a on prefix list a (cidrs) and rule
// fltr_b on 2001:db8::/32 when withV6 is set.
func dual(cidrs []string, withV6 bool) render.Wanted {
	g := protocol.SecurityGroup{ID: "sec_grp_a", Rules: []protocol.Rule{
		{ID: "fltr_a", Direction: "inbound", Order: 1, Protocol: 6, Port: "22", Address: "prfx_lst_a"},
	}}
	if withV6 {
		g.Rules = append(g.Rules, protocol.Rule{ID: "fltr_b", Direction: "inbound", Order: 2, Protocol: 6, Port: "443", Address: "2001:db8::/32"})
	}
	return render.Render(&protocol.DesiredState{SecurityGroups: []protocol.SecurityGroup{g},
		PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_a", CIDRs: cidrs}}}, render.Options{WANList: "WAN"})
}

// laidOut is the router after a clean apply of w: each family's rows as
// router lays them out, and its entries.
func laidOut(w render.Wanted) Observed {
	var obs Observed
	for _, f := range render.Families {
		if len(w[f].Rules()) > 0 {
			var one render.Wanted
			one[render.IPv4] = w[f]
			obs[f].Filter = router(one)
		}
		for i, e := range w[f].Entries {
			obs[f].Entries = append(obs[f].Entries, Entry{ID: fmt.Sprintf("*E%d", i), List: e.List, Address: e.Address, Comment: e.Comment})
		}
	}
	return obs
}

// byFamily groups a plan's ops by the table they write, in plan order.
func byFamily(ops []Op) map[render.Family][]string {
	m := map[render.Family][]string{}
	for _, o := range ops {
		for _, f := range render.Families {
			if o.Path == Menus[f].Filter || o.Path == Menus[f].AddressList {
				m[f] = append(m[f], fmt.Sprintf("%s %s", o.Kind, o.Label()))
			}
		}
	}
	return m
}

// TestPlanDualStack: each family's table is planned by the same rules into
// its own menus, and a table with nothing wanted and nothing managed is not
// written.
func TestPlanDualStack(t *testing.T) {
	v4 := []string{"198.51.100.0/24"}
	both := []string{"198.51.100.0/24", "2001:db8:a::/48"}
	tests := []struct {
		name     string
		from, to render.Wanted
		want     map[render.Family][]string
	}{
		{"IPv4 only: the IPv6 table is not touched", render.Wanted{}, dual(v4, false), map[render.Family][]string{render.IPv4: {
			"add rampart-prfx_lst_a 198.51.100.0/24", "add in/drop", "add fltr_a", "add in/invalid", "add in/est", "add jump/input", "add jump/forward-in"}}},
		{"a list goes dual stack: entries, then the chain, then the jumps", dual(v4, false), dual(both, false), map[render.Family][]string{render.IPv6: {
			"add rampart-prfx_lst_a 2001:db8:a::/48", "add in/drop", "add fltr_a", "add in/dhcpv6", "add in/icmpv6", "add in/invalid", "add in/est", "add jump/input", "add jump/forward-in"}}},
		{"an IPv6 rule arrives: one add", dual(both, false), dual(both, true), map[render.Family][]string{render.IPv6: {"add fltr_b"}}},
		{"IPv6 gone: its jumps leave first, then the chain and the entries", dual(both, true), dual(v4, false), map[render.Family][]string{render.IPv6: {
			"remove stale jumps", "remove stale rows of owned chains", "remove stale entries of rampart lists"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := Plan(laidOut(tt.from), tt.to)
			if diff := cmp.Diff(tt.want, byFamily(ops)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			for i := 1; i < len(ops); i++ {
				if ops[i].Phase < ops[i-1].Phase {
					t.Errorf("op %d (%s) in phase %d after phase %d", i, ops[i], ops[i].Phase, ops[i-1].Phase)
				}
			}
			if rest := Plan(laidOut(tt.to), tt.to); len(rest) != 0 {
				t.Errorf("the converged router still plans %v", summary(rest))
			}
		})
	}
}
