package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file persists each site's state history (controlplane.TransitionOf):
// storeSite records a transition in the transaction that writes the
// record, and drops the one that falls out of the newest
// controlplane.SiteHistoryLimit.
//
//	orgs/<org>/history/<site>\x00<seq BE>   JSON controlplane.SiteTransition
//
// A site id never holds a zero byte (protocol.ValidSiteID), so a site's
// transitions are one key range, in Seq order.

var bucketHistory = []byte("history")

// historyKey is the key of a site's transition seq.
func historyKey(site string, seq uint64) []byte {
	k := make([]byte, len(site)+1, len(site)+9)
	copy(k, site)
	return binary.BigEndian.AppendUint64(k, seq)
}

// atOrBefore moves c to the site's transition of the highest Seq up to
// seq, and returns its key and value (nil when there is none).
func atOrBefore(c *bolt.Cursor, site string, seq uint64) ([]byte, []byte) {
	want := historyKey(site, seq)
	k, v := c.Seek(want)
	if k == nil {
		k, v = c.Last()
	} else if !bytes.Equal(k, want) {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, want[:len(site)+1]) || len(k) != len(want) {
		return nil, nil
	}
	return k, v
}

// lastSeq is the Seq of a site's newest transition, 0 for none.
func lastSeq(c *bolt.Cursor, site string) uint64 {
	k, _ := atOrBefore(c, site, 1<<64-1)
	if k == nil {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(site)+1:])
}

// storeSite stores a site's record (through putSite, which keeps the
// running counts) and, when writing it over prev is a transition at at,
// records it in the site's history.
func storeSite(ob *bolt.Bucket, prev, rec cp.Site, at time.Time) error {
	if err := putSite(ob.Bucket(bucketSites), rec.ID, &rec); err != nil {
		return err
	}
	tr, ok := cp.TransitionOf(prev, rec, at)
	if !ok {
		return nil
	}
	hb := ob.Bucket(bucketHistory)
	tr.Seq = lastSeq(hb.Cursor(), rec.ID) + 1
	if err := putJSON(hb, string(historyKey(rec.ID, tr.Seq)), tr); err != nil {
		return err
	}
	if tr.Seq <= cp.SiteHistoryLimit {
		return nil
	}
	// Drop what falls out of the newest SiteHistoryLimit: one transition,
	// or more once if a build keeps fewer than the one that wrote them.
	cutoff := historyKey(rec.ID, tr.Seq-cp.SiteHistoryLimit)
	c := hb.Cursor()
	for k, _ := c.Seek(cutoff[:len(rec.ID)+1]); k != nil && bytes.Compare(k, cutoff) <= 0; k, _ = c.Seek(cutoff[:len(rec.ID)+1]) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// deleteHistory deletes a site's whole history (a site forgotten after
// its decommission).
func deleteHistory(ob *bolt.Bucket, site string) error {
	prefix := historyKey(site, 0)[:len(site)+1]
	c := ob.Bucket(bucketHistory).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// siteHistory is a site's whole history, oldest first (Export).
func siteHistory(ob *bolt.Bucket, site string) ([]cp.SiteTransition, error) {
	var out []cp.SiteTransition
	prefix := historyKey(site, 0)[:len(site)+1]
	c := ob.Bucket(bucketHistory).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var tr cp.SiteTransition
		if err := json.Unmarshal(v, &tr); err != nil {
			return nil, fmt.Errorf("decode transition %x of %s: %w", k[len(prefix):], site, err)
		}
		out = append(out, tr)
	}
	return out, nil
}

// SiteHistory answers a page of a site's transitions q selects, newest
// first, and whether more follow; NotFound when the organisation has no
// such site.
func (s *Store) SiteHistory(ctx context.Context, org, site string, q cp.SiteHistoryQuery) ([]cp.SiteTransition, bool, error) {
	out := []cp.SiteTransition{}
	more := false
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		if sub(ob, bucketSites) == nil || getSiteRaw(ob, site) == nil {
			return cp.NotFound("site", site)
		}
		start := uint64(1<<64 - 1)
		if q.Before != 0 {
			start = q.Before - 1
		}
		c := ob.Bucket(bucketHistory).Cursor()
		prefix := historyKey(site, 0)[:len(site)+1]
		k, v := atOrBefore(c, site, start)
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			if len(out) == q.Limit {
				more = true
				break
			}
			var tr cp.SiteTransition
			if err := json.Unmarshal(v, &tr); err != nil {
				return fmt.Errorf("decode transition %x of %s: %w", k[len(prefix):], site, err)
			}
			out = append(out, tr)
		}
		return nil
	})
	if err != nil {
		return nil, false, wrap("list site history", err)
	}
	return out, more, nil
}
