package controlplane

import (
	"fmt"
	"math"
	"time"

	"github.com/rampart-fw/rampart/protocol"
)

// Decommissioning a site (DELETE /vpc/sites/{siteId}, #16 item 4): the
// rules live here; a store reads records, calls these and persists what
// they return.
//
//  1. StartDecommission, in one write transaction: the site leaves every
//     group and prefix list of its organisation, each a normal write of
//     the resource (WithoutSite: a new version, a new sync of its other
//     sites, an audit event with the caller's subject), so one locked
//     resource refuses the whole decommission. The site is then given the
//     revision of its now empty document and reads "decommissioning" until
//     it is forgotten; nothing may attach it meanwhile (CheckAttach).
//  2. DecommissionDone: once the site's agent stands by that revision
//     (it removed everything it manages) or the sync deadline passed (a
//     router that is already gone never answers), the site is forgotten:
//     its record and last report go, resources still waiting for it stop
//     waiting (SyncState.Forget), its retained topics are cleared by the
//     MQTT side, and it joins the organisation's decommissioned sites,
//     whose credentials the embedded broker refuses (the secret is derived
//     from the control plane's key and cannot be revoked alone) and whose
//     reports are dropped (ReportDecommissioned).
//  3. Re-enrolling the site (GET /vpc/sites/{siteId}/enrollment) lifts the
//     refusal: enrolling is the operator saying the router is theirs
//     again. The site's revision counter is kept, so an agent that comes
//     back with a cached document never sees a lower revision.
//
// The decommissioned sites of an organisation are bounded by
// Quotas.Decommissioned: past it a decommission is refused (all or
// nothing; nothing is evicted, since that would let an old secret log in
// again) until re-enrollments make room or the operator raises the quota.

// SiteDecommissioning is the state of a site between DELETE
// /vpc/sites/{siteId} and the moment it is forgotten.
const SiteDecommissioning SiteState = "decommissioning"

// KindSite is the audit trail's resource kind of a decommission.
const KindSite = "site"

// SiteStates lists every SiteState, for metrics.
var SiteStates = []SiteState{SiteInSync, SiteSyncing, SiteFailed, SiteOffline, SiteUnknown, SiteDecommissioning}

// DefaultDecommissioned is the default of Quotas.Decommissioned: five
// times the default site quota, so an organisation can retire its whole
// fleet several times over; each entry is a key of about 100 bytes.
const DefaultDecommissioned = 5 * 2000

// CheckDecommission is the bound on an organisation's decommissioned
// sites: one that has `have` (forgotten or on their way) may decommission
// one more only below q.Decommissioned.
func (q Quotas) CheckDecommission(have int) error {
	if have < q.Decommissioned {
		return nil
	}
	return &Error{Code: CodeQuotaExceeded, Message: fmt.Sprintf(
		"Your organisation has %d decommissioned sites whose credentials stay refused, its quota of %d; re-enroll one you use again (GET /vpc/sites/{siteId}/enrollment lifts its refusal), or ask the operator to raise --quota-decommissioned-sites.",
		have, q.Decommissioned)}
}

// CheckAttach refuses a write that names a site being decommissioned, in
// a group's or prefix list's sites or in an enrollment: the site would
// get a policy, or credentials, on its way out.
func CheckAttach(site string, state SiteState) error {
	if state != SiteDecommissioning {
		return nil
	}
	return Errorf(CodeSiteDecommissioning, "sites", "The site %q is being decommissioned: its agent is removing everything it manages, then the site is forgotten (at the latest after the sync deadline). Attach or enroll it again after that.", site)
}

// WithoutSite is the write that takes site out of the group: the group as
// it is, minus that site, so every rule keeps its id.
func (g SecurityGroup) WithoutSite(site string) SecurityGroupWrite {
	d := g.Description
	w := SecurityGroupWrite{Name: g.Name, Description: &d, Rules: make([]FilterRuleWrite, 0, len(g.Rules)), Sites: without(g.Sites, site)}
	for _, r := range g.Rules {
		w.Rules = append(w.Rules, FilterRuleWrite{Direction: r.Direction, Order: r.Order, Protocol: r.Protocol, Port: r.Port, Address: r.Address, Description: r.Description})
	}
	return w
}

