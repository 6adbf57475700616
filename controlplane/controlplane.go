// Package controlplane holds the control plane's domain: security groups,
// their filter rules, prefix lists, sites, the sync status of each resource,
// the domain errors, and the seams through which the MQTT side (compiler,
// publisher, status ingestion) joins the REST side. It imports no technology:
// HTTP lives in api/, storage in store/ (store/bolt, store/postgres),
// authentication in auth/.
//
// # Resources
//
// SecurityGroup and PrefixList are what the REST API reads and writes; their
// JSON tags are exactly the field names of the public Security Groups API.
// The write forms (SecurityGroupWrite, PrefixListWrite) carry what a client
// may send; Validate checks everything the OpenAPI document cannot express
// (ports only with port protocols, CIDRs without host bits, unique orders,
// site ids) and answers with an *Error naming the field by path.
// NewSecurityGroup and NewPrefixList build the resource a write stores,
// keeping the ids of the rules and prefixes a replace leaves alone.
//
// # Status
//
// Every write to a group or prefix list produces, for each affected site, a
// site revision that the site must confirm (see Revisioner). SyncState holds
// that bookkeeping and is the one place where the status rules of DESIGN.md
// section 5 live: NewSyncState starts a sync, SyncState.Confirm folds in a
// site's report, SyncState.Expire applies the deadline.
//
// The site state machine (DESIGN.md section 6) lives beside it, in
// site.go, as pure functions: FoldStatus of a site and an agent's status
// report (order, epochs, forged revisions refused, text bounded),
// FoldPresence of a site and a presence, AssignRevision and Settle for the
// revisions writes give. Stores persist SyncState and Site records and call
// these functions; they never decide a status or a site's state themselves.
//
// # Decommissioning a site
//
// DELETE /vpc/sites/{siteId} retires a router (decommission.go): the site
// leaves every group and list in one transaction, reads decommissioning
// until its agent applied the empty document or the deadline passed
// (DecommissionDone), and is then forgotten; its credentials and reports
// are refused until it is enrolled again.
//
// # Seams for the MQTT side
//
//   - Revisioner: called inside the store's write transaction with the
//     affected sites and a PolicyTx that reads what those sites hold, as it
//     will be committed; it returns each site's compiled document with the
//     revision the site must confirm (and may persist its own per-site data
//     in the same transaction through PolicyTx). Without one, revisions are
//     UnknownRevision and any "applied" report confirms.
//   - ChangeFunc: called after every committed write with the organisation,
//     every site whose compiled policy may have changed (old and new sites of
//     a group, sites of groups that reference a changed prefix list, sites of
//     a deleted resource) and the documents the Revisioner compiled for them,
//     which the MQTT side publishes as they are.
//   - The store's Ingest(ctx, []Report) feeds agents' status reports and
//     presence back, many in one transaction, through FoldStatus and
//     FoldPresence; Settle(ctx, org, sites) confirms, after a write, what
//     sites had already applied. GET /vpc/sites reads the same Site records.
//   - The store's ViewPolicy(ctx, org, func(PolicyTx) error) gives a
//     read-only, consistent view of an organisation's policy and per-site
//     data outside writes (to compile and republish), Orgs(ctx) lists the
//     organisations, and Epoch() is the store's identity.
package controlplane

import (
	"slices"
	"sync"
	"time"

	"github.com/segmentio/ksuid"

	"github.com/rampart-fw/rampart/protocol"
)

// Id prefixes, as in the public API.
const (
	SecurityGroupIDPrefix = "sec_grp_"
	FilterRuleIDPrefix    = "fltr_"
	PrefixListIDPrefix    = protocol.PrefixListPrefix // "prfx_lst_"
	PrefixIDPrefix        = "prfx_"
)

// Limits of the public API.
const (
	MaxRules       = 250
	MaxPrefixes    = 500
	MinOrder       = 1
	MaxOrder       = 250
	DefaultTimeout = 2 * time.Minute // default sync deadline
)

// NewID returns prefix followed by a new KSUID (27 base62 characters), so ids
// sort by creation time.
func NewID(prefix string) string { return prefix + ksuid.New().String() }

// ValidID reports whether id is prefix followed by a well-formed KSUID.
func ValidID(prefix, id string) bool {
	if len(id) != len(prefix)+27 || id[:len(prefix)] != prefix {
		return false
	}
	_, err := ksuid.Parse(id[len(prefix):])
	return err == nil
}

