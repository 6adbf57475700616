package bolt

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file keeps each resource's controlplane.SyncState and the indexes
// beside it (deadlines, awaiting, status) in step.

func readSync(ob *bolt.Bucket, kind, id string) (cp.SyncState, error) {
	var st cp.SyncState
	v := ob.Bucket(bucketSync).Get(key(kind, id))
	if v == nil {
		return cp.SyncState{Status: cp.StatusActive}, nil
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("decode sync state of %s: %w", id, err)
	}
	return st, nil
}

// writableSync reads a resource's sync state for a write, refusing the write
// when the stored version is not one pre allows (precondition_failed) or
// while the resource is syncing (DESIGN.md section 2, resource_locked).
// It runs in the write transaction, so the version checked is the one the
// write replaces.
func writableSync(ob *bolt.Bucket, kind, id string, now time.Time, pre cp.Precondition) (cp.SyncState, error) {
	st, err := readSync(ob, kind, id)
	if err != nil {
		return st, err
	}
	if err := pre.Check(kind, id, st.Version); err != nil {
		return st, err
	}
	if locked, retry := st.Locked(now); locked {
		return st, cp.Locked(kind, id, retry)
	}
	return st, nil
}

// startSync finishes a create or replace inside its transaction: the
// resource starts a new sync awaiting revs from its sites and its status
// indexes move from prev. It returns the sync state and the change to
// announce after commit; the caller then records the affected sites' new
// revisions (touchSites), once for all the writes of its transaction.
// standing caches the sites' standing revisions across those writes.
func (s *Store) startSync(tx *bolt.Tx, ob *bolt.Bucket, org, kind, id string, prev *cp.SyncState, await map[string]uint64, affected map[string]bool, revs map[string]uint64, now time.Time, standing standingCache) (cp.SyncState, cp.Change, error) {
	st := cp.NewSyncState(await, now, s.opts.SyncTimeout)
	st.Version = cp.NextVersion(prev)
	if err := confirmApplied(ob, &st, standing); err != nil {
		return st, cp.Change{}, err
	}
	if err := writeSync(ob, kind, id, &st); err != nil {
		return st, cp.Change{}, err
	}
	if err := setIndexes(tx, org, kind, id, prev, &st); err != nil {
		return st, cp.Change{}, err
	}
	return st, cp.Change{OrgID: org, Sites: sortedKeys(affected), Kind: kind, ID: id, Revisions: revs}, nil
}

// standingCache holds, within one transaction, each site's standing
// revision (cp.StandingRevision) as read before the transaction's own
// site writes, which change only desired revisions and states, never it.
type standingCache map[string]standing

type standing struct {
	rev uint64
	ok  bool
}

// confirmApplied confirms, in the write's own transaction, the sites st
// awaits that have already applied the revision it waits for. A write that
// leaves a site's content as it was gives it its current revision again,
// which its agent will not report again; confirming it here means the
// write's own answer already reads active when no site has anything to do,
// instead of syncing until Settle runs after the commit. The rule is the
// domain's (SyncState.ConfirmStanding); this only reads and caches the
// standing revisions.
func confirmApplied(ob *bolt.Bucket, st *cp.SyncState, cache standingCache) error {
	if st.Status != cp.StatusSyncing {
		return nil
	}
	for _, site := range slices.Sorted(maps.Keys(st.Awaiting)) {
		if st.Awaiting[site] == cp.UnknownRevision { // no Revisioner: only a report confirms; skip the read
			continue
		}
		sr, cached := cache[site]
		if !cached {
			if getSiteRaw(ob, site) != nil {
				rec, last, err := readSite(ob, site)
				if err != nil {
					return err
				}
				sr.rev, sr.ok = cp.StandingRevision(rec, last)
			}
			cache[site] = sr
		}
		st.ConfirmStandingRevision(site, sr.rev, sr.ok)
	}
	return nil
}

func writeSync(ob *bolt.Bucket, kind, id string, st *cp.SyncState) error {
	if st == nil {
		return ob.Bucket(bucketSync).Delete(key(kind, id))
	}
	return putJSON(ob.Bucket(bucketSync), string(key(kind, id)), st)
}

// setIndexes replaces the status, deadline and awaiting entries of one
// resource: prev is its stored sync state (nil when new), next the new one
// (nil when deleted). Only the awaiting entries that change are written, in
// key order: a resource awaiting 100,000 sites is written once per ingest
// batch, and rewriting its whole index each time (in a map's random order,
// which makes bbolt move its nodes' entries on every insert) was most of
// the control plane's CPU at that scale (BENCHMARKS.md, "Scale").
func setIndexes(tx *bolt.Tx, org, kind, id string, prev, next *cp.SyncState) error {
	dl, aw, st := tx.Bucket(bucketDeadlines), tx.Bucket(bucketAwaiting), tx.Bucket(bucketStatus)
	var before, after map[string]uint64
	if prev != nil {
		before = prev.Awaiting
		if !prev.Deadline.IsZero() {
			if err := dl.Delete(deadlineKey(prev.Deadline, org, kind, id)); err != nil {
				return err
			}
		}
	}
	if next != nil {
		after = next.Awaiting
	}
	var gone, added []string
	for site := range before {
		if _, ok := after[site]; !ok {
			gone = append(gone, site)
		}
	}
	for site := range after {
		if _, ok := before[site]; !ok {
			added = append(added, site)
		}
	}
	slices.Sort(gone)
	slices.Sort(added)
	for _, site := range gone {
		if err := aw.Delete(key(org, site, kind, id)); err != nil {
			return err
		}
	}
	if next == nil {
		return putStatus(st, key(org, kind, id), kind, "") // apisec #13.7: counts.go
	}
	if next.Status == cp.StatusSyncing {
		if err := dl.Put(deadlineKey(next.Deadline, org, kind, id), nil); err != nil {
			return err
		}
	}
	for _, site := range added {
		if err := aw.Put(key(org, site, kind, id), nil); err != nil {
			return err
		}
	}
	return putStatus(st, key(org, kind, id), kind, next.Status)
}

// updateSync applies fn to one resource's stored SyncState and keeps the
// indexes in step. A resource that no longer exists is skipped.
func (s *Store) updateSync(tx *bolt.Tx, ob *bolt.Bucket, org, kind, id string, fn func(*cp.SyncState) bool) error {
	if get(ob, kindBucket(kind), id) == nil {
		return nil
	}
	st, err := readSync(ob, kind, id)
	if err != nil {
		return err
	}
	prev := st
	prev.Awaiting = maps.Clone(st.Awaiting)
	if !fn(&st) {
		return nil
	}
	if err := writeSync(ob, kind, id, &st); err != nil {
		return err
	}
	return setIndexes(tx, org, kind, id, &prev, &st)
}
