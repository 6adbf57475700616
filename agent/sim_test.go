package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/agent/reconcile"
	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// simAgent is an agent wired to a simulated router, driven by calling sync
// directly (no broker): the reconciler's tests.
type simAgent struct {
	*Agent
	r *rossim.Router
}

func newSim(t testing.TB, opts rossim.Options) *rossim.Router {
	t.Helper()
	r, err := rossim.Listen("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func testConfig(t testing.TB, routerAddr string) Config {
	u, _ := url.Parse("tcp://127.0.0.1:1")
	return Config{
		MQTTURLs: []*url.URL{u}, OrgID: "org_demo", SiteID: "site_hq", SiteSecret: "x", TopicRoot: protocol.DefaultTopicRoot,
		RouterOSAddr: routerAddr, RouterOSUser: "admin", StateDir: t.TempDir(),
		ResyncInterval: time.Hour, WANList: "WAN",
	}
}

func newSimAgent(t testing.TB, r *rossim.Router) *simAgent {
	t.Helper()
	a, err := New(testConfig(t, r.Addr()), Options{RouterTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.router.Close() })
	return &simAgent{a, r}
}

// apply makes d current and applies it as the agent applies a new
// document: planned from what the last apply read back, if there was one.
func (s *simAgent) apply(t testing.TB, d protocol.DesiredState) {
	t.Helper()
	s.desired = &d
	if err := s.update(context.Background()); err != nil {
		t.Fatalf("sync revision %d: %v", d.Revision, err)
	}
}

// remaining is what the planner would still write against the router now.
func (s *simAgent) remaining(t testing.TB) []reconcile.Op {
	t.Helper()
	st, err := s.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w := render.Render(s.desired, render.Options{WANList: "WAN", Guards: s.guard(st)})
	return reconcile.Plan(st, w)
}

func writes(st rossim.Stats) int {
	n := 0
	for _, v := range st.Writes {
		n += v
	}
	return n
}

// doc builds a sealed document.
func doc(rev uint64, groups []protocol.SecurityGroup, lists []protocol.PrefixList) protocol.DesiredState {
	d := protocol.DesiredState{OrgID: "org_demo", SiteID: "site_hq", Epoch: "e1", Revision: rev,
		SecurityGroups: groups, PrefixLists: lists}
	d.Seal()
	return d
}

func sampleDoc(rev uint64) protocol.DesiredState {
	return doc(rev, []protocol.SecurityGroup{{ID: "sec_grp_web", Name: "Web", Rules: []protocol.Rule{
		{ID: "fltr_https", Direction: "inbound", Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "Allow HTTPS"},
		{ID: "fltr_ssh", Direction: "inbound", Order: 30, Protocol: 6, Port: "22", Address: "prfx_lst_office", Description: "SSH from office"},
		{ID: "fltr_dns", Direction: "outbound", Order: 5, Protocol: 17, Port: "53", Address: "198.51.100.53/32", Description: "DNS"},
	}}}, []protocol.PrefixList{
		{ID: "prfx_lst_office", Name: "Office", CIDRs: []string{"203.0.113.0/24", "192.0.2.7/32"}},
		{ID: "prfx_lst_unused", Name: "Unused", CIDRs: []string{"10.9.0.0/16"}},
	})
}

var (
	wanHost  = netip.MustParseAddr("203.0.113.9")
	lanHost  = netip.MustParseAddr("192.168.88.10")
	lanHost6 = netip.MustParseAddr("3fff:f88::10")
)

func inbound(port int) rossim.Packet {
	return rossim.Packet{Chain: "forward", InInterface: "ether1", OutInterface: "bridge", Src: wanHost, Dst: lanHost, Protocol: 6, SrcPort: 40000, DstPort: port, ConnState: "new"}
}

func TestApplySampleConverges(t *testing.T) {
	r := newSim(t, rossim.Options{})
	s := newSimAgent(t, r)
	s.apply(t, sampleDoc(1))
	if rest := s.remaining(t); len(rest) > 0 {
		t.Fatalf("not converged: %v", rest)
	}
	fw := r.Snapshot()
	for _, tc := range []struct {
		p    rossim.Packet
		want string
	}{
		{inbound(443), "accept"},
		{inbound(22), "accept"}, // 203.0.113.9 is in the office list
		{inbound(80), "drop"},
		{rossim.Packet{Chain: "input", InInterface: "ether1", Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), Protocol: 6, DstPort: 22, ConnState: "new"}, "drop"},
		{rossim.Packet{Chain: "input", InInterface: "ether1", Src: wanHost, Dst: netip.MustParseAddr("198.18.0.2"), Protocol: 6, DstPort: 22, ConnState: "new"}, "accept"},
		{rossim.Packet{Chain: "forward", InInterface: "bridge", OutInterface: "ether1", Src: lanHost, Dst: netip.MustParseAddr("198.51.100.53"), Protocol: 17, DstPort: 53, ConnState: "new"}, "accept"},
		{rossim.Packet{Chain: "forward", InInterface: "bridge", OutInterface: "ether1", Src: lanHost, Dst: netip.MustParseAddr("198.51.100.54"), Protocol: 17, DstPort: 53, ConnState: "new"}, "drop"},
	} {
		if v := fw.Evaluate(tc.p); v.Action != tc.want {
			t.Errorf("%+v: %s, want %s\n%v", tc.p, v.Action, tc.want, v.Trace)
		}
	}
	if s.status.State != protocol.StateApplied || s.status.Rules != 3+5+5 || s.status.AddressEntries != 3 {
		t.Errorf("status %+v", s.status)
	}
}

