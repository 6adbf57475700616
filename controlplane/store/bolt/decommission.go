package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// This file persists decommissions (controlplane/decommission.go, whose
// rules these are):
//
//	decommissioning/<org>\x00<site>   "" while the site decommissions;
//	                                  "forgotten" once forgotten, until the
//	                                  MQTT side cleared its topics (SiteCleared)
//	denied/<org>\x00<site>            JSON controlplane.Decommissioned: its
//	                                  credentials and reports are refused
//
// The denied sites are also kept in memory (loaded at Open, changed when
// a transaction commits), so the embedded broker asks Decommissioned on
// every connection without a transaction.

var (
	bucketDecommissioning = []byte("decommissioning")
	bucketDenied          = []byte("denied")
	phaseForgotten        = []byte("forgotten")
)

// deniedSet is the in-memory copy of the denied bucket.
type deniedSet struct {
	mu sync.RWMutex
	m  map[string]struct{} // org + "/" + site
}

func (d *deniedSet) has(org, site string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.m[org+"/"+site]
	return ok
}

func (d *deniedSet) set(org, site string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.m[org+"/"+site] = struct{}{}
	} else {
		delete(d.m, org+"/"+site)
	}
}

// loadDenied reads the denied bucket into memory, at Open.
func (s *Store) loadDenied() error {
	s.denied = &deniedSet{m: map[string]struct{}{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDenied).ForEach(func(k, _ []byte) error {
			org, site, ok := bytes.Cut(k, []byte{0})
			if ok {
				s.denied.m[string(org)+"/"+string(site)] = struct{}{}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("read decommissioned sites: %w", err)
	}
	return nil
}

// Decommissioned reports whether site of org was decommissioned and
// forgotten: the embedded broker refuses its credentials.
func (s *Store) Decommissioned(org, site string) bool { return s.denied.has(org, site) }

// DecommissionSite starts the decommission of a site, in one transaction:
// the site leaves every group and prefix list of the organisation, each a
// write of its own (new version, new sync, audit event with the caller's
// subject, as a PUT), its empty document gets a revision, and its record
// reads decommissioning (controlplane.StartDecommission); an audit event
// of kind "site" records the DELETE. One locked resource, or the quota of
// decommissioned sites, refuses the whole of it. A site already
// decommissioning is answered as it is.
func (s *Store) DecommissionSite(ctx context.Context, org, site string) (cp.Site, error) {
	wr := cp.WriteRequestFrom(ctx)
	put, del := cp.DecommissionRequests(wr)
	putCtx := cp.WithWriteRequest(ctx, put)
	var out cp.Site
	var changes []cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		changes = changes[:0]
		now := s.opts.Now()
		ob, _ := orgBucket(tx, org, false)
		if getSiteRaw(ob, site) == nil {
			return cp.NotFound(cp.KindSite, site)
		}
		rec, _, err := readSite(ob, site)
		if err != nil {
			return err
		}
		if rec.State == cp.SiteDecommissioning {
			out = siteView(rec, org, now)
			return nil
		}
		if err := s.opts.Quotas.WithDefaults().CheckDecommission(countDecommissioned(tx, org)); err != nil {
			return err
		}
		var ws []resourceWrite
		for _, m := range membersOf(ob, site) {
			w, err := withoutSite(ob, org, m.kind, m.id, site, now)
			if err != nil {
				return err
			}
			ws = append(ws, w)
		}
		var docs map[string]protocol.DesiredState
		affected := map[string]bool{site: true}
		if len(ws) > 0 {
			_, written, err := s.putAllTx(putCtx, tx, org, false, ws, true)
			if err != nil {
				return err
			}
			changes = append(changes, written...)
			docs = written[0].Documents // the site is in every one
		} else {
			// Nothing to leave: the site's own document, empty, may
			// still be new (a site only enrolled, or one whose agent
			// still holds an older one).
			if docs, err = s.revise(tx, ob, org, affected); err != nil {
				return err
			}
			if err := touchSites(ob, affected, cp.Revisions(docs), nil, time.Time{}, now); err != nil {
				return err
			}
		}
		change := cp.DecommissionChange(org, site, docs)
		prev, _, err := readSite(ob, site)
		if err != nil {
			return err
		}
		rec, _ = cp.StartDecommission(prev, change.Revisions[site], now.Add(s.opts.SyncTimeout))
		if err := storeSite(ob, prev, rec, now); err != nil {
			return err
		}
		if err := tx.Bucket(bucketDecommissioning).Put(key(org, site), nil); err != nil {
			return err
		}
		out = siteView(rec, org, now)
		body, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode site: %w", err)
		}
		if err := recordAudit(ob, cp.NewAuditEvent(del, org, cp.KindSite, site, 0, body, now)); err != nil {
			return err
		}
		changes = append(changes, change)
		return nil
	})
	if err != nil {
		return cp.Site{}, wrap("decommission site", err)
	}
	for _, c := range changes {
		s.changes.Notify(c)
	}
	return out, nil
}

