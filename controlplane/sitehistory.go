package controlplane

import "time"

// A site's state history (#17): who went out of sync, since when, and why
// is a question an operator asks of one site's past, not only of its
// present. Every write of a site's record that is a transition (below)
// records one SiteTransition in the same transaction, so the history and
// the record cannot disagree; a site keeps its newest SiteHistoryLimit.
//
// A state read at a time, not written, is not a transition: a site whose
// sync passed its deadline reads unknown (Site.At) without a record
// changing, and its history shows it syncing until something is written.

// SiteHistoryLimit is how many transitions a site keeps; a store drops the
// oldest past it in the transaction that records the newest.
const SiteHistoryLimit = 100

// SiteTransition is one change of a site's record as its history keeps it:
// the state it left and the one it entered, and the record's revisions,
// error and presence after the change.
type SiteTransition struct {
	// Seq numbers a site's transitions from 1 in the order recorded; the
	// history is paged by it (newest first).
	Seq             uint64    `json:"seq"`
	At              time.Time `json:"at"`
	From            SiteState `json:"from"`
	To              SiteState `json:"to"`
	DesiredRevision uint64    `json:"desired_revision"`
	AppliedRevision uint64    `json:"applied_revision"`
	Error           string    `json:"error"`
	Online          bool      `json:"online"`
}

// TransitionOf is the transition a write of a site's record from prev to
// next at at makes, and whether it is one: the state changed, the agent
// went online or offline, or a failed site failed again with another error
// (a new reason to look at). A revision moving within one state (a site
// in sync applying its next document) is not: the history tells states,
// the record tells revisions. Seq is the store's to set.
func TransitionOf(prev, next Site, at time.Time) (SiteTransition, bool) {
	if prev.State == next.State && prev.Online == next.Online &&
		!(next.State == SiteFailed && prev.LastError != next.LastError) {
		return SiteTransition{}, false
	}
	return SiteTransition{At: at.UTC(), From: prev.State, To: next.State,
		DesiredRevision: next.DesiredRevision, AppliedRevision: next.AppliedRevision,
		Error: next.LastError, Online: next.Online}, true
}

// SiteHistoryQuery selects a page of a site's history, newest first.
type SiteHistoryQuery struct {
	// Before continues a listing: only transitions with a lower Seq; 0
	// starts at the newest.
	Before uint64
	Limit  int
}