// Status is the sync status of a group or prefix list.
type Status string

// Statuses of a group or prefix list.
const (
	// StatusActive: every affected site confirmed the policy (or there is none).
	StatusActive Status = "active"
	// StatusSyncing: some site has not confirmed yet; writes are refused.
	StatusSyncing Status = "syncing"
	// StatusFailed: a site reported failure or the deadline passed. Not
	// terminal: the next write starts a new sync, and late confirmations from
	// every site still turn it active.
	StatusFailed Status = "failed"
)

// Statuses lists every Status, for metrics.
var Statuses = []Status{StatusActive, StatusSyncing, StatusFailed}

// SecurityGroup is a container of ordered allow rules applied to sites.
type SecurityGroup struct {
	ID string `json:"id"`
	// OrgID is the owning organisation; never serialised to clients.
	OrgID       string       `json:"-"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Status      Status       `json:"status"`
	Sites       []string     `json:"sites"`
	Rules       []FilterRule `json:"rules"`
	// Sync is the stored bookkeeping behind Status.
	Sync SyncState `json:"-"`
}

// FilterRule is one allow rule of a group.
type FilterRule struct {
	ID        string `json:"id"`
	Direction string `json:"direction"` // protocol.Inbound or protocol.Outbound
	Order     int    `json:"order"`
	// Protocol is the IANA number; 0 means every protocol.
	Protocol int `json:"protocol"`
	// Port is "", "N", "N-M" or a comma list of those.
	Port string `json:"port"`
	// Address is an IPv4 or IPv6 CIDR (IPv6 in canonical form) or a prefix
	// list id of the same organisation.
	Address     string `json:"address"`
	Description string `json:"description"`
}

// SameMatch reports whether two rules match the same traffic: a PUT keeps the
// id of a rule whose direction, protocol, port and address are unchanged.
func (r FilterRule) SameMatch(o FilterRule) bool {
	return r.Direction == o.Direction && r.Protocol == o.Protocol && r.Port == o.Port && r.Address == o.Address
}

// PrefixList is a named, reusable set of CIDRs.
type PrefixList struct {
	ID          string    `json:"id"`
	OrgID       string    `json:"-"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Status      Status    `json:"status"`
	Sites       []string  `json:"sites"` // sites it is applied to directly
	Prefixes    []Prefix  `json:"prefixes"`
	Sync        SyncState `json:"-"`
}

// Prefix is one CIDR of a prefix list.
type Prefix struct {
	ID          string `json:"id"`
	CIDR        string `json:"cidr"`
	Description string `json:"description"`
}

// SecurityGroupWrite is the body of POST and PUT of a security group.
type SecurityGroupWrite struct {
	Name        string            `json:"name"`
	Description *string           `json:"description"` // null and absent mean ""
	Rules       []FilterRuleWrite `json:"rules"`
	Sites       []string          `json:"sites"`
}

// FilterRuleWrite is a rule as a client writes it.
type FilterRuleWrite struct {
	Direction   string `json:"direction"`
	Order       int    `json:"order"`
	Protocol    int    `json:"protocol"`
	Port        string `json:"port"`
	Address     string `json:"address"`
	Description string `json:"description"`
}

// PrefixListWrite is the body of POST and PUT of a prefix list.
type PrefixListWrite struct {
	Name        string        `json:"name"`
	Description *string       `json:"description"`
	Prefixes    []PrefixWrite `json:"prefixes"`
	Sites       []string      `json:"sites,omitempty"` // optional: none
}

// PrefixWrite is a prefix as a client writes it.
type PrefixWrite struct {
	CIDR        string `json:"cidr"`
	Description string `json:"description"`
}

// SiteState is a site's state as GET /vpc/sites shows it.
type SiteState string

// Site states (DESIGN.md section 6).
const (
	SiteInSync  SiteState = "in_sync"
	SiteSyncing SiteState = "syncing"
	SiteFailed  SiteState = "failed"
	SiteOffline SiteState = "offline"
	SiteUnknown SiteState = "unknown"
)

