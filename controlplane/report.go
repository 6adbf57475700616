package controlplane

import "github.com/rampart-fw/rampart/protocol"

// ReportResult says what a store did with a site's status report (the MQTT
// side counts them).
type ReportResult int

// Results of folding in a status report.
const (
	// ReportTaken: the report was newer than any before and was folded in.
	ReportTaken ReportResult = iota
	// ReportStale: an older revision than one already taken, or an
	// "applying" for a revision already reported applied or failed (a
	// retained copy that arrived after a live message).
	ReportStale
	// ReportOtherEpoch: the report refers to another store's revisions, so
	// it confirms nothing; the site's agent will apply this store's
	// document, whose epoch differs, and report again.
	ReportOtherEpoch
	// ReportRefused: the report claims a revision higher than any the
	// site was given in this epoch, which no honest agent can hold; it
	// changes nothing (FoldStatus).
	ReportRefused
	// ReportBehind: the report was taken, as ReportTaken, and shows the
	// site behind: an outcome (applied or failed) of an older revision than
	// the one it was given in this epoch. Its agent is not working on that
	// revision and may never have received it (a broker can lose a retained
	// publish it acknowledged: nats-server 2.9.10 did, after a node died),
	// so the site's document is to be published again (FoldStatus).
	ReportBehind
	// ReportDecommissioned: the site was decommissioned and forgotten; its
	// agent's reports are dropped until it is enrolled again.
	ReportDecommissioned
	// ReportOverQuota: the site is not known to its organisation, and the
	// record a report would create for it would take the organisation
	// over its site quota (Quotas.CheckSites, as a write's or an
	// enrollment's new site would): nothing it says is taken until a site
	// is removed or the quota raised. Enrollment through the API reserves
	// the site within the quota first; this bounds the sites of agents
	// given credentials otherwise (the enroll subcommand needs no store).
	ReportOverQuota
)

// Taken reports whether the report was folded in (ReportTaken or
// ReportBehind).
func (r ReportResult) Taken() bool { return r == ReportTaken || r == ReportBehind }

// ReportResults lists every ReportResult, for metrics.
var ReportResults = []ReportResult{ReportTaken, ReportStale, ReportOtherEpoch, ReportRefused, ReportBehind, ReportDecommissioned, ReportOverQuota}

// String is the result as a metric label.
func (r ReportResult) String() string {
	switch r {
	case ReportTaken:
		return "taken"
	case ReportStale:
		return "stale"
	case ReportOtherEpoch:
		return "other_epoch"
	case ReportRefused:
		return "refused"
	case ReportBehind:
		return "behind"
	case ReportDecommissioned:
		return "decommissioned"
	case ReportOverQuota:
		return "over_quota"
	}
	return "unknown"
}

// Report is one message from a site's agent, as the MQTT side hands it to
// the store: a status or a presence (exactly one of them is set). Stores
// take reports in batches (one transaction for many), in order.
type Report struct {
	OrgID, SiteID string
	Status        *protocol.SiteStatus
	Presence      *protocol.Presence
}
