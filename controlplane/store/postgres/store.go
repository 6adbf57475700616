package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// Options configures OpenStore. The zero value is usable.
type Options struct {
	// SyncTimeout is the sync deadline of a write; zero means
	// controlplane.DefaultTimeout.
	SyncTimeout time.Duration
	// Now is the clock of the domain's decisions (deadlines, audit times);
	// nil means time.Now. Replicas' clocks should agree within a fraction
	// of SyncTimeout; leases and the republisher go by the database's.
	Now func() time.Time
	// Revisioner assigns per-site revisions inside write transactions; nil
	// records controlplane.UnknownRevision.
	Revisioner cp.Revisioner
	// Quotas bound each organisation; zero fields mean
	// controlplane.DefaultQuotas.
	Quotas cp.Quotas
	// AuditRetention is how long audit events are kept; zero means
	// controlplane.DefaultAuditRetention. OpenStore prunes older ones at
	// once and every AuditPruneInterval (zero: an hour) until Close.
	AuditRetention     time.Duration
	AuditPruneInterval time.Duration
	// OnPruneError receives a failed prune; nil drops it.
	OnPruneError func(error)
	// ReplicaID names this control plane as the holder of the leases of
	// RunSweeper and RunRepublisher; "" means a random one.
	ReplicaID string
	// LeaseTTL is how long a lease outlives its holder's last renewal:
	// a replica that dies is replaced within LeaseTTL and a third. Zero
	// means DefaultLeaseTTL.
	LeaseTTL time.Duration
}

// DefaultLeaseTTL is the lease TTL of the duties: another replica takes
// over a dead one's within about 8 s.
const DefaultLeaseTTL = 6 * time.Second

// Store is the PostgreSQL store: the controlplane's policy, sites, sync
// states and audit trail in one database that several control planes may
// share. It implements what store/bolt implements for the api and syncer
// packages. It is safe for concurrent use.
type Store struct {
	*DB
	opts Options

	changes cp.ChangeFeed
	// deadlocks counts transactions PostgreSQL aborted to break a
	// deadlock (then run again): the lock order should keep it at zero.
	deadlocks atomic.Int64

	pruner *cp.AuditPruner
}

// OpenStore opens the database at url (Open: migrations, epoch) as a Store.
func OpenStore(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = cp.DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// PostgreSQL keeps microseconds: a deadline decided in a write reads
	// back as the write decided it only if it had no more.
	now := opts.Now
	opts.Now = func() time.Time { return now().Truncate(time.Microsecond) }
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.ReplicaID == "" {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("create replica id: %w", err)
		}
		opts.ReplicaID = "replica-" + hex.EncodeToString(b)
	}
	db, err := Open(ctx, url)
	if err != nil {
		return nil, err
	}
	s := &Store{DB: db, opts: opts}
	s.pruner = cp.StartAuditPruner(opts.Now, opts.AuditRetention, opts.AuditPruneInterval, func(cutoff time.Time, max int) (int, error) {
		return s.PruneAudit(context.Background(), cutoff, max)
	}, opts.OnPruneError)
	return s, nil
}

// Close stops the audit pruner and closes the connections.
func (s *Store) Close() error {
	s.pruner.Stop()
	s.DB.Close()
	return nil
}

// ReplicaID is the name this replica holds leases under.
func (s *Store) ReplicaID() string { return s.opts.ReplicaID }

// OnChange registers f to receive a Change after every write this replica
// committed. Register before serving. Other replicas' writes are theirs
// to announce (and RunRepublisher's, if a replica died first).
func (s *Store) OnChange(f cp.ChangeFunc) { s.changes.OnChange(f) }

// siteRules are the state machine's rules for this store.
func (s *Store) siteRules() cp.SiteRules {
	return cp.SiteRules{Epoch: s.epoch, Revisioned: s.opts.Revisioner != nil, SyncTimeout: s.opts.SyncTimeout}
}

