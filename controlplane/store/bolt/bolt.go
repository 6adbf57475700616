// Package bolt stores the control plane's policy in a bbolt file.
//
// # Layout
//
//	meta                      epoch: random id created once, the store's identity
//	orgs/<org>/groups/<id>/json   the group as the API's JSON (status as of the write)
//	orgs/<org>/groups/<id>/index  its sites and rule ids and matches, binary
//	                          (what a replace needs, without decoding the JSON)
//	orgs/<org>/lists/<id>     the prefix list as the API's JSON
//	orgs/<org>/sync/<kind>\x00<id>   JSON controlplane.SyncState of a group or list
//	orgs/<org>/refs/<list>\x00<group>   a group's rule refers to a prefix list
//	orgs/<org>/sites/<site>   JSON controlplane.Site
//	orgs/<org>/sitedata/<site>  the Revisioner's own per-site bytes
//	deadlines/<unixnano BE><org>\x00<kind>\x00<id>   syncing resources by deadline
//	awaiting/<org>\x00<site>\x00<kind>\x00<id>       which resources wait for a site
//	status/<org>\x00<kind>\x00<id>                   status, for metrics
//
// Each group has a bucket of its own. bbolt keeps at least two keys in a
// leaf, so with the 44 KB of a 250-rule group as values of one bucket,
// every write rewrote a neighbouring group too (135 KB of pages per
// write, the largest allocation and I/O of a PUT); in its own bucket a
// group's JSON and index (written together) are a leaf of their own.
// Files written before keep a group as the value groups/<id> with its
// index at gindex/<id>; both layouts are read, and a write moves the group
// to its bucket.
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
// The status rules are controlplane.SyncState's; this package only stores it
// and keeps the indexes (deadlines, awaiting) that let Confirm and Sweep find
// the resources concerned without scanning.
package bolt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	bucketGIndex   = []byte("gindex")

	keyEpoch = []byte("epoch")
)

// Store is a bbolt-backed store. It is safe for concurrent use.
type Store struct {
	db    *bolt.DB
	opts  Options
	epoch string

	mu       sync.Mutex
	onChange []cp.ChangeFunc
	cache    groupCache
	reads    readCache
	commits  *committer // nil with NoBatch
	counts   *counts    // running counts for metrics (counts.go)
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
	s := &Store{db: db, opts: opts, cache: groupCache{max: cacheBytes}}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketOrgs, bucketDeadlines, bucketAwaiting, bucketStatus} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
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
	if !opts.NoBatch {
		s.commits = newCommitter(db, opts.MaxBatchDelay)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
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
func (s *Store) OnChange(f cp.ChangeFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = append(s.onChange, f)
}

func (s *Store) notify(c cp.Change) {
	s.mu.Lock()
	fs := slices.Clone(s.onChange)
	s.mu.Unlock()
	for _, f := range fs {
		f(c)
	}
}

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

// --- records and keys ---

// errConflict means the stored resource changed between the optimistic read
// and the write transaction; the write starts over.
var errConflict = errors.New("concurrent write")

func kindBucket(kind string) []byte {
	if kind == cp.KindSecurityGroup {
		return bucketGroups
	}
	return bucketLists
}

func readSync(ob *bolt.Bucket, kind, id string) (cp.SyncState, error) {
	var st cp.SyncState
	v := ob.Bucket(bucketSync).Get(key(kind, id))
	if v == nil {
		return cp.SyncState{Status: cp.StatusActive}, nil
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("decode sync state of %s: %w", id, err)
	}
	return st, nil
}

// writableSync reads a resource's sync state for a write, refusing the write
// while the resource is syncing (DESIGN.md section 2, resource_locked).
func writableSync(ob *bolt.Bucket, kind, id string, now time.Time) (cp.SyncState, error) {
	st, err := readSync(ob, kind, id)
	if err != nil {
		return st, err
	}
	if locked, retry := st.Locked(now); locked {
		return st, cp.Locked(kind, id, retry)
	}
	return st, nil
}

// startSync finishes a create or replace inside its transaction: the
// resource starts a new sync awaiting revs from its sites, its status indexes
// move from prev, and the affected sites record their new revisions. It
// returns the sync state and the change to announce after commit.
func (s *Store) startSync(tx *bolt.Tx, ob *bolt.Bucket, org, kind, id string, prev *cp.SyncState, await map[string]uint64, affected map[string]bool, revs map[string]uint64, now time.Time) (cp.SyncState, cp.Change, error) {
	st := cp.NewSyncState(await, now, s.opts.SyncTimeout)
	if err := confirmApplied(ob, &st); err != nil {
		return st, cp.Change{}, err
	}
	if err := writeSync(ob, kind, id, &st); err != nil {
		return st, cp.Change{}, err
	}
	if err := setIndexes(tx, org, kind, id, prev, &st); err != nil {
		return st, cp.Change{}, err
	}
	if err := touchSites(ob, affected, revs, &st); err != nil {
		return st, cp.Change{}, err
	}
	return st, cp.Change{OrgID: org, Sites: sortedKeys(affected), Kind: kind, ID: id, Revisions: revsOrNil(s, revs)}, nil
}

// confirmApplied confirms, in the write's own transaction, the sites st
// awaits that have already applied the revision it waits for. A write that
// leaves a site's content as it was gives it its current revision again,
// which its agent will not report again; confirming it here means the
// write's own answer already reads active when no site has anything to do,
// instead of syncing until Settle runs after the commit.
func confirmApplied(ob *bolt.Bucket, st *cp.SyncState) error {
	if st.Status != cp.StatusSyncing {
		return nil
	}
	sb, rb := ob.Bucket(bucketSites), ob.Bucket(bucketReports)
	for _, site := range slices.Sorted(maps.Keys(st.Awaiting)) {
		want := st.Awaiting[site]
		if want == cp.UnknownRevision { // no Revisioner: only a report confirms
			continue
		}
		rec, err := getSite(sb, site)
		if err != nil {
			return err
		}
		if rev, ok := appliedRevision(rb, site, rec); ok && rev >= want {
			st.Confirm(site, rev, true, "")
		}
	}
	return nil
}

func writeSync(ob *bolt.Bucket, kind, id string, st *cp.SyncState) error {
	if st == nil {
		return ob.Bucket(bucketSync).Delete(key(kind, id))
	}
	return putJSON(ob.Bucket(bucketSync), string(key(kind, id)), st)
}

var statusField = []byte(`,"status":"`)

// spliceStatus returns the stored JSON of a resource with its status
// replaced. A JSON string cannot contain an unescaped quote, so the first
// `,"status":"` is the top-level field (it follows id, name and
// description, which the encoder writes first).
func spliceStatus(raw []byte, st cp.Status) []byte {
	i := bytes.Index(raw, statusField)
	if i < 0 {
		return slices.Clone(raw)
	}
	start := i + len(statusField)
	end := bytes.IndexByte(raw[start:], '"')
	if end < 0 {
		return slices.Clone(raw)
	}
	out := make([]byte, 0, len(raw)+8)
	out = append(out, raw[:start]...)
	out = append(out, st...)
	return append(out, raw[start+end:]...)
}

func orgBucket(tx *bolt.Tx, org string, create bool) (*bolt.Bucket, error) {
	orgs := tx.Bucket(bucketOrgs)
	if !create {
		return orgs.Bucket([]byte(org)), nil
	}
	b, err := orgs.CreateBucketIfNotExists([]byte(org))
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketGroups, bucketLists, bucketRefs, bucketSites, bucketSiteData, bucketSync, bucketGIndex} {
		if _, err := b.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func key(parts ...string) []byte {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(p)
	}
	return b.Bytes()
}

func deadlineKey(t time.Time, org, kind, id string) []byte {
	k := make([]byte, 8, 8+len(org)+len(kind)+len(id)+2)
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, key(org, kind, id)...)
}

