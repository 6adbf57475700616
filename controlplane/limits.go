package controlplane

import "fmt"

// Bounds of a single write, beyond MaxRules and MaxPrefixes. openapi.yaml
// states each of them (maxItems, maxLength) and Validate enforces them, so
// no request can make the store's single writer work for long: the largest
// write allowed is measured in BENCHMARKS.md ("Cross-organisation write
// delay").
const (
	// MaxSitesPerResource bounds the sites of one security group or prefix
	// list: every site named costs a compile and a site record in the
	// write transaction.
	MaxSitesPerResource = 1000
	// MaxPortEntries bounds the comma-separated entries (N or N-M) of a
	// rule's port. [I] RouterOS documents dst-port as multi{range} without
	// a count; 15 is the limit of netfilter's multiport match (XT_MULTI_PORTS)
	// that Linux firewalls, RouterOS's among them, are built on.
	MaxPortEntries = 15
	// MaxPortLength bounds a port string: 15 entries "65535-65535" with
	// their commas are 179 characters.
	MaxPortLength = 255
	// MaxAddressLength bounds a rule's address (a prefix list id is 36
	// characters, an IPv4 CIDR at most 18, an IPv6 CIDR at most 43) and a
	// prefix's cidr.
	MaxAddressLength = 64
)

// Quotas bound what one organisation may hold, so that one tenant cannot
// grow the store (and every scan of its own data) without limit. A zero
// field means its default (DefaultQuotas); the operator changes them with
// the control plane's --quota-* flags.
type Quotas struct {
	Sites          int
	SecurityGroups int
	PrefixLists    int
	// Decommissioned bounds the organisation's decommissioned sites whose
	// credentials stay refused (decommission.go).
	Decommissioned int
}

// DefaultQuotas are the quotas unless the operator sets others. The site
// quota bounds the widest write: a prefix list that every site uses is
// recompiled for each of them inside the store's single writer, about
// 45 µs a site on a 2-core machine (BENCHMARKS.md, "Cross-organisation
// write delay"), so 2000 sites keep another organisation's wait under
// ~100 ms. Groups and lists are well beyond what people maintain by hand.
var DefaultQuotas = Quotas{Sites: 2000, SecurityGroups: 1000, PrefixLists: 1000, Decommissioned: DefaultDecommissioned}

// WithDefaults returns q with every zero field set to its default.
func (q Quotas) WithDefaults() Quotas {
	if q.Sites <= 0 {
		q.Sites = DefaultQuotas.Sites
	}
	if q.SecurityGroups <= 0 {
		q.SecurityGroups = DefaultQuotas.SecurityGroups
	}
	if q.PrefixLists <= 0 {
		q.PrefixLists = DefaultQuotas.PrefixLists
	}
	if q.Decommissioned <= 0 {
		q.Decommissioned = DefaultQuotas.Decommissioned
	}
	return q
}

// CheckSites is the site quota rule: an organisation that has `have` sites
// may add `adding` new ones only while it stays within q.Sites. Stores call
// it inside the write transaction that would create the sites, so
// concurrent writes cannot each pass alone and together exceed it.
func (q Quotas) CheckSites(have, adding int) error {
	if adding <= 0 || have+adding <= q.Sites {
		return nil
	}
	return &Error{Code: CodeQuotaExceeded, Field: "sites", Message: fmt.Sprintf(
		"This write would add %d new sites to the %d your organisation has; the quota is %d sites. Remove sites you no longer use from your groups and prefix lists, or ask the operator to raise --quota-sites.",
		adding, have, q.Sites)}
}

// CheckCreate is the quota rule for a new security group or prefix list:
// an organisation that has `have` of kind may create one more only below
// its quota.
func (q Quotas) CheckCreate(kind string, have int) error {
	limit, flag := q.SecurityGroups, "--quota-security-groups"
	if kind == KindPrefixList {
		limit, flag = q.PrefixLists, "--quota-prefix-lists"
	}
	if have < limit {
		return nil
	}
	return &Error{Code: CodeQuotaExceeded, Message: fmt.Sprintf(
		"Your organisation has %d %ss, its quota of %d; delete one first, or ask the operator to raise %s.",
		have, kindName(kind), limit, flag)}
}