// errRetry makes a transaction start over: it found the database other
// than its reads said (a row another transaction inserted meanwhile).
var errRetry = errors.New("concurrent insert; retrying")

// maxAttempts bounds the runs of one transaction that keeps meeting
// deadlocks or concurrent inserts.
const maxAttempts = 8

// write runs fn in one READ COMMITTED transaction and commits it, running
// it again (from the start, so fn must depend only on tx and its inputs)
// when PostgreSQL broke a deadlock by aborting it, or fn asked with
// errRetry. Row locks are taken in one order (organisation, then sites by
// id, then sync states by kind and id), so deadlocks are not expected;
// the retry is a safety net, not the concurrency control.
func (s *Store) write(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if attempt >= maxAttempts || !retryable(err) || ctx.Err() != nil {
			break
		}
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "40P01" {
			s.deadlocks.Add(1)
		}
	}
	return classify(op, err)
}

// read runs fn in a read-only REPEATABLE READ transaction: one snapshot.
func (s *Store) read(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	return classify(op, err)
}

func retryable(err error) bool {
	if errors.Is(err, errRetry) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") // deadlock_detected, serialization_failure
}

// classify leaves domain errors (*cp.Error) as they are, so their messages
// reach the client unchanged, turns failures of the database itself into a
// *cp.StorageError (503), and wraps the rest as op's.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*cp.Error](err); ok {
		return err
	}
	if storageFault(err) {
		return &cp.StorageError{Op: op, Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// storageFault reports whether err is the database failing rather than a
// bug: it cannot be reached, it is shutting down or read-only (a standby
// after a failover), it ran out of disk or connections, or a lock was not
// granted within lock_timeout. By type and SQLSTATE, never by text.
func storageFault(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources: disk full, out of memory, too many connections
			"57", // operator intervention: shutdown, crash recovery
			"58": // system error: I/O
			return true
		}
		// read_only_sql_transaction; lock_not_available: lock_timeout
		// passed while another transaction held what this one needs (a
		// stuck replica, or a queue longer than the operator allows).
		return pgErr.Code == "25006" || pgErr.Code == "55P03"
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

// lockOrg makes org known and takes its write lock (the orgs row, FOR
// UPDATE) until the transaction ends: policy writes of one organisation
// run one at a time, across replicas.
func lockOrg(ctx context.Context, tx pgx.Tx, org string) error {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO orgs (org_id) VALUES ($1) ON CONFLICT DO NOTHING`, org)
	b.Queue(`SELECT 1 FROM orgs WHERE org_id = $1 FOR UPDATE`, org)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("lock organisation %s: %w", org, err)
	}
	return nil
}

// lockOrgAndNumber is lockOrg in the round trip that also draws the
// write's audit event number (recordAudit).
func lockOrgAndNumber(ctx context.Context, tx pgx.Tx, org string) (int64, error) {
	var seq int64
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO orgs (org_id) VALUES ($1) ON CONFLICT DO NOTHING`, org)
	b.Queue(`SELECT 1 FROM orgs WHERE org_id = $1 FOR UPDATE`, org)
	b.Queue(`SELECT nextval('audit_event_seq')`).QueryRow(func(r pgx.Row) error { return r.Scan(&seq) })
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("lock organisation %s: %w", org, err)
	}
	return seq, nil
}

// knowOrgs records organisations that stored something without locking
// them (status ingestion).
func knowOrgs(ctx context.Context, tx pgx.Tx, orgs []string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO orgs (org_id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING`, orgs); err != nil {
		return fmt.Errorf("record organisations: %w", err)
	}
	return nil
}

// Orgs returns every organisation that has stored anything, sorted.
func (s *Store) Orgs(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT org_id FROM orgs ORDER BY org_id`)
	if err != nil {
		return nil, classify("list organisations", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, classify("list organisations", err)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// timePtr is a nullable timestamptz: nil for the zero time.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