// setIndexes replaces the status, deadline and awaiting entries of one
// resource: prev is its stored sync state (nil when new), next the new one
// (nil when deleted).
func setIndexes(tx *bolt.Tx, org, kind, id string, prev, next *cp.SyncState) error {
	dl, aw, st := tx.Bucket(bucketDeadlines), tx.Bucket(bucketAwaiting), tx.Bucket(bucketStatus)
	if prev != nil {
		if !prev.Deadline.IsZero() {
			if err := dl.Delete(deadlineKey(prev.Deadline, org, kind, id)); err != nil {
				return err
			}
		}
		for site := range prev.Awaiting {
			if err := aw.Delete(key(org, site, kind, id)); err != nil {
				return err
			}
		}
	}
	if next == nil {
		return putStatus(st, key(org, kind, id), kind, "") // apisec #13.7: counts.go
	}
	if next.Status == cp.StatusSyncing {
		if err := dl.Put(deadlineKey(next.Deadline, org, kind, id), nil); err != nil {
			return err
		}
	}
	for site := range next.Awaiting {
		if err := aw.Put(key(org, site, kind, id), nil); err != nil {
			return err
		}
	}
	return putStatus(st, key(org, kind, id), kind, next.Status)
}

func getJSON[T any](b *bolt.Bucket, id string) (*T, error) {
	if b == nil {
		return nil, nil
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	t := new(T)
	if err := json.Unmarshal(v, t); err != nil {
		return nil, fmt.Errorf("decode %s: %w", id, err)
	}
	return t, nil
}

func putJSON(b *bolt.Bucket, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", id, err)
	}
	return b.Put([]byte(id), data)
}

func sub(org *bolt.Bucket, name []byte) *bolt.Bucket {
	if org == nil {
		return nil
	}
	return org.Bucket(name)
}

// --- reads ---

// groupCache keeps decoded groups keyed by organisation and id, each with
// the stored bytes it was decoded from: an entry is used only when those
// bytes are still exactly what is stored, so it can never be stale. It
// exists for the Revisioner, which reads every group of an organisation
// inside each write transaction (where decoding would hold up every other
// writer), and for reads that need decoded groups.
type groupCache struct {
	mu      sync.Mutex
	entries map[string]cachedGroup
	size    int // approximate bytes held
	max     int
}

type cachedGroup struct {
	raw []byte
	g   cp.SecurityGroup
}

// cacheBytes bounds the cache; a decoded 250-rule group is about twice its
// JSON.
const cacheBytes = 64 << 20

func (c *groupCache) get(org, id string, raw []byte) (cp.SecurityGroup, bool) {
	c.mu.Lock()
	e, ok := c.entries[org+"\x00"+id]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return cp.SecurityGroup{}, false
	}
	g := e.g // callers own what they get: copy the slices
	g.Sites = slices.Clone(g.Sites)
	g.Rules = slices.Clone(g.Rules)
	return g, true
}

func (c *groupCache) put(org, id string, raw []byte, g cp.SecurityGroup) {
	cost := 3 * len(raw)
	if cost > c.max/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]cachedGroup{}
	}
	k := org + "\x00" + id
	if old, ok := c.entries[k]; ok {
		c.size -= 3 * len(old.raw)
	}
	for k2, e := range c.entries { // evict arbitrary entries until it fits
		if c.size+cost <= c.max {
			break
		}
		delete(c.entries, k2)
		c.size -= 3 * len(e.raw)
	}
	g.Sites, g.Rules = slices.Clone(g.Sites), slices.Clone(g.Rules)
	c.entries[k] = cachedGroup{raw: slices.Clone(raw), g: g}
	c.size += cost
}

// decodeGroup decodes a stored group (through the cache) and sets its
// status from sync at now.
func (s *Store) decodeGroup(raw []byte, org, id string, sync cp.SyncState, now time.Time) (cp.SecurityGroup, error) {
	g, ok := s.cache.get(org, id, raw)
	if !ok {
		var err error
		if g, err = decodeGroup(raw, org, sync, now); err != nil {
			return g, err
		}
		s.cache.put(org, id, raw, g)
	}
	g.OrgID = org
	g.Sync = sync.At(now)
	g.Status = g.Sync.Status
	return g, nil
}

// decodeGroup decodes a stored group and sets its status from sync at now.
func decodeGroup(raw []byte, org string, sync cp.SyncState, now time.Time) (cp.SecurityGroup, error) {
	var g cp.SecurityGroup
	if err := json.Unmarshal(raw, &g); err != nil {
		return g, fmt.Errorf("decode security group: %w", err)
	}
	g.OrgID = org
	g.Sync = sync.At(now)
	g.Status = g.Sync.Status
	if g.Sites == nil {
		g.Sites = []string{}
	}
	if g.Rules == nil {
		g.Rules = []cp.FilterRule{}
	}
	return g, nil
}

func decodeList(raw []byte, org string, sync cp.SyncState, now time.Time) (cp.PrefixList, error) {
	var l cp.PrefixList
	if err := json.Unmarshal(raw, &l); err != nil {
		return l, fmt.Errorf("decode prefix list: %w", err)
	}
	l.OrgID = org
	l.Sync = sync.At(now)
	l.Status = l.Sync.Status
	if l.Sites == nil {
		l.Sites = []string{}
	}
	if l.Prefixes == nil {
		l.Prefixes = []cp.Prefix{}
	}
	return l, nil
}

