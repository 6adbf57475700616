package controlplane_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

type report struct {
	site     string
	revision uint64
	applied  bool
}

// TestSyncState replays reports against a sync and checks the status after
// each: the rules of DESIGN.md section 5.
func TestSyncState(t *testing.T) {
	cases := []struct {
		name    string
		revs    map[string]uint64
		reports []report
		expire  time.Duration // advance and Expire after the reports, if set
		want    cp.Status
		waiting []string // sites still awaited
	}{
		{name: "no sites is active at once", revs: nil, want: cp.StatusActive},
		{name: "unconfirmed is syncing", revs: map[string]uint64{"site_a": 3}, want: cp.StatusSyncing, waiting: []string{"site_a"}},
		{name: "all confirm", revs: map[string]uint64{"site_a": 3, "site_b": 7},
			reports: []report{{"site_a", 3, true}, {"site_b", 7, true}}, want: cp.StatusActive},
		{name: "one of two confirms", revs: map[string]uint64{"site_a": 3, "site_b": 7},
			reports: []report{{"site_b", 7, true}}, want: cp.StatusSyncing, waiting: []string{"site_a"}},
		{name: "a higher revision confirms too", revs: map[string]uint64{"site_a": 3},
			reports: []report{{"site_a", 9, true}}, want: cp.StatusActive},
		{name: "an older revision does not confirm", revs: map[string]uint64{"site_a": 3},
			reports: []report{{"site_a", 2, true}}, want: cp.StatusSyncing, waiting: []string{"site_a"}},
		{name: "an older failure is ignored", revs: map[string]uint64{"site_a": 3},
			reports: []report{{"site_a", 2, false}}, want: cp.StatusSyncing, waiting: []string{"site_a"}},
		{name: "failure fails at once", revs: map[string]uint64{"site_a": 3, "site_b": 3},
			reports: []report{{"site_b", 3, true}, {"site_a", 3, false}}, want: cp.StatusFailed, waiting: []string{"site_a"}},
		{name: "failed is not terminal: a later apply of the site recovers", revs: map[string]uint64{"site_a": 3},
			reports: []report{{"site_a", 3, false}, {"site_a", 4, true}}, want: cp.StatusActive},
		{name: "reports from other sites are ignored", revs: map[string]uint64{"site_a": 3},
			reports: []report{{"site_z", 9, true}}, want: cp.StatusSyncing, waiting: []string{"site_a"}},
		{name: "unknown revision: any applied report confirms", revs: map[string]uint64{"site_a": cp.UnknownRevision},
			reports: []report{{"site_a", 0, true}}, want: cp.StatusActive},
		{name: "deadline fails", revs: map[string]uint64{"site_a": 3, "site_b": 3},
			reports: []report{{"site_a", 3, true}}, expire: 2 * time.Minute, want: cp.StatusFailed, waiting: []string{"site_b"}},
		{name: "before the deadline nothing changes", revs: map[string]uint64{"site_a": 3},
			expire: time.Minute, want: cp.StatusSyncing, waiting: []string{"site_a"}},
		{name: "deadline after confirmation changes nothing", revs: map[string]uint64{"site_a": 3},
			reports: []report{{"site_a", 3, true}}, expire: time.Hour, want: cp.StatusActive},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := cp.NewSyncState(c.revs, t0, 2*time.Minute)
			for _, r := range c.reports {
				s.Confirm(r.site, r.revision, r.applied, "boom")
			}
			if c.expire > 0 {
				s.Expire(t0.Add(c.expire))
			}
			var waiting []string
			for site := range s.Awaiting {
				waiting = append(waiting, site)
			}
			got := struct {
				Status  cp.Status
				Waiting []string
			}{s.Status, waiting}
			want := struct {
				Status  cp.Status
				Waiting []string
			}{c.want, c.waiting}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if s.Status == cp.StatusFailed && s.Error == "" {
				t.Error("failed without an error")
			}
		})
	}
}