// ids maps each managed key to its row id.
func managedIDs(f rossim.Firewall) map[string]string {
	m := map[string]string{}
	for _, it := range f.Filter {
		if k, _, ok := render.ParseComment(it["comment"]); ok {
			m[k] = it[".id"]
		}
	}
	return m
}

func ruleOf(d *protocol.DesiredState, id string) *protocol.Rule {
	for i := range d.SecurityGroups {
		for j := range d.SecurityGroups[i].Rules {
			if d.SecurityGroups[i].Rules[j].ID == id {
				return &d.SecurityGroups[i].Rules[j]
			}
		}
	}
	panic("no rule " + id)
}

func TestWriteCosts(t *testing.T) {
	r := newSim(t, rossim.Options{})
	s := newSimAgent(t, r)
	base := sampleDoc(1)
	s.apply(t, base)

	tests := []struct {
		name      string
		mutate    func(*protocol.DesiredState)
		maxWrites int
	}{
		{"same policy again", func(*protocol.DesiredState) {}, 0},
		{"one rule changed (new id, as the API gives a changed rule)", func(d *protocol.DesiredState) {
			*ruleOf(d, "fltr_https") = protocol.Rule{ID: "fltr_https2", Direction: "inbound", Order: 10, Protocol: 6, Port: "8443", Address: "0.0.0.0/0", Description: "HTTPS alt"}
		}, 2},
		{"one rule added", func(d *protocol.DesiredState) {
			d.SecurityGroups[0].Rules = append(d.SecurityGroups[0].Rules, protocol.Rule{ID: "fltr_new", Direction: "inbound", Order: 20, Protocol: 17, Port: "500", Address: "192.0.2.0/24"})
		}, 1},
		{"one rule reordered", func(d *protocol.DesiredState) { ruleOf(d, "fltr_ssh").Order = 1 }, 1},
		{"description changed", func(d *protocol.DesiredState) { ruleOf(d, "fltr_ssh").Description = "SSH, office" }, 1},
		{"one prefix added to a list", func(d *protocol.DesiredState) {
			d.PrefixLists[0].CIDRs = append(d.PrefixLists[0].CIDRs, "198.51.100.0/24")
		}, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.apply(t, base) // back to the base policy
			before := managedIDs(r.Snapshot())
			r.ResetStats()
			d := sampleDoc(uint64(100 + i))
			tt.mutate(&d)
			d.Seal()
			s.apply(t, d)
			if got := writes(r.Stats()); got > tt.maxWrites {
				t.Errorf("%d writes %v, want at most %d", got, r.Stats().Writes, tt.maxWrites)
			}
			if s.status.Operations != writes(r.Stats()) {
				t.Errorf("status counts %d operations, router saw %d", s.status.Operations, writes(r.Stats()))
			}
			if rest := s.remaining(t); len(rest) > 0 {
				t.Fatalf("not converged: %v", rest)
			}
			after := managedIDs(r.Snapshot())
			for k, id := range before {
				if a, ok := after[k]; ok && a != id {
					t.Errorf("unchanged row %s was rewritten: id %s → %s", k, id, a)
				}
			}
		})
	}
}

