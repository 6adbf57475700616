package bolt_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// TestSiteHistory walks a site through a write, its agent's presence and
// reports (through Ingest, as production does) and a second write, and
// reads its history back newest first, a page at a time.
func TestSiteHistory(t *testing.T) {
	ctx := context.Background()
	s, clk := compiled(t)
	t0 := clk.Now()
	g, err := createGroup(ctx, s, org, webGroup("443", "", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	ep := s.Epoch()
	clk.Advance(time.Second)
	if err := setPresence(ctx, s, org, "site_a", protocol.Presence{State: protocol.PresenceOnline, At: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	for _, st := range []string{protocol.StateApplying, protocol.StateApplied} {
		if _, err := reportStatus(ctx, s, org, "site_a", report(s, ep, 1, st, "")); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Second)
	if _, err := replaceGroup(ctx, s, org, g.ID, webGroup("8443", "", "site_a")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := reportStatus(ctx, s, org, "site_a", report(s, ep, 2, protocol.StateFailed, "the router said no")); err != nil {
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

	// Another organisation has no such site, nor does this one a site no
	// write or report named.
	for _, c := range []struct{ org, site string }{{"org_b", "site_a"}, {org, "site_zz"}} {
		if _, _, err := s.SiteHistory(ctx, c.org, c.site, cp.SiteHistoryQuery{Limit: 10}); cp.ErrorCode(err) != cp.CodeNotFound {
			t.Errorf("history of %s in %s: %v, want not found", c.site, c.org, err)
		}
	}
}

// TestSiteHistoryBounded: a site keeps its newest SiteHistoryLimit
// transitions, numbered on.
func TestSiteHistoryBounded(t *testing.T) {
	ctx := context.Background()
	s, clk := compiled(t)
	if _, err := createGroup(ctx, s, org, webGroup("443", "", "site_a")); err != nil { // transition 1
		t.Fatal(err)
	}
	const flaps = 80 // two transitions each
	for range flaps {
		for _, p := range []string{protocol.PresenceOnline, protocol.PresenceOffline} {
			clk.Advance(time.Second)
			if err := setPresence(ctx, s, org, "site_a", protocol.Presence{State: p}); err != nil {
				t.Fatal(err)
			}
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
	if last := got[0]; last.To != cp.SiteOffline || last.Online {
		t.Errorf("newest transition %+v, want to offline", last)
	}
	// Before a Seq older than any kept: nothing, not the kept ones.
	if old, _, err := s.SiteHistory(ctx, org, "site_a", cp.SiteHistoryQuery{Before: 5, Limit: 10}); err != nil || len(old) != 0 {
		t.Errorf("before a pruned seq: %v, %v; want none", old, err)
	}
}
