package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// testSiteHistory walks a site through a write, its agent's presence and
// reports (through Ingest, as production does) and a second write, and
// reads its history back newest first, a page at a time; another
// organisation has no such site, nor this one a site nothing named.
func testSiteHistory(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk := compiled(t, open)
	t0 := clk.Now()
	g, err := createGroup(ctx, s, org, webGroup("443", "", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	ep := s.Epoch()
	clk.add(time.Second)
	if err := setPresence(ctx, s, org, "site_a", protocol.Presence{State: protocol.PresenceOnline, At: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	for _, st := range []string{protocol.StateApplying, protocol.StateApplied} {
		if _, err := reportStatus(ctx, s, org, "site_a", report(ep, 1, st, "")); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(time.Second)
	if _, err := replaceGroup(ctx, s, org, g.ID, webGroup("8443", "", "site_a")); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	if _, err := reportStatus(ctx, s, org, "site_a", report(ep, 2, protocol.StateFailed, "the router said no")); err != nil {
		t.Fatal(err)
	}

	want := []cp.SiteTransition{
		{Seq: 5, At: t0.Add(4 * time.Second), From: cp.SiteSyncing, To: cp.SiteFailed, DesiredRevision: 2, AppliedRevision: 1, Error: "the router said no", Online: true},
		{Seq: 4, At: t0.Add(3 * time.Second), From: cp.SiteInSync, To: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 1, Online: true},
		{Seq: 3, At: t0.Add(2 * time.Second), From: cp.SiteSyncing, To: cp.SiteInSync, DesiredRevision: 1, AppliedRevision: 1, Online: true},
		{Seq: 2, At: t0.Add(time.Second), From: cp.SiteSyncing, To: cp.SiteSyncing, DesiredRevision: 1, Online: true},
		{Seq: 1, At: t0, From: cp.SiteUnknown, To: cp.SiteSyncing, DesiredRevision: 1},
	}
	all, more, err := s.SiteHistory(ctx, org, "site_a", cp.SiteHistoryQuery{Limit: 100})
	if err != nil || more {
		t.Fatalf("history: more %v, %v", more, err)
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	// Pages of two, each continuing before the last Seq of the one before.
	var paged []cp.SiteTransition
	q := cp.SiteHistoryQuery{Limit: 2}
	for pages := 1; ; pages++ {
		page, more, err := s.SiteHistory(ctx, org, "site_a", q)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if !more {
			if pages != 3 {
				t.Errorf("%d pages of 2 for 5 transitions, want 3", pages)
			}
			break
		}
		q.Before = page[len(page)-1].Seq
	}
	if diff := cmp.Diff(want, paged); diff != "" {
		t.Errorf("paged history (-want +got):\n%s", diff)
	}

	for _, c := range []struct{ org, site string }{{"org_b", "site_a"}, {org, "site_zz"}} {
		if _, _, err := s.SiteHistory(ctx, c.org, c.site, cp.SiteHistoryQuery{Limit: 10}); cp.ErrorCode(err) != cp.CodeNotFound {
			t.Errorf("history of %s in %s: %v, want not found", c.site, c.org, err)
		}
	}
}

// testSiteHistoryBounded: a site keeps its newest SiteHistoryLimit
// transitions, numbered on, also when one Ingest takes several of them.
func testSiteHistoryBounded(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk := compiled(t, open)
	if _, err := createGroup(ctx, s, org, webGroup("443", "", "site_a")); err != nil { // transition 1
		t.Fatal(err)
	}
	const flaps = 80 // two transitions each, in one Ingest
	for range flaps {
		clk.add(time.Second)
		on, off := protocol.Presence{State: protocol.PresenceOnline}, protocol.Presence{State: protocol.PresenceOffline}
		if _, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: "site_a", Presence: &on}, {OrgID: org, SiteID: "site_a", Presence: &off}}); err != nil {
			t.Fatal(err)
		}
	}
	got, more, err := s.SiteHistory(ctx, org, "site_a", cp.SiteHistoryQuery{Limit: 1000})
	if err != nil || more {
		t.Fatalf("history: more %v, %v", more, err)
	}
	var seqs []uint64
	for _, tr := range got {
		seqs = append(seqs, tr.Seq)
	}
	var want []uint64
	for seq := uint64(1 + 2*flaps); seq > 1+2*flaps-cp.SiteHistoryLimit; seq-- {
		want = append(want, seq)
	}
	if diff := cmp.Diff(want, seqs); diff != "" {
		t.Errorf("kept transitions (-want +got):\n%s", diff)
	}
	if len(got) < 2 || got[0].To != cp.SiteOffline || got[0].Online || got[1].To != cp.SiteSyncing || !got[1].Online {
		t.Errorf("newest transitions %+v, want to offline after back online (syncing)", got[:min(2, len(got))])
	}
	// Before a Seq older than any kept: nothing, not the kept ones.
	if old, _, err := s.SiteHistory(ctx, org, "site_a", cp.SiteHistoryQuery{Before: 5, Limit: 10}); err != nil || len(old) != 0 {
		t.Errorf("before a pruned seq: %v, %v; want none", old, err)
	}
}

// testSiteHistoryDecommission: a decommission is a transition of the site;
// forgetting the site drops its history with its record, so a site
// enrolled again starts a new one (another site's stays).
func testSiteHistoryDecommission(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := compiled(t, open)
	if _, err := createGroup(ctx, s, org, webGroup("443", "", "site_a", "site_b")); err != nil {
		t.Fatal(err)
	}
	for _, site := range []string{"site_a", "site_b"} {
		if err := confirm(ctx, s, org, site, 1, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	dec, err := s.DecommissionSite(ctx, org, "site_a")
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := s.SiteHistory(ctx, org, "site_a", cp.SiteHistoryQuery{Limit: 10})
	if err != nil || len(got) == 0 || got[0].From != cp.SiteInSync || got[0].To != cp.SiteDecommissioning || got[0].DesiredRevision != dec.DesiredRevision {
		t.Fatalf("history after the decommission: %+v, %v; want in_sync → decommissioning at revision %d first", got, err, dec.DesiredRevision)
	}
	if err := confirm(ctx, s, org, "site_a", dec.DesiredRevision, true, ""); err != nil {
		t.Fatal(err)
	}
	if refs, err := s.ForgetDecommissioned(ctx); err != nil || len(refs) != 1 {
		t.Fatalf("forget: %v, %v", refs, err)
	}
	if _, _, err := s.SiteHistory(ctx, org, "site_a", cp.SiteHistoryQuery{Limit: 10}); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Errorf("history of a forgotten site: %v, want not found", err)
	}
	if err := s.ReserveSite(ctx, org, "site_a"); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.SiteHistory(ctx, org, "site_a", cp.SiteHistoryQuery{Limit: 10}); err != nil || len(got) != 0 {
		t.Errorf("history of the site enrolled again: %+v, %v; want a new, empty one", got, err)
	}
	if got, _, err := s.SiteHistory(ctx, org, "site_b", cp.SiteHistoryQuery{Limit: 10}); err != nil || len(got) != 2 {
		t.Errorf("history of the other site: %+v, %v; want its 2 transitions", got, err)
	}
}
