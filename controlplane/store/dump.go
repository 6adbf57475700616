package store

import (
	"encoding/json"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// Dump is what one organisation holds in a store, record by record, in a
// form every store writes and reads: `rampart-controlplane migrate` copies
// a bbolt store into PostgreSQL through it (a store's Export produces it,
// another's Import takes it). It carries exactly what a store keeps, not
// what the store derives from it (indexes, counts, caches), so the copy is
// the same store: the same ids, versions, statuses, per-site revisions and
// audit trail, and, with the epoch (Export's other result), the same
// identity, so agents find their documents unchanged and re-apply nothing.
type Dump struct {
	Org string
	// Groups and Lists are ordered by id.
	Groups []Resource
	Lists  []Resource
	// Sites are ordered by id.
	Sites []Site
	// Audit is the organisation's audit trail, oldest first.
	Audit []AuditEvent
	// Decommissions are its sites' decommissions under way, and those
	// done whose retained topics the MQTT side has not cleared yet;
	// ordered by site id.
	Decommissions []Decommission
	// Denied are its forgotten sites, refused until enrolled again;
	// ordered by site id.
	Denied []DeniedSite
}

// Decommission is a site's decommission, under way or forgotten and not
// yet cleared.
type Decommission struct {
	SiteID string
	// Forgotten: the site is forgotten and its topics are still to be
	// cleared; else it is decommissioning.
	Forgotten bool
}

// DeniedSite is what is kept of a forgotten site.
type DeniedSite struct {
	Record cp.Decommissioned
	// RevisionerData is the site's Revisioner bytes, kept so that its
	// revisions go on where they were if it is enrolled again.
	RevisionerData []byte
}

// Resource is a security group or prefix list as stored.
type Resource struct {
	ID string
	// JSON is the resource as the API's JSON, with its status as of its
	// last write (a store splices the current one in when it reads).
	JSON json.RawMessage
	// Sync is its sync bookkeeping: status, awaited sites and revisions,
	// deadline, error, and its version (ETag).
	Sync cp.SyncState
}

// Site is a site's record, with what only the store keeps of it.
type Site struct {
	// Site includes its SyncDeadline.
	Site cp.Site
	// RevisionerData is the Revisioner's own bytes for the site (the
	// compiler's revision and content hash); nil if none.
	RevisionerData []byte
	// LastReport is the newest status report taken in, by which later
	// ones are ordered; the zero value if none.
	LastReport cp.LastReport
	// History is its state history (controlplane.TransitionOf), oldest
	// first, with the store's numbers (Seq): a copy carries them on.
	History []cp.SiteTransition
}

// AuditEvent is one event of the trail.
type AuditEvent struct {
	// Key orders the trail and makes the event's id (cp.AuditKey.ID).
	Key cp.AuditKey
	// JSON is the event (cp.AuditEvent) as the API shows it.
	JSON json.RawMessage
}
