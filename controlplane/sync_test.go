package controlplane_test

import (
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
