package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/controlplane/syncer"
	"github.com/rampart-fw/rampart/internal/freeport"
	"github.com/rampart-fw/rampart/internal/pgtest"
	"github.com/rampart-fw/rampart/protocol"
)

// The interfaces the control plane uses the store through.
var (
	_ api.Store           = (*Store)(nil)
	_ syncer.Store        = (*Store)(nil)
	_ syncer.PublishFence = (*Store)(nil)
)

// clock is a test clock both stores of a comparison follow.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openStore(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenStore(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// storeUnderTest is everything the API, the syncer and the command use.
type storeUnderTest interface {
	api.Store
	syncer.Store
	Sweep(ctx context.Context) (int, error)
	ListSites(ctx context.Context, org string) ([]cp.Site, error)
	Decommissioned(org, site string) bool
}

// ids are the ids the stores draw (KSUIDs) and the epoch: they differ
// between two runs of one scenario, so traces name them by first
// appearance.
// Content hashes cover ids, so they are named too.
var ids = regexp.MustCompile(`(sec_grp_|fltr_|prfx_lst_|prfx_)[0-9A-Za-z]{27}|evt_[0-9a-f]{32}|sha256:[0-9a-f]{64}`)

type trace struct {
	lines  []string
	names  map[string]string
	epoch  string
	counts map[string]int
}

func (tr *trace) add(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if tr.epoch != "" {
		s = strings.ReplaceAll(s, tr.epoch, "EPOCH")
	}
	s = ids.ReplaceAllStringFunc(s, func(id string) string {
		if n, ok := tr.names[id]; ok {
			return n
		}
		prefix := id[:strings.LastIndexAny(id, "_:")+1]
		tr.counts[prefix]++
		n := fmt.Sprintf("%s#%d", prefix, tr.counts[prefix])
		tr.names[id] = n
		return n
	})
	tr.lines = append(tr.lines, s)
}

func (tr *trace) result(what string, v any, err error) {
	if err != nil {
		tr.add("%s: error %s", what, describe(err))
		return
	}
	b, _ := json.Marshal(v)
	tr.add("%s: %s", what, b)
}

func describe(err error) string {
	if e, ok := err.(*cp.Error); ok {
		return fmt.Sprintf("%s %s %q retry=%s", e.Code, e.Field, e.Message, e.RetryAfter)
	}
	return "internal: " + err.Error()
}

