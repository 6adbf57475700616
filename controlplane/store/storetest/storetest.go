// Package storetest is the conformance suite of the control plane's stores:
// one set of tests of what a store must do, run against every adapter
// (store/bolt, store/postgres) from that adapter's own test file:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store { … })
//	}
//
// It tests through what the store's consumers call, never through an
// adapter's internals: the API's Store, the syncer's Store, and what the
// control plane's serve path adds (OnChange, Sweep). A behaviour that two
// stores must share belongs here; what is peculiar to one store (bbolt's
// file layout and schema migrations, its batching and read cache;
// PostgreSQL's migrations and leases) stays in that store's package.
package storetest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/syncer"
	"github.com/rampart-fw/rampart/protocol"
)

// Store is what the control plane uses of a store: the API's and the
// syncer's interfaces, plus the change feed the syncer listens to and the
// deadline sweep (which the serve path runs, on one replica at a time
// where there are several).
type Store interface {
	api.Store
	syncer.Store
	// OnChange registers a function called after every committed write.
	OnChange(cp.ChangeFunc)
	// Sweep fails every resource whose sync deadline passed and says how
	// many it failed.
	Sweep(ctx context.Context) (int, error)
	// Decommissioned says a site was forgotten and not enrolled again
	// (the broker refuses its connections).
	Decommissioned(org, site string) bool
}

// Options is what a test asks of the store it opens. Zero fields mean the
// store's defaults.
type Options struct {
	// Now is the store's clock (sync deadlines, audit times); nil means
	// time.Now.
	Now func() time.Time
	// Revisioner assigns revisions in write transactions (compile's, or a
	// test's own); nil means none.
	Revisioner cp.Revisioner
	// SyncTimeout is a write's sync deadline.
	SyncTimeout time.Duration
	// Quotas bound each organisation.
	Quotas cp.Quotas
}

// Opener opens a new, empty store for one test; it closes the store when
// the test ends (t.Cleanup).
type Opener func(t *testing.T, o Options) Store

// Run runs the conformance suite against the stores open makes, each test
// on a fresh store, as subtests of t.
func Run(t *testing.T, open Opener) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// tests is the suite, in the order it runs.
var tests = []struct {
	name string
	fn   func(*testing.T, Opener)
}{
	// writes.go
	{"RevisionsChangesAndConfirm", testRevisionsChangesAndConfirm},
	{"FailedWriteLeavesNothing", testFailedWriteLeavesNothing},
	{"RuleIDsKeptAcrossReplace", testRuleIDsKeptAcrossReplace},
	{"LockedWhileSyncing", testLockedWhileSyncing},
	{"PrefixListReferences", testPrefixListReferences},
	{"NotFoundAcrossOrganisations", testNotFoundAcrossOrganisations},
	{"ConcurrentWrites", testConcurrentWrites},
	{"ConcurrentReplaceOfOneGroup", testConcurrentReplaceOfOneGroup},
	{"ReadsSeeEveryChange", testReadsSeeEveryChange},
	{"ViewPolicyAndOrgs", testViewPolicyAndOrgs},
	{"PolicyOfSites", testPolicyOfSites},
	{"Quotas", testQuotas},
	{"VersionsAndIfMatch", testVersionsAndIfMatch},
	{"AuditTrail", testAuditTrail},
	{"Paging", testPaging},
	// documents.go
	{"DocumentTooLarge", testDocumentTooLarge},
	// sites.go
	{"FailedReportFailsAndRecovers", testFailedReportFailsAndRecovers},
	{"SweeperFailsAtDeadline", testSweeperFailsAtDeadline},
	{"ReportStatusStateTable", testReportStatusStateTable},
	{"SettleSkipsAFailedRevision", testSettleSkipsAFailedRevision},
	{"ReportsInAnyOrder", testReportsInAnyOrder},
	{"SettleAfterDelete", testSettleAfterDelete},
	{"IngestBatch", testIngestBatch},
	{"ForgedStatusRefused", testForgedStatusRefused},
	{"ReportTextBounded", testReportTextBounded},
	{"ReserveSiteAndCounts", testReserveSiteAndCounts},
	{"ReportsWithinSiteQuota", testReportsWithinSiteQuota},
	// history.go
	{"SiteHistory", testSiteHistory},
	{"SiteHistoryBounded", testSiteHistoryBounded},
	{"SiteHistoryDecommission", testSiteHistoryDecommission},
	// decommission.go
	{"DecommissionAllOrNothing", testDecommissionAllOrNothing},
	{"DecommissionDeadline", testDecommissionDeadline},
	{"DecommissionQuota", testDecommissionQuota},
}