// foreign returns the rows Rampart does not own, of both families,
// without counters.
func foreign(f rossim.Firewall) []rossim.Item {
	var out []rossim.Item
	for _, it := range slices.Concat(f.Filter, f.AddressList, f.Filter6, f.AddressList6) {
		if strings.HasPrefix(it["comment"], render.CommentPrefix) || strings.HasPrefix(it["chain"], "rampart-") || strings.HasPrefix(it["list"], render.ListPrefix) {
			continue
		}
		c := maps.Clone(it)
		delete(c, "bytes")
		delete(c, "packets")
		delete(c, "invalid")
		out = append(out, c)
	}
	return out
}

func mustExec(t testing.TB, r *rossim.Router, words ...string) string {
	t.Helper()
	items, err := r.Exec(words...)
	if err != nil {
		t.Fatalf("%v: %v", words, err)
	}
	if len(items) == 1 {
		return items[0]["ret"]
	}
	return ""
}

func TestForeignRulesUntouched(t *testing.T) {
	r := newSim(t, rossim.Options{})
	mustExec(t, r, "/ip/firewall/filter/add", "=chain=input", "=action=accept", "=protocol=tcp", "=dst-port=8291", "=comment=winbox from anywhere")
	mustExec(t, r, "/ip/firewall/filter/add", "=chain=forward", "=action=drop", "=src-address=10.66.0.0/16", "=comment=rampart without colon is not ours")
	mustExec(t, r, "/ip/firewall/filter/add", "=chain=my-chain", "=action=return")
	mustExec(t, r, "/ip/firewall/address-list/add", "=list=office", "=address=203.0.113.0/24", "=comment=hand made")
	mustExec(t, r, "/ip/firewall/address-list/add", "=list=rampart", "=address=198.51.100.1")
	mustExec(t, r, "/ipv6/firewall/filter/add", "=chain=input", "=action=accept", "=protocol=tcp", "=dst-port=8291", "=comment=winbox over IPv6")
	mustExec(t, r, "/ipv6/firewall/filter/add", "=chain=forward", "=action=drop", "=src-address=3fff:66::/32", "=comment=rampart without colon")
	mustExec(t, r, "/ipv6/firewall/address-list/add", "=list=office", "=address=3fff:0:1::/48", "=comment=hand made")
	want := foreign(r.Snapshot())
	s := newSimAgent(t, r)
	rnd := rand.New(rand.NewPCG(3, 3))
	ipv6 := false // some revision manages the IPv6 table
	for rev := uint64(1); rev <= 6; rev++ {
		s.apply(t, randomPolicy(rnd, rev))
		if diff := cmp.Diff(want, foreign(r.Snapshot())); diff != "" {
			t.Fatalf("revision %d changed foreign rows (-want +got):\n%s", rev, diff)
		}
		for _, it := range r.Snapshot().Filter6 {
			ipv6 = ipv6 || strings.HasPrefix(it["comment"], render.CommentPrefix)
		}
	}
	if !ipv6 {
		t.Error("no revision managed the IPv6 table: the test does not cover it")
	}
	s.apply(t, sampleDoc(7))
	s.apply(t, doc(8, nil, nil))
	if diff := cmp.Diff(want, foreign(r.Snapshot())); diff != "" {
		t.Fatalf("removing the policy changed foreign rows (-want +got):\n%s", diff)
	}
}

