package bolt_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/protocol"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// compiled opens a store with the compiler's Revisioner, as the serve path
// does.
func compiled(t *testing.T) (*bolt.Store, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s, err := bolt.Open(filepath.Join(t.TempDir(), "rampart.db"), bolt.Options{Now: clk.Now, SyncTimeout: time.Minute, Revisioner: compile.Revisioner{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk
}

func webGroup(port, desc string, sites ...string) *cp.SecurityGroupWrite {
	return &cp.SecurityGroupWrite{Name: "Web", Description: &desc, Sites: sites, Rules: []cp.FilterRuleWrite{
		{Direction: "inbound", Order: 10, Protocol: 6, Port: port, Address: "0.0.0.0/0", Description: "web"}}}
}

// confirm reports, through Ingest as the MQTT side does, that site applied
// revision (or failed to, with errMsg).
func confirm(ctx context.Context, s *bolt.Store, org, site string, revision uint64, applied bool, errMsg string) error {
	st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: s.Epoch(), Revision: revision, State: protocol.StateApplied}
	if !applied {
		st.State, st.Error = protocol.StateFailed, errMsg
	}
	_, err := reportStatus(ctx, s, org, site, st)
	return err
}

// reportStatus folds one status report into the store through Ingest.
func reportStatus(ctx context.Context, s *bolt.Store, org, site string, st protocol.SiteStatus) (cp.ReportResult, error) {
	res, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Status: &st}})
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

// setPresence folds one presence into the store through Ingest.
func setPresence(ctx context.Context, s *bolt.Store, org, site string, p protocol.Presence) error {
	_, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Presence: &p}})
	return err
}

func report(s *bolt.Store, epoch string, rev uint64, state, errMsg string) protocol.SiteStatus {
	return protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: "site_a", Epoch: epoch, Revision: rev, State: state, Error: errMsg,
		AgentVersion: "v1", RouterOSVersion: "7.20.4", Board: "RB5009UG+S+"}
}