// each calls fn with the stored JSON and sync state of every resource of a
// kind, in id order.
func each(ob *bolt.Bucket, kind string, fn func(id string, raw []byte, sync cp.SyncState) error) error {
	b := sub(ob, kindBucket(kind))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil { // a group in its own bucket
			v = b.Bucket(k).Get(keyGroupJSON)
		}
		st, err := readSync(ob, kind, string(k))
		if err != nil {
			return err
		}
		return fn(string(k), v, st)
	})
}

// ListSecurityGroups returns the organisation's groups ordered by id.
func (s *Store) ListSecurityGroups(ctx context.Context, org string) ([]cp.SecurityGroup, error) {
	out, err := listKind(s, org, cp.KindSecurityGroup, s.decodeGroup)
	return out, wrap("list security groups", err)
}

// GetSecurityGroup returns one group; another organisation's id is not found.
func (s *Store) GetSecurityGroup(ctx context.Context, org, id string) (cp.SecurityGroup, error) {
	g, err := getKind(s, org, cp.KindSecurityGroup, id, s.decodeGroup)
	return g, wrap("get security group", err)
}

// ListPrefixLists returns the organisation's prefix lists ordered by id.
func (s *Store) ListPrefixLists(ctx context.Context, org string) ([]cp.PrefixList, error) {
	out, err := listKind(s, org, cp.KindPrefixList, decodeListByID)
	return out, wrap("list prefix lists", err)
}

// GetPrefixList returns one prefix list.
func (s *Store) GetPrefixList(ctx context.Context, org, id string) (cp.PrefixList, error) {
	l, err := getKind(s, org, cp.KindPrefixList, id, decodeListByID)
	return l, wrap("get prefix list", err)
}

// decodeListByID has the shape listKind and getKind take; a list's id is in
// its stored form.
func decodeListByID(raw []byte, org, _ string, st cp.SyncState, now time.Time) (cp.PrefixList, error) {
	return decodeList(raw, org, st, now)
}

// listKind decodes every resource of one kind of the organisation, ordered
// by id, each with its sync state as of now.
func listKind[T any](s *Store, org, kind string, decode func(raw []byte, org, id string, st cp.SyncState, now time.Time) (T, error)) ([]T, error) {
	out := []T{}
	now := s.opts.Now()
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		return each(ob, kind, func(id string, raw []byte, st cp.SyncState) error {
			v, err := decode(raw, org, id, st, now)
			out = append(out, v)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// getKind decodes one resource; another organisation's id is not found.
func getKind[T any](s *Store, org, kind, id string, decode func(raw []byte, org, id string, st cp.SyncState, now time.Time) (T, error)) (T, error) {
	var v T
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		raw := get(ob, kindBucket(kind), id)
		if raw == nil {
			return cp.NotFound(kind, id)
		}
		st, err := readSync(ob, kind, id)
		if err != nil {
			return err
		}
		v, err = decode(raw, org, id, st, s.opts.Now())
		return err
	})
	return v, err
}

// GetJSON returns one group or prefix list exactly as the API shows it,
// without decoding it: the stored JSON with the current status. kind is
// controlplane.KindSecurityGroup or KindPrefixList. The answer may be
// shared with other callers: it must not be modified.
func (s *Store) GetJSON(ctx context.Context, org, kind, id string) ([]byte, error) {
	k := kind + "\x00" + org + "\x00" + id
	now := s.opts.Now()
	gen := s.reads.gen.Load() // before the read: see readCache
	if body, ok := s.reads.get(k, gen, now); ok {
		return body, nil
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		raw := get(ob, kindBucket(kind), id)
		if raw == nil {
			return cp.NotFound(kind, id)
		}
		st, err := readSync(ob, kind, id)
		if err != nil {
			return err
		}
		status := st.At(now).Status
		out = withNewline(spliceStatus(raw, status))
		s.reads.put(k, &readEntry{gen: gen, sync: st, status: status, body: out})
		return nil
	})
	return out, wrap("get "+kind, err)
}

// withNewline returns b with a newline just past its end, within its
// capacity and nothing after: the API can then write the answer and its
// closing newline in one write without copying it.
func withNewline(b []byte) []byte {
	return slices.Clip(append(b, '\n'))[:len(b)]
}

// readCache keeps GetJSON's answers, so a group read again and again costs
// neither a transaction nor a 44 KB copy (GETs at 64 clients were bound by
// those and the garbage they made).
//
// An entry is valid only while gen, a counter every write bumps after it
// commits, is what it was when the entry's read began. A write that
// commits before a read begins has bumped gen by the time its caller hears
// of it, so no answer older than a finished write is ever served; a write
// still in flight is concurrent with the read either way. Status depends
// on the clock (a sync fails at its deadline), so an entry keeps the sync
// state and is used only while it still gives the status spliced in.
type readCache struct {
	gen     atomic.Uint64
	entries sync.Map // kind\x00org\x00id -> *readEntry
	size    atomic.Int64
}

type readEntry struct {
	gen    uint64
	sync   cp.SyncState
	status cp.Status
	body   []byte // shared, never modified
}

// readCacheBytes bounds the cached answers; past it the cache starts over.
const readCacheBytes = 32 << 20

func (c *readCache) invalidate() { c.gen.Add(1) }

func (c *readCache) get(k string, gen uint64, now time.Time) ([]byte, bool) {
	v, ok := c.entries.Load(k)
	if !ok {
		return nil, false
	}
	e := v.(*readEntry)
	if e.gen != gen || e.sync.At(now).Status != e.status {
		return nil, false
	}
	return e.body, true
}

func (c *readCache) put(k string, e *readEntry) {
	if len(e.body) > readCacheBytes/16 {
		return
	}
	if c.size.Load()+int64(len(e.body)) > readCacheBytes {
		c.entries.Clear()
		c.size.Store(0)
	}
	n := int64(len(e.body))
	if old, loaded := c.entries.Swap(k, e); loaded {
		n -= int64(len(old.(*readEntry).body))
	}
	c.size.Add(n)
}