// scenario drives a store through what the API and the syncer do, and
// records every answer.
func scenario(t *testing.T, s storeUnderTest, clk *clock) []string {
	ctx := context.Background()
	tr := &trace{names: map[string]string{}, epoch: s.Epoch(), counts: map[string]int{}}
	const org, other = "org_a", "org_b"
	desc := "a description"
	stored := func(what string) func(cp.Stored, error) string {
		return func(st cp.Stored, err error) string { return storedLine(tr, what, st, err) }
	}
	sites := func(org string) {
		list, err := s.ListSites(ctx, org)
		tr.result("sites of "+org, list, err)
	}
	report := func(org, site, state string, rev uint64, errMsg string) {
		res, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Status: &protocol.SiteStatus{
			Epoch: s.Epoch(), Revision: rev, State: state, Error: errMsg, AgentVersion: "1.0", Board: "hAP"}}})
		tr.result(fmt.Sprintf("report %s %s %s %d", org, site, state, rev), res, err)
	}
	desired := func(org, site string) uint64 {
		st, err := s.GetSite(ctx, org, site)
		if err != nil {
			t.Fatalf("get site %s: %v", site, err)
		}
		return st.DesiredRevision
	}
	get := func(kind, id string) {
		st, err := s.GetJSON(ctx, org, kind, id)
		stored("get "+kind)(st, err)
	}
	policy := func(org string, ss ...string) {
		var docs []protocol.DesiredState
		err := s.ViewPolicy(ctx, org, func(tx cp.PolicyTx) error {
			var err error
			docs, err = compile.Published(tx, org, ss, s.Epoch(), func(site string, err error) { t.Errorf("stamp %s: %v", site, err) })
			return err
		})
		tr.result("published "+org, docs, err)
	}
	audit := func(q cp.AuditQuery) {
		evs, more, err := s.AuditEvents(ctx, org, q)
		tr.result(fmt.Sprintf("audit %+v more=%v", q, more), evs, err)
	}

	l1 := stored("create list")(s.CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: "office", Description: &desc,
		Prefixes: []cp.PrefixWrite{{CIDR: "203.0.113.0/24"}, {CIDR: "198.51.100.0/24", Description: "dc"}}, Sites: []string{"s3"}}))
	rules := []cp.FilterRuleWrite{
		{Direction: protocol.Inbound, Order: 1, Protocol: 6, Port: "22", Address: l1},
		{Direction: protocol.Inbound, Order: 2, Protocol: 6, Port: "443", Address: "10.0.0.0/8"},
		{Direction: protocol.Outbound, Order: 3, Protocol: 17, Port: "53", Address: "192.0.2.0/24"},
	}
	g1 := stored("create group")(s.CreateSecurityGroup(ctx, org, &cp.SecurityGroupWrite{Name: "web", Rules: rules, Sites: []string{"s1", "s2"}}))
	g2 := stored("create empty group")(s.CreateSecurityGroup(ctx, org, &cp.SecurityGroupWrite{Name: "none", Rules: []cp.FilterRuleWrite{}}))
	stored("create group with an unknown list")(s.CreateSecurityGroup(ctx, org, &cp.SecurityGroupWrite{Name: "bad", Sites: []string{"s1"},
		Rules: []cp.FilterRuleWrite{rules[1], {Direction: protocol.Inbound, Order: 9, Address: "prfx_lst_0ujsswThIGTUYm2K8FjOOfxcYpw"}}}))
	stored("create in another org with a list of this one")(s.CreateSecurityGroup(ctx, other, &cp.SecurityGroupWrite{Name: "other", Rules: rules[:1]}))
	get(cp.KindSecurityGroup, g1)
	get(cp.KindPrefixList, l1)
	get(cp.KindSecurityGroup, "sec_grp_0ujsswThIGTUYm2K8FjOOfxcYpw")
	sites(org)
	policy(org, "s1", "s2", "s3", "s4")
	stored("replace while syncing")(s.ReplaceSecurityGroup(ctx, org, g1, &cp.SecurityGroupWrite{Name: "web2", Rules: rules}))
	for _, site := range []string{"s1", "s2"} {
		report(org, site, protocol.StateApplying, desired(org, site), "")
		report(org, site, protocol.StateApplied, desired(org, site), "")
	}
	report(org, "s2", protocol.StateApplying, desired(org, "s2"), "")  // stale
	report(org, "s1", protocol.StateApplied, desired(org, "s1")+5, "") // forged
	get(cp.KindSecurityGroup, g1)
	get(cp.KindPrefixList, l1)
	// A replace that keeps two rules' matches (their ids stay), reorders,
	// and drops s2 for s4.
	rules2 := []cp.FilterRuleWrite{rules[2], {Direction: protocol.Inbound, Order: 5, Protocol: 1, Address: "10.1.0.0/16"}, rules[0]}
	rules2[0].Order, rules2[2].Order = 7, 2
	ctxIf := cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "alice", RequestID: "req-1", Method: "PUT", IfMatch: cp.Precondition{Versions: []uint64{7}, Raw: `"v7"`}})
	stored("replace with a stale If-Match")(s.ReplaceSecurityGroup(ctxIf, org, g1, &cp.SecurityGroupWrite{Name: "web2", Rules: rules2, Sites: []string{"s1", "s4"}}))
	ctxIf = cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "alice", RequestID: "req-2", Method: "PUT", IfMatch: cp.Precondition{Versions: []uint64{1}, Raw: `"v1"`}})
	stored("replace")(s.ReplaceSecurityGroup(ctxIf, org, g1, &cp.SecurityGroupWrite{Name: "web2", Description: &desc, Rules: rules2, Sites: []string{"s1", "s4"}}))
	sites(org)
	policy(org, "s1", "s2", "s3", "s4")
	stored("replace list while a group's sites sync")(s.ReplacePrefixList(ctx, org, l1, &cp.PrefixListWrite{Name: "office2", Prefixes: []cp.PrefixWrite{{CIDR: "203.0.113.0/24"}}}))
	report(org, "s1", protocol.StateFailed, desired(org, "s1"), "trap: no such item")
	get(cp.KindSecurityGroup, g1)
	sites(org)
	clk.Add(3 * time.Minute)
	n, err := s.Sweep(ctx)
	tr.result("sweep", n, err)
	get(cp.KindSecurityGroup, g1)
	get(cp.KindPrefixList, l1)
	counts, err := s.CountByStatus(ctx)
	tr.result("count by status", nonZero(counts[cp.KindSecurityGroup])+" "+nonZero(counts[cp.KindPrefixList]), err)
	siteCounts, err := s.CountSites(ctx)
	tr.result("count sites", nonZero(siteCounts), err)
	// Late confirmations still turn it active.
	report(org, "s1", protocol.StateApplied, desired(org, "s1"), "")
	report(org, "s4", protocol.StateApplied, desired(org, "s4"), "")
	get(cp.KindSecurityGroup, g1)
	get(cp.KindPrefixList, l1)
	// The list write now: its own site and the group's.
	stored("replace list")(s.ReplacePrefixList(ctx, org, l1, &cp.PrefixListWrite{Name: "office2",
		Prefixes: []cp.PrefixWrite{{CIDR: "198.51.100.0/24", Description: "dc"}, {CIDR: "192.0.2.128/25"}}, Sites: []string{"s3", "s5"}}))
	policy(org, "s1", "s3", "s4", "s5")
	// A write that gives sites what they applied is confirmed at once.
	for _, site := range []string{"s1", "s3", "s4", "s5"} {
		report(org, site, protocol.StateApplied, desired(org, site), "")
	}
	stored("replace group, same content")(s.ReplaceSecurityGroup(ctx, org, g1, &cp.SecurityGroupWrite{Name: "web2", Description: &desc, Rules: rules2, Sites: []string{"s1", "s4"}}))
	err = s.Settle(ctx, org, []string{"s1", "s4", "nope"})
	tr.result("settle", nil, err)
	sites(org)
	err = s.DeletePrefixList(ctx, org, l1)
	tr.result("delete list in use", nil, err)
	err = s.DeleteSecurityGroup(ctx, org, g2)
	tr.result("delete empty group", nil, err)
	err = s.DeleteSecurityGroup(ctx, org, g2)
	tr.result("delete it again", nil, err)
	err = s.DeleteSecurityGroup(ctx, org, g1)
	tr.result("delete group", nil, err)
	clk.Add(time.Second)
	err = s.DeletePrefixList(cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "bob", Method: "DELETE"}), org, l1)
	tr.result("delete list while syncing", nil, err)
	clk.Add(3 * time.Minute)
	err = s.DeletePrefixList(cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "bob", Method: "DELETE"}), org, l1)
	tr.result("delete list", nil, err)
	sites(org)
	err = s.Settle(ctx, org, []string{"s1", "s2", "s3", "s4", "s5"})
	tr.result("settle", nil, err)
	sites(org)
	policy(org, "s1", "s3")
	// Presence.
	_, err = s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: "s1", Presence: &protocol.Presence{State: protocol.PresenceOffline}},
		{OrgID: org, SiteID: "s9", Presence: &protocol.Presence{State: protocol.PresenceOnline}}})
	tr.result("presence", nil, err)
	sites(org)
	// Paging.
	for i := range 4 {
		stored("create for paging")(s.CreatePrefixList(ctx, other, &cp.PrefixListWrite{Name: fmt.Sprintf("list %d", i), Prefixes: []cp.PrefixWrite{}}))
	}
	// Ids created within one second sort in no particular order (KSUIDs):
	// the pages are checked for order and completeness, not against bolt's.
	after, seen := "", []string{}
	for {
		body, last, more, err := s.ListJSONPage(ctx, other, cp.KindPrefixList, after, 3)
		var page []cp.PrefixList
		if err == nil {
			err = json.Unmarshal(body, &page)
		}
		for _, l := range page {
			seen = append(seen, l.ID)
		}
		tr.add("page: %d lists, more=%v, last is the page's last: %v, err=%v", len(page), more, len(page) > 0 && page[len(page)-1].ID == last, err)
		if !more || err != nil {
			break
		}
		after = last
	}
	tr.add("pages: %d lists, sorted and unique: %v", len(seen), slices.IsSorted(seen) && len(slices.Compact(slices.Clone(seen))) == len(seen))
	page, more, err := s.ListSitesPage(ctx, org, "s1", 2)
	tr.result(fmt.Sprintf("sites page more=%v", more), page, err)
	// Audit.
	audit(cp.AuditQuery{Limit: 100})
	audit(cp.AuditQuery{Limit: 2, ResourceID: g1})
	audit(cp.AuditQuery{Limit: 100, Since: clk.Now().Add(-time.Minute)})
	audit(cp.AuditQuery{Limit: 100, Until: clk.Now().Add(-time.Minute)})
	// Quotas and reservations.
	tr.result("reserve", nil, s.ReserveSite(ctx, other, "r1"))
	tr.result("reserve again", nil, s.ReserveSite(ctx, other, "r1"))
	orgs, err := s.Orgs(ctx)
	tr.result("orgs", orgs, err)

	// Decommissioning a site (#16 item 4).
	const dorg = "org_c"
	dl := stored("create list to leave")(s.CreatePrefixList(ctx, dorg, &cp.PrefixListWrite{Name: "dlist", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}, Sites: []string{"d1"}}))
	dg := stored("create group to leave")(s.CreateSecurityGroup(ctx, dorg, &cp.SecurityGroupWrite{Name: "dgroup",
		Rules: []cp.FilterRuleWrite{{Direction: protocol.Inbound, Order: 1, Protocol: 6, Port: "22", Address: dl}}, Sites: []string{"d1", "d2"}}))
	for _, site := range []string{"d1", "d2"} {
		report(dorg, site, protocol.StateApplied, desired(dorg, site), "")
	}
	dctx := cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "carol", RequestID: "req-d", Method: "DELETE"})
	site, err := s.DecommissionSite(dctx, dorg, "d1")
	tr.result("decommission d1", site, err)
	site, err = s.DecommissionSite(dctx, dorg, "d1")
	tr.result("decommission d1 again", site, err)
	_, err = s.DecommissionSite(dctx, dorg, "nope")
	tr.result("decommission an unknown site", nil, err)
	stored("group after the decommission")(s.GetJSON(ctx, dorg, cp.KindSecurityGroup, dg))
	stored("list after the decommission")(s.GetJSON(ctx, dorg, cp.KindPrefixList, dl))
	stored("attach a decommissioning site")(s.CreateSecurityGroup(ctx, dorg, &cp.SecurityGroupWrite{Name: "again", Rules: []cp.FilterRuleWrite{}, Sites: []string{"d1"}}))
	tr.result("enroll a decommissioning site", nil, s.ReserveSite(ctx, dorg, "d1"))
	refs, err := s.ForgetDecommissioned(ctx)
	tr.result("forget before the agent applied", refs, err)
	report(dorg, "d1", protocol.StateApplied, desired(dorg, "d1"), "")
	report(dorg, "d2", protocol.StateApplied, desired(dorg, "d2"), "")
	refs, err = s.ForgetDecommissioned(ctx)
	tr.result("forget", refs, err)
	sites(dorg)
	report(dorg, "d1", protocol.StateApplied, 99, "")
	tr.add("decommissioned: %v %v", s.Decommissioned(dorg, "d1"), s.Decommissioned(dorg, "d2"))
	tr.result("cleared", nil, s.SiteCleared(ctx, dorg, "d1"))
	refs, err = s.ForgetDecommissioned(ctx)
	tr.result("forget after clearing", refs, err)
	stored("group after forgetting")(s.GetJSON(ctx, dorg, cp.KindSecurityGroup, dg))
	tr.result("enroll again", nil, s.ReserveSite(ctx, dorg, "d1"))
	tr.add("decommissioned after enrolling: %v", s.Decommissioned(dorg, "d1"))
	sites(dorg)
	stored("attach it again")(s.ReplaceSecurityGroup(ctx, dorg, dg, &cp.SecurityGroupWrite{Name: "dgroup",
		Rules: []cp.FilterRuleWrite{{Direction: protocol.Inbound, Order: 1, Protocol: 6, Port: "22", Address: dl}}, Sites: []string{"d1", "d2"}}))
	sites(dorg)
	evs, _, err := s.AuditEvents(ctx, dorg, cp.AuditQuery{Limit: 100})
	tr.result("audit of the decommission", evs, err)
	return tr.lines
}

