package controlplane

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// SyncState is the stored bookkeeping behind a resource's Status: which sites
// must still confirm which revision, and by when. Its methods are the only
// code that decides a status (DESIGN.md section 5).
type SyncState struct {
	Status Status `json:"status"`
	// Awaiting maps each site that has not yet confirmed to the lowest
	// revision that confirms it.
	Awaiting map[string]uint64 `json:"awaiting,omitempty"`
	// Started is when the write that began this sync committed; Deadline
	// when it fails if a site is still unconfirmed.
	Started  time.Time `json:"started,omitzero"`
	Deadline time.Time `json:"deadline,omitzero"`
	// Error says why the status is failed.
	Error string `json:"error,omitempty"`
	// Version counts the resource's writes (its ETag, version.go); 0 in
	// files written before versions existed, whose next write makes 1.
	Version uint64 `json:"version,omitempty"`
}

// WriteStatus is the status a write has when it commits, before any site
// reports: syncing while some of sites must confirm it, active when none
// must. NewSyncState reaches the same status once the revisions are known.
func WriteStatus(sites []string) Status {
	if len(sites) == 0 {
		return StatusActive
	}
	return StatusSyncing
}

// NewSyncState starts a sync for a write at now that must be confirmed by
// every site in revisions. With no sites the resource is active at once.
func NewSyncState(revisions map[string]uint64, now time.Time, timeout time.Duration) SyncState {
	if len(revisions) == 0 {
		return SyncState{Status: StatusActive, Started: now}
	}
	return SyncState{
		Status:   StatusSyncing,
		Awaiting: maps.Clone(revisions),
		Started:  now,
		Deadline: now.Add(timeout),
	}
}

// Confirm folds in a report from site: applied (or failed, with errMsg) for
// revision. Reports for an older revision than awaited are ignored. It
// reports whether the state changed.
//
// A failure of an awaited revision fails the resource at once. Late
// confirmations still count after a failure: once every awaited site has
// confirmed, the resource is active.
func (s *SyncState) Confirm(site string, revision uint64, applied bool, errMsg string) bool {
	want, ok := s.Awaiting[site]
	if !ok || revision < want {
		return false
	}
	if !applied {
		if errMsg == "" {
			errMsg = "the router reported a failure without a message"
		}
		msg := fmt.Sprintf("site %s failed to apply revision %d: %s", site, revision, errMsg)
		if s.Status == StatusFailed && s.Error == msg {
			return false
		}
		s.Status, s.Error = StatusFailed, msg
		return true
	}
	delete(s.Awaiting, site)
	if len(s.Awaiting) == 0 {
		s.Awaiting = nil
		s.Status, s.Error = StatusActive, ""
		s.Deadline = time.Time{}
	}
	return true
}

// ConfirmStanding confirms site when it already applied the revision s
// awaits of it and still stands by it (StandingRevision of its record rec
// and newest report last). A write that leaves a site's content as it was
// gives the site its current revision again, which its agent will not
// report again: the write's own transaction confirms it, so the write's
// answer already reads active when no site has anything to do. Without a
// Revisioner (UnknownRevision awaited) only a report confirms. It reports
// whether the state changed.
func (s *SyncState) ConfirmStanding(site string, rec Site, last LastReport) bool {
	rev, ok := StandingRevision(rec, last)
	return s.ConfirmStandingRevision(site, rev, ok)
}

// ConfirmStandingRevision is ConfirmStanding for a caller that already
// has the site's StandingRevision (rev, ok), as store/bolt caches it
// across the writes of one transaction.
func (s *SyncState) ConfirmStandingRevision(site string, rev uint64, ok bool) bool {
	want, awaited := s.Awaiting[site]
	if !awaited || want == UnknownRevision || !ok || rev < want {
		return false
	}
	return s.Confirm(site, rev, true, "")
}

// Expire fails a sync whose deadline has passed with sites unconfirmed. It
// reports whether the state changed.
func (s *SyncState) Expire(now time.Time) bool {
	if s.Status != StatusSyncing || s.Deadline.IsZero() || now.Before(s.Deadline) {
		return false
	}
	sites := slices.Sorted(maps.Keys(s.Awaiting))
	s.Status = StatusFailed
	s.Error = fmt.Sprintf("no confirmation before the sync deadline from %s", strings.Join(sites, ", "))
	return true
}

// Locked reports whether writes must be refused at now, and how long until
// they may be retried (at least one second).
func (s SyncState) Locked(now time.Time) (bool, time.Duration) {
	if s.Status != StatusSyncing || !now.Before(s.Deadline) {
		return false, 0
	}
	return true, max(s.Deadline.Sub(now), time.Second)
}

// At returns the state as it stands at now: a sync past its deadline reads
// as failed even before the sweeper has stored that.
func (s SyncState) At(now time.Time) SyncState {
	s.Awaiting = maps.Clone(s.Awaiting)
	s.Expire(now)
	return s
}
