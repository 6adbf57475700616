package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// This file persists the site state machine (controlplane.FoldStatus,
// FoldPresence, Settle): the newest report taken of each site beside its
// record, and the confirmations a report brings to the resources waiting
// for the site.
//
//	orgs/<org>/reports/<site>   JSON controlplane.LastReport

var bucketReports = []byte("reports")

// Ingest folds reports, in order, into the store in one transaction, and
// returns what it did with each (presence is always taken).
//
// A status report goes into the site's record and, for "applied" and
// "failed", into every group and prefix list waiting for the site
// (controlplane.SyncState.Confirm). Reports are taken only in order: a
// report for an older revision than one already taken, or an "applying"
// after that revision's outcome, changes nothing. A report of another epoch
// confirms nothing: its revision numbers are another store's.
//
// A presence records whether the agent is online and when it was last heard
// of (the agent's own time when it says, else now). Presence is taken in the
// order it arrives, not by its time: a router's clock may be wrong, and the
// bus already drops a retained copy that follows a live one.
//
// Each resource's sync record (which lists every site it awaits) is decoded
// and written once per call however many of its sites report, so a batch of
// n reports costs O(n + sites), not O(n × sites).
func (s *Store) Ingest(ctx context.Context, reports []cp.Report) ([]cp.ReportResult, error) {
	results := make([]cp.ReportResult, len(reports))
	err := s.write(ctx, func(tx *bolt.Tx) error {
		b := newSyncBatch(s, tx)
		denied := tx.Bucket(bucketDenied)
		q := s.opts.Quotas.WithDefaults()
		counts := map[string]int{} // sites of each organisation with a new site in the batch
		for i, r := range reports {
			if denied.Get(key(r.OrgID, r.SiteID)) != nil {
				results[i] = cp.ReportDecommissioned // forgotten: nothing it says is taken
				continue
			}
			ob, _ := orgBucket(tx, r.OrgID, false)
			isNew := getSiteRaw(ob, r.SiteID) == nil
			if isNew {
				n, ok := counts[r.OrgID]
				if !ok {
					n = countKeys(sub(ob, bucketSites))
				}
				counts[r.OrgID] = n
				if q.CheckSites(n, 1) != nil {
					results[i] = cp.ReportOverQuota
					continue
				}
			}
			var err error
			switch {
			case r.Status != nil:
				results[i], err = s.ingestStatus(b, r.OrgID, r.SiteID, r.Status)
			case r.Presence != nil:
				results[i], err = cp.ReportTaken, s.ingestPresence(tx, r.OrgID, r.SiteID, *r.Presence)
			}
			if err != nil {
				return err
			}
			if isNew && results[i] != cp.ReportRefused { // a refused report stores nothing
				counts[r.OrgID]++
			}
		}
		return b.flush()
	})
	if err != nil {
		return nil, wrap("ingest site reports", err)
	}
	return results, nil
}

func (s *Store) ingestStatus(b *syncBatch, org, site string, st *protocol.SiteStatus) (cp.ReportResult, error) {
	ob, err := orgBucket(b.tx, org, true)
	if err != nil {
		return 0, err
	}
	rec, last, err := readSite(ob, site)
	if err != nil {
		return 0, err
	}
	now := s.opts.Now()
	out := cp.FoldStatus(rec, last, *st, s.siteRules(), now)
	if out.Result == cp.ReportRefused {
		return out.Result, nil
	}
	if out.Last != last {
		if err := putJSON(ob.Bucket(bucketReports), site, out.Last); err != nil {
			return 0, err
		}
	}
	if out.Confirm {
		if err := b.confirm(ob, org, site, out.Revision, out.Applied, out.Error); err != nil {
			return 0, err
		}
	}
	return out.Result, storeSite(ob, rec, out.Site, now)
}

// siteRules are the state machine's rules for this store.
func (s *Store) siteRules() cp.SiteRules {
	return cp.SiteRules{Epoch: s.epoch, Revisioned: s.opts.Revisioner != nil, SyncTimeout: s.opts.SyncTimeout}
}

// readSite reads a site's record (a new one when there is none) and its
// newest report taken.
func readSite(ob *bolt.Bucket, site string) (cp.Site, cp.LastReport, error) {
	var last cp.LastReport
	rec, err := getSite(sub(ob, bucketSites), site)
	if err != nil {
		return cp.Site{}, last, err
	}
	if rec == nil {
		rec = &cp.Site{}
		*rec = cp.NewSite(site)
	}
	if raw := get(ob, bucketReports, site); raw != nil {
		if err := json.Unmarshal(raw, &last); err != nil {
			return cp.Site{}, last, fmt.Errorf("decode last report of %s: %w", site, err)
		}
	}
	return *rec, last, nil
}

// syncBatch holds the sync records of resources that one transaction
// confirms sites of, so that each is decoded and written once.
type syncBatch struct {
	s     *Store
	tx    *bolt.Tx
	syncs map[string]*batchedSync
	order []*batchedSync
}

type batchedSync struct {
	ob            *bolt.Bucket
	org, kind, id string
	prev, cur     cp.SyncState
	changed, gone bool
}

