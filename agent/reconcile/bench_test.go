package reconcile

import (
	"fmt"
	"testing"

	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/protocol"
)

// BenchmarkPlanConverged plans a router that already matches a policy of
// 250 rules and 20 lists of 500 entries: the plan and the verification of
// every small change cost this much.
//
//	go test -run XXX -bench PlanConverged ./agent/reconcile/
func BenchmarkPlanConverged(b *testing.B) {
	g := protocol.SecurityGroup{ID: "sec_grp_a"}
	for i := range 250 {
		r := protocol.Rule{ID: fmt.Sprintf("fltr_%03d", i), Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + i), Address: fmt.Sprintf("10.%d.%d.0/24", i/200, i%200)}
		if i%5 == 2 {
			r.Address = fmt.Sprintf("prfx_lst_%02d", i%20)
		}
		g.Rules = append(g.Rules, r)
	}
	var lists []protocol.PrefixList
	for l := range 20 {
		pl := protocol.PrefixList{ID: fmt.Sprintf("prfx_lst_%02d", l)}
		for i := range 500 {
			pl.CIDRs = append(pl.CIDRs, fmt.Sprintf("100.%d.%d.%d/32", 64+l, i/250, i%250))
		}
		lists = append(lists, pl)
	}
	w := render.Render(&protocol.DesiredState{SecurityGroups: []protocol.SecurityGroup{g}, PrefixLists: lists}, render.Options{WANList: "WAN"})
	rows := router(w)
	addrs := make([]Entry, len(w[render.IPv4].Entries))
	for i, e := range w[render.IPv4].Entries {
		addrs[i] = Entry{ID: fmt.Sprintf("*%X", 0x1000+i), List: e.List, Address: e.Address, Comment: e.Comment}
	}
	b.ReportAllocs()
	for b.Loop() {
		if ops := Plan(Observed{render.IPv4: {Filter: rows, Entries: addrs}}, w); len(ops) != 0 {
			b.Fatalf("%d ops: %v", len(ops), ops[0])
		}
	}
}
