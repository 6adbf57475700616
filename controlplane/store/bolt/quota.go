package bolt

import (
	"context"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// Per-organisation quotas (#13.2, #13.5). The rules are the domain's
// (controlplane.Quotas); this file counts what they need inside the write
// transaction, so that writes batched together see each other.

// checkQuota applies the quotas to a write of a resource of kind naming
// sites: a new resource must fit the kind's quota, and sites not known yet
// must fit the site quota. Counting walks keys only, and only when the
// write adds something: at most the quota itself.
func (s *Store) checkQuota(ob *bolt.Bucket, kind string, create bool, sites []string) error {
	q := s.opts.Quotas.WithDefaults()
	if create {
		if err := q.CheckCreate(kind, countKeys(ob.Bucket(kindBucket(kind)))); err != nil {
			return err
		}
	}
	sb := ob.Bucket(bucketSites)
	adding := 0
	for _, site := range sites {
		raw := sb.Get([]byte(site))
		if raw == nil {
			adding++
		} else if err := cp.CheckAttach(site, readSiteKey(raw).State); err != nil {
			return err
		}
	}
	if adding == 0 {
		return nil
	}
	return q.CheckSites(countKeys(sb), adding)
}

func countKeys(b *bolt.Bucket) int {
	n := 0
	if b == nil {
		return 0
	}
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// ReserveSite makes site known to the organisation (state unknown) if it is
// not yet, within the site quota. Enrollment calls it before handing out a
// site's credentials, so an organisation gets credentials for at most its
// quota of sites. A site being decommissioned is refused
// (controlplane.CheckAttach); a decommissioned one is enrolled again: its
// credentials are no longer refused (decommission.go).
func (s *Store) ReserveSite(ctx context.Context, org, site string) error {
	known := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		raw := getSiteRaw(ob, site)
		if raw == nil {
			return nil
		}
		known = tx.Bucket(bucketDenied).Get(key(org, site)) == nil
		return cp.CheckAttach(site, readSiteKey(raw).State)
	}); err != nil {
		return wrap("reserve site", err)
	}
	if known {
		return nil
	}
	err := s.write(ctx, func(tx *bolt.Tx) error {
		ob, err := orgBucket(tx, org, true)
		if err != nil {
			return err
		}
		was, err := s.undeny(tx, org, site)
		if err != nil {
			return err
		}
		sb := ob.Bucket(bucketSites)
		if raw := sb.Get([]byte(site)); raw != nil {
			return cp.CheckAttach(site, readSiteKey(raw).State)
		}
		if err := s.opts.Quotas.WithDefaults().CheckSites(countKeys(sb), 1); err != nil {
			return err
		}
		rec := cp.NewSite(site)
		if was != nil {
			rec = cp.Reenrolled(*was)
		}
		return putSite(sb, site, &rec)
	})
	return wrap("reserve site", err)
}