func TestEmptySiteRemovesEverything(t *testing.T) {
	r := newSim(t, rossim.Options{})
	initial := r.Snapshot()
	s := newSimAgent(t, r)
	s.apply(t, sampleDoc(1))
	start := len(r.History()) - 1
	s.apply(t, doc(2, nil, nil))
	final := r.Snapshot()
	if diff := cmp.Diff(foreign(initial), foreign(final)); diff != "" {
		t.Errorf("(-initial +final):\n%s", diff)
	}
	if n := len(final.Filter) + len(final.AddressList); n != len(initial.Filter)+len(initial.AddressList) {
		t.Errorf("%d rows left, want the %d of defconf", n, len(initial.Filter)+len(initial.AddressList))
	}
	// Jumps went first: no state had a jump into a chain missing its drop.
	for k, st := range r.History()[start:] {
		checkJumpsComplete(t, k, st)
	}
}

// checkJumpsComplete asserts the invariant behind "jumps last, removed
// first": a jump into an owned chain exists only while that chain ends in its
// final drop.
func checkJumpsComplete(t *testing.T, k int, f rossim.Firewall) {
	t.Helper()
	for i, filter := range [][]rossim.Item{f.Filter, f.Filter6} {
		last := map[string]string{}
		for _, it := range filter {
			last[it["chain"]] = it["comment"]
		}
		for _, it := range filter {
			if tgt := it["jump-target"]; strings.HasPrefix(tgt, "rampart-") {
				key, _, _ := render.ParseComment(last[tgt])
				if key != strings.TrimPrefix(tgt, "rampart-")+"/drop" {
					t.Fatalf("state %d: %s jump %s into %s whose last row is %q", k, render.Families[i], it[".id"], tgt, last[tgt])
				}
			}
		}
	}
}

func TestDriftRepairedInAnyOrder(t *testing.T) {
	type edit struct {
		name string
		do   func(t *testing.T, r *rossim.Router, ids map[string]string)
	}
	edits := []edit{
		{"rule edited", func(t *testing.T, r *rossim.Router, ids map[string]string) {
			mustExec(t, r, "/ip/firewall/filter/set", "=.id="+ids["fltr_https"], "=dst-port=444")
		}},
		{"rule disabled", func(t *testing.T, r *rossim.Router, ids map[string]string) {
			mustExec(t, r, "/ip/firewall/filter/disable", "=.id="+ids["fltr_ssh"])
		}},
		{"drop moved to the top", func(t *testing.T, r *rossim.Router, ids map[string]string) {
			mustExec(t, r, "/ip/firewall/filter/move", "=numbers="+ids["in/drop"], "=destination="+ids["in/est"])
		}},
		{"jump deleted", func(t *testing.T, r *rossim.Router, ids map[string]string) {
			mustExec(t, r, "/ip/firewall/filter/remove", "=.id="+ids["jump/forward-in"])
		}},
		{"unmarked rule added in an owned chain", func(t *testing.T, r *rossim.Router, ids map[string]string) {
			mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=accept", "=protocol=tcp", "=dst-port=3389", "=place-before="+ids["in/est"])
		}},
		{"matcher added to a managed rule", func(t *testing.T, r *rossim.Router, ids map[string]string) {
			mustExec(t, r, "/ip/firewall/filter/set", "=.id="+ids["fltr_dns"], "=src-address=10.0.0.0/8")
		}},
		{"jump moved down", func(t *testing.T, r *rossim.Router, ids map[string]string) {
			mustExec(t, r, "/ip/firewall/filter/move", "=numbers="+ids["jump/input"])
		}},
		{"entry removed", func(t *testing.T, r *rossim.Router, _ map[string]string) {
			for _, it := range r.Snapshot().AddressList {
				if it["list"] == "rampart-prfx_lst_office" {
					mustExec(t, r, "/ip/firewall/address-list/remove", "=.id="+it[".id"])
					return
				}
			}
		}},
		{"entry added by hand to an owned list", func(t *testing.T, r *rossim.Router, _ map[string]string) {
			mustExec(t, r, "/ip/firewall/address-list/add", "=list=rampart-prfx_lst_office", "=address=8.8.8.8")
		}},
	}
	for seed := range 4 {
		rnd := rand.New(rand.NewPCG(uint64(seed), 9))
		order := rnd.Perm(len(edits))
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			r := newSim(t, rossim.Options{})
			s := newSimAgent(t, r)
			s.apply(t, sampleDoc(1))
			clean := r.Snapshot()
			total := 0
			for i, k := range order[:3+seed] {
				e := edits[k]
				ids := managedIDs(r.Snapshot())
				e.do(t, r, ids)
				if len(s.remaining(t)) == 0 {
					t.Fatalf("%s: the planner does not see the drift", e.name)
				}
				// Edits pile up before one resync repairs them all, or one
				// at a time.
				if i%2 == 1 || i == len(order[:3+seed])-1 {
					if err := s.sync(context.Background()); err != nil {
						t.Fatalf("sync after %s: %v", e.name, err)
					}
					if rest := s.remaining(t); len(rest) > 0 {
						t.Fatalf("after %s not repaired: %v", e.name, rest)
					}
					if s.driftRepairs <= total {
						t.Fatalf("after %s: drift repairs %d did not grow", e.name, s.driftRepairs)
					}
					total = s.driftRepairs
				}
			}
			if s.status.DriftRepairs != total || s.status.State != protocol.StateApplied {
				t.Errorf("status %+v, want applied with %d repairs", s.status, total)
			}
			now := r.Snapshot()
			for _, p := range probes() {
				if a, b := clean.Evaluate(p).Action, now.Evaluate(p).Action; a != b {
					t.Fatalf("repaired firewall gives %s to %+v, the clean one %s", b, p, a)
				}
			}
		})
	}
}