// TestReportStatusStateTable walks one site through the reports an agent
// sends, late retained copies and another epoch's reports included, and
// checks the group's status and the site's record after each step.
func TestReportStatusStateTable(t *testing.T) {
	ctx := context.Background()
	s, clk := compiled(t)
	g, err := createGroup(ctx, s, org, webGroup("443", "", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
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
		cur, _ := s.GetSecurityGroup(ctx, org, g.ID)
		site, _ := s.GetSite(ctx, org, "site_a")
		if res != w.res || cur.Status != w.group || site.State != w.state || site.AppliedRevision != w.applied {
			t.Errorf("%s: result %v, group %q, site %q applied %d; want %v, %q, %q, %d", name, res, cur.Status, site.State, site.AppliedRevision,
				w.res, w.group, w.state, w.applied)
		}
	}
	step("applying 1", report(s, ep, 1, protocol.StateApplying, ""), want{cp.ReportTaken, cp.StatusSyncing, cp.SiteSyncing, 0})
	step("applied 1", report(s, ep, 1, protocol.StateApplied, ""), want{cp.ReportTaken, cp.StatusActive, cp.SiteInSync, 1})
	step("late retained applying 1", report(s, ep, 1, protocol.StateApplying, ""), want{cp.ReportStale, cp.StatusActive, cp.SiteInSync, 1})
	step("another epoch's revision 9", report(s, "0123456789abcdef", 9, protocol.StateApplied, ""), want{cp.ReportOtherEpoch, cp.StatusActive, cp.SiteInSync, 1})

	if _, err := replaceGroup(ctx, s, org, g.ID, webGroup("8443", "", "site_a")); err != nil {
		t.Fatal(err)
	}
	step("failed 2", report(s, ep, 2, protocol.StateFailed, "the router said no"), want{cp.ReportTaken, cp.StatusFailed, cp.SiteFailed, 1})
	if site, _ := s.GetSite(ctx, org, "site_a"); site.LastError != "the router said no" || site.AgentVersion != "v1" || site.Board == "" {
		t.Errorf("failed site: %+v", site)
	}
	step("late applied 1", report(s, ep, 1, protocol.StateApplied, ""), want{cp.ReportStale, cp.StatusFailed, cp.SiteFailed, 1})
	// Another group's write gives the site revision 3; applying it confirms
	// the failed group too (3 ≥ the 2 it waits for).
	other, err := createGroup(ctx, s, org, webGroup("22", "", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Sync.Awaiting["site_a"] != 3 {
		t.Fatalf("second group awaits %v, want revision 3", other.Sync.Awaiting)
	}
	step("applied 3", report(s, ep, 3, protocol.StateApplied, ""), want{cp.ReportTaken, cp.StatusActive, cp.SiteInSync, 3})
	if cur, _ := s.GetSecurityGroup(ctx, org, other.ID); cur.Status != cp.StatusActive {
		t.Errorf("second group: %q", cur.Status)
	}
	step("late applied 2 (retry)", report(s, ep, 2, protocol.StateApplied, ""), want{cp.ReportStale, cp.StatusActive, cp.SiteInSync, 3})

	// A write that does not change what the router gets (the description)
	// asks for revision 3 again, which the site applied: the write itself
	// confirms it, so its answer, and every read after it, say active.
	clk.Advance(time.Second)
	same, err := replaceGroup(ctx, s, org, g.ID, webGroup("8443", "reworded", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	if same.Status != cp.StatusActive || len(same.Sync.Awaiting) != 0 {
		t.Errorf("unchanged content: %q awaiting %v, want active at once", same.Status, same.Sync.Awaiting)
	}
	if cur, _ := s.GetSecurityGroup(ctx, org, g.ID); cur.Status != cp.StatusActive {
		t.Errorf("read after an unchanged write: %q, want active", cur.Status)
	}
	if site, _ := s.GetSite(ctx, org, "site_a"); site.State != cp.SiteInSync || site.DesiredRevision != 3 {
		t.Errorf("site after an unchanged write: %+v, want in_sync at revision 3", site)
	}
	if err := s.Settle(ctx, org, []string{"site_a"}); err != nil {
		t.Fatal(err)
	}
	if cur, _ := s.GetSecurityGroup(ctx, org, g.ID); cur.Status != cp.StatusActive {
		t.Errorf("after Settle: %q, want active", cur.Status)
	}

	// Presence: offline wins over what the site last reported, until the
	// agent is back.
	if err := setPresence(ctx, s, org, "site_a", protocol.Presence{State: protocol.PresenceOffline}); err != nil {
		t.Fatal(err)
	}
	step("retained applied 3 while offline", report(s, ep, 3, protocol.StateApplied, ""), want{cp.ReportTaken, cp.StatusActive, cp.SiteOffline, 3})
	if err := setPresence(ctx, s, org, "site_a", protocol.Presence{State: protocol.PresenceOnline, At: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if site, _ := s.GetSite(ctx, org, "site_a"); site.State != cp.SiteInSync || !site.Online || site.LastSeen == nil {
		t.Errorf("back online: %+v", site)
	}
}

// TestSettleSkipsAFailedRevision: a site whose newest report is a failure
// of the revision asked again does not confirm it, neither in the write nor
// in Settle.
func TestSettleSkipsAFailedRevision(t *testing.T) {
	ctx := context.Background()
	s, clk := compiled(t)
	g, _ := createGroup(ctx, s, org, webGroup("443", "", "site_a"))
	ep := s.Epoch()
	reportStatus(ctx, s, org, "site_a", report(s, ep, 1, protocol.StateApplied, ""))
	reportStatus(ctx, s, org, "site_a", report(s, ep, 1, protocol.StateFailed, "drift repair failed"))
	clk.Advance(time.Second)
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
	if cur, _ := s.GetSecurityGroup(ctx, org, g.ID); cur.Status != cp.StatusSyncing {
		t.Errorf("settled over a failure: %q", cur.Status)
	}
}

// TestReportsInAnyOrder replays an agent's reports for three revisions in
// random orders, as retained copies and live messages may interleave: the
// outcome is always that of the newest revision.
func TestReportsInAnyOrder(t *testing.T) {
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range 20 {
		s, clk := compiled(t)
		g, err := createGroup(ctx, s, org, webGroup("1", "", "site_a"))
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range []string{"2", "3"} {
			clk.Advance(2 * time.Minute) // past the deadline: writable
			if _, err := replaceGroup(ctx, s, org, g.ID, webGroup(port, "", "site_a")); err != nil {
				t.Fatal(err)
			}
		}
		ep := s.Epoch()
		var reports []protocol.SiteStatus
		for rev := uint64(1); rev <= 3; rev++ {
			reports = append(reports, report(s, ep, rev, protocol.StateApplying, ""), report(s, ep, rev, protocol.StateApplied, ""))
		}
		rng.Shuffle(len(reports), func(a, b int) { reports[a], reports[b] = reports[b], reports[a] })
		var order []string
		for _, r := range reports {
			order = append(order, r.State[:5]+string(rune('0'+r.Revision)))
			if _, err := reportStatus(ctx, s, org, "site_a", r); err != nil {
				t.Fatal(err)
			}
		}
		cur, _ := s.GetSecurityGroup(ctx, org, g.ID)
		site, _ := s.GetSite(ctx, org, "site_a")
		if cur.Status != cp.StatusActive || site.State != cp.SiteInSync || site.AppliedRevision != 3 || site.DesiredRevision != 3 {
			t.Errorf("run %d, order %s: group %q, site %+v", i, strings.Join(order, " "), cur.Status, site)
		}
	}
}

// TestSettleAfterDelete: a delete gives the site a new revision that no
// resource awaits; Settle shows the site syncing until it applies it.
func TestSettleAfterDelete(t *testing.T) {
	ctx := context.Background()
	s, _ := compiled(t)
	g, _ := createGroup(ctx, s, org, webGroup("443", "", "site_a"))
	ep := s.Epoch()
	reportStatus(ctx, s, org, "site_a", report(s, ep, 1, protocol.StateApplied, ""))
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, org, []string{"site_a"}); err != nil {
		t.Fatal(err)
	}
	if site, _ := s.GetSite(ctx, org, "site_a"); site.State != cp.SiteSyncing || site.DesiredRevision != 2 {
		t.Errorf("after delete: %+v, want syncing to revision 2", site)
	}
	reportStatus(ctx, s, org, "site_a", report(s, ep, 2, protocol.StateApplied, ""))
	if site, _ := s.GetSite(ctx, org, "site_a"); site.State != cp.SiteInSync {
		t.Errorf("after applying the delete: %+v", site)
	}
}

// TestIngestBatch: one transaction with every site's applying and applied
// reports (and a presence) confirms the group, as the same reports one by
// one would.
func TestIngestBatch(t *testing.T) {
	ctx := context.Background()
	s, _ := compiled(t)
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
	for i, r := range res {
		if r != cp.ReportTaken {
			t.Errorf("report %d: %v", i, r)
		}
	}
	if cur, _ := s.GetSecurityGroup(ctx, org, g.ID); cur.Status != cp.StatusActive || len(cur.Sync.Awaiting) != 0 {
		t.Errorf("group after the batch: %q awaiting %v", cur.Status, cur.Sync.Awaiting)
	}
	list, _ := s.ListSites(ctx, org)
	for _, site := range list {
		if site.State != cp.SiteInSync || !site.Online || site.AppliedRevision != 1 {
			t.Errorf("site %+v", site)
		}
	}
	if counts, _ := s.CountByStatus(ctx); counts[cp.KindSecurityGroup][cp.StatusActive] != 1 {
		t.Errorf("status index: %v", counts)
	}
}

// BenchmarkIngest: every site of a group confirms it, in batches as the
// syncer sends them (batch=4096) or one report per transaction (batch=1).
// One iteration is the whole fleet's confirmations.
//
//	go test -run '^$' -bench Ingest -benchtime 3x ./controlplane/store/bolt
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct{ sites, batch int }{{2000, 1}, {2000, 4096}, {10000, 4096}} {
		b.Run(fmt.Sprintf("sites=%d/batch=%d", c.sites, c.batch), func(b *testing.B) {
			ctx := context.Background()
			var sites []string
			for i := range c.sites {
				sites = append(sites, fmt.Sprintf("site_%d", i))
			}
			for range b.N {
				b.StopTimer()
				s, err := bolt.Open(filepath.Join(b.TempDir(), "rampart.db"), bolt.Options{Revisioner: compile.Revisioner{}})
				if err != nil {
					b.Fatal(err)
				}
				w := webGroup("443", "", sites...)
				if _, err := createGroup(ctx, s, org, w); err != nil {
					b.Fatal(err)
				}
				var reports []cp.Report
				for _, site := range sites {
					st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: s.Epoch(), Revision: 1, State: protocol.StateApplied}
					reports = append(reports, cp.Report{OrgID: org, SiteID: site, Status: &st})
				}
				b.StartTimer()
				for len(reports) > 0 {
					n := min(len(reports), c.batch)
					if _, err := s.Ingest(ctx, reports[:n]); err != nil {
						b.Fatal(err)
					}
					reports = reports[n:]
				}
				b.StopTimer()
				s.Close()
			}
		})
	}
}

// TestForgedStatusRefused reproduces issue #13 item 3: an agent holding its
// site's secret publishes "applied" for revision 2^64-1. The store refuses
// it and changes nothing; the group still waits for the real report, a real
// failure that follows is taken (not discarded as stale), and a later
// write still asks the site for its next revision.
func TestForgedStatusRefused(t *testing.T) {
	ctx := context.Background()
	s, _ := compiled(t)
	g, err := createGroup(ctx, s, org, webGroup("443", "", "site_a"))
	if err != nil {
		t.Fatal(err)
	}
	ep := s.Epoch()
	before, _ := s.GetSite(ctx, org, "site_a")
	for _, forged := range []protocol.SiteStatus{
		report(s, ep, math.MaxUint64, protocol.StateApplied, ""),
		report(s, ep, 2, protocol.StateApplying, ""),
		report(s, ep, 2, protocol.StateFailed, "forged"),
	} {
		res, err := reportStatus(ctx, s, org, "site_a", forged)
		if err != nil {
			t.Fatal(err)
		}
		if res != cp.ReportRefused {
			t.Errorf("%s of revision %d: %v, want refused", forged.State, forged.Revision, res)
		}
	}
	if site, _ := s.GetSite(ctx, org, "site_a"); !cmp.Equal(before, site) {
		t.Errorf("a refused report changed the site:\n%s", cmp.Diff(before, site))
	}
	if cur, _ := s.GetSecurityGroup(ctx, org, g.ID); cur.Status != cp.StatusSyncing {
		t.Errorf("group after forged reports: %q, want syncing", cur.Status)
	}
	if res, _ := reportStatus(ctx, s, org, "site_a", report(s, ep, 1, protocol.StateFailed, "no such item")); res != cp.ReportTaken {
		t.Errorf("the real failure after forged reports: %v, want taken", res)
	}
	if cur, _ := s.GetSecurityGroup(ctx, org, g.ID); cur.Status != cp.StatusFailed {
		t.Errorf("group after the real failure: %q, want failed", cur.Status)
	}
}

// TestReportTextBounded: an 8 MB error (issue #13 item 5) is stored cut to
// controlplane.MaxSiteError, in the site and in the group's failure.
func TestReportTextBounded(t *testing.T) {
	ctx := context.Background()
	s, _ := compiled(t)
	g, _ := createGroup(ctx, s, org, webGroup("443", "", "site_a"))
	if _, err := reportStatus(ctx, s, org, "site_a", report(s, s.Epoch(), 1, protocol.StateFailed, strings.Repeat("x", 8<<20))); err != nil {
		t.Fatal(err)
	}
	site, _ := s.GetSite(ctx, org, "site_a")
	cur, _ := s.GetSecurityGroup(ctx, org, g.ID)
	if len(site.LastError) > cp.MaxSiteError || len(cur.Sync.Error) > cp.MaxSiteError+200 || cur.Status != cp.StatusFailed {
		t.Errorf("stored %d bytes of error in the site, %d in the group (%q); want at most %d", len(site.LastError), len(cur.Sync.Error), cur.Status, cp.MaxSiteError)
	}
}
