package controlplane

import (
	"time"

	"github.com/rampart-fw/rampart/protocol"
)

// This file is the site state machine (DESIGN.md section 6): how a site's
// record moves with its agent's status reports and presence, and with the
// revisions writes assign it. These are pure functions of the stored record
// and the input; a store reads the record, calls them, and persists what
// they return, in one transaction, and never decides a site's state itself.

// Bounds of the text stored from an agent's report: the wire's own
// (protocol.SiteStatus.Bounded), applied again because a report of any size
// may arrive from a compromised site.
const (
	MaxSiteError = protocol.MaxStatusError
	MaxSiteText  = protocol.MaxStatusText
)

// NewSite is the record of a site the control plane has not heard of yet.
func NewSite(id string) Site { return Site{ID: id, State: SiteUnknown} }

// LastReport is the newest status report taken in for a site, kept beside
// its record so that an older one arriving late (a retained copy after a
// live message) is ignored. The zero value is "none yet".
type LastReport struct {
	Epoch    string `json:"epoch"`
	Revision uint64 `json:"revision"`
	State    string `json:"state"`
}

// SiteRules are what the state machine needs to know of the store that
// keeps the sites.
type SiteRules struct {
	// Epoch is the store's identity: revisions of another epoch are another
	// store's numbers and confirm nothing.
	Epoch string
	// Revisioned says the store assigns revisions (it has a Revisioner):
	// then a site's DesiredRevision is the highest revision it was ever
	// given, and a report of a higher one is forged. Without, revisions are
	// UnknownRevision and any report is believed.
	Revisioned bool
	// SyncTimeout is how long a site working on a revision reads syncing.
	SyncTimeout time.Duration
}

// StatusOutcome is what folding one status report into a site decided.
type StatusOutcome struct {
	Result ReportResult
	// Site is the site's new record and Last its newest report; both are
	// to be stored (Site even when the report is stale: it carries the
	// agent's versions). Neither changes when the report is refused.
	Site Site
	Last LastReport
	// Confirm says every resource awaiting the site folds in the report:
	// SyncState.Confirm(site, Revision, Applied, Error).
	Confirm  bool
	Revision uint64
	Applied  bool
	Error    string
}

// FoldStatus folds an agent's status report st into the site's record rec,
// whose newest taken report is last, at now.
//
//   - A report of another epoch is counted (ReportOtherEpoch) and confirms
//     nothing: the agent will apply this store's document and report again.
//   - A report for a revision higher than any the site was given in this
//     epoch is refused (ReportRefused) and changes nothing: only an agent
//     that holds the site's secret can publish it, and believing it would
//     make the site read in sync for good and discard its real reports as
//     stale (issue #13 item 3).
//   - Reports are taken only in order: an older revision than the last
//     taken, or "applying" after that revision's outcome, is ReportStale.
//   - "applied" makes the site in sync (syncing while it has a newer
//     revision to apply) and confirms the resources that await it;
//     "failed" makes it failed and fails them; "applying" makes it syncing,
//     unless it is failed at a revision at least as new.
//   - A site whose presence said offline stays offline.
//   - A report taken that is an outcome (applied or failed) of an older
//     revision than the site was given in this epoch is ReportBehind: its
//     agent is not working on the site's revision and may never have
//     received it, so the document is to be published again. An
//     "applying" is not: that agent reports again when it is done.
//
// Text fields are cut to MaxSiteError and MaxSiteText.
func FoldStatus(rec Site, last LastReport, st protocol.SiteStatus, rules SiteRules, now time.Time) StatusOutcome {
	out := StatusOutcome{Site: rec, Last: last}
	if st.Epoch == rules.Epoch && rules.Revisioned && st.Revision > rec.DesiredRevision {
		out.Result = ReportRefused
		return out
	}
	st = st.Bounded()
	site := &out.Site
	site.AgentVersion, site.RouterOSVersion, site.Board = st.AgentVersion, st.RouterOSVersion, st.Board
	if st.Epoch != rules.Epoch {
		out.Result = ReportOtherEpoch
		return out
	}
	if last.Epoch == rules.Epoch && (st.Revision < last.Revision ||
		st.Revision == last.Revision && st.State == protocol.StateApplying && last.State != protocol.StateApplying) {
		out.Result = ReportStale
		return out
	}
	out.Result = ReportTaken
	out.Last = LastReport{Epoch: st.Epoch, Revision: st.Revision, State: st.State}
	switch st.State {
	case protocol.StateApplied:
		out.Confirm, out.Revision, out.Applied = true, st.Revision, true
		site.AppliedRevision = max(site.AppliedRevision, st.Revision)
		site.State, site.LastError = SiteInSync, ""
		if site.DesiredRevision > st.Revision {
			site.State = SiteSyncing
		}
	case protocol.StateFailed:
		out.Confirm, out.Revision, out.Error = true, st.Revision, st.Error
		site.State, site.LastError = SiteFailed, st.Error
	default: // applying
		if site.State != SiteFailed || st.Revision > site.AppliedRevision {
			site.State = SiteSyncing
			if deadline := now.Add(rules.SyncTimeout); site.SyncDeadline.Before(deadline) && site.DesiredRevision > site.AppliedRevision && rec.State != SiteDecommissioning {
				// A site that is working on it is syncing, not unknown,
				// until the usual deadline.
				site.SyncDeadline = deadline
			}
		}
	}
	if !site.Online && site.LastSeen != nil {
		site.State = SiteOffline // until its presence says online
	}
	if rec.State == SiteDecommissioning {
		site.State = SiteDecommissioning // until it is forgotten
	}
	if st.State != protocol.StateApplying && st.Revision < site.DesiredRevision {
		out.Result = ReportBehind
	}
	return out
}