func TestRouterDropsMidApply(t *testing.T) {
	for _, n := range []int{1, 2, 4, 9, 17, 30} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := newSim(t, rossim.Options{})
			s := newSimAgent(t, r)
			d := sampleDoc(1)
			s.desired = &d
			r.DropAfter(n)
			var err error
			for try := 0; try < 10; try++ {
				if err = s.sync(context.Background()); err == nil {
					break
				}
				if s.status.State != protocol.StateFailed || s.status.Error == "" {
					t.Fatalf("failed sync reported %+v", s.status)
				}
			}
			if err != nil {
				t.Fatalf("never converged: %v", err)
			}
			if rest := s.remaining(t); len(rest) > 0 {
				t.Fatalf("not converged: %v", rest)
			}
			hist := r.History()
			checkNoGap(t, "interrupted first apply", hist, hist[0], hist[len(hist)-1], s.lastGuard)
			// The drop happened if the router got more than n commands
			// (the dropped one is counted); otherwise the apply needed
			// fewer, and one session did it all.
			st := r.Stats()
			switch dropped := st.Commands > n; {
			case dropped && st.Logins < 2:
				t.Errorf("the agent never reconnected (%d logins)", st.Logins)
			case !dropped && st.Logins != 1:
				t.Errorf("no drop in %d commands, but %d logins, want 1", st.Commands, st.Logins)
			}
		})
	}
}

func TestTrapFailsThenRetrySucceeds(t *testing.T) {
	r := newSim(t, rossim.Options{})
	s := newSimAgent(t, r)
	d := sampleDoc(1)
	s.desired = &d
	r.InjectTrap("/ip/firewall/filter/add", "failure: out of memory", 1)
	if err := s.sync(context.Background()); err == nil {
		t.Fatal("sync succeeded through an injected trap")
	}
	if s.status.State != protocol.StateFailed || !strings.Contains(s.status.Error, "out of memory") {
		t.Fatalf("status %+v", s.status)
	}
	if err := s.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.status.State != protocol.StateApplied {
		t.Fatalf("status %+v", s.status)
	}
}