// TestBehavesAsBolt runs one scenario of everything the API and the syncer
// ask of a store against store/bolt and this store, and compares what they
// answer, line by line: the same domain rules behind both must give the
// same results (ids and epochs named by first appearance).
func TestBehavesAsBolt(t *testing.T) {
	boltClock, pgClock := newClock(), newClock()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "rampart.db"), bolt.Options{Now: boltClock.Now, Revisioner: compile.Revisioner{}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := openStore(t, pgtest.DSN(t), Options{Now: pgClock.Now, Revisioner: compile.Revisioner{}})
	want := scenario(t, b, boltClock)
	got := scenario(t, p, pgClock)
	for _, line := range got {
		if strings.Contains(line, "error internal") {
			t.Errorf("internal error: %s", line)
		}
		if testing.Verbose() {
			t.Log(line)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("PostgreSQL answers differ from bbolt's (-bolt +postgres):\n%s", d)
	}
}

func storedLine(tr *trace, what string, st cp.Stored, err error) string {
	tr.add("%s: id=%s version=%d etag=%s err=%v body=%s", what, st.ID, st.Version, st.ETag(), err != nil, st.Body)
	if err != nil {
		tr.add("%s: error %s", what, describe(err))
	}
	return st.ID
}

// nonZero are the counts of m that are not zero, sorted (a store may or
// may not answer zeros).
func nonZero[K ~string](m map[K]int) string {
	var out []string
	for k, n := range m {
		if n != 0 {
			out = append(out, fmt.Sprintf("%s=%d", k, n))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// TestStorageUnavailable: a database that cannot be reached, or takes no
// writes, is the storage failing (503 storage_unavailable), not a bug.
func TestStorageUnavailable(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s := openStore(t, dsn, Options{})

	// Read-only sessions, as on a standby.
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	ro, err := pgxpool.New(ctx, dsn+sep+"default_transaction_read_only=on")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	readOnly := &Store{DB: &DB{pool: ro, epoch: s.Epoch()}, opts: s.opts}
	if err := readOnly.Ping(ctx); cp.ErrorCode(err) != cp.CodeStorageUnavailable {
		t.Errorf("ping of a read-only database: %v; want a storage error", err)
	}
	_, err = readOnly.CreateSecurityGroup(ctx, "org", &cp.SecurityGroupWrite{Name: "g", Rules: []cp.FilterRuleWrite{}})
	if cp.ErrorCode(err) != cp.CodeStorageUnavailable {
		t.Errorf("write to a read-only database: %v; want a storage error", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}

	// A server that is not there.
	gone, err := pgxpool.New(ctx, "postgres://nobody@"+freeport.Addr(t)+"/none?connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	down := &Store{DB: &DB{pool: gone, epoch: s.Epoch()}, opts: s.opts}
	if _, err := down.Ingest(ctx, []cp.Report{{OrgID: "org", SiteID: "s", Presence: &protocol.Presence{State: protocol.PresenceOnline}}}); cp.ErrorCode(err) != cp.CodeStorageUnavailable {
		t.Errorf("ingest into a database that is down: %v; want a storage error", err)
	}
}

// TestLockTimeoutIsUnavailable: a write that waits past lock_timeout for
// its organisation (another replica's write is stuck holding it) is the
// storage being unavailable, which the client may retry, not a bug.
func TestLockTimeoutIsUnavailable(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s := openStore(t, dsn, Options{})
	if _, err := s.CreatePrefixList(ctx, "org", &cp.PrefixListWrite{Name: "first", Prefixes: []cp.PrefixWrite{}}); err != nil {
		t.Fatal(err)
	}
	stuck, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Rollback(ctx)
	if err := lockOrg(ctx, stuck, "org"); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	impatient := openStore(t, dsn+sep+"lock_timeout=200", Options{})
	_, err = impatient.CreatePrefixList(ctx, "org", &cp.PrefixListWrite{Name: "second", Prefixes: []cp.PrefixWrite{}})
	if cp.ErrorCode(err) != cp.CodeStorageUnavailable {
		t.Errorf("write behind a stuck one: %v; want a storage error", err)
	}
}