type member struct{ kind, id string }

// membersOf is every group and prefix list attached to site.
func membersOf(ob *bolt.Bucket, site string) []member {
	var out []member
	prefix := append([]byte(site), 0)
	c := ob.Bucket(bucketMembers).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		kind, id, _ := bytes.Cut(k[len(prefix):], []byte{0})
		out = append(out, member{string(kind), string(id)})
	}
	return out
}

// withoutSite is the write of a stored group or prefix list without site.
func withoutSite(ob *bolt.Bucket, org, kind, id, site string, now time.Time) (resourceWrite, error) {
	raw := get(ob, kindBucket(kind), id)
	if raw == nil {
		return nil, fmt.Errorf("members index names %s %s, which is not stored", kind, id)
	}
	st, err := readSync(ob, kind, id)
	if err != nil {
		return nil, err
	}
	if kind == cp.KindSecurityGroup {
		g, err := cp.DecodeSecurityGroup(raw, org, st, now)
		if err != nil {
			return nil, err
		}
		w := g.WithoutSite(site)
		return &groupWrite{w: &w, org: org, gid: id}, nil
	}
	l, err := cp.DecodePrefixList(raw, org, st, now)
	if err != nil {
		return nil, err
	}
	w := l.WithoutSite(site)
	return &listWrite{w: &w, org: org, lid: id}, nil
}

// countDecommissioned counts the organisation's sites decommissioning or
// decommissioned: what Quotas.Decommissioned bounds.
func countDecommissioned(tx *bolt.Tx, org string) int {
	n := 0
	prefix := append([]byte(org), 0)
	c := tx.Bucket(bucketDenied).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	c = tx.Bucket(bucketDecommissioning).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) == 0 { // a forgotten one is in denied already
			n++
		}
	}
	return n
}

