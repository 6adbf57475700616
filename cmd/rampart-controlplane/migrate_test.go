package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/controlplane/store/postgres"
	"github.com/rampart-fw/rampart/internal/pgtest"
	"github.com/rampart-fw/rampart/protocol"
)

// migrateClock is the stores' clock in the migrate tests.
type migrateClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *migrateClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *migrateClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// fillBolt writes a bbolt store as a control plane would (compiled
// revisions, reports ingested, an audit trail) at the clock's time, in
// two organisations, and closes it.
func fillBolt(t *testing.T, path string, now func() time.Time) {
	t.Helper()
	ctx := context.Background()
	s, err := bolt.Open(path, bolt.Options{Revisioner: compile.Revisioner{}, Now: now, SyncTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	as := cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "alice", RequestID: "req-1", Method: "POST"})
	for _, org := range []string{"org_a", "org_b"} {
		l, err := s.CreatePrefixList(as, org, &cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}, Sites: []string{"site_c"}})
		if err != nil {
			t.Fatal(err)
		}
		g, err := s.CreateSecurityGroup(as, org, &cp.SecurityGroupWrite{Name: "Web", Sites: []string{"site_a", "site_b"}, Rules: []cp.FilterRuleWrite{
			{Direction: "inbound", Order: 1, Protocol: 6, Port: "443", Address: "0.0.0.0/0"},
			{Direction: "inbound", Order: 2, Protocol: 6, Port: "22", Address: l.ID},
		}})
		if err != nil {
			t.Fatal(err)
		}
		// site_a applies it; site_b fails it; site_c says nothing.
		var reports []cp.Report
		for site, state := range map[string]string{"site_a": protocol.StateApplied, "site_b": protocol.StateFailed} {
			st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: s.Epoch(), Revision: 1, State: state, Error: "no such item", AgentVersion: "v1"}
			reports = append(reports, cp.Report{OrgID: org, SiteID: site, Status: &st}, cp.Report{OrgID: org, SiteID: site, Presence: &protocol.Presence{State: protocol.PresenceOnline, At: now()}})
		}
		if _, err := s.Ingest(ctx, reports); err != nil {
			t.Fatal(err)
		}
		if err := s.Settle(ctx, org, []string{"site_a", "site_b"}); err != nil {
			t.Fatal(err)
		}
		// A replace, so versions and revisions are past 1.
		put := cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "bob", RequestID: "req-2", Method: "PUT"})
		if _, err := s.ReplaceSecurityGroup(put, org, g.ID, &cp.SecurityGroupWrite{Name: "Web", Sites: []string{"site_a", "site_b"}, Rules: []cp.FilterRuleWrite{
			{Direction: "inbound", Order: 1, Protocol: 6, Port: "8443", Address: "0.0.0.0/0"},
			{Direction: "inbound", Order: 2, Protocol: 6, Port: "22", Address: l.ID},
		}}); err != nil {
			t.Fatal(err)
		}
		if err := s.ReserveSite(ctx, org, "site_reserved"); err != nil {
			t.Fatal(err)
		}
		// site_gone is decommissioned and forgotten (its topics not yet
		// cleared), site_going on its way out.
		del := cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "carol", RequestID: "req-3", Method: "DELETE"})
		for _, site := range []string{"site_gone", "site_going"} {
			if err := s.ReserveSite(ctx, org, site); err != nil {
				t.Fatal(err)
			}
			if _, err := s.DecommissionSite(del, org, site); err != nil {
				t.Fatal(err)
			}
		}
		gone, err := s.GetSite(ctx, org, "site_gone")
		if err != nil {
			t.Fatal(err)
		}
		st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: "site_gone", Epoch: s.Epoch(), Revision: gone.DesiredRevision, State: protocol.StateApplied}
		if _, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: "site_gone", Status: &st}}); err != nil {
			t.Fatal(err)
		}
	}
	if refs, err := s.ForgetDecommissioned(ctx); err != nil || len(refs) != 2 {
		t.Fatalf("forget: %v, %v", refs, err)
	}
}

