package controlplane_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// TestDecommissionStates: a decommissioning site stays so whatever its
// agent reports, and is done once it stands by the empty document's
// revision or the deadline passed.
func TestDecommissionStates(t *testing.T) {
	deadline := t0.Add(time.Minute)
	rec := cp.Site{ID: "site_a", State: cp.SiteInSync, Online: true, DesiredRevision: 4, AppliedRevision: 4}
	dec, started := cp.StartDecommission(rec, 5, deadline)
	want := cp.Site{ID: "site_a", State: cp.SiteDecommissioning, Online: true, DesiredRevision: 5, AppliedRevision: 4, DecommissionRevision: 5, SyncDeadline: deadline}
	if diff := cmp.Diff(want, dec); diff != "" || !started {
		t.Fatalf("StartDecommission (-want +got):\n%s", diff)
	}
	if again, started := cp.StartDecommission(dec, 9, deadline.Add(time.Hour)); started || again != dec {
		t.Errorf("a second start changed the record: %+v", again)
	}

	applying := cp.FoldStatus(dec, cp.LastReport{}, status(5, protocol.StateApplying, ""), rules, t0.Add(50*time.Second))
	applied := cp.FoldStatus(dec, cp.LastReport{}, status(5, protocol.StateApplied, ""), rules, t0)
	failed := cp.FoldStatus(dec, cp.LastReport{}, status(5, protocol.StateFailed, "no route"), rules, t0)
	offline := cp.FoldPresence(dec, cp.LastReport{}, protocol.Presence{State: protocol.PresenceOffline}, epoch, t0)
	cases := []struct {
		name     string
		site     cp.Site
		last     cp.LastReport
		now      time.Time
		wantDone bool
	}{
		{"just started", dec, cp.LastReport{}, t0, false},
		{"applying: not done, deadline not moved", applying.Site, applying.Last, t0.Add(59 * time.Second), false},
		{"applying, at the deadline", applying.Site, applying.Last, deadline, true},
		{"applied the empty document", applied.Site, applied.Last, t0, true},
		{"failed to apply it", failed.Site, failed.Last, t0, false},
		{"failed, past the deadline", failed.Site, failed.Last, deadline.Add(time.Second), true},
		{"offline", offline, cp.LastReport{}, t0, false},
		{"not decommissioning", rec, cp.LastReport{}, deadline.Add(time.Hour), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.site.ID == dec.ID && c.name != "not decommissioning" && c.site.State != cp.SiteDecommissioning {
				t.Errorf("state %q, want decommissioning", c.site.State)
			}
			if c.site.State == cp.SiteDecommissioning && !c.site.SyncDeadline.Equal(deadline) {
				t.Errorf("deadline moved to %v", c.site.SyncDeadline)
			}
			if got := cp.DecommissionDone(c.site, c.last, c.now); got != c.wantDone {
				t.Errorf("DecommissionDone = %v, want %v", got, c.wantDone)
			}
		})
	}
}

// TestWithoutSite: the write that takes a site out keeps everything else.
func TestWithoutSite(t *testing.T) {
	g := cp.SecurityGroup{ID: "sec_grp_x", Name: "Web", Description: "d", Sites: []string{"site_a", "site_b", "site_c"},
		Rules: []cp.FilterRule{{ID: "fltr_1", Direction: "inbound", Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "https"}}}
	d := "d"
	want := cp.SecurityGroupWrite{Name: "Web", Description: &d, Sites: []string{"site_a", "site_c"},
		Rules: []cp.FilterRuleWrite{{Direction: "inbound", Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "https"}}}
	if diff := cmp.Diff(want, g.WithoutSite("site_b")); diff != "" {
		t.Errorf("group (-want +got):\n%s", diff)
	}
	l := cp.PrefixList{ID: "prfx_lst_x", Name: "Office", Sites: []string{"site_b"}, Prefixes: []cp.Prefix{{ID: "prfx_1", CIDR: "192.0.2.0/24", Description: "hq"}}}
	e := ""
	wantL := cp.PrefixListWrite{Name: "Office", Description: &e, Sites: []string{}, Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24", Description: "hq"}}}
	if diff := cmp.Diff(wantL, l.WithoutSite("site_b")); diff != "" {
		t.Errorf("prefix list (-want +got):\n%s", diff)
	}
}

// TestSyncStateForget: a forgotten site no longer holds a resource back.
// TestDecommissionChange: the decommission announces the site's own
// document only (the other sites' went out with the writes), and without a
// Revisioner no document and UnknownRevision.
func TestDecommissionChange(t *testing.T) {
	docs := map[string]protocol.DesiredState{"site_a": {Revision: 7}, "site_b": {Revision: 3}}
	tests := []struct {
		name string
		docs map[string]protocol.DesiredState
		want cp.Change
	}{
		{"documents", docs, cp.Change{OrgID: "org_a", Sites: []string{"site_a"}, Kind: cp.KindSite, ID: "site_a", Deleted: true,
			Revisions: map[string]uint64{"site_a": 7}, Documents: map[string]protocol.DesiredState{"site_a": {Revision: 7}}}},
		{"no Revisioner", nil, cp.Change{OrgID: "org_a", Sites: []string{"site_a"}, Kind: cp.KindSite, ID: "site_a", Deleted: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cp.DecommissionChange("org_a", "site_a", tt.docs)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("change (-want +got):\n%s", d)
			}
			if rev := got.Revisions["site_a"]; tt.docs == nil && rev != cp.UnknownRevision {
				t.Errorf("revision without a Revisioner: %d, want UnknownRevision", rev)
			}
		})
	}
}

func TestSyncStateForget(t *testing.T) {
	st := cp.NewSyncState(map[string]uint64{"site_a": 3, "site_b": 2}, t0, time.Minute)
	st.Expire(t0.Add(time.Minute))
	if !st.Forget("site_a") || st.Status != cp.StatusFailed {
		t.Fatalf("after forgetting one of two: %+v", st)
	}
	if !st.Forget("site_b") || st.Status != cp.StatusActive || st.Error != "" || len(st.Awaiting) != 0 {
		t.Fatalf("after forgetting both: %+v", st)
	}
	if st.Forget("site_c") {
		t.Error("forgetting a site it never waited for changed it")
	}
}