// FoldPresence folds an agent's presence p into the site's record rec,
// whose newest taken report is last, at now. The site is online or not as
// p says, last seen at the agent's own time when it gives one (never
// later than now, nor earlier than before); presence is taken in the order
// it arrives, not by its time, since a router's clock may be wrong. An
// offline site reads offline; one that comes back resumes the state its
// revisions and newest report give (ResumedState).
func FoldPresence(rec Site, last LastReport, p protocol.Presence, epoch string, now time.Time) Site {
	at := p.At
	if at.IsZero() || at.After(now) {
		at = now
	}
	rec.Online = p.State == protocol.PresenceOnline
	if rec.LastSeen == nil || at.After(*rec.LastSeen) {
		rec.LastSeen = &at
	}
	if rec.State == SiteDecommissioning {
		return rec // until it is forgotten
	}
	if !rec.Online {
		rec.State = SiteOffline
	} else if rec.State == SiteOffline || rec.State == SiteUnknown {
		rec.State = ResumedState(rec, last, epoch)
	}
	return rec
}

// ResumedState is a site's state when its agent comes back online, from
// what the control plane knows: its revisions and its newest report.
func ResumedState(rec Site, last LastReport, epoch string) SiteState {
	switch {
	case last.Epoch == epoch && last.State == protocol.StateFailed && last.Revision >= rec.AppliedRevision:
		return SiteFailed
	case rec.DesiredRevision > rec.AppliedRevision:
		return SiteSyncing
	case rec.AppliedRevision > 0:
		return SiteInSync
	default:
		return SiteUnknown
	}
}

// StandingRevision is the revision the site has applied and still stands
// by: none when it never applied one, or when its newest report is a
// failure of that very revision (a drift repair that failed), since the
// router may no longer hold it. A write that gives the site that revision
// again is confirmed by it at once.
func StandingRevision(rec Site, last LastReport) (uint64, bool) {
	if rec.AppliedRevision == UnknownRevision {
		return 0, false
	}
	if last.Revision == rec.AppliedRevision && last.State == protocol.StateFailed {
		return 0, false
	}
	return rec.AppliedRevision, true
}

// AssignRevision records, in a write, the revision rev the site is given
// (UnknownRevision without a Revisioner); a site awaited by the write's
// sync reads syncing until deadline.
func AssignRevision(rec Site, rev uint64, awaited bool, deadline time.Time) Site {
	rec.DesiredRevision = max(rec.DesiredRevision, rev)
	if awaited {
		rec.State = SiteSyncing
		if deadline.After(rec.SyncDeadline) {
			rec.SyncDeadline = deadline
		}
	}
	return rec
}

// Settle makes a site's state agree with its revisions after a write: in
// sync once it applied what it must, syncing (until deadline, then
// unknown) while it has a newer revision to apply. A write that no resource
// awaits (a delete) raises the site's revision without marking it syncing;
// Settle does. It reports whether the record changed.
func Settle(rec Site, deadline time.Time) (Site, bool) {
	switch {
	case rec.AppliedRevision >= rec.DesiredRevision && rec.State == SiteSyncing:
		rec.State = SiteInSync
	case rec.AppliedRevision < rec.DesiredRevision && rec.State == SiteInSync:
		rec.State = SiteSyncing
		if deadline.After(rec.SyncDeadline) {
			rec.SyncDeadline = deadline
		}
	default:
		return rec, false
	}
	return rec, true
}

// At is the site as a client sees it at now: a sync that passed its
// deadline without a report reads as unknown.
func (s Site) At(now time.Time) Site {
	if s.State == SiteSyncing && !now.Before(s.SyncDeadline) {
		s.State = SiteUnknown
	}
	return s
}

// Unforged undoes, in a site's record and its newest report, what a forged
// report did before FoldStatus refused them (issue #13 item 3): an applied
// revision above any the site was given is unknown again, and a newest
// report above it is forgotten, so the agent's next real report is taken
// instead of discarded as stale. It reports whether anything changed. The
// resources such a report confirmed keep their status; their next write
// syncs again. Only for a store that assigns revisions (SiteRules.Revisioned).
func Unforged(rec Site, last LastReport, epoch string) (Site, LastReport, bool) {
	changed := false
	if rec.AppliedRevision > rec.DesiredRevision {
		rec.AppliedRevision, changed = UnknownRevision, true
		if rec.State == SiteInSync {
			rec.State = SiteUnknown
		}
	}
	if last.Epoch == epoch && last.Revision > rec.DesiredRevision {
		last, changed = LastReport{}, true
	}
	return rec, last, changed
}
