// Package postgres is the PostgreSQL store (DESIGN.md section 11): what
// store/bolt is for one machine, for several control planes on one
// database. Store implements the api package's Store and the syncer's
// Store with the same behaviour as bolt.Store, by the same domain rules
// (controlplane: Validate, NewSecurityGroup and KeepRuleIDs, SyncState,
// FoldStatus, FoldPresence, AssignRevision, Settle, the audit events):
// this package only reads rows, calls them and stores what they return.
//
// # Tables
//
// migrations/ holds the schema: a group or prefix list is its API JSON
// (text, byte for byte) beside the relations a transaction must check or
// find without decoding it (group_sites, list_sites, list_refs); a
// resource's SyncState is a row of sync_states and one of sync_awaiting
// per site it awaits; a site's record, newest report and Revisioner bytes
// are one row of sites; audit_events is the audit trail. orgs lists the
// organisations (and holds their write locks), site_published the newest
// revision published of each site, site_decommissions and denied_sites
// the decommissions under way and the forgotten sites whose credentials
// are refused (controlplane/decommission.go).
//
// # Concurrency: row locks, in one order
//
// Every write is one READ COMMITTED transaction, all or nothing. Writes
// that must not interleave take row locks (SELECT … FOR UPDATE) in one
// order, so concurrent writes through different replicas wait for each
// other instead of losing an update:
//
//  1. orgs: a policy write (a group or prefix list created, replaced or
//     deleted, a site reserved or decommissioned) locks its
//     organisation's row first. Policy
//     writes of one organisation run one at a time, as in bbolt, so the
//     quotas, the references between groups and lists, the rule ids a
//     replace keeps and the Revisioner's per-site revisions are decided on
//     a state nothing else changes: revisions stay monotonic per site.
//  2. sites, by (organisation, id): a write locks the sites it affects
//     before the Revisioner reads them; status ingestion and Settle lock
//     the sites they fold reports into. Every replica may ingest every
//     report: the second copy finds the first taken (ReportStale).
//  3. sync_states, by (organisation, kind, id): a write replaces its own;
//     ingestion confirms and the sweeper expires them, read whole under
//     the lock.
//
// A transaction that finds a row another inserted meanwhile (a new site
// both heard of) starts over; a lock not granted within the server's
// lock_timeout is a *controlplane.StorageError (503, retry).
//
// Row locks rather than SERIALIZABLE: writes of one organisation touch the
// same rows anyway (the sites, the quota counts), so under SERIALIZABLE
// they would abort and redo their compile instead of waiting their turn;
// locks queue them, each runs its Revisioner once, and nothing depends on
// PostgreSQL's predicate locking of the queries. A transaction that
// PostgreSQL still aborts (a deadlock, or a new site another inserted
// first) starts over, a few times at most (Store.write).
//
// # Publishing across replicas
//
// The replica that commits a write announces its Change (OnChange) and
// its syncer publishes the documents. Two replicas may then publish one
// site's revisions 5 and 6 in either order; Publish (the syncer's
// PublishFence) serialises a site's publishes on its row of
// site_published and skips a document older than the one published, so
// the broker keeps the newest. A replica that dies after a commit and
// before its publish leaves the revision above the published one:
// Unpublished finds such sites, and RunRepublisher, on one replica at a
// time, hands them to a syncer to publish again.
//
// # Duties under leases
//
// RunSweeper (sync deadlines) and RunRepublisher run on the replica that
// holds their lease (Lead), and the sweeper writes through WithLease. A
// replica that dies is replaced within Options.LeaseTTL and a third.
//
// # Migrations
//
// migrations/NNNN_name.sql are embedded in the binary and applied in order
// by Open, all in one transaction under a transaction-level advisory lock:
// several replicas starting at once on an empty database serialise on the
// lock, the first applies everything, the others find it done. A failed
// migration leaves the database as it was. The applied versions are rows of
// rampart_schema_migrations; a database migrated by a newer binary (a
// version this one does not know) is refused rather than written with an
// older idea of the schema.
//
// # Leases
//
// A lease is a row (leases) naming its holder, a fencing token and its
// expiry, on the database's clock so replicas' clocks do not matter (see
// Lease). The holder's writes go through WithLease, whose transaction
// keeps any other replica from taking the lease until it ends: a slow
// holder cannot write after its successor has started.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	cp "github.com/rampart-fw/rampart/controlplane"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the advisory lock Open takes while migrating: a
// constant all replicas agree on ("rampart" in ASCII, as an int64).
const migrationLockKey int64 = 0x72616d70617274

// DefaultMaxConns is the connections a control plane opens at most, unless
// its URL says otherwise (pool_max_conns=N): three replicas take 48 of
// PostgreSQL's default 100.
const DefaultMaxConns = 16

// DB is an open PostgreSQL database with Rampart's schema at the version
// this binary knows. It is safe for concurrent use.
type DB struct {
	pool  *pgxpool.Pool
	epoch string
}

// SchemaVersion is the schema version this binary migrates to.
func SchemaVersion() int {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return ms[len(ms)-1].version
}

