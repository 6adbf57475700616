package bolt

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// ListSitesPage returns at most limit sites of the organisation ordered by
// id, starting after the site id after ("" for the first page), and
// whether more follow. The cursor seeks, so a page costs O(limit) however
// many sites there are (DESIGN.md section 2's paging).
func (s *Store) ListSitesPage(ctx context.Context, org, after string, limit int) ([]cp.Site, bool, error) {
	out := []cp.Site{}
	more := false
	now := s.opts.Now()
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		b := sub(ob, bucketSites)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := seekAfter(c, after); k != nil; k, _ = c.Next() {
			if len(out) == limit {
				more = true
				return nil
			}
			site, err := getSite(b, string(k))
			if err != nil {
				return err
			}
			out = append(out, siteView(*site, org, now))
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("list sites: %w", err)
	}
	return out, more, nil
}

// ListJSONPage returns at most limit groups or prefix lists of the
// organisation after the id after, as the API's JSON array (the stored
// JSON, its status spliced in, without decoding), the id of the last one,
// and whether more follow.
func (s *Store) ListJSONPage(ctx context.Context, org, kind, after string, limit int) ([]byte, string, bool, error) {
	out := []byte{'['}
	last, more := "", false
	now := s.opts.Now()
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		b := sub(ob, kindBucket(kind))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		n := 0
		for k, v := seekAfter(c, after); k != nil; k, v = c.Next() {
			if n == limit {
				more = true
				return nil
			}
			if v == nil { // a group: a bucket of its own
				v = b.Bucket(k).Get(keyGroupJSON)
			}
			st, err := readSync(ob, kind, string(k))
			if err != nil {
				return err
			}
			if n > 0 {
				out = append(out, ',')
			}
			out = append(out, cp.SpliceStatus(v, st.At(now).Status)...)
			last = string(k)
			n++
		}
		return nil
	})
	if err != nil {
		return nil, "", false, fmt.Errorf("list %s: %w", kind, err)
	}
	return append(out, ']'), last, more, nil
}

// seekAfter positions c on the first key after after ("": the first key).
func seekAfter(c *bolt.Cursor, after string) (k, v []byte) {
	if after == "" {
		return c.First()
	}
	k, v = c.Seek([]byte(after))
	if k != nil && bytes.Equal(k, []byte(after)) {
		return c.Next()
	}
	return k, v
}
