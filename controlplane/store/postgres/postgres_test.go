package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T, dsn string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

func pool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

type appliedRow struct {
	Version int
	Name    string
}

func applied(t *testing.T, p *pgxpool.Pool) []appliedRow {
	t.Helper()
	rows, err := p.Query(context.Background(), `SELECT version, name FROM rampart_schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("read migrations table: %v", err)
	}
	defer rows.Close()
	var out []appliedRow
	for rows.Next() {
		var r appliedRow
		if err := rows.Scan(&r.Version, &r.Name); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func tables(t *testing.T, p *pgxpool.Pool) []string {
	t.Helper()
	rows, err := p.Query(context.Background(), `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

// TestEmbeddedMigrations: the binary carries well-numbered migrations.
func TestEmbeddedMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	if SchemaVersion() != len(ms) || ms[0].name != "0001_initial.sql" {
		t.Errorf("schema version %d, first %s; want %d and 0001_initial.sql", SchemaVersion(), ms[0].name, len(ms))
	}
}

func TestLoadMigrationsRefusesBadSets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"gap", fstest.MapFS{"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}}, "version 3 where 2 was expected"},
		{"repeat", fstest.MapFS{"migrations/0001_a.sql": {}, "migrations/0001_b.sql": {}}, "version 1 where 2 was expected"},
		{"bad name", fstest.MapFS{"migrations/1_a.sql": {}}, "name must be NNNN_lowercase_words.sql"},
		{"none", fstest.MapFS{}, "no migrations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadMigrations(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one saying %q", err, tc.want)
			}
		})
	}
}

// TestOpenMigratesOnce: the first open creates the schema and records its
// version; a second open (a restart, another replica) changes nothing and
// sees the same epoch.
func TestOpenMigratesOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := open(t, dsn)
	p := pool(t, dsn)
	want := []appliedRow{{1, "0001_initial.sql"}, {2, "0002_store.sql"}, {3, "0003_site_history.sql"}, {4, "0004_key_fingerprint.sql"}}
	if d := cmp.Diff(want, applied(t, p)); d != "" {
		t.Errorf("applied migrations (-want +got):\n%s", d)
	}
	wantTables := []string{"audit_events", "denied_sites", "group_sites", "leases", "list_refs", "list_sites", "orgs", "prefix_lists",
		"rampart_meta", "rampart_schema_migrations", "security_groups", "site_decommissions", "site_history", "site_published", "sites", "sync_awaiting", "sync_states"}
	if d := cmp.Diff(wantTables, tables(t, p)); d != "" {
		t.Errorf("tables (-want +got):\n%s", d)
	}
	b := open(t, dsn)
	if d := cmp.Diff(want, applied(t, p)); d != "" {
		t.Errorf("applied migrations after a second open (-want +got):\n%s", d)
	}
	if a.Epoch() == "" || a.Epoch() != b.Epoch() {
		t.Errorf("epochs %q and %q; want one non-empty epoch", a.Epoch(), b.Epoch())
	}
	if err := b.Ping(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestConcurrentOpens: replicas starting at once on an empty database all
// open it; the schema is applied once and they agree on the epoch. Without
// the advisory lock, concurrent CREATE TABLEs fail on PostgreSQL's catalog
// (duplicate key in pg_type) and the migrations table gets duplicates.
func TestConcurrentOpens(t *testing.T) {
	dsn := pgtest.DSN(t)
	const replicas = 8
	var wg sync.WaitGroup
	dbs := make([]*DB, replicas)
	errs := make([]error, replicas)
	start := make(chan struct{})
	for i := range replicas {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			dbs[i], errs[i] = Open(ctx, dsn)
		})
	}
	close(start)
	wg.Wait()
	epochs := map[string]bool{}
	for i := range replicas {
		if errs[i] != nil {
			t.Errorf("replica %d: %v", i, errs[i])
			continue
		}
		epochs[dbs[i].Epoch()] = true
		dbs[i].Close()
	}
	if len(epochs) != 1 {
		t.Errorf("replicas see epochs %v; want one", epochs)
	}
	if d := cmp.Diff([]appliedRow{{1, "0001_initial.sql"}, {2, "0002_store.sql"}, {3, "0003_site_history.sql"}, {4, "0004_key_fingerprint.sql"}}, applied(t, pool(t, dsn))); d != "" {
		t.Errorf("applied migrations (-want +got):\n%s", d)
	}
}