// snapshot is everything a client, the syncer or the compiler can read of
// a store.
type snapshot struct {
	Epoch     string
	Orgs      []string
	Resources map[string]string // org/kind/id → version and body
	Sites     map[string][]cp.Site
	SiteData  map[string]string // org/site → the compiler's bytes, hex
	Audit     map[string][]string
	Documents map[string]protocol.DesiredState
	Counts    map[string]map[cp.Status]int
	// Denied says, of each organisation's sites, which are refused.
	Denied map[string]bool
	// History is each site's state history, org/site → newest first.
	History map[string][]cp.SiteTransition
}

func snap(t *testing.T, s Store) snapshot {
	t.Helper()
	ctx := context.Background()
	out := snapshot{Epoch: s.Epoch(), Resources: map[string]string{}, Sites: map[string][]cp.Site{}, SiteData: map[string]string{},
		Audit: map[string][]string{}, Documents: map[string]protocol.DesiredState{}, Denied: map[string]bool{},
		History: map[string][]cp.SiteTransition{}}
	var err error
	if out.Orgs, err = s.Orgs(ctx); err != nil {
		t.Fatal(err)
	}
	if out.Counts, err = s.CountByStatus(ctx); err != nil {
		t.Fatal(err)
	}
	for _, org := range out.Orgs {
		for _, kind := range []string{cp.KindSecurityGroup, cp.KindPrefixList} {
			body, _, _, err := s.ListJSONPage(ctx, org, kind, "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			var ids []struct{ ID string }
			if err := json.Unmarshal(body, &ids); err != nil {
				t.Fatal(err)
			}
			for _, r := range ids {
				st, err := s.GetJSON(ctx, org, kind, r.ID)
				if err != nil {
					t.Fatal(err)
				}
				out.Resources[org+"/"+kind+"/"+r.ID] = fmt.Sprintf("v%d %s", st.Version, bytes.TrimSpace(st.Body))
			}
		}
		sites, err := s.ListSites(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		out.Sites[org] = sites
		for _, site := range []string{"site_a", "site_gone", "site_going"} {
			out.Denied[org+"/"+site] = s.Decommissioned(org, site)
		}
		var ids []string
		for _, site := range sites {
			ids = append(ids, site.ID)
			h, _, err := s.SiteHistory(ctx, org, site.ID, cp.SiteHistoryQuery{Limit: cp.SiteHistoryLimit})
			if err != nil {
				t.Fatal(err)
			}
			out.History[org+"/"+site.ID] = h
		}
		err = s.ViewPolicy(ctx, org, func(tx cp.PolicyTx) error {
			for _, id := range ids {
				b, err := tx.SiteData(id)
				if err != nil {
					return err
				}
				out.SiteData[org+"/"+id] = fmt.Sprintf("%x", b)
			}
			docs, err := compile.Published(tx, org, ids, s.Epoch(), func(site string, err error) { t.Errorf("compile %s/%s: %v", org, site, err) })
			for _, d := range docs {
				out.Documents[org+"/"+d.SiteID] = d
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		events, _, err := s.AuditEvents(ctx, org, cp.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			out.Audit[org] = append(out.Audit[org], string(e))
		}
	}
	return out
}

// TestMigrate copies a real bbolt file into a real PostgreSQL database and
// finds the same store there through every read (resources byte for byte
// with their versions, sites, the compiler's data, the documents the
// syncer would publish, the audit trail, the epoch); the next write
// carries on from the copied revisions and versions. A second run into
// the now non-empty database is refused and changes nothing.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	clk := &migrateClock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), DBFile)
	fillBolt(t, path, clk.Now)
	dsn := pgtest.DSN(t)

	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"migrate", "--from-bolt", path, "--store-url", dsn}, &out, &errOut); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "2 organisations, 2 security groups, 2 prefix lists, 10 sites, 10 audit events") {
		t.Errorf("migrate said: %s", out.String())
	}

	src, err := bolt.Open(path, bolt.Options{Revisioner: compile.Revisioner{}, Now: clk.Now, SyncTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := postgres.OpenStore(ctx, dsn, postgres.Options{Revisioner: compile.Revisioner{}, Now: clk.Now, SyncTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	// The republisher will publish every revised site once more, in case
	// bbolt's control plane committed a revision and died before
	// publishing it.
	unpublished, err := dst.Unpublished(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string][]string{"org_a": {"site_a", "site_b", "site_c", "site_going"}, "org_b": {"site_a", "site_b", "site_c", "site_going"}}, unpublished); d != "" {
		t.Errorf("sites to republish after the copy (-want +got):\n%s", d)
	}
	want, got := snap(t, src), snap(t, dst)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("the PostgreSQL store differs from the bbolt one (-bbolt +postgres):\n%s", d)
	}
	if len(got.Resources) != 4 || len(got.Sites["org_a"]) != 5 || len(got.Audit["org_a"]) != 5 || len(got.Documents) != 8 ||
		!got.Denied["org_a/site_gone"] || got.Denied["org_a/site_going"] || len(got.History["org_a/site_a"]) < 2 {
		t.Fatalf("the comparison compared too little: %d resources, %d sites, %d events, %d documents, %d transitions of site_a",
			len(got.Resources), len(got.Sites["org_a"]), len(got.Audit["org_a"]), len(got.Documents), len(got.History["org_a/site_a"]))
	}

	// The same write on both stores does the same thing: the compiler's
	// revisions and the resources' versions carry on.
	clk.add(time.Hour)
	for name, s := range map[string]Store{"bbolt": src, "postgres": dst} {
		var id string
		for k := range want.Resources {
			if strings.HasPrefix(k, "org_a/"+cp.KindPrefixList+"/") {
				id = strings.TrimPrefix(k, "org_a/"+cp.KindPrefixList+"/")
			}
		}
		st, err := s.ReplacePrefixList(ctx, "org_a", id, &cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "198.51.100.0/24"}}, Sites: []string{"site_c"}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Version != 2 {
			t.Errorf("%s: version %d after the copy's 1", name, st.Version)
		}
	}
	// Both still owe the forgotten sites' clearing; site_going is forgotten
	// at its deadline, on both.
	for name, s := range map[string]Store{"bbolt": src, "postgres": dst} {
		refs, err := s.ForgetDecommissioned(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(refs, func(a, b cp.SiteRef) int { return strings.Compare(a.OrgID+"/"+a.SiteID, b.OrgID+"/"+b.SiteID) })
		want := []cp.SiteRef{{OrgID: "org_a", SiteID: "site_going"}, {OrgID: "org_a", SiteID: "site_gone"}, {OrgID: "org_b", SiteID: "site_going"}, {OrgID: "org_b", SiteID: "site_gone"}}
		if d := cmp.Diff(want, refs); d != "" {
			t.Errorf("%s: sites to clear (-want +got):\n%s", name, d)
		}
	}
	want, got = snap(t, src), snap(t, dst)
	// The write's new prefix got a new id on each, and its audit event a
	// key of each store's sequence.
	want.Audit, got.Audit = nil, nil
	newPrefixID := regexp.MustCompile(`"id":"prfx_[0-9A-Za-z]{27}","cidr":"198.51.100.0/24"`)
	for _, sn := range []*snapshot{&want, &got} {
		for k, v := range sn.Resources {
			sn.Resources[k] = newPrefixID.ReplaceAllString(v, `"id":"(new)","cidr":"198.51.100.0/24"`)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("after the same write on both (-bbolt +postgres):\n%s", d)
	}
	if got.Sites["org_a"][0].DesiredRevision < 3 {
		t.Errorf("site_a's revision after the write: %+v", got.Sites["org_a"][0])
	}

	// Again, into the database that now holds it: refused, nothing changes.
	src.Close()
	before := snap(t, dst)
	errOut.Reset()
	err = run(ctx, []string{"migrate", "--from-bolt", path, "--store-url", dsn}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a second migrate into the same database: %v, want a refusal saying it is not empty", err)
	}
	if d := cmp.Diff(before, snap(t, dst)); d != "" {
		t.Errorf("the refused migrate changed the database (-before +after):\n%s", d)
	}
}

// TestMigrateAllOrNothing: a bbolt file with a record that cannot be read
// in its second organisation fails the migrate, and the database holds
// nothing of the first either.
func TestMigrateAllOrNothing(t *testing.T) {
	ctx := context.Background()
	clk := &migrateClock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), DBFile)
	fillBolt(t, path, clk.Now)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("orgs")).Bucket([]byte("org_b")).Bucket([]byte("sites")).Put([]byte("site_a"), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	dsn := pgtest.DSN(t)
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"migrate", "--from-bolt", path, "--store-url", dsn}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "nothing was copied") || !strings.Contains(err.Error(), "org_b") {
		t.Fatalf("migrate of a damaged file: %v; want a failure naming the organisation", err)
	}
	dst, err := postgres.OpenStore(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if orgs, err := dst.Orgs(ctx); err != nil || len(orgs) != 0 {
		t.Errorf("after a failed migrate the database holds organisations %v (%v)", orgs, err)
	}
}

// TestMigrateRefusesBadArguments: what migrate refuses before touching
// either store, each with what would be valid.
func TestMigrateRefusesBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store-url", "postgres://db/rampart"}, "both required"},
		{[]string{"--from-bolt", filepath.Join(dir, "missing.db"), "--store-url", "postgres://db/rampart"}, "is not a bbolt file"},
		{[]string{"--from-bolt", dir, "--store-url", "postgres://db/rampart"}, "is not a bbolt file"},
		{[]string{"--from-bolt", filepath.Join(dir, "x.db"), "--store-url", "mysql://db/rampart"}, "want a PostgreSQL URL"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"migrate"}, tc.args...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("migrate %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("migrate created the missing file it was given: %v", err)
	}
}

