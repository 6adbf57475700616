package bolt

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file reads groups and prefix lists as the API's JSON, spliced with
// the current status and cached until the next write: the one read path
// (writes and the PolicyTx decode with controlplane.DecodeSecurityGroup).

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
