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
	for _, j := range w.Jumps {
		add(j)
	}
	out = append(out, Item{".id": "*100", "chain": "input", "action": "drop", "in-interface-list": "!LAN", "comment": "defconf"})
	for _, r := range w.In {
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
			ops := Plan(rows, nil, tt.want)
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
		{ID: "*1", List: "rampart-prfx_lst_a", Address: "192.0.2.0/24", Comment: w.Entries[0].Comment},
		{ID: "*2", List: "rampart-prfx_lst_a", Address: "10.0.0.1"},
		{ID: "*3", List: "office", Address: "10.0.0.1"},
		{ID: "*4", List: "rampart-prfx_lst_gone", Address: "10.9.9.9", Comment: "rampart:00000000"},
	}
	ops := Plan(nil, rows, w)
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