// Open connects to the database at url (postgres://…, as pgx parses it),
// migrates its schema to this binary's version and returns it. The
// store's epoch is created on first open.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse PostgreSQL URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default is the number of CPUs (at least 4): a
		// two-core control plane would queue its API writes behind a
		// publish waiting on the broker (Publish holds a connection) and
		// a batch of status reports. The URL's pool_max_conns overrides.
		cfg.MaxConns = max(cfg.MaxConns, DefaultMaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL %s: %w", cfg.ConnConfig.Host, err)
	}
	db := &DB{pool: pool}
	if err := migrate(ctx, pool, migrationFiles); err != nil {
		pool.Close()
		return nil, err
	}
	if db.epoch, err = ensureEpoch(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the connections.
func (db *DB) Close() { db.pool.Close() }

// Epoch is the store's random identity, created once with the database and
// the same for every replica.
func (db *DB) Epoch() string { return db.epoch }

// Ping checks that the database answers and takes writes: a standby (in
// recovery after a failover, or a read replica) answers reads but not
// writes, so it is not ready.
func (db *DB) Ping(ctx context.Context) error {
	var writable bool
	if err := db.pool.QueryRow(ctx, `SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'`).Scan(&writable); err != nil {
		return &cp.StorageError{Op: "ping PostgreSQL", Err: err}
	}
	if !writable {
		return &cp.StorageError{Op: "ping PostgreSQL", Err: errors.New("the database is read-only (a standby, or default_transaction_read_only is on)")}
	}
	return nil
}

// ensureEpoch creates the epoch if no replica has yet, and returns the one
// stored. ON CONFLICT makes concurrent first opens agree on one.
func ensureEpoch(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("create epoch: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO rampart_meta (epoch) VALUES ($1) ON CONFLICT DO NOTHING`, hex.EncodeToString(b)); err != nil {
		return "", fmt.Errorf("store epoch: %w", err)
	}
	var epoch string
	if err := pool.QueryRow(ctx, `SELECT epoch FROM rampart_meta`).Scan(&epoch); err != nil {
		return "", fmt.Errorf("read epoch: %w", err)
	}
	return epoch, nil
}

// CheckKey stores fingerprint as the database's key fingerprint if none is
// stored yet, and otherwise refuses one that differs with a
// *KeyMismatchError: every control plane on the database must hold the
// same key (keys.Key.Fingerprint), or one would issue site and token
// credentials the others reject. One statement: concurrent first starts
// with different keys store one fingerprint, and the other is refused.
func (db *DB) CheckKey(ctx context.Context, fingerprint string) error {
	if fingerprint == "" {
		return errors.New("check key: the fingerprint is empty")
	}
	var stored string
	err := db.pool.QueryRow(ctx, `UPDATE rampart_meta SET key_fingerprint = coalesce(key_fingerprint, $1) RETURNING key_fingerprint`, fingerprint).Scan(&stored)
	if err != nil {
		return &cp.StorageError{Op: "check key fingerprint", Err: err}
	}
	if stored != fingerprint {
		return &KeyMismatchError{Stored: stored, Given: fingerprint}
	}
	return nil
}

// KeyMismatchError is CheckKey's refusal: the database's control planes
// hold a key with fingerprint Stored, this one a key with Given.
type KeyMismatchError struct {
	Stored, Given string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("this key (fingerprint %.16s…) is not the one of the control planes on this database (fingerprint %.16s…)", e.Given, e.Stored)
}

type migration struct {
	version int
	name    string // file name, for errors and the migrations table
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads migrations/*.sql of fsys, sorted by version, and
// checks that the versions are 1, 2, 3… with none missing or repeated.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		m := migrationName.FindStringSubmatch(base)
		if m == nil {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_lowercase_words.sql", base)
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d where %d was expected (versions run 1, 2, 3… without gaps)", m.name, m.version, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations embedded")
	}
	return ms, nil
}

// SchemaTooNewError is returned by Open for a database migrated by a newer
// binary: it would not know what that schema means.
type SchemaTooNewError struct {
	Database, Binary int
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("database schema is at version %d but this binary knows versions up to %d: run a binary at least as new as the one that migrated it", e.Database, e.Binary)
}

// MigrationError is a migration that failed; the database is left at the
// version it had before Open.
type MigrationError struct {
	Name string
	Err  error
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("apply migration %s (nothing of this open was applied): %v", e.Name, e.Err)
}

func (e *MigrationError) Unwrap() error { return e.Err }

// migrate brings the database to the newest version of fsys's migrations,
// in one transaction holding the migration lock.
func migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback(context.Background())
	// Held until commit or rollback: replicas starting together wait here
	// and then see the versions the first one applied.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS rampart_schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM rampart_schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	latest := ms[len(ms)-1].version
	if current > latest {
		return &SchemaTooNewError{Database: current, Binary: latest}
	}
	for _, m := range ms[current:] {
		// Simple protocol: a migration is several statements.
		if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return &MigrationError{Name: m.name, Err: err}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rampart_schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return &MigrationError{Name: m.name, Err: err}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit migrations: %w", err)
	}
	return nil
}