// WithoutSite is the write that takes site out of the prefix list's own
// sites.
func (l PrefixList) WithoutSite(site string) PrefixListWrite {
	d := l.Description
	w := PrefixListWrite{Name: l.Name, Description: &d, Prefixes: make([]PrefixWrite, 0, len(l.Prefixes)), Sites: without(l.Sites, site)}
	for _, p := range l.Prefixes {
		w.Prefixes = append(w.Prefixes, PrefixWrite{CIDR: p.CIDR, Description: p.Description})
	}
	return w
}

func without(sites []string, site string) []string {
	out := make([]string, 0, len(sites))
	for _, s := range sites {
		if s != site {
			out = append(out, s)
		}
	}
	return out
}

// StartDecommission is the site's record once the decommission's writes
// are done: decommissioning, to confirm rev (the revision of its empty
// document, UnknownRevision without a Revisioner) before deadline. A site
// already decommissioning is returned as it is, with false: a second
// DELETE changes nothing.
func StartDecommission(rec Site, rev uint64, deadline time.Time) (Site, bool) {
	if rec.State == SiteDecommissioning {
		return rec, false
	}
	rec.State = SiteDecommissioning
	rec.DesiredRevision = max(rec.DesiredRevision, rev)
	rec.DecommissionRevision = rev
	rec.SyncDeadline = deadline
	return rec, true
}

// DecommissionChange is the change the decommission of site announces
// once its writes are done, docs being the documents they gave (nil
// without a Revisioner): the site deleted, carrying its own document only,
// since the other sites' documents went out with the writes that changed
// them. Its Revisions[site] is the revision StartDecommission awaits
// (UnknownRevision without a Revisioner).
func DecommissionChange(org, site string, docs map[string]protocol.DesiredState) Change {
	c := Change{OrgID: org, Sites: []string{site}, Kind: KindSite, ID: site, Deleted: true}
	if docs != nil {
		c.Documents = map[string]protocol.DesiredState{site: docs[site]}
		c.Revisions = map[string]uint64{site: docs[site].Revision}
	}
	return c
}

// DecommissionDone reports whether a decommissioning site is to be
// forgotten at now: its agent stands by the empty document's revision
// (StandingRevision), or the deadline passed.
func DecommissionDone(rec Site, last LastReport, now time.Time) bool {
	if rec.State != SiteDecommissioning {
		return false
	}
	if rev, ok := StandingRevision(rec, last); ok && rec.DecommissionRevision != UnknownRevision && rev >= rec.DecommissionRevision {
		return true
	}
	return !now.Before(rec.SyncDeadline)
}

// Forget takes a forgotten site out of the sites the resource waits for:
// it needs nothing from the resource any more, so it counts as confirmed.
// It reports whether the state changed.
func (s *SyncState) Forget(site string) bool {
	return s.Confirm(site, math.MaxUint64, true, "")
}

// Decommissioned is what is kept of a forgotten site: enough to refuse
// its credentials and its reports.
type Decommissioned struct {
	OrgID  string `json:"org_id"`
	SiteID string `json:"site_id"`
	// At is when it was forgotten; the audit trail says who asked.
	At time.Time `json:"at"`
	// Revision is the last revision the site was given (its empty
	// document's).
	Revision uint64 `json:"revision"`
}

// Forgotten is what is kept of a site forgotten at now.
func Forgotten(rec Site, org string, now time.Time) Decommissioned {
	return Decommissioned{OrgID: org, SiteID: rec.ID, At: now.UTC(), Revision: rec.DesiredRevision}
}

// Reenrolled is the record of a decommissioned site enrolled again: known,
// and given the revision it had, so the report of an agent that kept its
// cache (the empty document) is believed, not refused as a revision the
// site was never given.
func Reenrolled(d Decommissioned) Site {
	s := NewSite(d.SiteID)
	s.DesiredRevision = d.Revision
	return s
}

// DecommissionRequests are the write requests a decommission asked for by
// wr records: each group's or prefix list's write is a PUT of it without
// the site, with no precondition (the DELETE's If-Match is about the site,
// which has no version); the site's own event is the DELETE.
func DecommissionRequests(wr WriteRequest) (put, del WriteRequest) {
	put, del = wr, wr
	put.Method, put.IfMatch = "PUT", Precondition{}
	del.Method = "DELETE"
	return put, del
}

// SiteRef names a site of an organisation.
type SiteRef struct {
	OrgID, SiteID string
}

// ForgetBatch bounds the sites one transaction forgets, so a fleet
// retired at once never holds the store's writer for long.
const ForgetBatch = 100