// TestFailedMigrationChangesNothing: a migration that fails midway leaves
// no table of its own nor of the migrations before it in the same open.
func TestFailedMigrationChangesNothing(t *testing.T) {
	dsn := pgtest.DSN(t)
	p := pool(t, dsn)
	files := fstest.MapFS{
		"migrations/0001_first.sql":  {Data: []byte(`CREATE TABLE first (id int);`)},
		"migrations/0002_broken.sql": {Data: []byte(`CREATE TABLE second (id int); INSERT INTO second VALUES ('not a number');`)},
	}
	err := migrate(context.Background(), p, files)
	var me *MigrationError
	if !errors.As(err, &me) || me.Name != "0002_broken.sql" {
		t.Fatalf("error %v; want a *MigrationError for 0002_broken.sql", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22P02" { // invalid_text_representation
		t.Errorf("error %v; want PostgreSQL's 22P02 underneath", err)
	}
	if got := tables(t, p); len(got) != 0 {
		t.Errorf("tables after a failed migration: %v; want none", got)
	}
	// Fixed, the same set applies from the start.
	files["migrations/0002_broken.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE second (id int);`)}
	if err := migrate(context.Background(), p, files); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"first", "rampart_schema_migrations", "second"}, tables(t, p)); d != "" {
		t.Errorf("tables (-want +got):\n%s", d)
	}
}

// TestNewerSchemaRefused: a database migrated by a newer binary is not
// opened, and not written.
func TestNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.DSN(t)
	open(t, dsn).Close()
	p := pool(t, dsn)
	if _, err := p.Exec(context.Background(), `INSERT INTO rampart_schema_migrations (version, name) VALUES (99, '0099_future.sql')`); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dsn)
	var tooNew *SchemaTooNewError
	if !errors.As(err, &tooNew) || tooNew.Database != 99 || tooNew.Binary != SchemaVersion() {
		t.Fatalf("open: %v; want a *SchemaTooNewError 99 > %d", err, SchemaVersion())
	}
}

func TestOpenBadURL(t *testing.T) {
	_, err := Open(context.Background(), "postgres://%zz")
	if err == nil || !strings.Contains(err.Error(), "parse PostgreSQL URL") {
		t.Errorf("error %v; want one about the URL", err)
	}
}