func TestMissingWANListIsReportedBeforeAnyWrite(t *testing.T) {
	r := newSim(t, rossim.Options{})
	a, err := New(func() Config { c := testConfig(t, r.Addr()); c.WANList = "INTERNET"; return c }(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.router.Close() })
	d := sampleDoc(1)
	a.desired = &d
	if err := a.sync(context.Background()); err == nil {
		t.Fatal("sync succeeded without the WAN list")
	}
	for _, want := range []string{`interface list "INTERNET" does not exist`, protocol.EnvWANList} {
		if !strings.Contains(a.status.Error, want) {
			t.Errorf("error %q lacks %q", a.status.Error, want)
		}
	}
	if n := writes(r.Stats()); n != 0 {
		t.Errorf("%d writes before failing", n)
	}
}

// TestStatesInRandomOrder replays a table of site states on one router in
// random orders: whatever state the router is coming from, it ends equal
// (managed rows, verdicts) to the same state applied to a fresh router.
func TestStatesInRandomOrder(t *testing.T) {
	noOut := sampleDoc(0)
	noOut.SecurityGroups[0].Rules = slices.DeleteFunc(noOut.SecurityGroups[0].Rules, func(r protocol.Rule) bool { return r.Direction == protocol.Outbound })
	listChanged := sampleDoc(0)
	listChanged.PrefixLists[0].CIDRs = []string{"198.51.100.0/24"}
	onlyLists := doc(0, nil, sampleDoc(0).PrefixLists)
	groupNoRules := doc(0, []protocol.SecurityGroup{{ID: "sec_grp_empty", Name: "Empty"}}, nil)
	states := map[string]protocol.DesiredState{
		"sample": sampleDoc(0), "no outbound": noOut, "list changed": listChanged,
		"only prefix lists": onlyLists, "group without rules": groupNoRules, "empty": doc(0, nil, nil),
		"random": randomPolicy(rand.New(rand.NewPCG(5, 5)), 0),
	}
	names := slices.Sorted(maps.Keys(states))
	fresh := map[string]rossim.Firewall{}
	for _, n := range names {
		r := newSim(t, rossim.Options{HistoryLimit: -1})
		s := newSimAgent(t, r)
		s.apply(t, states[n])
		fresh[n] = r.Snapshot()
	}
	for seed := range 3 {
		order := slices.Clone(names)
		rand.New(rand.NewPCG(uint64(seed), 11)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		t.Run(strings.Join(order, ","), func(t *testing.T) {
			r := newSim(t, rossim.Options{HistoryLimit: -1})
			s := newSimAgent(t, r)
			for i, n := range order {
				d := states[n]
				d.Revision = uint64(i + 1)
				d.Seal()
				s.apply(t, d)
				got := r.Snapshot()
				if a, b := managedCount(got), managedCount(fresh[n]); a != b {
					t.Fatalf("%s after %v: %d managed rows, fresh %d", n, order[:i], a, b)
				}
				for _, p := range probes() {
					if a, b := got.Evaluate(p).Action, fresh[n].Evaluate(p).Action; a != b {
						t.Fatalf("%s after %v: %+v gets %s, fresh %s", n, order[:i], p, a, b)
					}
				}
			}
		})
	}
}

// TestOnStatusSeesEveryReport: every status goes to OnStatus, and a new
// revision is announced as applying only when its plan is large enough
// for anyone to see it (announceWrites); OnApplyStart sees every start.
func TestOnStatusSeesEveryReport(t *testing.T) {
	big := sampleDoc(1)
	for i := range announceWrites {
		big.PrefixLists[0].CIDRs = append(big.PrefixLists[0].CIDRs, fmt.Sprintf("10.1.%d.0/24", i))
	}
	big.Seal()
	for _, tc := range []struct {
		name string
		doc  protocol.DesiredState
		want []string
	}{
		// The retry after the failure is the same revision: no new start.
		{"small plan", sampleDoc(1), []string{"start@1", "failed@1", "applied@1"}},
		{"large plan", big, []string{"start@1", "applying@1", "failed@1", "applied@1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSim(t, rossim.Options{})
			var got []string
			a, err := New(testConfig(t, r.Addr()), Options{
				OnStatus: func(st protocol.SiteStatus) {
					got = append(got, fmt.Sprintf("%s@%d", st.State, st.Revision))
				},
				OnApplyStart: func(rev uint64, writes int) {
					if writes == 0 {
						t.Errorf("apply of revision %d started with no write", rev)
					}
					got = append(got, fmt.Sprintf("start@%d", rev))
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.router.Close() })
			r.InjectTrap("/ip/firewall/filter/add", "failure: simulated", 1)
			d := tc.doc
			a.desired, a.pendingApplied = &d, true
			a.sync(context.Background()) // fails on the trap
			a.sync(context.Background())
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("reports (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNewRevisionPlansFromTheLastObservation: a new revision is planned from
// what the last apply read back (no read before the writes, one read-back of
// the filter table after), and when the router was edited by hand in
// between, the apply that trusted the observation fails on the router and is
// planned again at once from a fresh read: the revision is applied, no
// failure is reported, and the hand edits the new plan touched are repaired.
func TestNewRevisionPlansFromTheLastObservation(t *testing.T) {
	r := newSim(t, rossim.Options{})
	var got []string
	var logs strings.Builder
	a, err := New(testConfig(t, r.Addr()), Options{OnStatus: func(st protocol.SiteStatus) {
		got = append(got, fmt.Sprintf("%s@%d", st.State, st.Revision))
	}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.router.Close() })
	s := &simAgent{a, r}
	s.apply(t, sampleDoc(1))

	// Revision 2: the HTTPS rule gets a new id (one add, one remove).
	d2 := sampleDoc(2)
	ruleOf(&d2, "fltr_https").ID = "fltr_https2"
	d2.Seal()
	r.ResetStats()
	s.apply(t, d2)
	st := r.Stats()
	if w := writes(st); w != 2 || st.Commands != 3 {
		t.Errorf("revision 2: %d writes in %d commands, want 2 writes and one read-back (3 commands)", w, st.Commands)
	}

	// By hand: the rule revision 3 removes is deleted, another one disabled.
	ids := managedIDs(r.Snapshot())
	mustExec(t, r, "/ip/firewall/filter/remove", "=.id="+ids["fltr_https2"])
	mustExec(t, r, "/ip/firewall/filter/disable", "=.id="+ids["fltr_ssh"])
	d3 := sampleDoc(3)
	ruleOf(&d3, "fltr_https").ID = "fltr_https3"
	d3.Seal()
	s.apply(t, d3)
	if rest := s.remaining(t); len(rest) > 0 {
		t.Fatalf("not converged after hand edits: %v", rest)
	}
	if diff := cmp.Diff([]string{"applied@1", "applied@2", "applied@3"}, got); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if !strings.Contains(logs.String(), "reading it again") {
		t.Errorf("the apply planned from the stale observation did not fail and retry; log:\n%s", logs.String())
	}

	// A revision that changes nothing on the router (a prefix list's name
	// is not written) after a hand edit: with nothing to write there is no
	// read-back, so the agent reads the router before saying applied, and
	// repairs the edit.
	ids = managedIDs(r.Snapshot())
	mustExec(t, r, "/ip/firewall/filter/disable", "=.id="+ids["fltr_dns"])
	d4 := d3
	d4.Revision = 4
	d4.PrefixLists = slices.Clone(d4.PrefixLists)
	d4.PrefixLists[0].Name = "Head office"
	d4.Seal()
	s.apply(t, d4)
	if rest := s.remaining(t); len(rest) > 0 {
		t.Fatalf("revision 4 reported applied without reading the router: %v", rest)
	}
	if s.status.State != protocol.StateApplied || s.status.Revision != 4 {
		t.Errorf("status %+v, want applied 4", s.status)
	}
}