const org = "org_a"

// epoch is a fixed start for tests' clocks.
var epoch = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// clock is a test's clock, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: epoch} }

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// counter is a Revisioner like the compiler: it reads the policy the write
// will commit, keeps a per-site counter in the transaction's site data and
// bumps it for every affected site.
type counter struct {
	mu    sync.Mutex
	fail  bool
	seen  map[string]int // site → groups the policy of the affected sites applies to it, at the last call
	calls int
}

func (c *counter) Revise(tx cp.PolicyTx, org string, sites []string) (map[string]protocol.DesiredState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fail {
		return nil, errors.New("compiler exploded")
	}
	groups, _, err := tx.Policy(sites)
	if err != nil {
		return nil, err
	}
	c.seen = map[string]int{}
	for _, g := range groups {
		for _, s := range g.Sites {
			c.seen[s]++
		}
	}
	out := map[string]protocol.DesiredState{}
	for _, s := range sites {
		b, err := tx.SiteData(s)
		if err != nil {
			return nil, err
		}
		var rev uint64
		if len(b) == 8 {
			rev = binary.BigEndian.Uint64(b)
		}
		rev++
		if err := tx.SetSiteData(s, binary.BigEndian.AppendUint64(nil, rev)); err != nil {
			return nil, err
		}
		out[s] = protocol.DesiredState{OrgID: org, SiteID: s, Revision: rev}
	}
	return out, nil
}

// changes records what a store's OnChange reports.
type changes struct {
	mu  sync.Mutex
	all []cp.Change
}

func record(s Store) *changes {
	c := &changes{}
	s.OnChange(func(ch cp.Change) { c.mu.Lock(); c.all = append(c.all, ch); c.mu.Unlock() })
	return c
}

func (c *changes) list() []cp.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]cp.Change(nil), c.all...)
}

func group(name string, sites []string, rules ...cp.FilterRuleWrite) *cp.SecurityGroupWrite {
	if rules == nil {
		rules = []cp.FilterRuleWrite{}
	}
	if sites == nil {
		sites = []string{}
	}
	return &cp.SecurityGroupWrite{Name: name, Rules: rules, Sites: sites}
}

func webGroup(port, desc string, sites ...string) *cp.SecurityGroupWrite {
	return &cp.SecurityGroupWrite{Name: "Web", Description: &desc, Sites: sites, Rules: []cp.FilterRuleWrite{
		{Direction: "inbound", Order: 10, Protocol: 6, Port: port, Address: "0.0.0.0/0", Description: "web"}}}
}

// The store's writes and reads answer with the API's JSON; these read it
// back decoded, as a client of the API would, for tests that check fields.

// decode decodes a resource's JSON as the API answers it.
func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func getGroup(ctx context.Context, s Store, org, id string) (cp.SecurityGroup, error) {
	st, err := s.GetJSON(ctx, org, cp.KindSecurityGroup, id)
	if err != nil {
		return cp.SecurityGroup{}, err
	}
	var g cp.SecurityGroup
	if err := json.Unmarshal(st.Body, &g); err != nil {
		return g, err
	}
	g.OrgID = org
	return g, nil
}