// ListJSON returns every group or prefix list of the organisation as the
// API's JSON array, ordered by id, without decoding them.
func (s *Store) ListJSON(ctx context.Context, org, kind string) ([]byte, error) {
	out := []byte{'['}
	now := s.opts.Now()
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		return each(ob, kind, func(_ string, raw []byte, st cp.SyncState) error {
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(out, spliceStatus(raw, st.At(now).Status)...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	return append(out, ']'), nil
}

// get returns the stored JSON of a group or prefix list, nil if there is
// none.
func get(ob *bolt.Bucket, bucket []byte, id string) []byte {
	b := sub(ob, bucket)
	if b == nil {
		return nil
	}
	if v := b.Get([]byte(id)); v != nil {
		return v
	}
	if g := b.Bucket([]byte(id)); g != nil { // a group in its own bucket
		return g.Get(keyGroupJSON)
	}
	return nil
}

var (
	keyGroupJSON  = []byte("json")
	keyGroupIndex = []byte("index")
)

// getGroup returns a group's stored JSON and index in either layout (see
// the package doc); nil raw when there is no such group, nil idx when it
// has no index.
func getGroup(ob *bolt.Bucket, id string) (raw, idx []byte) {
	groups := sub(ob, bucketGroups)
	if groups == nil {
		return nil, nil
	}
	if g := groups.Bucket([]byte(id)); g != nil {
		return g.Get(keyGroupJSON), g.Get(keyGroupIndex)
	}
	if raw = groups.Get([]byte(id)); raw == nil {
		return nil, nil
	}
	return raw, get(ob, bucketGIndex, id)
}

// putGroup stores a group's JSON and index in its own bucket, moving it
// from the older layout.
func putGroup(ob *bolt.Bucket, id string, raw, idx []byte) error {
	groups, k := ob.Bucket(bucketGroups), []byte(id)
	if groups.Get(k) != nil {
		if err := deleteGroup(ob, id); err != nil {
			return err
		}
	}
	g, err := groups.CreateBucketIfNotExists(k)
	if err != nil {
		return err
	}
	if err := g.Put(keyGroupJSON, raw); err != nil {
		return err
	}
	return g.Put(keyGroupIndex, idx)
}

// deleteGroup deletes a group's record in either layout.
func deleteGroup(ob *bolt.Bucket, id string) error {
	groups, k := ob.Bucket(bucketGroups), []byte(id)
	if groups.Bucket(k) != nil {
		return groups.DeleteBucket(k)
	}
	if err := groups.Delete(k); err != nil {
		return err
	}
	return ob.Bucket(bucketGIndex).Delete(k)
}

// snapshot reads a resource's stored bytes (a copy) outside the write
// transaction, for an optimistic write; nil when it does not exist.
func (s *Store) snapshot(org string, bucket []byte, id string) ([]byte, error) {
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		raw = slices.Clone(get(ob, bucket, id))
		return nil
	})
	return raw, err
}

// groupSnapshot is what an optimistic replace needs of the stored group,
// read outside the write transaction: its previous sites and rules
// (decoded, so they outlive the read transaction) and a fingerprint of its
// stored bytes, which the write transaction compares with what it finds
// instead of the bytes themselves, so the 44 KB of a 250-rule group are
// neither copied nor kept.
type groupSnapshot struct {
	found   bool
	prev    cp.SecurityGroup // Sites and Rules (ids and matches) only
	rawLen  int
	rawHash uint64
}

// rawSeed keys the fingerprints of stored groups (random per process).
var rawSeed = maphash.MakeSeed()

func fingerprint(raw []byte) uint64 { return maphash.Bytes(rawSeed, raw) }

// sameRaw reports whether cur is the stored group snap was taken of. A
// 64-bit keyed hash of the same length: two different values agree with
// probability 2^-64, and then the cost is rule ids kept from a version one
// write older.
func (snap *groupSnapshot) sameRaw(cur []byte) bool {
	return len(cur) == snap.rawLen && fingerprint(cur) == snap.rawHash
}

// snapshotGroup reads a group's previous sites and rules and the
// fingerprint of its stored JSON outside the write transaction.
func (s *Store) snapshotGroup(org, id string) (snap groupSnapshot, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		raw, idx := getGroup(ob, id)
		if raw == nil {
			return nil
		}
		snap.found, snap.rawLen, snap.rawHash = true, len(raw), fingerprint(raw)
		return decodePrev(&snap.prev, raw, idx)
	})
	return snap, err
}

// decodePrev reads a stored group's sites and rules from its index, or
// from its JSON when it has none. What it keeps is copied out of raw and
// idx, which may be bbolt's memory.
func decodePrev(prev *cp.SecurityGroup, raw, idx []byte) error {
	if idx != nil {
		var err error
		if prev.Sites, prev.Rules, err = decodeGroupIndex(idx); err != nil {
			return fmt.Errorf("decode security group index: %w", err)
		}
		return nil
	}
	if err := json.Unmarshal(raw, prev); err != nil {
		return fmt.Errorf("decode security group: %w", err)
	}
	return nil
}

// encodeGroupIndex writes what a replace needs of a group: its sites and,
// per rule, id, direction, protocol, port and address. Strings are
// uvarint-length-prefixed; protocol is a uvarint.
func encodeGroupIndex(g *cp.SecurityGroup) []byte {
	n := 16
	for _, s := range g.Sites {
		n += len(s) + 2
	}
	for _, r := range g.Rules {
		n += len(r.ID) + len(r.Direction) + len(r.Port) + len(r.Address) + 8
	}
	b := make([]byte, 0, n)
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	b = binary.AppendUvarint(b, uint64(len(g.Sites)))
	for _, s := range g.Sites {
		str(s)
	}
	b = binary.AppendUvarint(b, uint64(len(g.Rules)))
	for _, r := range g.Rules {
		str(r.ID)
		str(r.Direction)
		b = binary.AppendUvarint(b, uint64(r.Protocol))
		str(r.Port)
		str(r.Address)
	}
	return b
}

var errBadIndex = errors.New("corrupt group index")

func decodeGroupIndex(b []byte) (sites []string, rules []cp.FilterRule, err error) {
	// One string holds every string of the index: one allocation, not
	// four per rule.
	all := string(b)
	num := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			err = errBadIndex
			return 0
		}
		b = b[n:]
		return v
	}
	str := func() string {
		l := num()
		if err != nil || l > uint64(len(b)) {
			err = errBadIndex
			return ""
		}
		off := len(all) - len(b)
		b = b[l:]
		return all[off : off+int(l)]
	}
	ns := num()
	if ns > uint64(len(b)) {
		return nil, nil, errBadIndex
	}
	sites = make([]string, 0, ns)
	for range ns {
		sites = append(sites, str())
	}
	nr := num()
	if nr > uint64(len(b)) {
		return nil, nil, errBadIndex
	}
	rules = make([]cp.FilterRule, 0, nr)
	for range nr {
		r := cp.FilterRule{ID: str(), Direction: str()}
		r.Protocol = int(num())
		r.Port, r.Address = str(), str()
		rules = append(rules, r)
	}
	return sites, rules, err
}