func TestSyncStateLocked(t *testing.T) {
	s := cp.NewSyncState(map[string]uint64{"site_a": 1}, t0, 2*time.Minute)
	if locked, retry := s.Locked(t0.Add(30 * time.Second)); !locked || retry != 90*time.Second {
		t.Errorf("Locked = %v, %v; want true, 90s", locked, retry)
	}
	if locked, _ := s.Locked(t0.Add(2 * time.Minute)); locked {
		t.Error("locked at the deadline")
	}
	if got := s.At(t0.Add(3 * time.Minute)).Status; got != cp.StatusFailed {
		t.Errorf("At after the deadline = %q, want failed", got)
	}
	if s.Status != cp.StatusSyncing {
		t.Error("At modified its receiver")
	}
	s.Confirm("site_a", 1, false, "router refused")
	if locked, _ := s.Locked(t0); locked {
		t.Error("failed locks")
	}
}

func TestKeepRuleIDs(t *testing.T) {
	prev := []cp.FilterRule{
		{ID: "fltr_1", Direction: "inbound", Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0"},
		{ID: "fltr_2", Direction: "inbound", Order: 20, Protocol: 6, Port: "443", Address: "0.0.0.0/0"},
		{ID: "fltr_3", Direction: "inbound", Order: 30, Protocol: 6, Port: "22", Address: "10.0.0.0/8"},
	}
	next := []cp.FilterRule{
		{ID: "new_a", Direction: "inbound", Order: 1, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "moved, renamed"},
		{ID: "new_b", Direction: "outbound", Order: 2, Protocol: 6, Port: "22", Address: "10.0.0.0/8"},
		{ID: "new_c", Direction: "inbound", Order: 3, Protocol: 6, Port: "443", Address: "0.0.0.0/0"},
		{ID: "new_d", Direction: "inbound", Order: 4, Protocol: 6, Port: "443", Address: "0.0.0.0/0"},
	}
	cp.KeepRuleIDs(prev, next)
	var got []string
	for _, r := range next {
		got = append(got, r.ID)
	}
	if d := cmp.Diff([]string{"fltr_1", "new_b", "fltr_2", "new_d"}, got); d != "" {
		t.Errorf("ids (-want +got):\n%s", d)
	}
}

// TestKeepRuleIDsProperty holds KeepRuleIDs, on random rule sets with many
// repeated matches, to its definition: each rule of next takes the id of
// the first unused rule of prev, in prev's order, that matches the same
// traffic (written here the obvious quadratic way).
func TestKeepRuleIDsProperty(t *testing.T) {
	definition := func(prev, next []cp.FilterRule) {
		used := make([]bool, len(prev))
		for i := range next {
			for j := range prev {
				if !used[j] && prev[j].SameMatch(next[i]) {
					next[i].ID, used[j] = prev[j].ID, true
					break
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	rules := func(n int, prefix string) []cp.FilterRule {
		out := make([]cp.FilterRule, n)
		for i := range out {
			out[i] = cp.FilterRule{ID: fmt.Sprintf("%s%d", prefix, i), Direction: []string{"inbound", "outbound"}[rng.IntN(2)],
				Protocol: []int{0, 6, 17}[rng.IntN(3)], Port: []string{"", "22", "443"}[rng.IntN(3)],
				Address: []string{"10.0.0.0/8", "0.0.0.0/0"}[rng.IntN(2)], Order: i + 1}
		}
		return out
	}
	for range 500 {
		prev, next := rules(rng.IntN(30), "old"), rules(rng.IntN(30), "")
		if rng.IntN(2) == 0 { // a common prefix, then anything
			n := rng.IntN(len(prev) + 1)
			next = append(append([]cp.FilterRule(nil), prev[:n]...), next...)
			for i := range n {
				next[i].ID = ""
			}
		}
		want := append([]cp.FilterRule(nil), next...)
		definition(prev, want)
		got := append([]cp.FilterRule(nil), next...)
		cp.KeepRuleIDs(prev, got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("prev %v\n(-definition +KeepRuleIDs):\n%s", prev, diff)
		}
	}
}

// TestNewSecurityGroupKeepsAndDraws: rules sorted by order, matching rules
// keep their ids, the others get fresh, distinct, well-formed ones.
func TestNewSecurityGroupKeepsAndDraws(t *testing.T) {
	desc := "d"
	w := &cp.SecurityGroupWrite{Name: "G", Description: &desc, Sites: []string{"site_b", "site_a"}}
	for i, o := range []int{5, 2, 9, 2, 1} {
		w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: o, Protocol: 6, Port: fmt.Sprint(i), Address: "10.0.0.0/8", Description: fmt.Sprint("r", i)})
	}
	prev := []cp.FilterRule{{ID: "fltr_kept", Direction: "inbound", Protocol: 6, Port: "2", Address: "10.0.0.0/8"}}
	g := w.NewSecurityGroup("org_a", "sec_grp_x", prev)
	var orders, ports []string
	seen := map[string]bool{}
	for _, r := range g.Rules {
		orders, ports = append(orders, fmt.Sprint(r.Order)), append(ports, r.Port)
		if r.Port == "2" {
			if r.ID != "fltr_kept" {
				t.Errorf("the matching rule got %q, want the kept id", r.ID)
			}
			continue
		}
		if !cp.ValidID(cp.FilterRuleIDPrefix, r.ID) || seen[r.ID] {
			t.Errorf("rule %+v: id not fresh and well-formed", r)
		}
		seen[r.ID] = true
	}
	if d := cmp.Diff([]string{"1", "2", "2", "5", "9"}, orders); d != "" {
		t.Errorf("orders (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"4", "1", "3", "0", "2"}, ports); d != "" {
		t.Errorf("stable order (-want +got):\n%s", d)
	}
	if g.Description != "d" || g.OrgID != "org_a" || g.ID != "sec_grp_x" {
		t.Errorf("group %+v", g)
	}
	g.Sites[0] = "changed"
	if w.Sites[0] == "changed" {
		t.Error("NewSecurityGroup shares the write's sites")
	}
}

// TestWriteStatusAgreesWithNewSyncState checks the status a store gives a
// write as it commits against the sync state the same sites start.
func TestWriteStatusAgreesWithNewSyncState(t *testing.T) {
	for _, sites := range [][]string{nil, {}, {"site_a"}, {"site_a", "site_b"}} {
		revs := map[string]uint64{}
		for _, s := range sites {
			revs[s] = 1
		}
		want := cp.NewSyncState(revs, t0, time.Minute).Status
		if diff := cmp.Diff(want, cp.WriteStatus(sites)); diff != "" {
			t.Errorf("WriteStatus(%q) (-NewSyncState +WriteStatus):\n%s", sites, diff)
		}
	}
}

// TestConfirmStandingRevision checks which standing revisions confirm a
// site at once in a write's own transaction.
func TestConfirmStandingRevision(t *testing.T) {
	tests := []struct {
		name     string
		awaiting map[string]uint64
		rev      uint64
		ok       bool
		want     bool // confirmed
	}{
		{"standing at awaited", map[string]uint64{"s": 5}, 5, true, true},
		{"standing past awaited", map[string]uint64{"s": 5}, 7, true, true},
		{"standing behind awaited", map[string]uint64{"s": 5}, 4, true, false},
		{"no standing revision", map[string]uint64{"s": 5}, 5, false, false},
		{"no Revisioner: only a report confirms", map[string]uint64{"s": cp.UnknownRevision}, 5, true, false},
		{"site not awaited", map[string]uint64{"other": 5}, 5, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := cp.NewSyncState(tt.awaiting, t0, time.Minute)
			changed := st.ConfirmStandingRevision("s", tt.rev, tt.ok)
			_, still := st.Awaiting["s"]
			if diff := cmp.Diff(tt.want, changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if tt.want && still {
				t.Errorf("site s still awaited after a confirmation: %v", st.Awaiting)
			}
		})
	}
}
