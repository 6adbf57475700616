package bolt

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// Running counts for /metrics (#13.7).
//
// A scrape used to list every site of every organisation (2 s at 100,000
// sites) and walk the status index. Instead the store keeps the numbers:
// Open counts once, and every write of a site record (putSite) or of a
// resource's status (putStatus) adds its difference, applied when its
// transaction commits (bolt.Tx.OnCommit), so a rolled-back or retried
// batch changes nothing. A scrape then costs O(1) in the number of sites.
//
// One state is a matter of time, not of writes: a site stored as syncing
// reads as unknown once its sync deadline passed (siteView). The counts
// keep syncing sites by deadline, and a scrape moves those whose deadline
// passed since the last scrape from syncing to unknown: amortised O(1),
// each deadline moves once.

// counts is one store's running counts. Its zero value is not usable; see
// newCounts.
type counts struct {
	mu sync.Mutex
	// sites by stored state.
	sites map[cp.SiteState]int64
	// resources[kind][status].
	resources map[string]map[cp.Status]int64
	// Stored-syncing sites by deadline (UnixNano) not yet past at the last
	// scrape; the heap orders those keys (it may hold stale ones).
	deadlines map[int64]int64
	keys      int64Heap
	// expired counts stored-syncing sites whose deadline is at or before
	// foldedUntil: they read as unknown.
	expired     int64
	foldedUntil int64
}

func newCounts() *counts {
	return &counts{
		sites:       map[cp.SiteState]int64{},
		resources:   map[string]map[cp.Status]int64{cp.KindSecurityGroup: {}, cp.KindPrefixList: {}},
		deadlines:   map[int64]int64{},
		foldedUntil: math.MinInt64,
	}
}

// allCounts finds a database's counts from inside its transactions, so
// the write path needs no new parameters: one entry per open Store.
var allCounts sync.Map // *bolt.DB -> *counts

func countsOf(tx *bolt.Tx) *counts {
	c, _ := allCounts.Load(tx.DB())
	if c == nil {
		return nil
	}
	return c.(*counts)
}

// siteKey is what the counts need of a site record.
type siteKey struct {
	State        cp.SiteState `json:"state"`
	SyncDeadline time.Time    `json:"sync_deadline"`
}

var (
	stateField    = []byte(`"state":"`)
	deadlineField = []byte(`"sync_deadline":"`)
)

// readSiteKey reads the state and sync deadline of a stored site record
// without decoding the rest: every site write reads the previous record's,
// and a full decode cost 13% of a write that touches 10,000 sites. The
// record is encoding/json's output of siteRecord, whose only fields named
// state and sync_deadline are these top-level strings, and a JSON string
// value cannot hold an unescaped quote, so the first match of `"state":"`
// is the field (as controlplane.SpliceStatus relies on for resources). Records the
// scan cannot read are decoded in full, and one that cannot be decoded
// counts as unknown (consistently, at Open and when it is overwritten): a
// damaged record must not stop the control plane from starting.
func readSiteKey(raw []byte) siteKey {
	var k siteKey
	if v, ok := stringField(raw, stateField); ok {
		k.State = cp.SiteState(v)
		d, ok := stringField(raw, deadlineField)
		if !ok {
			return k // omitzero: no deadline
		}
		if t, err := time.Parse(time.RFC3339Nano, string(d)); err == nil {
			k.SyncDeadline = t
			return k
		}
	}
	k = siteKey{}
	if json.Unmarshal(raw, &k) != nil || k.State == "" {
		return siteKey{State: cp.SiteUnknown}
	}
	return k
}

// stringField returns the value of the first `"name":"value"` of raw, if
// it has no escapes.
func stringField(raw, field []byte) ([]byte, bool) {
	i := bytes.Index(raw, field)
	if i < 0 {
		return nil, false
	}
	v := raw[i+len(field):]
	end := bytes.IndexByte(v, '"')
	if end < 0 || bytes.IndexByte(v[:end], '\\') >= 0 {
		return nil, false
	}
	return v[:end], true
}

func deadlineNano(t time.Time) int64 {
	if t.IsZero() { // no deadline: past at once (siteView)
		return math.MinInt64
	}
	return t.UnixNano()
}

func (c *counts) addSite(k siteKey, n int64) {
	c.sites[k.State] += n
	if k.State != cp.SiteSyncing {
		return
	}
	d := deadlineNano(k.SyncDeadline)
	if d <= c.foldedUntil {
		c.expired += n
		return
	}
	if _, ok := c.deadlines[d]; !ok && n > 0 {
		heap.Push(&c.keys, d)
	}
	c.deadlines[d] += n
	if c.deadlines[d] == 0 {
		delete(c.deadlines, d)
	}
}