// --- group writes ---

// CreateSecurityGroup stores a new group built from a validated write.
func (s *Store) CreateSecurityGroup(ctx context.Context, org string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	g, _, err := s.putSecurityGroup(ctx, org, "", w)
	return g, err
}

// ReplaceSecurityGroup replaces a group whole (PUT). Rules that match the
// same traffic as before keep their ids.
func (s *Store) ReplaceSecurityGroup(ctx context.Context, org, id string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	g, _, err := s.putSecurityGroup(ctx, org, id, w)
	return g, err
}

// CreateSecurityGroupJSON is CreateSecurityGroup answering with the new
// group's id and its JSON as the API shows it (the bytes just stored, so
// the API need not encode the group again).
func (s *Store) CreateSecurityGroupJSON(ctx context.Context, org string, w *cp.SecurityGroupWrite) (string, []byte, error) {
	g, data, err := s.putSecurityGroup(ctx, org, "", w)
	return g.ID, data, err
}

// ReplaceSecurityGroupJSON is ReplaceSecurityGroup answering with the
// group's JSON as the API shows it.
func (s *Store) ReplaceSecurityGroupJSON(ctx context.Context, org, id string, w *cp.SecurityGroupWrite) ([]byte, error) {
	_, data, err := s.putSecurityGroup(ctx, org, id, w)
	return data, err
}

func (s *Store) putSecurityGroup(ctx context.Context, org, id string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, []byte, error) {
	create := id == ""
	if create {
		id = cp.NewID(cp.SecurityGroupIDPrefix)
	}
	built := buildGroup(w, org, id) // rules sorted by order, ids drawn in prepareGroup
	// Optimistic first; if another write to the same group committed in
	// between, prepare inside the transaction instead, which cannot
	// conflict (batched writers then see each other's results in turn).
	p, change, err := s.tryPutSecurityGroup(ctx, org, id, create, built, false)
	if errors.Is(err, errConflict) {
		p, change, err = s.tryPutSecurityGroup(ctx, org, id, create, built, true)
	}
	if err != nil {
		return cp.SecurityGroup{}, nil, wrap("store security group", err)
	}
	s.notify(change)
	if p.g.Sync.Status != p.g.Status {
		// Every site had already applied what it is given (confirmApplied):
		// the answer says what a read now says. The stored copy's status is
		// never read; reads splice in the sync state's.
		p.g.Status = p.g.Sync.Status
		p.data = spliceStatus(p.data, p.g.Status)
	}
	return p.g, p.data, nil
}

// preparedGroup is a group write ready to store: the previous version's
// sites and rules, the new one with kept rule ids and its encoding.
type preparedGroup struct {
	prev, g          cp.SecurityGroup
	data, index      []byte
	oldRefs, newRefs []string
}

// prepareGroup keeps rule ids from prev, draws the others and encodes the
// group. It may run more than once for one write (optimistically, then in
// the transaction): built.Rules is reused, its ids set afresh each time.
func prepareGroup(built cp.SecurityGroup, prev cp.SecurityGroup) preparedGroup {
	p := preparedGroup{prev: prev, g: built}
	for i := range p.g.Rules { // sorted by order
		p.g.Rules[i].ID = ""
	}
	keepRuleIDs(p.prev.Rules, p.g.Rules)
	fillRuleIDs(p.g.Rules)
	// The status the write will have is known now: syncing when it has
	// sites (they must confirm), active otherwise.
	p.g.Status = cp.StatusActive
	if len(p.g.Sites) > 0 {
		p.g.Status = cp.StatusSyncing
	}
	p.data = withNewline(appendGroupJSON(make([]byte, 0, groupJSONSize(&p.g)), &p.g))
	p.newRefs, p.oldRefs = p.g.ReferencedPrefixLists(), p.prev.ReferencedPrefixLists()
	p.index = encodeGroupIndex(&p.g)
	return p
}

func (s *Store) tryPutSecurityGroup(ctx context.Context, org, id string, create bool, built cp.SecurityGroup, inTx bool) (preparedGroup, cp.Change, error) {
	var p preparedGroup
	var snap groupSnapshot
	if !inTx {
		// Outside the write transaction: read what is stored, keep rule
		// ids, encode the new group.
		if !create {
			var err error
			if snap, err = s.snapshotGroup(org, id); err != nil {
				return p, cp.Change{}, err
			}
			if !snap.found {
				return p, cp.Change{}, cp.NotFound(cp.KindSecurityGroup, id)
			}
		}
		p = prepareGroup(built, snap.prev)
	}
	rules := built.Rules // for error paths; only their addresses are read
	var change cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		now := s.opts.Now()
		ob, err := orgBucket(tx, org, true)
		if err != nil {
			return err
		}
		var prevSync *cp.SyncState
		if !create {
			cur, curIdx := getGroup(ob, id)
			if cur == nil {
				return cp.NotFound(cp.KindSecurityGroup, id)
			}
			if inTx {
				var prev cp.SecurityGroup
				if err := decodePrev(&prev, cur, curIdx); err != nil {
					return err
				}
				p = prepareGroup(built, prev)
			} else if !snap.sameRaw(cur) {
				return errConflict
			}
			st, err := writableSync(ob, cp.KindSecurityGroup, id, now)
			if err != nil {
				return err
			}
			prevSync = &st
		} else if inTx {
			p = prepareGroup(built, cp.SecurityGroup{})
		}
		if err := s.checkQuota(ob, cp.KindSecurityGroup, create, built.Sites); err != nil { // apisec #13.2: quota.go
			return err
		}
		g, prev, data, oldRefs, newRefs := p.g, p.prev, p.data, p.oldRefs, p.newRefs
		lists := ob.Bucket(bucketLists)
		// newRefs lists every address that names a prefix list: without
		// one, the rules need no look (250 of them in bbolt's single
		// writer cost more than the lookups).
		for i := 0; len(newRefs) > 0 && i < len(rules); i++ {
			if a := rules[i].Address; strings.HasPrefix(a, cp.PrefixListIDPrefix) && lists.Get([]byte(a)) == nil {
				return cp.Errorf(cp.CodePrefixListNotFound, fmt.Sprintf("rules[%d].address", i),
					"rules[%d].address %q names no prefix list of this organisation; create it first (POST /vpc/prefix-lists) or use a CIDR.", i, a)
			}
		}
		if err := setRefs(ob, id, oldRefs, newRefs); err != nil {
			return err
		}
		affected := map[string]bool{}
		for _, site := range g.Sites {
			affected[site] = true
		}
		for _, site := range prev.Sites {
			affected[site] = true
		}
		// Store the group before revising, so the Revisioner sees it.
		if err := putGroup(ob, id, data, p.index); err != nil {
			return err
		}
		revs, err := s.revise(tx, ob, org, affected)
		if err != nil {
			return err
		}
		p.g.Sync, change, err = s.startSync(tx, ob, org, cp.KindSecurityGroup, id, prevSync, pick(revs, g.Sites), affected, revs, now)
		return err
	})
	return p, change, err
}