// BenchmarkMigrate copies a bbolt store of 10 organisations, each at the
// default site quota (2,000 sites, 20 groups of 10 rules on 100 sites
// each, 10 prefix lists, every site having applied its revision): 20,000
// sites in all. One iteration is one migrate into a fresh database.
//
//	go test -run '^$' -bench Migrate -benchtime 3x ./cmd/rampart-controlplane
func BenchmarkMigrate(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), DBFile)
	s, err := bolt.Open(path, bolt.Options{Revisioner: compile.Revisioner{}, SyncTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	const orgs, groups, sitesPerGroup, lists = 10, 20, 100, 10
	for o := range orgs {
		org := fmt.Sprintf("org_%02d", o)
		var listIDs []string
		for l := range lists {
			st, err := s.CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: fmt.Sprint("list ", l), Prefixes: []cp.PrefixWrite{{CIDR: fmt.Sprintf("10.%d.%d.0/24", o, l)}}})
			if err != nil {
				b.Fatal(err)
			}
			listIDs = append(listIDs, st.ID)
		}
		var reports []cp.Report
		for g := range groups {
			w := &cp.SecurityGroupWrite{Name: fmt.Sprint("group ", g)}
			for r := range 10 {
				addr := "0.0.0.0/0"
				if r == 0 {
					addr = listIDs[g%lists]
				}
				w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: r + 1, Protocol: 6, Port: fmt.Sprint(1000 + r), Address: addr, Description: "rule"})
			}
			for i := range sitesPerGroup {
				site := fmt.Sprintf("site_%04d", g*sitesPerGroup+i)
				w.Sites = append(w.Sites, site)
				st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: s.Epoch(), Revision: 1, State: protocol.StateApplied}
				reports = append(reports, cp.Report{OrgID: org, SiteID: site, Status: &st})
			}
			if _, err := s.CreateSecurityGroup(ctx, org, w); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.Ingest(ctx, reports); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dsn := pgtest.DSN(b)
		b.StartTimer()
		if err := run(ctx, []string{"migrate", "--from-bolt", path, "--store-url", dsn}, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(orgs*groups*sitesPerGroup), "µs/site")
}