// putSite stores a site's record (every write of one goes through here)
// and counts its change of state.
func putSite(b *bolt.Bucket, id string, rec *cp.Site) error {
	if c := countsOf(b.Tx()); c != nil {
		var prev *siteKey
		if raw := b.Get([]byte(id)); raw != nil {
			k := readSiteKey(raw)
			prev = &k
		}
		next := siteKey{State: rec.State, SyncDeadline: rec.SyncDeadline}
		b.Tx().OnCommit(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if prev != nil {
				c.addSite(*prev, -1)
			}
			c.addSite(next, 1)
		})
	}
	return putJSON(b, id, siteRecord{Site: *rec, SyncDeadline: rec.SyncDeadline, DecommissionRevision: rec.DecommissionRevision})
}

// deleteSite deletes a site's record (a decommissioned site, forgotten)
// and takes it out of the counts.
func deleteSite(b *bolt.Bucket, id string) error {
	raw := b.Get([]byte(id))
	if raw == nil {
		return nil
	}
	if c := countsOf(b.Tx()); c != nil {
		k := readSiteKey(raw)
		b.Tx().OnCommit(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.addSite(k, -1)
		})
	}
	return b.Delete([]byte(id))
}

// putStatus sets (or, with status "", deletes) a resource's entry of the
// status index and counts the change. k is key(org, kind, id).
func putStatus(st *bolt.Bucket, k []byte, kind string, status cp.Status) error {
	if c := countsOf(st.Tx()); c != nil {
		prev := cp.Status(st.Get(k))
		if prev != status {
			st.Tx().OnCommit(func() {
				c.mu.Lock()
				defer c.mu.Unlock()
				if prev != "" {
					c.resources[kind][prev]--
				}
				if status != "" {
					c.resources[kind][status]++
				}
			})
		}
	}
	if status == "" {
		return st.Delete(k)
	}
	return st.Put(k, []byte(status))
}

// loadCounts counts what the file holds, once at Open, and registers the
// counts for the write path.
func (s *Store) loadCounts() error {
	c := newCounts()
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketStatus).ForEach(func(k, v []byte) error {
			parts := bytes.SplitN(k, []byte{0}, 3)
			if len(parts) == 3 && c.resources[string(parts[1])] != nil {
				c.resources[string(parts[1])][cp.Status(v)]++
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketOrgs).ForEach(func(org, v []byte) error {
			sb := sub(tx.Bucket(bucketOrgs).Bucket(org), bucketSites)
			if v != nil || sb == nil {
				return nil
			}
			return sb.ForEach(func(_, raw []byte) error {
				c.addSite(readSiteKey(raw), 1)
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("count sites and resources: %w", err)
	}
	s.counts = c
	allCounts.Store(s.db, c)
	return nil
}

// CountSites returns how many sites are in each state, as GET /vpc/sites
// shows them now, in O(1) of the number of sites (see counts).
func (s *Store) CountSites(ctx context.Context) (map[cp.SiteState]int, error) {
	c := s.counts
	now := s.opts.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.keys.Len() > 0 && c.keys[0] <= now {
		d := heap.Pop(&c.keys).(int64)
		c.expired += c.deadlines[d]
		delete(c.deadlines, d)
	}
	c.foldedUntil = max(c.foldedUntil, now)
	out := make(map[cp.SiteState]int, len(c.sites))
	for st, n := range c.sites {
		out[st] = int(n)
	}
	out[cp.SiteSyncing] -= int(c.expired)
	out[cp.SiteUnknown] += int(c.expired)
	return out, nil
}

// CountByStatus counts groups and prefix lists by kind and status, for
// metrics, from the running counts.
func (s *Store) CountByStatus(ctx context.Context) (map[string]map[cp.Status]int, error) {
	c := s.counts
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[cp.Status]int{}
	for kind, m := range c.resources {
		out[kind] = map[cp.Status]int{}
		for st, n := range m {
			out[kind][st] = int(n)
		}
	}
	return out, nil
}

type int64Heap []int64

func (h int64Heap) Len() int           { return len(h) }
func (h int64Heap) Less(i, j int) bool { return h[i] < h[j] }
func (h int64Heap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *int64Heap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *int64Heap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
