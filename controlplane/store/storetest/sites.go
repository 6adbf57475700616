package storetest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/protocol"
)

// compiled opens a store with the compiler's Revisioner, as the serve path
// does.
func compiled(t *testing.T, open Opener) (Store, *clock) {
	t.Helper()
	clk := newClock()
	return open(t, Options{Now: clk.Now, SyncTimeout: time.Minute, Revisioner: compile.Revisioner{}}), clk
}

// webOnSiteA opens a compiled store holding one group on site_a, at
// site_a's revision 1.
func webOnSiteA(t *testing.T, open Opener) (Store, *clock, cp.SecurityGroup) {
	t.Helper()
	s, clk := compiled(t, open)
	g, err := createGroup(context.Background(), s, org, webGroup("443", "", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, g
}

func testFailedReportFailsAndRecovers(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{Revisioner: &counter{}})
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := confirm(ctx, s, org, "site_a", 1, false, "no such item"); err != nil {
		t.Fatal(err)
	}
	got := mustGroup(t, s, g.ID)
	st := site(t, s, "site_a")
	if got.Status != cp.StatusFailed || st.State != cp.SiteFailed || st.LastError != "no such item" {
		t.Errorf("after a failure: group %q, site %+v", got.Status, st)
	}
	// failed does not lock: the next write starts a new sync.
	g2, err := replaceGroup(ctx, s, org, g.ID, group("Group 2", []string{"site_a"}))
	if err != nil || g2.Status != cp.StatusSyncing {
		t.Errorf("write after failure: %v, %q", err, g2.Status)
	}
}

// testSweeperFailsAtDeadline: a sweep stores as failed every resource past
// its sync deadline (reads said failed already), and only those.
func testSweeperFailsAtDeadline(t *testing.T, open Opener) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, Options{Now: clk.Now, SyncTimeout: time.Minute})
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}))
	if err != nil {
		t.Fatal(err)
	}
	l, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{}, Sites: []string{"site_b"}})
	if err != nil {
		t.Fatal(err)
	}
	clk.add(30 * time.Second)
	later, err := createGroup(ctx, s, org, group("Later", []string{"site_c"}))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("sweep before any deadline = %d, %v", n, err)
	}
	clk.add(30 * time.Second) // the first two's deadline
	if n, err := s.Sweep(ctx); err != nil || n != 2 {
		t.Errorf("sweep = %d, %v; want the 2 past their deadline", n, err)
	}
	counts, err := s.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[cp.KindSecurityGroup][cp.StatusFailed] != 1 || counts[cp.KindPrefixList][cp.StatusFailed] != 1 || counts[cp.KindSecurityGroup][cp.StatusSyncing] != 1 {
		t.Errorf("counts after the sweep: %v", counts)
	}
	if got, gotL := mustGroup(t, s, g.ID), mustList(t, s, l.ID); got.Status != cp.StatusFailed || gotL.Status != cp.StatusFailed {
		t.Errorf("statuses %q %q", got.Status, gotL.Status)
	}
	if st := syncOf(t, s, "site_a", g.ID); !strings.Contains(st.Error, "site_a") {
		t.Errorf("the failure does not name the site: %q", st.Error)
	}
	if got := mustGroup(t, s, later.ID); got.Status != cp.StatusSyncing {
		t.Errorf("a group before its deadline: %q", got.Status)
	}
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v; want nothing left", n, err)
	}
	// A late confirmation still makes the swept group active.
	if err := confirm(ctx, s, org, "site_a", 0, true, ""); err != nil {
		t.Fatal(err)
	}
	if got := mustGroup(t, s, g.ID); got.Status != cp.StatusActive {
		t.Errorf("after a late confirmation: %q, want active", got.Status)
	}
}