// TestSchemaKeepsRowsConsistent: the constraints of the schema, against the
// real server: a prefix list still referred to cannot be deleted, deleting
// a group takes its sites and references along, a sync state's
// awaited sites go with it, and statuses and kinds outside the domain's are
// refused.
func TestSchemaKeepsRowsConsistent(t *testing.T) {
	dsn := pgtest.DSN(t)
	open(t, dsn)
	p := pool(t, dsn)
	ctx := context.Background()
	exec := func(sql string, args ...any) error {
		_, err := p.Exec(ctx, sql, args...)
		return err
	}
	must := func(sql string, args ...any) {
		t.Helper()
		if err := exec(sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	code := func(err error) string {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return pgErr.Code
		}
		return ""
	}
	count := func(table string) int {
		t.Helper()
		var n int
		if err := p.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	must(`INSERT INTO prefix_lists (org_id, id, doc) VALUES ('o', 'pl_1', '{}')`)
	must(`INSERT INTO security_groups (org_id, id, doc) VALUES ('o', 'sg_1', '{}')`)
	must(`INSERT INTO group_sites VALUES ('o', 'sg_1', 'site_a')`)
	must(`INSERT INTO list_refs VALUES ('o', 'pl_1', 'sg_1')`)
	must(`INSERT INTO sync_states (org_id, kind, resource_id, status, started, deadline) VALUES ('o', 'security_group', 'sg_1', 'syncing', now(), now() + interval '1 minute')`)
	must(`INSERT INTO sync_awaiting VALUES ('o', 'security_group', 'sg_1', 'site_a', 3)`)

	for _, tc := range []struct {
		name, sql, code string
	}{
		{"referenced list", `DELETE FROM prefix_lists WHERE id = 'pl_1'`, "23503"},
		{"reference to a missing list", `INSERT INTO list_refs VALUES ('o', 'pl_missing', 'sg_1')`, "23503"},
		{"list of another org", `INSERT INTO list_refs VALUES ('other', 'pl_1', 'sg_1')`, "23503"},
		{"site of a missing group", `INSERT INTO group_sites VALUES ('o', 'sg_missing', 'site_a')`, "23503"},
		{"a short audit key", `INSERT INTO audit_events VALUES ('o', '\x00', 'sg_1', '{}')`, "23514"},
		{"unknown status", `UPDATE sync_states SET status = 'done'`, "23514"},
		{"syncing without deadline", `UPDATE sync_states SET deadline = NULL`, "23514"},
		{"unknown kind", `INSERT INTO sync_states (org_id, kind, resource_id, status) VALUES ('o', 'firewall', 'x', 'active')`, "23514"},
		{"unknown site state", `INSERT INTO sites (org_id, id, state) VALUES ('o', 's', 'gone')`, "23514"},
		{"negative revision", `INSERT INTO sites (org_id, id, desired_revision) VALUES ('o', 's', -1)`, "23514"},
		{"second epoch", `INSERT INTO rampart_meta (singleton, epoch) VALUES (false, 'x')`, "23514"},
	} {
		if got := code(exec(tc.sql)); got != tc.code {
			t.Errorf("%s: SQLSTATE %q; want %s", tc.name, got, tc.code)
		}
	}

	must(`DELETE FROM security_groups WHERE id = 'sg_1'`)
	for _, table := range []string{"group_sites", "list_refs"} {
		if n := count(table); n != 0 {
			t.Errorf("%s has %d rows after the group's delete; want 0", table, n)
		}
	}
	must(`DELETE FROM prefix_lists WHERE id = 'pl_1'`) // no longer referred to
	must(`DELETE FROM sync_states`)
	if n := count("sync_awaiting"); n != 0 {
		t.Errorf("sync_awaiting has %d rows after its sync state's delete; want 0", n)
	}
}

// TestPoolSize: a control plane opens DefaultMaxConns connections at most
// unless its URL says how many (pool_max_conns).
func TestPoolSize(t *testing.T) {
	dsn := pgtest.DSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	for _, tc := range []struct {
		url  string
		want int32
	}{{dsn, DefaultMaxConns}, {dsn + sep + "pool_max_conns=3", 3}} {
		if got := open(t, tc.url).pool.Config().MaxConns; got != tc.want {
			t.Errorf("%s: %d connections at most; want %d", tc.url, got, tc.want)
		}
	}
}

// TestMigrateFromVersion1: a database the previous binary created (schema
// 1: the epoch and leases in use, the policy tables empty) opens at the
// current version with its epoch and leases, and takes a store's writes.
func TestMigrateFromVersion1(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	p := pool(t, dsn)
	v1, err := fs.ReadFile(migrationFiles, "migrations/0001_initial.sql")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, p, fstest.MapFS{"migrations/0001_initial.sql": {Data: v1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, `INSERT INTO rampart_meta (epoch) VALUES ('0123456789abcdef');
		INSERT INTO leases VALUES ('sweeper', 'old-replica', 7, now(), now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d := cmp.Diff([]appliedRow{{1, "0001_initial.sql"}, {2, "0002_store.sql"}, {3, "0003_site_history.sql"}, {4, "0004_key_fingerprint.sql"}}, applied(t, p)); d != "" {
		t.Errorf("applied migrations (-want +got):\n%s", d)
	}
	if s.Epoch() != "0123456789abcdef" {
		t.Errorf("epoch %q; want the version-1 database's", s.Epoch())
	}
	if _, err := s.AcquireLease(ctx, "sweeper", "new-replica", time.Minute); !errors.Is(err, ErrLeaseHeld) {
		t.Errorf("acquire the old replica's lease: %v; want it still held", err)
	}
	if _, err := s.CreatePrefixList(ctx, "org", &cp.PrefixListWrite{Name: "after", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}}); err != nil {
		t.Errorf("write after the migration: %v", err)
	}
}

// TestCheckKey: the first control plane's key fingerprint is stored; the
// same again is accepted (a restart, another replica); another is refused
// with both fingerprints, and stays refused. Of replicas starting at once
// with different keys, exactly the ones holding one key start.
func TestCheckKey(t *testing.T) {
	ctx := context.Background()
	t.Run("sequential", func(t *testing.T) {
		db := open(t, pgtest.DSN(t))
		const a, b = "aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb"
		for i, tc := range []struct {
			fp   string
			want *KeyMismatchError
		}{
			{a, nil},
			{a, nil},
			{b, &KeyMismatchError{Stored: a, Given: b}},
			{a, nil},
		} {
			err := db.CheckKey(ctx, tc.fp)
			var got *KeyMismatchError
			if err != nil && !errors.As(err, &got) {
				t.Fatalf("check %d: %v; want nil or a *KeyMismatchError", i, err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("check %d (%s) (-want +got):\n%s", i, tc.fp, d)
			}
			if got != nil && (!strings.Contains(err.Error(), "fingerprint aaaaaaaaaaaaaaaa…") || !strings.Contains(err.Error(), "fingerprint bbbbbbbbbbbbbbbb…")) {
				t.Errorf("check %d says %q; want both fingerprints", i, err)
			}
		}
		if err := db.CheckKey(ctx, ""); err == nil {
			t.Error("an empty fingerprint was accepted")
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		db := open(t, pgtest.DSN(t))
		const replicas = 8
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Go(func() { errs[i] = db.CheckKey(ctx, fmt.Sprintf("key-%d", i%2)) })
		}
		wg.Wait()
		started := map[string]int{}
		for i, err := range errs {
			var mismatch *KeyMismatchError
			switch {
			case err == nil:
				started[fmt.Sprintf("key-%d", i%2)]++
			case !errors.As(err, &mismatch):
				t.Errorf("replica %d: %v", i, err)
			}
		}
		if len(started) != 1 {
			t.Errorf("replicas started per key: %v; want those of one key only", started)
		}
		for _, n := range started {
			if n != replicas/2 {
				t.Errorf("replicas started per key: %v; want all %d of one key", started, replicas/2)
			}
		}
	})
}