// DeleteSecurityGroup deletes a group; its rules leave its sites
// asynchronously (the Change names them).
func (s *Store) DeleteSecurityGroup(ctx context.Context, org, id string) error {
	var change cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		now := s.opts.Now()
		ob, _ := orgBucket(tx, org, false)
		raw := get(ob, bucketGroups, id)
		if raw == nil {
			return cp.NotFound(cp.KindSecurityGroup, id)
		}
		st, err := writableSync(ob, cp.KindSecurityGroup, id, now)
		if err != nil {
			return err
		}
		prev, err := decodeGroup(raw, org, st, now)
		if err != nil {
			return err
		}
		if err := deleteGroup(ob, id); err != nil {
			return err
		}
		if err := setRefs(ob, id, prev.ReferencedPrefixLists(), nil); err != nil {
			return err
		}
		change, err = s.deleted(tx, ob, org, cp.KindSecurityGroup, id, &st, prev.Sites)
		return err
	})
	if err != nil {
		return wrap("delete security group", err)
	}
	s.notify(change)
	return nil
}

func setRefs(ob *bolt.Bucket, group string, remove, add []string) error {
	refs := ob.Bucket(bucketRefs)
	for _, l := range remove {
		if err := refs.Delete(key(l, group)); err != nil {
			return err
		}
	}
	for _, l := range add {
		if err := refs.Put(key(l, group), nil); err != nil {
			return err
		}
	}
	return nil
}

// referencingGroups returns the ids of the groups whose rules use list.
func referencingGroups(ob *bolt.Bucket, list string) []string {
	var ids []string
	prefix := append([]byte(list), 0)
	c := ob.Bucket(bucketRefs).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	return ids
}

// --- prefix list writes ---

// CreatePrefixList stores a new prefix list built from a validated write.
func (s *Store) CreatePrefixList(ctx context.Context, org string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	return s.putPrefixList(ctx, org, "", w)
}

// ReplacePrefixList replaces a prefix list whole (PUT). Prefixes with an
// unchanged CIDR keep their ids.
func (s *Store) ReplacePrefixList(ctx context.Context, org, id string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	return s.putPrefixList(ctx, org, id, w)
}

func (s *Store) putPrefixList(ctx context.Context, org, id string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	create := id == ""
	if create {
		id = cp.NewID(cp.PrefixListIDPrefix)
	}
	l, change, err := s.tryPutPrefixList(ctx, org, id, create, w, false)
	if errors.Is(err, errConflict) { // see putSecurityGroup
		l, change, err = s.tryPutPrefixList(ctx, org, id, create, w, true)
	}
	if err != nil {
		return cp.PrefixList{}, wrap("store prefix list", err)
	}
	s.notify(change)
	return l, nil
}

func (s *Store) tryPutPrefixList(ctx context.Context, org, id string, create bool, w *cp.PrefixListWrite, inTx bool) (cp.PrefixList, cp.Change, error) {
	var prevRaw []byte
	var prev cp.PrefixList
	built := w.NewPrefixList(org, id)
	l := built
	if !create && !inTx {
		var err error
		if prevRaw, err = s.snapshot(org, bucketLists, id); err != nil {
			return l, cp.Change{}, err
		}
		if prevRaw == nil {
			return l, cp.Change{}, cp.NotFound(cp.KindPrefixList, id)
		}
		if err := json.Unmarshal(prevRaw, &prev); err != nil {
			return l, cp.Change{}, fmt.Errorf("decode prefix list: %w", err)
		}
		cp.KeepPrefixIDs(prev.Prefixes, l.Prefixes)
	}
	var change cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		now := s.opts.Now()
		ob, err := orgBucket(tx, org, true)
		if err != nil {
			return err
		}
		lists := ob.Bucket(bucketLists)
		var prevSync *cp.SyncState
		affected := map[string]bool{}
		if !create {
			cur := lists.Get([]byte(id))
			if cur == nil {
				return cp.NotFound(cp.KindPrefixList, id)
			}
			if inTx {
				prev = cp.PrefixList{}
				if err := json.Unmarshal(cur, &prev); err != nil {
					return fmt.Errorf("decode prefix list: %w", err)
				}
				l.Prefixes = slices.Clone(built.Prefixes)
				cp.KeepPrefixIDs(prev.Prefixes, l.Prefixes)
			} else if !bytes.Equal(cur, prevRaw) {
				return errConflict
			}
			st, err := writableSync(ob, cp.KindPrefixList, id, now)
			if err != nil {
				return err
			}
			prevSync = &st
			for _, site := range prev.Sites {
				affected[site] = true
			}
		}
		if err := s.checkQuota(ob, cp.KindPrefixList, create, l.Sites); err != nil { // apisec #13.2: quota.go
			return err
		}
		// The list must be confirmed by its own sites and by the sites of
		// every group that refers to it: all of them get new content.
		pending := slices.Clone(l.Sites)
		for _, gid := range referencingGroups(ob, id) {
			var g struct {
				Sites []string `json:"sites"`
			}
			if raw := get(ob, bucketGroups, gid); raw != nil {
				if err := json.Unmarshal(raw, &g); err != nil {
					return fmt.Errorf("decode security group %s: %w", gid, err)
				}
				pending = append(pending, g.Sites...)
			}
		}
		slices.Sort(pending)
		pending = slices.Compact(pending)
		for _, site := range pending {
			affected[site] = true
		}
		l.Status = cp.StatusActive
		if len(pending) > 0 {
			l.Status = cp.StatusSyncing
		}
		if err := putJSON(lists, id, &l); err != nil {
			return err
		}
		revs, err := s.revise(tx, ob, org, affected)
		if err != nil {
			return err
		}
		l.Sync, change, err = s.startSync(tx, ob, org, cp.KindPrefixList, id, prevSync, pick(revs, pending), affected, revs, now)
		l.Status = l.Sync.Status // active when every site had already applied it (confirmApplied)
		return err
	})
	return l, change, err
}