// TestMigrateRefusesAFileInUse: a bbolt file a control plane still holds
// is refused (bbolt's lock, after its timeout), saying why, and the
// database is left empty.
func TestMigrateRefusesAFileInUse(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), DBFile)
	held, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	dsn := pgtest.DSN(t)
	err = run(ctx, []string{"migrate", "--from-bolt", path, "--store-url", dsn}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is a control plane still running on it?") {
		t.Fatalf("migrate of a file in use: %v", err)
	}
	dst, err := postgres.OpenStore(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if orgs, err := dst.Orgs(ctx); err != nil || len(orgs) != 0 {
		t.Errorf("after a refused migrate the database holds %v (%v)", orgs, err)
	}
}

// TestMigrateRecordsTheKey: migrate records the fingerprint of the
// rampart.key beside the bbolt file (the key the sites' passwords were
// derived from), so a control plane started on the database with another
// key is refused; a database a control plane with another key already
// started on is refused with nothing copied; without a key file there the
// first control plane to start records its own.
func TestMigrateRecordsTheKey(t *testing.T) {
	ctx := context.Background()
	clk := &migrateClock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	other, err := keys.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fill := func(withKey bool) (string, keys.Key) {
		t.Helper()
		dir := t.TempDir()
		path := filepath.Join(dir, DBFile)
		fillBolt(t, path, clk.Now)
		if !withKey {
			return path, keys.Key{}
		}
		key, err := keys.LoadOrCreate(dir)
		if err != nil {
			t.Fatal(err)
		}
		return path, key
	}
	openDB := func(dsn string) *postgres.DB {
		t.Helper()
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	var mismatch *postgres.KeyMismatchError

	t.Run("recorded", func(t *testing.T) {
		path, key := fill(true)
		dsn := pgtest.DSN(t)
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"migrate", "--from-bolt", path, "--store-url", dsn}, &out, &errOut); err != nil {
			t.Fatalf("migrate: %v\n%s", err, errOut.String())
		}
		if want := "every control plane on it needs " + filepath.Join(filepath.Dir(path), keys.KeyFile); !strings.Contains(out.String(), want) {
			t.Errorf("migrate said %q; want it to say %q", out.String(), want)
		}
		db := openDB(dsn)
		if err := db.CheckKey(ctx, other.Fingerprint()); !errors.As(err, &mismatch) {
			t.Errorf("a control plane with another key after migrate: %v; want a *postgres.KeyMismatchError", err)
		}
		if err := db.CheckKey(ctx, key.Fingerprint()); err != nil {
			t.Errorf("a control plane with the bbolt file's key after migrate: %v", err)
		}
	})
	t.Run("another key started first", func(t *testing.T) {
		path, _ := fill(true)
		dsn := pgtest.DSN(t)
		db := openDB(dsn)
		if err := db.CheckKey(ctx, other.Fingerprint()); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		err := run(ctx, []string{"migrate", "--from-bolt", path, "--store-url", dsn}, &out, &errOut)
		if !errors.As(err, &mismatch) || !strings.Contains(err.Error(), "nothing was copied") || !strings.Contains(err.Error(), "a control plane with another key has started on this database") {
			t.Fatalf("migrate into a database another key started on: %v; want a refusal saying so", err)
		}
		dst, err := postgres.OpenStore(ctx, dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		if orgs, err := dst.Orgs(ctx); err != nil || len(orgs) != 0 {
			t.Errorf("after the refused migrate the database holds organisations %v (%v)", orgs, err)
		}
	})
	t.Run("no key file", func(t *testing.T) {
		path, _ := fill(false)
		dsn := pgtest.DSN(t)
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"migrate", "--from-bolt", path, "--store-url", dsn}, &out, &errOut); err != nil {
			t.Fatalf("migrate: %v\n%s", err, errOut.String())
		}
		if !strings.Contains(out.String(), "the first control plane to start records its key") {
			t.Errorf("migrate said %q; want it to say the first control plane records its key", out.String())
		}
		db := openDB(dsn)
		if err := db.CheckKey(ctx, other.Fingerprint()); err != nil {
			t.Errorf("the first control plane after a migrate without a key file: %v", err)
		}
	})
}
