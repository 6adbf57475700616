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
		k, _ := c.First()
		if after != "" {
			k, _ = c.Seek([]byte(after))
			if k != nil && bytes.Equal(k, []byte(after)) {
				k, _ = c.Next()
			}
		}
		for ; k != nil; k, _ = c.Next() {
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