// Site is what the control plane knows of one site. The store creates the
// record when a group or prefix list first names the site; the agent's
// status and presence move it (FoldStatus, FoldPresence, through the
// store's Ingest).
type Site struct {
	ID    string `json:"id"`
	OrgID string `json:"-"`
	// Online is the agent's last presence.
	Online   bool       `json:"online"`
	LastSeen *time.Time `json:"last_seen"`
	// DesiredRevision is the latest revision assigned to the site (0 while
	// no compiler assigns revisions); AppliedRevision the latest it confirmed.
	DesiredRevision uint64    `json:"desired_revision"`
	AppliedRevision uint64    `json:"applied_revision"`
	State           SiteState `json:"state"`
	LastError       string    `json:"last_error"`
	AgentVersion    string    `json:"agent_version"`
	RouterOSVersion string    `json:"routeros_version"`
	Board           string    `json:"board"`
	// SyncDeadline is when a pending sync of this site stops counting as
	// syncing; internal.
	SyncDeadline time.Time `json:"-"`
	// DecommissionRevision is, while the site is decommissioning, the
	// revision of its empty document: once its agent applied it, the site
	// is forgotten (DecommissionDone); SyncDeadline is then the deadline
	// of the decommission. Internal.
	DecommissionRevision uint64 `json:"-"`
}

// UnknownRevision is the revision recorded for a site when no Revisioner
// assigns one: any "applied" report from the site confirms it.
const UnknownRevision uint64 = 0

// PolicyTx is the view a Revisioner gets inside the store's write
// transaction: the organisation's policy as it will be once the write
// commits, and a small per-site byte store that commits (or rolls back) with
// the write, for the compiler's own per-site revision and hash.
type PolicyTx interface {
	// Policy returns what the documents of sites are made of: the groups
	// and prefix lists attached to any of them and the prefix lists those
	// groups' rules use, each once, ordered by id. Its cost grows with
	// what sites hold, not with the organisation.
	Policy(sites []string) (groups []SecurityGroup, lists []PrefixList, err error)
	SiteData(site string) ([]byte, error)
	SetSiteData(site string, data []byte) error
}

// Revisioner compiles, inside a write transaction, the document of each
// affected site and assigns the revision the site must confirm
// (Document.Revision; the epoch is the publisher's to stamp). It must be
// deterministic given tx (a batched write may run it more than once) and
// must not publish anything: the store hands the documents over after
// commit, in the Change, so the MQTT side publishes them without compiling
// again. Sites missing from the result get UnknownRevision.
type Revisioner interface {
	Revise(tx PolicyTx, org string, sites []string) (map[string]protocol.DesiredState, error)
}

// Change tells the MQTT side, after a write has committed, which sites of an
// organisation need recompiling.
type Change struct {
	OrgID string
	// Sites is sorted and unique: old and new sites of the written resource
	// plus sites reached through references.
	Sites []string
	// Kind is "security_group" or "prefix_list"; ID the resource written.
	Kind    string
	ID      string
	Deleted bool
	// Revisions and Documents are what the Revisioner returned for each
	// site (nil without one): the revision each must confirm, and the
	// document that carries it.
	Revisions map[string]uint64
	Documents map[string]protocol.DesiredState
}

// Revisions are the revisions of a Revisioner's documents; nil when docs
// is (no Revisioner).
func Revisions(docs map[string]protocol.DesiredState) map[string]uint64 {
	if docs == nil {
		return nil
	}
	revs := make(map[string]uint64, len(docs))
	for site, d := range docs {
		revs[site] = d.Revision
	}
	return revs
}

// Awaited is what a write's sync awaits: the revision each of sites must
// confirm (UnknownRevision for a site revs does not name).
func Awaited(revs map[string]uint64, sites []string) map[string]uint64 {
	out := make(map[string]uint64, len(sites))
	for _, site := range sites {
		out[site] = revs[site]
	}
	return out
}

// Resource kinds, as used in Change.Kind and metrics.
const (
	KindSecurityGroup = "security_group"
	KindPrefixList    = "prefix_list"
)

// ChangeFunc receives a Change after every committed write. It is called
// synchronously after commit, so it must not block for long.
type ChangeFunc func(Change)

// ChangeFeed is a store's list of ChangeFuncs: registered before serving,
// each called with every Change after its write committed. It is safe for
// concurrent use; its zero value is ready.
type ChangeFeed struct {
	mu  sync.Mutex
	fns []ChangeFunc
}

// OnChange registers f.
func (c *ChangeFeed) OnChange(f ChangeFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
}

// Notify calls every registered ChangeFunc with ch, in order.
func (c *ChangeFeed) Notify(ch Change) {
	c.mu.Lock()
	fns := slices.Clone(c.fns)
	c.mu.Unlock()
	for _, f := range fns {
		f(ch)
	}
}