func newSyncBatch(s *Store, tx *bolt.Tx) *syncBatch {
	return &syncBatch{s: s, tx: tx, syncs: map[string]*batchedSync{}}
}

// confirm folds a report into every resource waiting for site.
func (b *syncBatch) confirm(ob *bolt.Bucket, org, site string, revision uint64, applied bool, errMsg string) error {
	prefix := append(key(org, site), 0)
	var keys [][]byte
	c := b.tx.Bucket(bucketAwaiting).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, slices.Clone(k[len(prefix):]))
	}
	for _, k := range keys {
		kind, id, _ := bytes.Cut(k, []byte{0})
		e, err := b.get(ob, org, string(kind), string(id))
		if err != nil {
			return err
		}
		if e.gone {
			continue // deleted; its index entries go with it
		}
		if e.cur.Confirm(site, revision, applied, errMsg) {
			e.changed = true
		}
	}
	return nil
}

func (b *syncBatch) get(ob *bolt.Bucket, org, kind, id string) (*batchedSync, error) {
	k := string(key(org, kind, id))
	if e := b.syncs[k]; e != nil {
		return e, nil
	}
	e := &batchedSync{ob: ob, org: org, kind: kind, id: id}
	if get(ob, kindBucket(kind), id) == nil {
		e.gone = true
	} else {
		st, err := readSync(ob, kind, id)
		if err != nil {
			return nil, err
		}
		e.cur, e.prev = st, st
		e.prev.Awaiting = maps.Clone(st.Awaiting)
	}
	b.syncs[k] = e
	b.order = append(b.order, e)
	return e, nil
}

// flush writes every changed sync record and its indexes.
func (b *syncBatch) flush() error {
	for _, e := range b.order {
		if !e.changed {
			continue
		}
		if err := writeSync(e.ob, e.kind, e.id, &e.cur); err != nil {
			return err
		}
		if err := setIndexes(b.tx, e.org, e.kind, e.id, &e.prev, &e.cur); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) ingestPresence(tx *bolt.Tx, org, site string, p protocol.Presence) error {
	ob, err := orgBucket(tx, org, true)
	if err != nil {
		return err
	}
	rec, last, err := readSite(ob, site)
	if err != nil {
		return err
	}
	now := s.opts.Now()
	return storeSite(ob, rec, cp.FoldPresence(rec, last, p, s.epoch, now), now)
}

// Settle confirms, for each of sites, every group and prefix list waiting
// for a revision the site has already applied, and sets each site's state
// from its revisions. A write that leaves a site's content as it was gives
// the site its current revision again, and an agent that already applied it
// never reports it again; the write itself confirms its own resource
// (confirmApplied), and Settle catches the rest: other resources waiting
// for the site, and a site left syncing by a delete. The MQTT side calls it
// after every committed write (controlplane.Change). A site whose newest
// report is a failure of that very revision confirms nothing.
func (s *Store) Settle(ctx context.Context, org string, sites []string) error {
	err := s.write(ctx, func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		if ob == nil {
			return nil
		}
		b := newSyncBatch(s, tx)
		now := s.opts.Now()
		deadline := now.Add(s.opts.SyncTimeout)
		for _, site := range sites {
			if getSiteRaw(ob, site) == nil {
				continue
			}
			rec, last, err := readSite(ob, site)
			if err != nil {
				return err
			}
			rev, ok := cp.StandingRevision(rec, last)
			if !ok && rec.AppliedRevision != cp.UnknownRevision {
				continue
			}
			if ok {
				if err := b.confirm(ob, org, site, rev, true, ""); err != nil {
					return err
				}
			}
			if next, changed := cp.Settle(rec, deadline); changed {
				if err := storeSite(ob, rec, next, now); err != nil {
					return err
				}
			}
		}
		return b.flush()
	})
	return wrap("settle confirmed sites", err)
}

// getSiteRaw is a site's stored record, nil when there is none.
func getSiteRaw(ob *bolt.Bucket, site string) []byte {
	sb := sub(ob, bucketSites)
	if sb == nil {
		return nil
	}
	return sb.Get([]byte(site))
}

// siteRecord stores the Site's internal fields too. Write one only through
// putSite (counts.go), which keeps the metrics' running counts.
type siteRecord struct {
	cp.Site
	SyncDeadline         time.Time `json:"sync_deadline,omitzero"`
	DecommissionRevision uint64    `json:"decommission_revision,omitempty"`
}

func getSite(b *bolt.Bucket, id string) (*cp.Site, error) {
	r, err := getJSON[siteRecord](b, id)
	if err != nil || r == nil {
		return nil, err
	}
	r.Site.SyncDeadline, r.Site.DecommissionRevision = r.SyncDeadline, r.DecommissionRevision
	return &r.Site, nil
}

// siteView is a site as a client sees it at now.
func siteView(site cp.Site, org string, now time.Time) cp.Site {
	site.OrgID = org
	return site.At(now)
}

// ListSites returns the sites the organisation's policy names or whose
// agents reported, ordered by id: every page of ListSitesPage at once.
func (s *Store) ListSites(ctx context.Context, org string) ([]cp.Site, error) {
	sites, _, err := s.ListSitesPage(ctx, org, "", math.MaxInt)
	return sites, err
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
