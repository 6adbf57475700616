package bolt

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file reads groups and prefix lists: as the API's JSON (spliced
// with the current status, cached until the next write) and decoded.

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
	out, err := listKind(s, org, cp.KindSecurityGroup, cp.DecodeSecurityGroup)
	return out, wrap("list security groups", err)
}

// GetSecurityGroup returns one group; another organisation's id is not found.
func (s *Store) GetSecurityGroup(ctx context.Context, org, id string) (cp.SecurityGroup, error) {
	g, err := getKind(s, org, cp.KindSecurityGroup, id, cp.DecodeSecurityGroup)
	return g, wrap("get security group", err)
}

// ListPrefixLists returns the organisation's prefix lists ordered by id.
func (s *Store) ListPrefixLists(ctx context.Context, org string) ([]cp.PrefixList, error) {
	out, err := listKind(s, org, cp.KindPrefixList, cp.DecodePrefixList)
	return out, wrap("list prefix lists", err)
}

// GetPrefixList returns one prefix list.
func (s *Store) GetPrefixList(ctx context.Context, org, id string) (cp.PrefixList, error) {
	l, err := getKind(s, org, cp.KindPrefixList, id, cp.DecodePrefixList)
	return l, wrap("get prefix list", err)
}

// listKind decodes every resource of one kind of the organisation, ordered
// by id, each with its sync state as of now.
func listKind[T any](s *Store, org, kind string, decode func(raw []byte, org string, st cp.SyncState, now time.Time) (T, error)) ([]T, error) {
	out := []T{}
	now := s.opts.Now()
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		return each(ob, kind, func(_ string, raw []byte, st cp.SyncState) error {
			v, err := decode(raw, org, st, now)
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
func getKind[T any](s *Store, org, kind, id string, decode func(raw []byte, org string, st cp.SyncState, now time.Time) (T, error)) (T, error) {
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
		v, err = decode(raw, org, st, s.opts.Now())
		return err
	})
	return v, err
}

// GetJSON returns one group or prefix list exactly as the API shows it,
// without decoding it: the stored JSON with the current status. kind is
// controlplane.KindSecurityGroup or KindPrefixList. The answer may be
// shared with other callers: it must not be modified.
func (s *Store) GetJSON(ctx context.Context, org, kind, id string) (cp.Stored, error) {
	k := kind + "\x00" + org + "\x00" + id
	now := s.opts.Now()
	gen := s.reads.gen.Load() // before the read: see readCache
	if e, ok := s.reads.get(k, gen, now); ok {
		return cp.Stored{ID: id, Body: e.body, Version: e.sync.Version}, nil
	}
	var out []byte
	var version uint64
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
		out, version = withNewline(cp.SpliceStatus(raw, status)), st.Version
		s.reads.put(k, &readEntry{gen: gen, sync: st, status: status, body: out})
		return nil
	})
	return cp.Stored{ID: id, Body: out, Version: version}, wrap("get "+kind, err)
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

func (c *readCache) get(k string, gen uint64, now time.Time) (*readEntry, bool) {
	v, ok := c.entries.Load(k)
	if !ok {
		return nil, false
	}
	e := v.(*readEntry)
	if e.gen != gen || e.sync.At(now).Status != e.status {
		return nil, false
	}
	return e, true
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