func getList(ctx context.Context, s Store, org, id string) (cp.PrefixList, error) {
	st, err := s.GetJSON(ctx, org, cp.KindPrefixList, id)
	if err != nil {
		return cp.PrefixList{}, err
	}
	var l cp.PrefixList
	if err := json.Unmarshal(st.Body, &l); err != nil {
		return l, err
	}
	l.OrgID = org
	return l, nil
}

// mustGroup is getGroup for a group that must exist.
func mustGroup(t testing.TB, s Store, id string) cp.SecurityGroup {
	t.Helper()
	g, err := getGroup(context.Background(), s, org, id)
	if err != nil {
		t.Fatalf("get group %s: %v", id, err)
	}
	return g
}

func mustList(t testing.TB, s Store, id string) cp.PrefixList {
	t.Helper()
	l, err := getList(context.Background(), s, org, id)
	if err != nil {
		t.Fatalf("get prefix list %s: %v", id, err)
	}
	return l
}

// listAll reads every resource of a kind of org through ListJSONPage, a
// page of limit at a time.
func listAll[T any](t testing.TB, s Store, org, kind string, limit int) []T {
	t.Helper()
	out := []T{}
	after := ""
	for range 10000 {
		body, last, more, err := s.ListJSONPage(context.Background(), org, kind, after, limit)
		if err != nil {
			t.Fatalf("list %s after %q: %v", kind, after, err)
		}
		out = append(out, decode[[]T](t, body)...)
		if !more {
			return out
		}
		after = last
	}
	t.Fatalf("list %s: more than 10000 pages", kind)
	return nil
}

func listGroups(t testing.TB, s Store) []cp.SecurityGroup {
	return listAll[cp.SecurityGroup](t, s, org, cp.KindSecurityGroup, 100)
}

func createGroup(ctx context.Context, s Store, org string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	created, err := s.CreateSecurityGroup(ctx, org, w)
	if err != nil {
		return cp.SecurityGroup{}, err
	}
	return getGroup(ctx, s, org, created.ID)
}

func replaceGroup(ctx context.Context, s Store, org, id string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	if _, err := s.ReplaceSecurityGroup(ctx, org, id, w); err != nil {
		return cp.SecurityGroup{}, err
	}
	return getGroup(ctx, s, org, id)
}

func createList(ctx context.Context, s Store, org string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	created, err := s.CreatePrefixList(ctx, org, w)
	if err != nil {
		return cp.PrefixList{}, err
	}
	return getList(ctx, s, org, created.ID)
}

func replaceList(ctx context.Context, s Store, org, id string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	if _, err := s.ReplacePrefixList(ctx, org, id, w); err != nil {
		return cp.PrefixList{}, err
	}
	return getList(ctx, s, org, id)
}

// confirm reports, through Ingest as the MQTT side does, that site applied
// revision (or failed to, with errMsg).
func confirm(ctx context.Context, s Store, org, site string, revision uint64, applied bool, errMsg string) error {
	st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: s.Epoch(), Revision: revision, State: protocol.StateApplied}
	if !applied {
		st.State, st.Error = protocol.StateFailed, errMsg
	}
	_, err := reportStatus(ctx, s, org, site, st)
	return err
}

// reportStatus folds one status report into the store through Ingest.
func reportStatus(ctx context.Context, s Store, org, site string, st protocol.SiteStatus) (cp.ReportResult, error) {
	res, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Status: &st}})
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

// setPresence folds one presence into the store through Ingest.
func setPresence(ctx context.Context, s Store, org, site string, p protocol.Presence) error {
	_, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Presence: &p}})
	return err
}

func report(epoch string, rev uint64, state, errMsg string) protocol.SiteStatus {
	return protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: "site_a", Epoch: epoch, Revision: rev, State: state, Error: errMsg,
		AgentVersion: "v1", RouterOSVersion: "7.20.4", Board: "RB5009UG+S+"}
}

func site(t testing.TB, s Store, id string) cp.Site {
	t.Helper()
	st, err := s.GetSite(context.Background(), org, id)
	if err != nil {
		t.Fatalf("get site %s: %v", id, err)
	}
	return st
}
