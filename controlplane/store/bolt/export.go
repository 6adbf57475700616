package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/store"
)

// Export calls fn with each organisation's records (store.Dump), in org
// order, all read in one read transaction: one consistent snapshot, taken
// while writes go on. It returns the store's epoch. Only one
// organisation's records are in memory at a time.
func (s *Store) Export(ctx context.Context, fn func(*store.Dump) error) (epoch string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrgs).ForEachBucket(func(org []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, err := exportOrg(tx, tx.Bucket(bucketOrgs).Bucket(org), string(org))
			if err != nil {
				return fmt.Errorf("organisation %s: %w", org, err)
			}
			return fn(d)
		})
	})
	if err != nil {
		return "", fmt.Errorf("export store: %w", err)
	}
	return s.epoch, nil
}

func exportOrg(tx *bolt.Tx, ob *bolt.Bucket, org string) (*store.Dump, error) {
	d := &store.Dump{Org: org, Groups: []store.Resource{}, Lists: []store.Resource{}, Sites: []store.Site{}, Audit: []store.AuditEvent{},
		Decommissions: []store.Decommission{}, Denied: []store.DeniedSite{}}
	for _, kind := range []string{cp.KindSecurityGroup, cp.KindPrefixList} {
		b := sub(ob, kindBucket(kind))
		if b == nil {
			continue
		}
		err := b.ForEach(func(k, _ []byte) error {
			id := string(k)
			st, err := readSync(ob, kind, id)
			if err != nil {
				return err
			}
			r := store.Resource{ID: id, JSON: slices.Clone(get(ob, kindBucket(kind), id)), Sync: st}
			if kind == cp.KindSecurityGroup {
				d.Groups = append(d.Groups, r)
			} else {
				d.Lists = append(d.Lists, r)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if sb := sub(ob, bucketSites); sb != nil {
		err := sb.ForEach(func(k, _ []byte) error {
			site, err := getSite(sb, string(k))
			if err != nil {
				return err
			}
			rec := store.Site{Site: *site, RevisionerData: slices.Clone(get(ob, bucketSiteData, string(k)))}
			rec.Site.OrgID = org
			if raw := get(ob, bucketReports, string(k)); raw != nil {
				if err := json.Unmarshal(raw, &rec.LastReport); err != nil {
					return fmt.Errorf("decode last report of %s: %w", k, err)
				}
			}
			if rec.History, err = siteHistory(ob, string(k)); err != nil {
				return err
			}
			d.Sites = append(d.Sites, rec)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if ab := sub(ob, bucketAudit); ab != nil {
		err := ab.ForEachBucket(func(k []byte) error {
			var e store.AuditEvent
			if len(k) != len(e.Key) {
				return fmt.Errorf("audit key %x: wrong length", k)
			}
			copy(e.Key[:], k)
			v := getEvent(ab, k)
			if v == nil {
				return nil
			}
			_, js, err := splitEvent(v)
			if err != nil {
				return err
			}
			e.JSON = slices.Clone(js)
			d.Audit = append(d.Audit, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	prefix := key(org, "")
	if dec := tx.Bucket(bucketDecommissioning); dec != nil {
		c := dec.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			d.Decommissions = append(d.Decommissions, store.Decommission{SiteID: string(k[len(prefix):]), Forgotten: bytes.Equal(v, phaseForgotten)})
		}
	}
	if den := tx.Bucket(bucketDenied); den != nil {
		c := den.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var rec cp.Decommissioned
			if err := json.Unmarshal(v, &rec); err != nil {
				return nil, fmt.Errorf("decode decommissioned site %s: %w", k[len(prefix):], err)
			}
			d.Denied = append(d.Denied, store.DeniedSite{Record: rec, RevisionerData: slices.Clone(get(ob, bucketSiteData, rec.SiteID))})
		}
	}
	return d, nil
}