// DeletePrefixList deletes a prefix list no group refers to.
func (s *Store) DeletePrefixList(ctx context.Context, org, id string) error {
	var change cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		now := s.opts.Now()
		ob, _ := orgBucket(tx, org, false)
		raw := get(ob, bucketLists, id)
		if raw == nil {
			return cp.NotFound(cp.KindPrefixList, id)
		}
		st, err := writableSync(ob, cp.KindPrefixList, id, now)
		if err != nil {
			return err
		}
		if users := referencingGroups(ob, id); len(users) > 0 {
			return cp.Errorf(cp.CodePrefixListInUse, "", "The prefix list %q is used by the rules of security group %s; change those rules first.",
				id, joinQuoted(users))
		}
		prev, err := decodeList(raw, org, st, now)
		if err != nil {
			return err
		}
		if err := ob.Bucket(bucketLists).Delete([]byte(id)); err != nil {
			return err
		}
		change, err = s.deleted(tx, ob, org, cp.KindPrefixList, id, &st, prev.Sites)
		return err
	})
	if err != nil {
		return wrap("delete prefix list", err)
	}
	s.notify(change)
	return nil
}

func joinQuoted(ids []string) string {
	var b bytes.Buffer
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", id)
	}
	return b.String()
}

// --- revisions and sites ---

// deleted finishes a delete inside its transaction: the resource's sync
// record and status indexes go, and every site it applied to gets the
// revision without it. It returns the change to announce after commit.
func (s *Store) deleted(tx *bolt.Tx, ob *bolt.Bucket, org, kind, id string, st *cp.SyncState, sites []string) (cp.Change, error) {
	if err := writeSync(ob, kind, id, nil); err != nil {
		return cp.Change{}, err
	}
	if err := setIndexes(tx, org, kind, id, st, nil); err != nil {
		return cp.Change{}, err
	}
	affected := make(map[string]bool, len(sites))
	for _, site := range sites {
		affected[site] = true
	}
	revs, err := s.revise(tx, ob, org, affected)
	if err != nil {
		return cp.Change{}, err
	}
	if err := touchSites(ob, affected, revs, nil); err != nil {
		return cp.Change{}, err
	}
	return cp.Change{OrgID: org, Sites: sortedKeys(affected), Kind: kind, ID: id, Deleted: true, Revisions: revsOrNil(s, revs)}, nil
}

// revise asks the Revisioner for the revisions of the affected sites.
func (s *Store) revise(tx *bolt.Tx, ob *bolt.Bucket, org string, affected map[string]bool) (map[string]uint64, error) {
	if s.opts.Revisioner == nil || len(affected) == 0 {
		return nil, nil
	}
	revs, err := s.opts.Revisioner.Revise(policyTx{s: s, ob: ob, org: org, now: s.opts.Now()}, org, sortedKeys(affected))
	if err != nil {
		return nil, fmt.Errorf("assign site revisions: %w", err)
	}
	return revs, nil
}

func revsOrNil(s *Store, revs map[string]uint64) map[string]uint64 {
	if s.opts.Revisioner == nil {
		return nil
	}
	return revs
}

// pick returns the revision each of sites must confirm.
func pick(revs map[string]uint64, sites []string) map[string]uint64 {
	out := make(map[string]uint64, len(sites))
	for _, site := range sites {
		out[site] = revs[site] // UnknownRevision when absent
	}
	return out
}

// touchSites creates missing site records and records new desired
// revisions; sites awaited by sync are marked syncing until its deadline.
func touchSites(ob *bolt.Bucket, affected map[string]bool, revs map[string]uint64, sync *cp.SyncState) error {
	b := ob.Bucket(bucketSites)
	for _, id := range sortedKeys(affected) {
		site, err := getSite(b, id)
		if err != nil {
			return err
		}
		if site == nil {
			site = &cp.Site{ID: id, State: cp.SiteUnknown}
		}
		if r := revs[id]; r > site.DesiredRevision {
			site.DesiredRevision = r
		}
		if sync != nil {
			if _, ok := sync.Awaiting[id]; ok {
				site.State = cp.SiteSyncing
				if sync.Deadline.After(site.SyncDeadline) {
					site.SyncDeadline = sync.Deadline
				}
			}
		}
		if err := putSite(b, id, site); err != nil {
			return err
		}
	}
	return nil
}

// siteRecord stores the Site's internal fields too. Write one only through
// putSite (counts.go), which keeps the metrics' running counts.
type siteRecord struct {
	cp.Site
	SyncDeadline time.Time `json:"sync_deadline,omitzero"`
}

func getSite(b *bolt.Bucket, id string) (*cp.Site, error) {
	r, err := getJSON[siteRecord](b, id)
	if err != nil || r == nil {
		return nil, err
	}
	r.Site.SyncDeadline = r.SyncDeadline
	return &r.Site, nil
}

// siteView is a site as a client sees it at now: a sync that passed its
// deadline without a report reads as unknown.
func siteView(site cp.Site, org string, now time.Time) cp.Site {
	site.OrgID = org
	if site.State == cp.SiteSyncing && !now.Before(site.SyncDeadline) {
		site.State = cp.SiteUnknown
	}
	return site
}

// ListSites returns the sites the organisation's policy names or whose
// agents reported, ordered by id.
func (s *Store) ListSites(ctx context.Context, org string) ([]cp.Site, error) {
	out := []cp.Site{}
	now := s.opts.Now()
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		b := sub(ob, bucketSites)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			site, err := getSite(b, string(k))
			if err != nil {
				return err
			}
			out = append(out, siteView(*site, org, now))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	return out, nil
}

// GetSite returns one site.
func (s *Store) GetSite(ctx context.Context, org, id string) (cp.Site, error) {
	var out cp.Site
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		site, err := getSite(sub(ob, bucketSites), id)
		if err != nil {
			return err
		}
		if site == nil {
			return cp.NotFound("site", id)
		}
		out = siteView(*site, org, s.opts.Now())
		return nil
	})
	return out, err
}

// UpdateSite changes a site's record in one transaction, creating it if
// needed: the MQTT side records presence, versions and reported state here.
func (s *Store) UpdateSite(ctx context.Context, org, id string, fn func(*cp.Site)) error {
	err := s.write(ctx, func(tx *bolt.Tx) error {
		ob, err := orgBucket(tx, org, true)
		if err != nil {
			return err
		}
		b := ob.Bucket(bucketSites)
		site, err := getSite(b, id)
		if err != nil {
			return err
		}
		if site == nil {
			site = &cp.Site{ID: id, State: cp.SiteUnknown}
		}
		c := *site
		fn(&c)
		c.ID = id
		return putSite(b, id, &c)
	})
	return wrap("update site", err)
}

