// Package bolt stores the control plane's policy in a bbolt file.
//
// # Layout
//
//	meta                      epoch: random id created once, the store's identity;
//	                          schema: the layout's version (migrate.go)
//	orgs/<org>/groups/<id>/json   the group as the API's JSON (status as of the write)
//	orgs/<org>/groups/<id>/index  its sites and rule ids and matches, binary
//	                          (what a replace needs, without decoding the JSON)
//	orgs/<org>/lists/<id>     the prefix list as the API's JSON
//	orgs/<org>/sync/<kind>\x00<id>   JSON controlplane.SyncState of a group or list
//	orgs/<org>/refs/<list>\x00<group>   a group's rule refers to a prefix list
//	orgs/<org>/members/<site>\x00<kind>\x00<id>   a group or list is attached to a site
//	orgs/<org>/sites/<site>   JSON controlplane.Site
//	orgs/<org>/sitedata/<site>  the Revisioner's own per-site bytes
//	orgs/<org>/reports/<site>   JSON controlplane.LastReport: the newest status taken
//	orgs/<org>/audit/<time BE><seq BE>   resource id, 0, JSON controlplane.AuditEvent
//	orgs/<org>/auditres/<resource>\x00<time BE><seq BE>   a resource's events (its versions)
//	orgs/<org>/history/<site>\x00<seq BE>   JSON controlplane.SiteTransition: its newest 100
//	deadlines/<unixnano BE><org>\x00<kind>\x00<id>   syncing resources by deadline
//	awaiting/<org>\x00<site>\x00<kind>\x00<id>       which resources wait for a site
//	status/<org>\x00<kind>\x00<id>                   status, for metrics
//	decommissioning/<org>\x00<site>   a site on its way out (decommission.go)
//	denied/<org>\x00<site>            a decommissioned site: credentials refused
//
// Each group has a bucket of its own. bbolt keeps at least two keys in a
// leaf, so with the 44 KB of a 250-rule group as values of one bucket,
// every write rewrote a neighbouring group too (135 KB of pages per
// write, the largest allocation and I/O of a PUT); in its own bucket a
// group's JSON and index (written together) are a leaf of their own.
// Files written before (schema 0) are migrated when opened (migrate.go).
//
// Ids are KSUIDs, so a bucket's key order is creation order, and lists come
// out sorted by id without sorting.
//
// # Writes
//
// Every write is one transaction: validation of the body's shape happens
// before (in the api and controlplane packages); inside the transaction only
// what depends on stored state is checked (existence, lock, references). By
// default concurrent writes share transactions and fsyncs (group commit,
// commit.go); Options.NoBatch uses one Update per write instead.
//
// Writes are optimistic so that the expensive part (decoding the stored
// resource, keeping rule ids, encoding the new one) runs outside bbolt's
// single writer: a replace reads the stored bytes in a read transaction,
// prepares the new value, and inside the write transaction only checks that
// the stored bytes are still the same (else it starts over). Reads serve the
// stored JSON with the current status spliced in, without decoding it, and
// GetJSON keeps its answers until the next write (readCache).
//
// # Status
//
// The status rules are controlplane.SyncState's and the site state
// machine's (controlplane.FoldStatus and its kin); this package only stores
// their results and keeps the indexes (deadlines, awaiting) that let Ingest
// and Sweep find the resources concerned without scanning.
//
// # Files
//
//	bolt.go       Open, options, the write transaction
//	migrate.go    the schema version and migrations
//	layout.go     buckets, keys and the encodings stored in them
//	group.go      a group's JSON, encoded without reflection
//	reads.go      groups and prefix lists as JSON and decoded, caches
//	writes.go     group and prefix list writes and deletes
//	syncstate.go  each resource's SyncState and its indexes
//	sites.go      site records: reports, presence, Settle, reads
//	sweep.go      deadlines and counts by status
//	policy.go     the Revisioner's and syncer's PolicyTx
//	commit.go     group commit of concurrent writes
//	audit.go      the audit trail: recorded in each write, read, pruned
//	history.go    each site's state history: recorded with the record, read
//	decommission.go  a site's decommission, forgetting it, refusing it
package bolt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// Options configures Open. The zero value is usable.
type Options struct {
	// LockTimeout bounds the wait for the file lock when another process
	// holds the database; zero means 5 s (never wait forever).
	LockTimeout time.Duration
	// SyncTimeout is the sync deadline of a write; zero means
	// controlplane.DefaultTimeout.
	SyncTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Revisioner assigns per-site revisions inside write transactions; nil
	// records controlplane.UnknownRevision.
	Revisioner cp.Revisioner
	// NoBatch makes every write its own Update (one fsync per write).
	NoBatch bool
	// MaxBatchDelay is how long a write waits for others to join its
	// transaction. Zero means no wait (group commit: writes arriving while
	// a transaction commits share the next one), which measured best.
	MaxBatchDelay time.Duration
	// Quotas bound each organisation (quota.go); zero fields mean
	// controlplane.DefaultQuotas.
	Quotas cp.Quotas
	// AuditRetention is how long audit events are kept; zero means
	// controlplane.DefaultAuditRetention. Open prunes older ones at once
	// and every AuditPruneInterval (zero: an hour) until Close.
	AuditRetention     time.Duration
	AuditPruneInterval time.Duration
	// OnPruneError receives a failed prune; nil drops it (the next one
	// retries).
	OnPruneError func(error)
}