// ForgetDecommissioned forgets, in one transaction, every decommissioning
// site that is done (controlplane.DecommissionDone: its agent applied its
// empty document, or the deadline passed), at most
// controlplane.ForgetBatch: its record and newest report go, resources
// waiting for it stop waiting (SyncState.Forget), and its credentials and
// reports are refused from then on. Its revision counter (the
// Revisioner's site data) stays, so a site enrolled again never goes back
// in revisions. It returns every forgotten site whose topics the MQTT
// side has not cleared yet (SiteCleared), those of earlier calls included.
func (s *Store) ForgetDecommissioned(ctx context.Context) ([]cp.SiteRef, error) {
	pending := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketDecommissioning).Cursor().First()
		pending = k != nil
		return nil
	}); err != nil || !pending {
		return nil, err
	}
	var out []cp.SiteRef
	err := s.write(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		now := s.opts.Now()
		dec := tx.Bucket(bucketDecommissioning)
		type entry struct {
			k         []byte
			forgotten bool
		}
		var entries []entry
		c := dec.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			entries = append(entries, entry{slices.Clone(k), len(v) > 0})
		}
		forgot := 0
		for _, e := range entries {
			org, site, ok := bytes.Cut(e.k, []byte{0})
			if !ok {
				if err := dec.Delete(e.k); err != nil {
					return err
				}
				continue
			}
			ref := cp.SiteRef{OrgID: string(org), SiteID: string(site)}
			if e.forgotten {
				if len(out) < cp.ForgetBatch {
					out = append(out, ref)
				}
				continue
			}
			if forgot >= cp.ForgetBatch {
				continue
			}
			ob, _ := orgBucket(tx, ref.OrgID, false)
			if getSiteRaw(ob, ref.SiteID) != nil {
				rec, last, err := readSite(ob, ref.SiteID)
				if err != nil {
					return err
				}
				if !cp.DecommissionDone(rec, last, now) {
					continue
				}
				if err := s.forget(tx, ob, ref, now); err != nil {
					return err
				}
			}
			forgot++
			if err := dec.Put(e.k, phaseForgotten); err != nil {
				return err
			}
			if len(out) < cp.ForgetBatch {
				out = append(out, ref)
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("forget decommissioned sites", err)
	}
	return out, nil
}

// forget is the forgetting of one site, in ForgetDecommissioned's
// transaction.
func (s *Store) forget(tx *bolt.Tx, ob *bolt.Bucket, ref cp.SiteRef, now time.Time) error {
	org, site := ref.OrgID, ref.SiteID
	prefix := append(key(org, site), 0)
	var waiting [][]byte
	c := tx.Bucket(bucketAwaiting).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		waiting = append(waiting, slices.Clone(k[len(prefix):]))
	}
	for _, k := range waiting {
		kind, id, _ := bytes.Cut(k, []byte{0})
		if err := s.updateSync(tx, ob, org, string(kind), string(id), func(st *cp.SyncState) bool { return st.Forget(site) }); err != nil {
			return err
		}
	}
	rec, err := getSite(ob.Bucket(bucketSites), site)
	if err != nil {
		return err
	}
	if rec == nil {
		rec = &cp.Site{ID: site}
	}
	if err := deleteSite(ob.Bucket(bucketSites), site); err != nil {
		return err
	}
	if err := ob.Bucket(bucketReports).Delete([]byte(site)); err != nil {
		return err
	}
	if err := deleteHistory(ob, site); err != nil {
		return err
	}
	if err := putJSON(tx.Bucket(bucketDenied), string(key(org, site)), cp.Forgotten(*rec, org, now)); err != nil {
		return err
	}
	tx.OnCommit(func() { s.denied.set(org, site, true) })
	return nil
}

// SiteCleared records that the MQTT side cleared a forgotten site's
// retained topics: ForgetDecommissioned no longer returns it.
func (s *Store) SiteCleared(ctx context.Context, org, site string) error {
	err := s.write(ctx, func(tx *bolt.Tx) error {
		dec := tx.Bucket(bucketDecommissioning)
		if bytes.Equal(dec.Get(key(org, site)), phaseForgotten) {
			return dec.Delete(key(org, site))
		}
		return nil
	})
	return wrap("record cleared site", err)
}

// undeny lifts a decommissioned site's refusal (enrollment), in tx, and
// returns what was kept of it (nil when it was not refused). A clearing
// of its topics still pending is dropped too: it would kick the enrolled
// agent off and clear what it publishes now.
func (s *Store) undeny(tx *bolt.Tx, org, site string) (*cp.Decommissioned, error) {
	b := tx.Bucket(bucketDenied)
	d, err := getJSON[cp.Decommissioned](b, string(key(org, site)))
	if err != nil || d == nil {
		return nil, err
	}
	tx.OnCommit(func() { s.denied.set(org, site, false) })
	if err := tx.Bucket(bucketDecommissioning).Delete(key(org, site)); err != nil {
		return nil, err
	}
	return d, b.Delete(key(org, site))
}