// Confirm folds a site's report into every group and prefix list waiting for
// that site (see controlplane.SyncState.Confirm) and into the site's record:
// applied (or failed with errMsg) for revision. Reports for a revision older
// than what a resource waits for are ignored by that resource.
func (s *Store) Confirm(ctx context.Context, org, site string, revision uint64, applied bool, errMsg string) error {
	err := s.write(ctx, func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		if ob == nil {
			return nil
		}
		prefix := append(key(org, site), 0)
		var keys [][]byte
		c := tx.Bucket(bucketAwaiting).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, slices.Clone(k[len(prefix):]))
		}
		for _, k := range keys {
			kind, id, _ := bytes.Cut(k, []byte{0})
			if err := s.updateSync(tx, ob, org, string(kind), string(id), func(st *cp.SyncState) bool {
				return st.Confirm(site, revision, applied, errMsg)
			}); err != nil {
				return err
			}
		}
		b := ob.Bucket(bucketSites)
		rec, err := getSite(b, site)
		if err != nil {
			return err
		}
		if rec == nil {
			rec = &cp.Site{ID: site, State: cp.SiteUnknown}
		}
		if applied {
			rec.AppliedRevision = max(rec.AppliedRevision, revision)
			rec.State, rec.LastError = cp.SiteInSync, ""
			if rec.DesiredRevision > revision {
				rec.State = cp.SiteSyncing
			}
		} else {
			rec.State, rec.LastError = cp.SiteFailed, errMsg
		}
		return putSite(b, site, rec)
	})
	return wrap("confirm site revision", err)
}

// updateSync applies fn to one resource's stored SyncState and keeps the
// indexes in step. A resource that no longer exists is skipped.
func (s *Store) updateSync(tx *bolt.Tx, ob *bolt.Bucket, org, kind, id string, fn func(*cp.SyncState) bool) error {
	if get(ob, kindBucket(kind), id) == nil {
		return nil
	}
	st, err := readSync(ob, kind, id)
	if err != nil {
		return err
	}
	prev := st
	prev.Awaiting = maps.Clone(st.Awaiting)
	if !fn(&st) {
		return nil
	}
	if err := writeSync(ob, kind, id, &st); err != nil {
		return err
	}
	return setIndexes(tx, org, kind, id, &prev, &st)
}

// Sweep fails every sync whose deadline has passed and reports how many it
// failed. The deadline index makes it cheap when nothing is due.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	now := s.opts.Now()
	n := 0
	defer s.reads.invalidate()
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		var due [][]byte
		c := tx.Bucket(bucketDeadlines).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])) > now.UnixNano() {
				break
			}
			due = append(due, slices.Clone(k))
		}
		for _, k := range due {
			parts := bytes.SplitN(k[8:], []byte{0}, 3)
			if len(parts) != 3 {
				if err := tx.Bucket(bucketDeadlines).Delete(k); err != nil {
					return err
				}
				continue
			}
			org, kind, id := string(parts[0]), string(parts[1]), string(parts[2])
			ob, _ := orgBucket(tx, org, false)
			if ob == nil {
				if err := tx.Bucket(bucketDeadlines).Delete(k); err != nil {
					return err
				}
				continue
			}
			if err := s.updateSync(tx, ob, org, kind, id, func(st *cp.SyncState) bool {
				if st.Expire(now) {
					n++
					return true
				}
				return false
			}); err != nil {
				return err
			}
			// A stale entry (the resource was deleted or rewritten) goes too.
			if err := tx.Bucket(bucketDeadlines).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sweep sync deadlines: %w", err)
	}
	return n, nil
}

// RunSweeper calls Sweep every interval until ctx ends, so syncs fail at
// their deadline, including ones that were pending when the process
// restarted. Errors go to onErr (may be nil).
func (s *Store) RunSweeper(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// policyTx is the Revisioner's view of one organisation inside a write.
type policyTx struct {
	s        *Store
	readOnly bool
	ob       *bolt.Bucket
	org      string
	now      time.Time
}

func (p policyTx) SecurityGroups() ([]cp.SecurityGroup, error) {
	var out []cp.SecurityGroup
	err := each(p.ob, cp.KindSecurityGroup, func(id string, raw []byte, st cp.SyncState) error {
		g, err := p.s.decodeGroup(raw, p.org, id, st, p.now)
		out = append(out, g)
		return err
	})
	return out, err
}

func (p policyTx) PrefixLists() ([]cp.PrefixList, error) {
	var out []cp.PrefixList
	err := each(p.ob, cp.KindPrefixList, func(_ string, raw []byte, st cp.SyncState) error {
		l, err := decodeList(raw, p.org, st, p.now)
		out = append(out, l)
		return err
	})
	return out, err
}

// ViewPolicy calls fn with a read-only PolicyTx of one organisation: the
// committed groups, prefix lists and per-site data in one consistent
// snapshot (SetSiteData fails). The MQTT side uses it to compile and stamp
// documents outside a write, e.g. to republish every site after connecting,
// with the revisions stored beside the policy they were computed from.
func (s *Store) ViewPolicy(ctx context.Context, org string, fn func(cp.PolicyTx) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		if ob == nil {
			return fn(emptyPolicy{})
		}
		return fn(policyTx{s: s, readOnly: true, ob: ob, org: org, now: s.opts.Now()})
	})
}

// Orgs returns every organisation that has stored anything, sorted.
func (s *Store) Orgs(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrgs).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list organisations: %w", err)
	}
	return out, nil
}

// emptyPolicy is the view of an organisation that never stored anything.
type emptyPolicy struct{}

func (emptyPolicy) SecurityGroups() ([]cp.SecurityGroup, error) { return nil, nil }
func (emptyPolicy) PrefixLists() ([]cp.PrefixList, error)       { return nil, nil }
func (emptyPolicy) SiteData(string) ([]byte, error)             { return nil, nil }
func (emptyPolicy) SetSiteData(string, []byte) error {
	return errors.New("set site data: read-only view")
}

func (p policyTx) SiteData(site string) ([]byte, error) {
	return slices.Clone(p.ob.Bucket(bucketSiteData).Get([]byte(site))), nil
}

func (p policyTx) SetSiteData(site string, data []byte) error {
	if p.readOnly {
		return errors.New("set site data: read-only view")
	}
	return p.ob.Bucket(bucketSiteData).Put([]byte(site), slices.Clone(data))
}

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