var (
	bucketMeta      = []byte("meta")
	bucketOrgs      = []byte("orgs")
	bucketDeadlines = []byte("deadlines")
	bucketAwaiting  = []byte("awaiting")
	bucketStatus    = []byte("status")

	bucketGroups   = []byte("groups")
	bucketLists    = []byte("lists")
	bucketRefs     = []byte("refs")
	bucketSites    = []byte("sites")
	bucketSiteData = []byte("sitedata")
	bucketSync     = []byte("sync")
	bucketMembers  = []byte("members")
	bucketGIndex   = []byte("gindex") // schema 0 only; see migrate.go

	keyEpoch = []byte("epoch")
)

// Store is a bbolt-backed store. It is safe for concurrent use.
type Store struct {
	db    *bolt.DB
	opts  Options
	epoch string

	changes cp.ChangeFeed
	reads   readCache
	commits *committer // nil with NoBatch
	counts  *counts    // running counts for metrics (counts.go)
	denied  *deniedSet // decommissioned sites (decommission.go)

	pruner *cp.AuditPruner
}

// Open opens (or creates) the database at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = cp.DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketOrgs, bucketDeadlines, bucketAwaiting, bucketStatus, bucketDecommissioning, bucketDenied} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := migrate(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if e := meta.Get(keyEpoch); e != nil {
			s.epoch = string(e)
			return nil
		}
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		s.epoch = hex.EncodeToString(b)
		return meta.Put(keyEpoch, []byte(s.epoch))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise database %s: %w", path, err)
	}
	if err := s.loadCounts(); err != nil { // apisec #13.7
		db.Close()
		return nil, err
	}
	if err := s.loadDenied(); err != nil {
		allCounts.Delete(db)
		db.Close()
		return nil, err
	}
	if !opts.NoBatch {
		s.commits = newCommitter(db, opts.MaxBatchDelay)
	}
	s.pruner = cp.StartAuditPruner(opts.Now, opts.AuditRetention, opts.AuditPruneInterval, func(cutoff time.Time, max int) (int, error) {
		return s.PruneAudit(context.Background(), cutoff, max)
	}, opts.OnPruneError)
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.pruner.Stop()
	if s.commits != nil {
		s.commits.close()
	}
	allCounts.Delete(s.db)
	return s.db.Close()
}

// Epoch is the store's random identity, created once with the file. The MQTT
// side puts it in every DesiredState so agents notice a replaced store.
func (s *Store) Epoch() string { return s.epoch }

// OnChange registers f to receive a Change after every committed write.
// Register before serving.
func (s *Store) OnChange(f cp.ChangeFunc) { s.changes.OnChange(f) }

// Ping checks that the database takes a write: it rewrites the "ping" key
// of meta in a transaction of its own, which bbolt commits with an fsync,
// so a failing disk shows (a read answers from the page cache whatever the
// disk does).
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("ping database: meta bucket missing")
		}
		if err := meta.Put([]byte("ping"), []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
			return fmt.Errorf("ping database: %w", err)
		}
		return nil
	})
}

// write runs fn in one read-write transaction (batched unless NoBatch). fn
// may run more than once, so it must depend only on tx and its inputs.
func (s *Store) write(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Whatever happened, the database may have changed once this returns:
	// answers cached before are stale.
	defer s.reads.invalidate()
	if s.commits == nil {
		return storageFault(s.db.Update(fn)) // apisec #13.10: storage.go
	}
	return storageFault(s.commits.write(fn))
}

// errConflict means the stored resource changed between the optimistic read
// and the write transaction; the write starts over.
var errConflict = errors.New("concurrent write")

func sortedKeys(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}

// wrap adds context to internal errors and leaves domain errors (*Error)
// as they are, so their messages reach the client unchanged.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*cp.Error](err); ok {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}
