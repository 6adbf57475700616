package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// This file holds what the MQTT side needs beyond Confirm and UpdateSite:
// ordering of status reports and the skip of sites that already confirmed.
//
//	orgs/<org>/reports/<site>   JSON lastReport: the newest status taken in

var bucketReports = []byte("reports")

// lastReport is the newest status report taken in for a site, so that an
// older one arriving late (a retained copy after a live message) is ignored.
type lastReport struct {
	Epoch    string `json:"epoch"`
	Revision uint64 `json:"revision"`
	State    string `json:"state"`
}

// ReportStatus folds one status report of a site into the store; see
// Ingest, which takes many in one transaction.
func (s *Store) ReportStatus(ctx context.Context, org, site string, st protocol.SiteStatus) (cp.ReportResult, error) {
	res, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Status: &st}})
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

// SetPresence records a site's presence; see Ingest.
func (s *Store) SetPresence(ctx context.Context, org, site string, p protocol.Presence) error {
	_, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Presence: &p}})
	return err
}

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
		for i, r := range reports {
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
		}
		return b.flush()
	})
	if err != nil {
		return nil, wrap("ingest site reports", err)
	}
	return results, nil
}

func (s *Store) ingestStatus(b *syncBatch, org, site string, st *protocol.SiteStatus) (cp.ReportResult, error) {
	now := s.opts.Now()
	ob, err := orgBucket(b.tx, org, true)
	if err != nil {
		return 0, err
	}
	rb, err := ob.CreateBucketIfNotExists(bucketReports)
	if err != nil {
		return 0, err
	}
	sb := ob.Bucket(bucketSites)
	rec, err := getSite(sb, site)
	if err != nil {
		return 0, err
	}
	if rec == nil {
		rec = &cp.Site{ID: site, State: cp.SiteUnknown}
	}
	rec.AgentVersion, rec.RouterOSVersion, rec.Board = st.AgentVersion, st.RouterOSVersion, st.Board
	put := func(res cp.ReportResult) (cp.ReportResult, error) {
		return res, putSite(sb, site, rec)
	}
	if st.Epoch != s.epoch {
		return put(cp.ReportOtherEpoch)
	}
	var last lastReport
	if raw := rb.Get([]byte(site)); raw != nil {
		if err := json.Unmarshal(raw, &last); err != nil {
			return 0, fmt.Errorf("decode last report of %s: %w", site, err)
		}
	}
	if last.Epoch == s.epoch && (st.Revision < last.Revision ||
		st.Revision == last.Revision && st.State == protocol.StateApplying && last.State != protocol.StateApplying) {
		return put(cp.ReportStale)
	}
	if err := putJSON(rb, site, lastReport{Epoch: st.Epoch, Revision: st.Revision, State: st.State}); err != nil {
		return 0, err
	}
	switch st.State {
	case protocol.StateApplied, protocol.StateFailed:
		applied := st.State == protocol.StateApplied
		if err := b.confirm(ob, org, site, st.Revision, applied, st.Error); err != nil {
			return 0, err
		}
		if applied {
			rec.AppliedRevision = max(rec.AppliedRevision, st.Revision)
			rec.State, rec.LastError = cp.SiteInSync, ""
			if rec.DesiredRevision > st.Revision {
				rec.State = cp.SiteSyncing
			}
		} else {
			rec.State, rec.LastError = cp.SiteFailed, st.Error
		}
	default: // applying
		if rec.State != cp.SiteFailed || st.Revision > rec.AppliedRevision {
			rec.State = cp.SiteSyncing
			if rec.SyncDeadline.Before(now.Add(s.opts.SyncTimeout)) && rec.DesiredRevision > rec.AppliedRevision {
				// A site that is working on it is syncing, not unknown,
				// until the usual deadline.
				rec.SyncDeadline = now.Add(s.opts.SyncTimeout)
			}
		}
	}
	if !rec.Online && rec.LastSeen != nil {
		rec.State = cp.SiteOffline // until its presence says online
	}
	return put(cp.ReportTaken)
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
	now := s.opts.Now()
	ob, err := orgBucket(tx, org, true)
	if err != nil {
		return err
	}
	sb := ob.Bucket(bucketSites)
	rec, err := getSite(sb, site)
	if err != nil {
		return err
	}
	if rec == nil {
		rec = &cp.Site{ID: site, State: cp.SiteUnknown}
	}
	at := p.At
	if at.IsZero() || at.After(now) {
		at = now
	}
	rec.Online = p.State == protocol.PresenceOnline
	if rec.LastSeen == nil || at.After(*rec.LastSeen) {
		rec.LastSeen = &at
	}
	if !rec.Online {
		rec.State = cp.SiteOffline
	} else if rec.State == cp.SiteOffline || rec.State == cp.SiteUnknown {
		var last lastReport
		if rb := ob.Bucket(bucketReports); rb != nil {
			if raw := rb.Get([]byte(site)); raw != nil {
				if err := json.Unmarshal(raw, &last); err != nil {
					return fmt.Errorf("decode last report of %s: %w", site, err)
				}
			}
		}
		rec.State = resumedState(rec, last, s.epoch)
	}
	return putSite(sb, site, rec)
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
		rb := ob.Bucket(bucketReports)
		sb := ob.Bucket(bucketSites)
		for _, site := range sites {
			rec, err := getSite(sb, site)
			if err != nil {
				return err
			}
			if rec == nil {
				continue
			}
			rev, ok := appliedRevision(rb, site, rec)
			if !ok {
				if rec.AppliedRevision == cp.UnknownRevision {
					if err := settleState(sb, site, rec, s.opts.Now().Add(s.opts.SyncTimeout)); err != nil {
						return err
					}
				}
				continue
			}
			if err := b.confirm(ob, org, site, rev, true, ""); err != nil {
				return err
			}
			if err := settleState(sb, site, rec, s.opts.Now().Add(s.opts.SyncTimeout)); err != nil {
				return err
			}
		}
		return b.flush()
	})
	return wrap("settle confirmed sites", err)
}