// testReportStatusStateTable walks one site through the reports an agent
// sends, late retained copies and another epoch's reports included, and
// checks the group's status and the site's record after each step.
func testReportStatusStateTable(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk, g := webOnSiteA(t, open)
	ep := s.Epoch()
	type want struct {
		res     cp.ReportResult
		group   cp.Status
		state   cp.SiteState
		applied uint64
	}
	step := func(name string, st protocol.SiteStatus, w want) {
		t.Helper()
		res, err := reportStatus(ctx, s, org, "site_a", st)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cur := mustGroup(t, s, g.ID)
		st2 := site(t, s, "site_a")
		if res != w.res || cur.Status != w.group || st2.State != w.state || st2.AppliedRevision != w.applied {
			t.Errorf("%s: result %v, group %q, site %q applied %d; want %v, %q, %q, %d", name, res, cur.Status, st2.State, st2.AppliedRevision,
				w.res, w.group, w.state, w.applied)
		}
	}
	step("applying 1", report(ep, 1, protocol.StateApplying, ""), want{cp.ReportTaken, cp.StatusSyncing, cp.SiteSyncing, 0})
	step("applied 1", report(ep, 1, protocol.StateApplied, ""), want{cp.ReportTaken, cp.StatusActive, cp.SiteInSync, 1})
	step("late retained applying 1", report(ep, 1, protocol.StateApplying, ""), want{cp.ReportStale, cp.StatusActive, cp.SiteInSync, 1})
	step("another epoch's revision 9", report("0123456789abcdef", 9, protocol.StateApplied, ""), want{cp.ReportOtherEpoch, cp.StatusActive, cp.SiteInSync, 1})

	if _, err := replaceGroup(ctx, s, org, g.ID, webGroup("8443", "", "site_a")); err != nil {
		t.Fatal(err)
	}
	step("failed 2", report(ep, 2, protocol.StateFailed, "the router said no"), want{cp.ReportTaken, cp.StatusFailed, cp.SiteFailed, 1})
	if st := site(t, s, "site_a"); st.LastError != "the router said no" || st.AgentVersion != "v1" || st.Board == "" || st.RouterOSVersion != "7.20.4" {
		t.Errorf("failed site: %+v", st)
	}
	step("late applied 1", report(ep, 1, protocol.StateApplied, ""), want{cp.ReportStale, cp.StatusFailed, cp.SiteFailed, 1})
	// Another group's write gives the site revision 3; applying it confirms
	// the failed group too (3 ≥ the 2 it waits for).
	changes := record(s)
	other, err := createGroup(ctx, s, org, webGroup("22", "", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	if ch := changes.list(); len(ch) != 1 || ch[0].Revisions["site_a"] != 3 {
		t.Fatalf("second group's write: %+v, want site_a at revision 3", ch)
	}
	step("applied 3", report(ep, 3, protocol.StateApplied, ""), want{cp.ReportTaken, cp.StatusActive, cp.SiteInSync, 3})
	if cur := mustGroup(t, s, other.ID); cur.Status != cp.StatusActive {
		t.Errorf("second group: %q", cur.Status)
	}
	step("late applied 2 (retry)", report(ep, 2, protocol.StateApplied, ""), want{cp.ReportStale, cp.StatusActive, cp.SiteInSync, 3})

	// A write that does not change what the router gets (the description)
	// asks for revision 3 again, which the site applied: the write itself
	// confirms it, so its answer, and every read after it, say active.
	clk.add(time.Second)
	same, err := replaceGroup(ctx, s, org, g.ID, webGroup("8443", "reworded", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	if same.Status != cp.StatusActive {
		t.Errorf("unchanged content: %q, want active at once", same.Status)
	}
	if st := site(t, s, "site_a"); st.State != cp.SiteInSync || st.DesiredRevision != 3 {
		t.Errorf("site after an unchanged write: %+v, want in_sync at revision 3", st)
	}
	if err := s.Settle(ctx, org, []string{"site_a"}); err != nil {
		t.Fatal(err)
	}
	if cur := mustGroup(t, s, g.ID); cur.Status != cp.StatusActive {
		t.Errorf("after Settle: %q, want active", cur.Status)
	}

	// Presence: offline wins over what the site last reported, until the
	// agent is back.
	if err := setPresence(ctx, s, org, "site_a", protocol.Presence{State: protocol.PresenceOffline}); err != nil {
		t.Fatal(err)
	}
	step("retained applied 3 while offline", report(ep, 3, protocol.StateApplied, ""), want{cp.ReportTaken, cp.StatusActive, cp.SiteOffline, 3})
	if err := setPresence(ctx, s, org, "site_a", protocol.Presence{State: protocol.PresenceOnline, At: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if st := site(t, s, "site_a"); st.State != cp.SiteInSync || !st.Online || st.LastSeen == nil {
		t.Errorf("back online: %+v", st)
	}
}

// testSettleSkipsAFailedRevision: a site whose newest report is a failure
// of the revision asked again does not confirm it, neither in the write nor
// in Settle.
func testSettleSkipsAFailedRevision(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk, g := webOnSiteA(t, open)
	ep := s.Epoch()
	reportStatus(ctx, s, org, "site_a", report(ep, 1, protocol.StateApplied, ""))
	reportStatus(ctx, s, org, "site_a", report(ep, 1, protocol.StateFailed, "drift repair failed"))
	clk.add(time.Second)
	same, err := replaceGroup(ctx, s, org, g.ID, webGroup("443", "reworded", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	if same.Status != cp.StatusSyncing {
		t.Errorf("the write confirmed a revision whose repair failed: %q", same.Status)
	}
	if err := s.Settle(ctx, org, []string{"site_a"}); err != nil {
		t.Fatal(err)
	}
	if cur := mustGroup(t, s, g.ID); cur.Status != cp.StatusSyncing {
		t.Errorf("settled over a failure: %q", cur.Status)
	}
}

// testReportsInAnyOrder replays an agent's reports for three revisions in
// random orders, as retained copies and live messages may interleave: the
// outcome is always that of the newest revision.
func testReportsInAnyOrder(t *testing.T, open Opener) {
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range 10 {
		s, clk := compiled(t, open)
		g, err := createGroup(ctx, s, org, webGroup("1", "", "site_a"))
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range []string{"2", "3"} {
			clk.add(2 * time.Minute) // past the deadline: writable
			if _, err := replaceGroup(ctx, s, org, g.ID, webGroup(port, "", "site_a")); err != nil {
				t.Fatal(err)
			}
		}
		ep := s.Epoch()
		var reports []protocol.SiteStatus
		for rev := uint64(1); rev <= 3; rev++ {
			reports = append(reports, report(ep, rev, protocol.StateApplying, ""), report(ep, rev, protocol.StateApplied, ""))
		}
		rng.Shuffle(len(reports), func(a, b int) { reports[a], reports[b] = reports[b], reports[a] })
		var order []string
		for _, r := range reports {
			order = append(order, r.State[:5]+string(rune('0'+r.Revision)))
			if _, err := reportStatus(ctx, s, org, "site_a", r); err != nil {
				t.Fatal(err)
			}
		}
		cur := mustGroup(t, s, g.ID)
		st := site(t, s, "site_a")
		if cur.Status != cp.StatusActive || st.State != cp.SiteInSync || st.AppliedRevision != 3 || st.DesiredRevision != 3 {
			t.Errorf("run %d, order %s: group %q, site %+v", i, strings.Join(order, " "), cur.Status, st)
		}
	}
}

// testSettleAfterDelete: a delete gives the site a new revision that no
// resource awaits; Settle shows the site syncing until it applies it.
func testSettleAfterDelete(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _, g := webOnSiteA(t, open)
	ep := s.Epoch()
	reportStatus(ctx, s, org, "site_a", report(ep, 1, protocol.StateApplied, ""))
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, org, []string{"site_a"}); err != nil {
		t.Fatal(err)
	}
	if st := site(t, s, "site_a"); st.State != cp.SiteSyncing || st.DesiredRevision != 2 {
		t.Errorf("after delete: %+v, want syncing to revision 2", st)
	}
	reportStatus(ctx, s, org, "site_a", report(ep, 2, protocol.StateApplied, ""))
	if st := site(t, s, "site_a"); st.State != cp.SiteInSync {
		t.Errorf("after applying the delete: %+v", st)
	}
}

// testIngestBatch: one transaction with every site's applying and applied
// reports (and a presence) confirms the group, as the same reports one by
// one would.
func testIngestBatch(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := compiled(t, open)
	var sites []string
	for i := range 50 {
		sites = append(sites, "site_"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	g, err := createGroup(ctx, s, org, webGroup("443", "", sites...))
	if err != nil {
		t.Fatal(err)
	}
	ep := s.Epoch()
	var batch []cp.Report
	for _, site := range sites {
		for _, state := range []string{protocol.StateApplying, protocol.StateApplied} {
			st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: ep, Revision: 1, State: state}
			batch = append(batch, cp.Report{OrgID: org, SiteID: site, Status: &st})
		}
		batch = append(batch, cp.Report{OrgID: org, SiteID: site, Presence: &protocol.Presence{State: protocol.PresenceOnline}})
	}
	res, err := s.Ingest(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(batch) {
		t.Fatalf("%d results for %d reports", len(res), len(batch))
	}
	for i, r := range res {
		if r != cp.ReportTaken {
			t.Errorf("report %d: %v", i, r)
		}
	}
	if cur := mustGroup(t, s, g.ID); cur.Status != cp.StatusActive {
		t.Errorf("group after the batch: %q", cur.Status)
	}
	list, _ := s.ListSites(ctx, org)
	for _, st := range list {
		if st.State != cp.SiteInSync || !st.Online || st.AppliedRevision != 1 {
			t.Errorf("site %+v", st)
		}
	}
	if counts, _ := s.CountByStatus(ctx); counts[cp.KindSecurityGroup][cp.StatusActive] != 1 {
		t.Errorf("status counts: %v", counts)
	}
	// The same batch again, as a second replica receiving every report
	// would deliver it: nothing changes.
	if _, err := s.Ingest(ctx, batch); err != nil {
		t.Fatal(err)
	}
	after, _ := s.ListSites(ctx, org)
	if d := cmp.Diff(list, after); d != "" {
		t.Errorf("ingesting the batch twice changed the sites (-once +twice):\n%s", d)
	}
	if cur := mustGroup(t, s, g.ID); cur.Status != cp.StatusActive {
		t.Errorf("group after the batch again: %q", cur.Status)
	}
}

// testForgedStatusRefused reproduces issue #13 item 3: an agent holding its
// site's secret publishes "applied" for revision 2^64-1. The store refuses
// it and changes nothing; the group still waits for the real report, a real
// failure that follows is taken (not discarded as stale), and a later
// write still asks the site for its next revision.
func testForgedStatusRefused(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _, g := webOnSiteA(t, open)
	ep := s.Epoch()
	before := site(t, s, "site_a")
	for _, forged := range []protocol.SiteStatus{
		report(ep, math.MaxUint64, protocol.StateApplied, ""),
		report(ep, 2, protocol.StateApplying, ""),
		report(ep, 2, protocol.StateFailed, "forged"),
	} {
		res, err := reportStatus(ctx, s, org, "site_a", forged)
		if err != nil {
			t.Fatal(err)
		}
		if res != cp.ReportRefused {
			t.Errorf("%s of revision %d: %v, want refused", forged.State, forged.Revision, res)
		}
	}
	if after := site(t, s, "site_a"); !cmp.Equal(before, after) {
		t.Errorf("a refused report changed the site:\n%s", cmp.Diff(before, after))
	}
	if cur := mustGroup(t, s, g.ID); cur.Status != cp.StatusSyncing {
		t.Errorf("group after forged reports: %q, want syncing", cur.Status)
	}
	if res, _ := reportStatus(ctx, s, org, "site_a", report(ep, 1, protocol.StateFailed, "no such item")); res != cp.ReportTaken {
		t.Errorf("the real failure after forged reports: %v, want taken", res)
	}
	if cur := mustGroup(t, s, g.ID); cur.Status != cp.StatusFailed {
		t.Errorf("group after the real failure: %q, want failed", cur.Status)
	}
}

// testReportTextBounded: an 8 MB error (issue #13 item 5) is stored cut to
// controlplane.MaxSiteError, in the site and in the group's failure.
func testReportTextBounded(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _, g := webOnSiteA(t, open)
	if _, err := reportStatus(ctx, s, org, "site_a", report(s.Epoch(), 1, protocol.StateFailed, strings.Repeat("x", 8<<20))); err != nil {
		t.Fatal(err)
	}
	st := site(t, s, "site_a")
	sync := syncOf(t, s, "site_a", g.ID)
	if len(st.LastError) > cp.MaxSiteError || len(sync.Error) > cp.MaxSiteError+200 || sync.Status != cp.StatusFailed || len(st.LastError) < 100 {
		t.Errorf("stored %d bytes of error in the site, %d in the group (%q); want at most %d", len(st.LastError), len(sync.Error), sync.Status, cp.MaxSiteError)
	}
}

// testReserveSiteAndCounts: a reserved site is known (unknown state) until
// a write names it; CountSites counts sites by state as reads show them,
// CountByStatus resources by status, across organisations, through writes,
// reports and deletes.
func testReserveSiteAndCounts(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk := compiled(t, open)
	counts := func() (map[cp.SiteState]int, map[string]map[cp.Status]int) {
		t.Helper()
		sites, err := s.CountSites(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byStatus, err := s.CountByStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return sites, byStatus
	}
	// fromReads counts what ListSites says, for every organisation.
	fromReads := func() map[cp.SiteState]int {
		t.Helper()
		out := map[cp.SiteState]int{}
		orgs, err := s.Orgs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range orgs {
			sites, err := s.ListSites(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range sites {
				out[st.State]++
			}
		}
		return out
	}
	check := func(step string, wantSites map[cp.SiteState]int, wantStatus map[string]map[cp.Status]int) {
		t.Helper()
		sites, byStatus := counts()
		drop := func(m map[cp.SiteState]int) map[cp.SiteState]int {
			out := map[cp.SiteState]int{}
			for k, v := range m {
				if v != 0 {
					out[k] = v
				}
			}
			return out
		}
		if d := cmp.Diff(wantSites, drop(sites)); d != "" {
			t.Errorf("%s: CountSites (-want +got):\n%s", step, d)
		}
		if d := cmp.Diff(drop(fromReads()), drop(sites)); d != "" {
			t.Errorf("%s: CountSites disagrees with ListSites (-reads +counts):\n%s", step, d)
		}
		for kind, want := range wantStatus {
			got := map[cp.Status]int{}
			for st, n := range byStatus[kind] {
				if n != 0 {
					got[st] = n
				}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s: CountByStatus[%s] (-want +got):\n%s", step, kind, d)
			}
		}
	}
	check("empty", map[cp.SiteState]int{}, map[string]map[cp.Status]int{cp.KindSecurityGroup: {}, cp.KindPrefixList: {}})

	if err := s.ReserveSite(ctx, org, "site_r"); err != nil {
		t.Fatal(err)
	}
	if st := site(t, s, "site_r"); st.State != cp.SiteUnknown || st.DesiredRevision != 0 {
		t.Errorf("reserved site: %+v", st)
	}
	g, err := createGroup(ctx, s, org, webGroup("443", "", "site_a", "site_b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := createList(ctx, s, "org_b", &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{}, Sites: []string{"site_z"}}); err != nil {
		t.Fatal(err)
	}
	check("written", map[cp.SiteState]int{cp.SiteUnknown: 1, cp.SiteSyncing: 3},
		map[string]map[cp.Status]int{cp.KindSecurityGroup: {cp.StatusSyncing: 1}, cp.KindPrefixList: {cp.StatusSyncing: 1}})

	ep := s.Epoch()
	reportStatus(ctx, s, org, "site_a", report(ep, 1, protocol.StateApplied, ""))
	st := report(ep, 1, protocol.StateFailed, "no")
	st.SiteID = "site_b"
	reportStatus(ctx, s, org, "site_b", st)
	check("reported", map[cp.SiteState]int{cp.SiteUnknown: 1, cp.SiteSyncing: 1, cp.SiteInSync: 1, cp.SiteFailed: 1},
		map[string]map[cp.Status]int{cp.KindSecurityGroup: {cp.StatusFailed: 1}, cp.KindPrefixList: {cp.StatusSyncing: 1}})

	if err := setPresence(ctx, s, org, "site_a", protocol.Presence{State: protocol.PresenceOffline}); err != nil {
		t.Fatal(err)
	}
	check("offline", map[cp.SiteState]int{cp.SiteUnknown: 1, cp.SiteSyncing: 1, cp.SiteOffline: 1, cp.SiteFailed: 1},
		map[string]map[cp.Status]int{cp.KindSecurityGroup: {cp.StatusFailed: 1}, cp.KindPrefixList: {cp.StatusSyncing: 1}})

	// The clock passes org_b's list's deadline and the sweeper stores it.
	clk.add(2 * time.Minute)
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	// Its site, unheard, reads unknown.
	check("past the deadline", map[cp.SiteState]int{cp.SiteUnknown: 2, cp.SiteOffline: 1, cp.SiteFailed: 1},
		map[string]map[cp.Status]int{cp.KindSecurityGroup: {cp.StatusFailed: 1}, cp.KindPrefixList: {cp.StatusFailed: 1}})

	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.ReserveSite(ctx, org, "site_rr"); err != nil {
		t.Fatal(err)
	}
	check("after a second reservation", map[cp.SiteState]int{cp.SiteUnknown: 3, cp.SiteOffline: 1, cp.SiteFailed: 1},
		map[string]map[cp.Status]int{cp.KindSecurityGroup: {}, cp.KindPrefixList: {cp.StatusFailed: 1}})
}

// testReportsWithinSiteQuota: a report (status or presence) from a site
// its organisation does not know creates the site's record only within
// the site quota, as a write's new site would; beyond it the report is
// ReportOverQuota and stores nothing. In one batch a new site admitted
// counts for the next, and a second report of it is no new site; other
// organisations are not counted; known sites report as ever.
func testReportsWithinSiteQuota(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{Quotas: cp.Quotas{Sites: 3}})
	if _, err := createGroup(ctx, s, org, group("G", []string{"site_1", "site_2"})); err != nil {
		t.Fatal(err)
	}
	online := protocol.Presence{State: protocol.PresenceOnline, At: epoch}
	status := func(site string) *protocol.SiteStatus {
		st := report(s.Epoch(), 0, protocol.StateApplying, "")
		st.SiteID = site
		return &st
	}
	batch := []cp.Report{
		{OrgID: org, SiteID: "site_3", Presence: &online}, // the third site: within the quota
		{OrgID: org, SiteID: "site_4", Status: status("site_4")},
		{OrgID: org, SiteID: "site_3", Status: status("site_3")}, // known now
		{OrgID: org, SiteID: "site_5", Presence: &online},
		{OrgID: org, SiteID: "site_1", Presence: &online},
		{OrgID: "org_b", SiteID: "site_9", Presence: &online},
	}
	results, err := s.Ingest(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]cp.ReportResult{0: cp.ReportTaken, 1: cp.ReportOverQuota, 3: cp.ReportOverQuota, 4: cp.ReportTaken, 5: cp.ReportTaken} {
		if results[i] != want {
			t.Errorf("report %d (%s/%s): %v, want %v", i, batch[i].OrgID, batch[i].SiteID, results[i], want)
		}
	}
	if results[2] == cp.ReportOverQuota {
		t.Errorf("the second report of site_3 was refused as a new site")
	}
	ids := func(org string) []string {
		t.Helper()
		sites, err := s.ListSites(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, st := range sites {
			out = append(out, st.ID)
		}
		return out
	}
	if d := cmp.Diff([]string{"site_1", "site_2", "site_3"}, ids(org)); d != "" {
		t.Errorf("sites of %s (-want +got):\n%s", org, d)
	}
	if d := cmp.Diff([]string{"site_9"}, ids("org_b")); d != "" {
		t.Errorf("sites of org_b (-want +got):\n%s", d)
	}
	if _, err := s.GetSite(ctx, org, "site_4"); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Errorf("site_4 over the quota: %v; want not found", err)
	}
	// Still over the quota alone, in a batch of its own.
	if res, err := reportStatus(ctx, s, org, "site_4", *status("site_4")); err != nil || res != cp.ReportOverQuota {
		t.Errorf("site_4 again: %v, %v; want over quota", res, err)
	}

	// New sites reporting at once (through several replicas, on
	// PostgreSQL) take exactly the quota's places.
	var wg sync.WaitGroup
	taken := make([]bool, 8)
	for i := range taken {
		wg.Go(func() {
			res, err := s.Ingest(ctx, []cp.Report{{OrgID: "org_c", SiteID: fmt.Sprintf("site_%d", i), Presence: &online}})
			if err != nil {
				t.Error(err)
				return
			}
			taken[i] = res[0] == cp.ReportTaken
		})
	}
	wg.Wait()
	n := 0
	for _, ok := range taken {
		if ok {
			n++
		}
	}
	if got := ids("org_c"); n != 3 || len(got) != 3 {
		t.Errorf("8 new sites reporting at once: %d taken, sites %v; want 3 of each", n, got)
	}
}