// appliedRevision is the revision site (its record rec, nil if unknown)
// has applied and still stands by: none when it never applied one, or when
// its newest report is a failure of that very revision (a drift repair that
// failed), since the router may no longer hold it.
func appliedRevision(rb *bolt.Bucket, site string, rec *cp.Site) (uint64, bool) {
	if rec == nil || rec.AppliedRevision == cp.UnknownRevision {
		return 0, false
	}
	if rb != nil {
		var last lastReport
		if raw := rb.Get([]byte(site)); raw != nil && json.Unmarshal(raw, &last) == nil &&
			last.Revision == rec.AppliedRevision && last.State == protocol.StateFailed {
			return 0, false
		}
	}
	return rec.AppliedRevision, true
}

// resumedState is a site's state when its agent comes back online, from
// what the control plane knows: its revisions and its newest report.
func resumedState(rec *cp.Site, last lastReport, epoch string) cp.SiteState {
	switch {
	case last.Epoch == epoch && last.State == protocol.StateFailed && last.Revision >= rec.AppliedRevision:
		return cp.SiteFailed
	case rec.DesiredRevision > rec.AppliedRevision:
		return cp.SiteSyncing
	case rec.AppliedRevision > 0:
		return cp.SiteInSync
	default:
		return cp.SiteUnknown
	}
}

// settleState makes a site's state agree with its revisions after a write:
// in sync once it applied what it must, syncing (until deadline, then
// unknown) while it has a newer revision to apply. A write that no resource
// awaits (a delete) raises the site's revision without marking it syncing.
func settleState(sb *bolt.Bucket, site string, rec *cp.Site, deadline time.Time) error {
	switch {
	case rec.AppliedRevision >= rec.DesiredRevision && rec.State == cp.SiteSyncing:
		rec.State = cp.SiteInSync
	case rec.AppliedRevision < rec.DesiredRevision && rec.State == cp.SiteInSync:
		rec.State = cp.SiteSyncing
		if deadline.After(rec.SyncDeadline) {
			rec.SyncDeadline = deadline
		}
	default:
		return nil
	}
	return putSite(sb, site, rec)
}
