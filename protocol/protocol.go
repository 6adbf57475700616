// Package protocol holds everything that crosses the wire between the control
// plane and the agent: the MQTT topic layout and the JSON documents published on
// it. Nothing else lives here, so both sides can import it without pulling in
// the other's dependencies.
//
// # Versioning
//
// Every document carries Schema. Fields may be added in a compatible way; a
// field is never renamed or given a new meaning. A change that old readers
// would misread bumps SchemaVersion, and readers refuse documents with a schema
// they do not know rather than guess.
//
// Schemas so far:
//
//	1  IPv4 only: every CIDR (a rule's address, a prefix list's cidrs) is IPv4.
//	2  Dual stack: CIDRs may also be IPv6 (SchemaDualStack).
//
// A writer stamps each document with the LOWEST schema that carries its
// content (DesiredState.NeededSchema, which Seal applies), not with the
// newest it knows: a document without any IPv6 CIDR is schema 1, so fleets of
// agents that predate IPv6 keep working with a newer control plane, and only
// the sites whose policy needs schema 2 need an upgraded agent. Status and
// resync documents carry nothing schema 2 added, so they stay schema 1
// (StatusSchema).
//
// A reader accepts schemas 1 up to the newest it reads (SchemaVersion, or
// less for an agent told to behave as an older one: ValidateMax). A document
// with a higher schema is refused whole, with a *SchemaTooNewError whose
// sentence tells the operator to upgrade the agent; nothing of it is applied.
// The content hash covers the content only, never the schema, so a document's
// hash does not change with the schema it is written in.
//
// # Address families
//
// The family rules live here so the control plane (which validates and
// compiles) and the agent (which renders one table per family) share one
// definition (Family, CIDRFamily, ProtocolFamilies, Rule.Families,
// DesiredState.ForFamily):
//
//   - a rule whose address is an IPv4 CIDR applies in IPv4 only; an IPv6
//     CIDR, in IPv6 only;
//   - a rule whose address is a prefix list applies in each family in which
//     that list has at least one CIDR (a list with no CIDRs in neither), so a
//     list going from IPv4-only to dual stack adds the rule to IPv6;
//   - protocol 1 (icmp) exists in IPv4 only and 58 (icmpv6) in IPv6 only, so
//     such a rule applies only in its protocol's family (the API refuses icmp
//     with an IPv6 CIDR and icmpv6 with an IPv4 CIDR: CheckProtocolFamily).
//
// # Topics
//
// For organisation O and site S under the topic root (DefaultTopicRoot unless
// configured):
//
//	<root>/O/S/desired   control plane → agent, retained, QoS 1, DesiredState
//	<root>/O/S/status    agent → control plane, retained, QoS 1, SiteStatus
//	<root>/O/S/presence  agent → control plane, retained, QoS 1, Presence
//	<root>/resync        control plane → every agent, not retained, QoS 1, ResyncRequest
//
// Documents are bounded in size (MaxDesiredStateBytes, MaxStatusBytes).
//
// Organisation and site ids are checked with ValidOrgID and ValidSiteID before
// they are put into a topic, so an id can never contain MQTT wildcards or
// separators.
package protocol

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Schemas of the documents (see Versioning in the package doc).
const (
	// MinSchema is the oldest schema a reader accepts: the first one.
	MinSchema = 1
	// SchemaIPv4 is schema 1: every CIDR is IPv4.
	SchemaIPv4 = 1
	// SchemaDualStack is schema 2: CIDRs may be IPv6 too.
	SchemaDualStack = 2
	// SchemaVersion is the newest schema this build reads and writes.
	SchemaVersion = SchemaDualStack
	// StatusSchema is the schema of SiteStatus and ResyncRequest: they carry
	// nothing schema 2 added, so they are written as schema 1 and control
	// planes and agents of either age read them.
	StatusSchema = SchemaIPv4
)

// DefaultTopicRoot is the topic prefix used unless configured otherwise.
const DefaultTopicRoot = "rampart/v1"

// Directions of a rule.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// States an agent reports in SiteStatus.State.
const (
	StateApplying = "applying"
	StateApplied  = "applied"
	StateFailed   = "failed"
)

// Presence states.
const (
	PresenceOnline  = "online"
	PresenceOffline = "offline"
)

// PrefixListPrefix starts every prefix list id; a rule address with this
// prefix refers to a prefix list instead of a CIDR.
const PrefixListPrefix = "prfx_lst_"

// DesiredState is a site's whole policy. It is never a delta: an agent that
// sees only the latest document knows everything it must enforce.
type DesiredState struct {
	Schema   int    `json:"schema"`
	OrgID    string `json:"org_id"`
	SiteID   string `json:"site_id"`
	Epoch    string `json:"epoch"`
	Revision uint64 `json:"revision"`
	// Hash is "sha256:" followed by the hex digest of the canonical content
	// (see ContentHash). It lets both sides compare policies without
	// comparing documents field by field.
	Hash           string          `json:"hash"`
	SecurityGroups []SecurityGroup `json:"security_groups"`
	PrefixLists    []PrefixList    `json:"prefix_lists"`
}

// SecurityGroup is a group as the agent needs it: its rules, nothing about
// which other sites use it.
type SecurityGroup struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Rules []Rule `json:"rules"`
}

// Rule is one allow rule of a group.
type Rule struct {
	ID        string `json:"id"`
	Direction string `json:"direction"`
	Order     int    `json:"order"`
	// Protocol is the IANA protocol number; 0 means every protocol.
	Protocol int `json:"protocol"`
	// Port is "", "N", "N-M" or a comma list of those.
	Port string `json:"port"`
	// Address is an IPv4 or IPv6 CIDR (canonical netip.Prefix form, no
	// host bits; IPv6 needs schema 2), or the id of a prefix list in the
	// same document.
	Address     string `json:"address"`
	Description string `json:"description"`
}

// PrefixList is a named set of CIDRs, IPv4 and IPv6 mixed (canonical
// forms; IPv6 needs schema 2).
type PrefixList struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	CIDRs []string `json:"cidrs"`
}

// SiteStatus is what an agent reports after each attempt to apply a
// DesiredState, and while it applies one.
type SiteStatus struct {
	Schema   int    `json:"schema"`
	OrgID    string `json:"org_id"`
	SiteID   string `json:"site_id"`
	Epoch    string `json:"epoch"`
	Revision uint64 `json:"revision"`
	State    string `json:"state"`
	// Error is a sentence a person can act on; empty unless State is failed.
	Error          string    `json:"error"`
	AppliedAt      time.Time `json:"applied_at"`
	DurationMS     int64     `json:"duration_ms"`
	Rules          int       `json:"rules"`
	AddressEntries int       `json:"address_entries"`
	// Operations counts writes sent to the router in this apply (add, set,
	// remove, move).
	Operations      int    `json:"operations"`
	DriftRepairs    int    `json:"drift_repairs"`
	AgentVersion    string `json:"agent_version"`
	RouterOSVersion string `json:"routeros_version"`
	Board           string `json:"board"`
}

// Presence is the agent's liveness. The agent publishes it online when it
// connects; its MQTT last will publishes OfflinePayload.
type Presence struct {
	State string    `json:"state"`
	At    time.Time `json:"at,omitzero"`
}

// OfflinePayload is the presence payload an agent leaves as its last will:
// the JSON string "offline".
var OfflinePayload = []byte(`"offline"`)

// ParsePresence accepts every presence payload form: the object, the JSON
// string "offline" and, leniently, the bare word offline.
func ParsePresence(b []byte) (Presence, error) {
	s := strings.TrimSpace(string(b))
	switch s {
	case `"offline"`, "offline":
		return Presence{State: PresenceOffline}, nil
	}
	var p Presence
	if err := json.Unmarshal(b, &p); err != nil {
		return Presence{}, fmt.Errorf("parse presence: %w", err)
	}
	if p.State != PresenceOnline && p.State != PresenceOffline {
		return Presence{}, fmt.Errorf("parse presence: state %q is neither %q nor %q", p.State, PresenceOnline, PresenceOffline)
	}
	return p, nil
}

// Topic kinds, the last level of every topic.
const (
	KindDesired  = "desired"
	KindStatus   = "status"
	KindPresence = "presence"
)

// Topic returns root/org/site/kind. The caller must have validated org and
// site.
func Topic(root, org, site, kind string) string {
	return root + "/" + org + "/" + site + "/" + kind
}

// DesiredTopic is where the control plane publishes a site's DesiredState.
func DesiredTopic(root, org, site string) string { return Topic(root, org, site, KindDesired) }

// StatusTopic is where an agent publishes its SiteStatus.
func StatusTopic(root, org, site string) string { return Topic(root, org, site, KindStatus) }

// PresenceTopic is where an agent publishes its Presence.
func PresenceTopic(root, org, site string) string { return Topic(root, org, site, KindPresence) }

// ResyncTopic is where the control plane asks every agent to republish its
// status and presence (non-retained, QoS 1, each time it (re)connects to a
// broker), so it learns every site's status without relying on retained
// delivery to wildcard subscriptions.
func ResyncTopic(root string) string { return root + "/resync" }

// ParseTopic splits a topic under root into its organisation, site and kind.
// It reports false for anything that is not exactly root/org/site/kind with
// valid ids and a known kind.
func ParseTopic(root, topic string) (org, site, kind string, ok bool) {
	rest, found := strings.CutPrefix(topic, root+"/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !ValidOrgID(parts[0]) || !ValidSiteID(parts[1]) {
		return "", "", "", false
	}
	switch parts[2] {
	case KindDesired, KindStatus, KindPresence:
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

var (
	orgIDRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	siteIDRe = regexp.MustCompile(`^site_[0-9A-Za-z]{1,64}$`)
)

// ValidOrgID reports whether id is safe as one MQTT topic level and as a
// broker username component: 1–128 of [A-Za-z0-9_.-], starting with a letter
// or digit. That excludes the wildcards + and #, the separator / and NUL.
func ValidOrgID(id string) bool { return orgIDRe.MatchString(id) }

// ValidSiteID reports whether id is "site_" followed by 1–64 of [0-9A-Za-z].
func ValidSiteID(id string) bool { return siteIDRe.MatchString(id) }

// PortProtocols are the protocols RouterOS accepts a port with, by number.
// RouterOS refuses any other with "failure: ports can be specified if proto
// is tcp,udp,udp-lite,dccp,sctp".
var PortProtocols = map[int]string{6: "tcp", 17: "udp", 33: "dccp", 132: "sctp", 136: "udp-lite"}

// ParsePort checks a port expression: "", "N", "N-M" or a comma list of
// those, 1 ≤ N ≤ M ≤ 65535. The error says what was wrong and what is valid.
func ParsePort(port string) error {
	if port == "" {
		return nil
	}
	// One comma-separated part at a time, as strings.Split would give
	// them, without allocating the list.
	for rest, more := port, true; more; {
		var part string
		part, rest, more = strings.Cut(rest, ",")
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePortNumber(lo)
		if err != nil {
			return fmt.Errorf("%q is not a port: %w", part, err)
		}
		if !isRange {
			continue
		}
		b, err := parsePortNumber(hi)
		if err != nil {
			return fmt.Errorf("%q is not a port range: %w", part, err)
		}
		if a > b {
			return fmt.Errorf("range %q starts above its end; write it as %d-%d", part, b, a)
		}
	}
	return nil
}

func parsePortNumber(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New(`ports are "N", "N-M" or a comma list of those, with N from 1 to 65535`)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is outside 1-65535", n)
	}
	return n, nil
}

// ParseCIDR parses an IPv4 or IPv6 prefix with no host bits set, in any form
// netip reads (the canonical form is the result's String). A prefix with
// host bits gets a *HostBitsError, which names the network that was probably
// meant.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 or IPv6 CIDR such as 192.0.2.0/24 or 2001:db8::/32", s)
	}
	if p.Addr().Is4In6() {
		// RouterOS's IPv6 tables never see IPv4 packets in this form, so
		// the rule would silently match nothing.
		if p.Bits() >= 96 {
			v4 := netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix, which matches no packet; write the IPv4 CIDR %q instead", s, v4.String())
		}
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix, which matches no packet; write an IPv4 CIDR such as 192.0.2.0/24 instead", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, &HostBitsError{CIDR: s, Network: m}
	}
	return p, nil
}

// HostBitsError is ParseCIDR's error for a prefix whose address has bits
// set beyond its length, such as 10.0.0.1/24.
type HostBitsError struct {
	CIDR    string       // as given
	Network netip.Prefix // the network probably meant: CIDR with the host bits cleared
}

func (e *HostBitsError) Error() string {
	return fmt.Sprintf("%q has host bits set; did you mean %q?", e.CIDR, e.Network.String())
}

// SchemaTooNewError is the error for a document written in a schema newer
// than the reader reads. An agent reports it as its failed state, so its
// sentence is for the operator: upgrade the agent.
type SchemaTooNewError struct {
	Schema int // the document's
	Max    int // the newest the reader reads
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("the desired state has schema %d, newer than this agent reads (schemas %d to %d): the document needs a newer agent (schema 2 adds IPv6), so nothing of it was applied; upgrade the agent",
		e.Schema, MinSchema, e.Max)
}

// NeededSchema is the lowest schema that carries d's content: SchemaDualStack
// if any rule address or prefix list CIDR is IPv6, SchemaIPv4 otherwise.
// Writers stamp it (Seal) so that IPv4-only policy stays readable by agents
// that predate IPv6.
func (d *DesiredState) NeededSchema() int {
	for _, pl := range d.PrefixLists {
		for _, c := range pl.CIDRs {
			if CIDRFamily(c) == IPv6 {
				return SchemaDualStack
			}
		}
	}
	for _, g := range d.SecurityGroups {
		for _, r := range g.Rules {
			if CIDRFamily(r.Address) == IPv6 {
				return SchemaDualStack
			}
		}
	}
	return SchemaIPv4
}

// Validate checks a document as an agent of this build receives it; it is
// ValidateMax with the newest schema, SchemaVersion.
func (d *DesiredState) Validate(org, site string) error {
	return d.ValidateMax(org, site, SchemaVersion)
}

// ValidateMax checks a document as an agent that reads schemas up to
// maxSchema receives it (zero means SchemaVersion; a lower value makes an
// agent behave as one that predates the later schemas): the schema is one
// it reads (a higher one is a *SchemaTooNewError) and carries the content
// (IPv6 needs schema 2), it is addressed to org and site, and every rule is
// one RouterOS can enforce. A document that fails is refused whole: nothing
// of it reaches a router.
func (d *DesiredState) ValidateMax(org, site string, maxSchema int) error {
	if maxSchema <= 0 || maxSchema > SchemaVersion {
		maxSchema = SchemaVersion
	}
	switch {
	case d.Schema > maxSchema:
		return &SchemaTooNewError{Schema: d.Schema, Max: maxSchema}
	case d.Schema < MinSchema:
		return fmt.Errorf("schema %d is not supported (want %d to %d)", d.Schema, MinSchema, maxSchema)
	case d.OrgID != org || d.SiteID != site:
		return fmt.Errorf("document is for %s/%s, not %s/%s", d.OrgID, d.SiteID, org, site)
	case d.Epoch == "":
		return errors.New("epoch is empty")
	case d.Revision == 0:
		return errors.New("revision is 0; revisions start at 1")
	}
	lists := make(map[string]bool, len(d.PrefixLists))
	for i, pl := range d.PrefixLists {
		if !strings.HasPrefix(pl.ID, PrefixListPrefix) || !ValidOrgID(pl.ID) {
			return fmt.Errorf("prefix_lists[%d].id %q is not a prefix list id", i, pl.ID)
		}
		if lists[pl.ID] {
			return fmt.Errorf("prefix_lists[%d].id %q appears twice", i, pl.ID)
		}
		lists[pl.ID] = true
		for j, c := range pl.CIDRs {
			if err := d.checkCIDR(c); err != nil {
				return fmt.Errorf("prefix_lists[%d].cidrs[%d]: %w", i, j, err)
			}
		}
	}
	for i, g := range d.SecurityGroups {
		for j, r := range g.Rules {
			if err := r.validate(lists); err != nil {
				return fmt.Errorf("security_groups[%d].rules[%d]: %w", i, j, err)
			}
			if !strings.HasPrefix(r.Address, PrefixListPrefix) {
				if err := d.checkCIDR(r.Address); err != nil {
					return fmt.Errorf("security_groups[%d].rules[%d]: address: %w", i, j, err)
				}
			}
		}
	}
	if want := d.ContentHash(); d.Hash != want {
		return fmt.Errorf("hash %q does not match the content (%q)", d.Hash, want)
	}
	return nil
}

// checkCIDR checks one CIDR of d: valid, canonical (what the agent compares
// with what a router prints) and within d's schema.
func (d *DesiredState) checkCIDR(c string) error {
	p, err := ParseCIDR(c)
	if err != nil {
		return err
	}
	// Compared through a stack buffer: Validate runs on every document an
	// agent receives, and a String per CIDR was 10,000 allocations for a
	// 10,000-entry list.
	var buf [64]byte
	if string(p.AppendTo(buf[:0])) != c {
		return fmt.Errorf("%q is not in canonical form %q", c, p.String())
	}
	if p.Addr().Is6() && d.Schema < SchemaDualStack {
		return fmt.Errorf("%q is IPv6, which schema %d does not carry (IPv6 needs schema %d)", c, d.Schema, SchemaDualStack)
	}
	return nil
}

func (r Rule) validate(lists map[string]bool) error {
	if r.Direction != Inbound && r.Direction != Outbound {
		return fmt.Errorf("direction %q is neither %q nor %q", r.Direction, Inbound, Outbound)
	}
	if r.Protocol < 0 || r.Protocol > 255 {
		return fmt.Errorf("protocol %d is outside 0-255", r.Protocol)
	}
	if err := ParsePort(r.Port); err != nil {
		return fmt.Errorf("port: %w", err)
	}
	if _, ok := PortProtocols[r.Protocol]; r.Port != "" && !ok {
		return fmt.Errorf("port %q needs protocol tcp, udp, udp-lite, dccp or sctp, not %d", r.Port, r.Protocol)
	}
	if strings.HasPrefix(r.Address, PrefixListPrefix) && !lists[r.Address] {
		return fmt.Errorf("address %q names a prefix list the document does not carry", r.Address)
	}
	return nil
}

// Canonicalize puts the content in its one canonical order: groups and prefix
// lists by id, rules by order then id, CIDRs sorted and deduplicated. Two
// documents with the same policy are then equal byte for byte.
func (d *DesiredState) Canonicalize() {
	slices.SortFunc(d.SecurityGroups, func(a, b SecurityGroup) int { return strings.Compare(a.ID, b.ID) })
	for i := range d.SecurityGroups {
		slices.SortFunc(d.SecurityGroups[i].Rules, func(a, b Rule) int {
			if a.Order != b.Order {
				return a.Order - b.Order
			}
			return strings.Compare(a.ID, b.ID)
		})
	}
	slices.SortFunc(d.PrefixLists, func(a, b PrefixList) int { return strings.Compare(a.ID, b.ID) })
	for i := range d.PrefixLists {
		slices.Sort(d.PrefixLists[i].CIDRs)
		d.PrefixLists[i].CIDRs = slices.Compact(d.PrefixLists[i].CIDRs)
	}
	if d.SecurityGroups == nil {
		d.SecurityGroups = []SecurityGroup{}
	}
	if d.PrefixLists == nil {
		d.PrefixLists = []PrefixList{}
	}
}

// ContentHash returns "sha256:<hex>" over the canonical JSON of the policy
// content (security_groups and prefix_lists, in canonical order). Envelope
// fields (ids, epoch, revision) are left out so the hash names the policy
// alone. It does not modify d.
//
// The canonical JSON is exactly encoding/json's output for
// {"security_groups":...,"prefix_lists":...} after Canonicalize (agents in
// the field compare against it; TestContentHashIsCanonicalJSON pins it). It
// is streamed into the digest instead of marshalled: the agent verifies
// every document it receives, and on a router under a tight heap limit a
// 0.5 MB copy per document costs collections (BENCHMARKS.md, "Agent:
// receiving a document"). A document already in canonical order, as the
// control plane publishes it, is not copied either.
func (d *DesiredState) ContentHash() string {
	groups, lists := d.SecurityGroups, d.PrefixLists
	if !canonical(groups, lists) {
		c := DesiredState{SecurityGroups: slices.Clone(groups), PrefixLists: slices.Clone(lists)}
		for i := range c.SecurityGroups {
			c.SecurityGroups[i].Rules = slices.Clone(c.SecurityGroups[i].Rules)
		}
		for i := range c.PrefixLists {
			c.PrefixLists[i].CIDRs = slices.Clone(c.PrefixLists[i].CIDRs)
		}
		c.Canonicalize()
		groups, lists = c.SecurityGroups, c.PrefixLists
	}
	h := sha256.New()
	w := canonicalWriter{w: bufio.NewWriterSize(h, 4096)}
	w.raw(`{"security_groups":[`)
	for i, g := range groups {
		if i > 0 {
			w.raw(",")
		}
		w.raw(`{"id":`)
		w.str(g.ID)
		w.raw(`,"name":`)
		w.str(g.Name)
		w.raw(`,"rules":`)
		if g.Rules == nil {
			w.raw("null")
		} else {
			w.raw("[")
			for j, r := range g.Rules {
				if j > 0 {
					w.raw(",")
				}
				w.raw(`{"id":`)
				w.str(r.ID)
				w.raw(`,"direction":`)
				w.str(r.Direction)
				w.raw(`,"order":`)
				w.int(r.Order)
				w.raw(`,"protocol":`)
				w.int(r.Protocol)
				w.raw(`,"port":`)
				w.str(r.Port)
				w.raw(`,"address":`)
				w.str(r.Address)
				w.raw(`,"description":`)
				w.str(r.Description)
				w.raw("}")
			}
			w.raw("]")
		}
		w.raw("}")
	}
	w.raw(`],"prefix_lists":[`)
	for i, pl := range lists {
		if i > 0 {
			w.raw(",")
		}
		w.raw(`{"id":`)
		w.str(pl.ID)
		w.raw(`,"name":`)
		w.str(pl.Name)
		w.raw(`,"cidrs":`)
		if pl.CIDRs == nil {
			w.raw("null")
		} else {
			w.raw("[")
			for j, c := range pl.CIDRs {
				if j > 0 {
					w.raw(",")
				}
				w.str(c)
			}
			w.raw("]")
		}
		w.raw("}")
	}
	w.raw("]}")
	if err := w.w.Flush(); err != nil {
		panic("protocol: hash canonical content: " + err.Error()) // a hash.Hash never fails a write
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// canonical reports whether groups and lists are already in the order
// Canonicalize puts them in, with no ties or duplicates (so that sorting
// them could not move anything).
func canonical(groups []SecurityGroup, lists []PrefixList) bool {
	for i := range groups {
		if i > 0 && groups[i-1].ID >= groups[i].ID {
			return false
		}
		rs := groups[i].Rules
		for j := 1; j < len(rs); j++ {
			if a, b := rs[j-1], rs[j]; a.Order > b.Order || a.Order == b.Order && a.ID >= b.ID {
				return false
			}
		}
	}
	for i := range lists {
		if i > 0 && lists[i-1].ID >= lists[i].ID {
			return false
		}
		cs := lists[i].CIDRs
		for j := 1; j < len(cs); j++ {
			if cs[j-1] >= cs[j] {
				return false
			}
		}
	}
	return true
}

// canonicalWriter writes JSON as encoding/json does for the content's
// types: strings of printable ASCII without characters it escapes are
// written as they are; any other string is left to encoding/json, so its
// escaping rules (HTML characters, control characters, invalid UTF-8,
// U+2028) stay the standard library's own.
type canonicalWriter struct {
	w   *bufio.Writer
	num [20]byte
}

func (w *canonicalWriter) raw(s string) { w.w.WriteString(s) }

func (w *canonicalWriter) int(n int) { w.w.Write(strconv.AppendInt(w.num[:0], int64(n), 10)) }

func (w *canonicalWriter) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, err := json.Marshal(s)
			if err != nil {
				panic("protocol: marshal string: " + err.Error()) // a string always marshals
			}
			w.w.Write(b)
			return
		}
	}
	w.w.WriteByte('"')
	w.w.WriteString(s)
	w.w.WriteByte('"')
}

// Seal canonicalizes d and sets Schema (the lowest that carries the
// content, NeededSchema) and Hash, ready to publish.
func (d *DesiredState) Seal() {
	d.Schema = d.NeededSchema()
	d.Canonicalize()
	d.Hash = d.ContentHash()
}

// Newer reports whether an agent that last accepted (epoch, revision) must
// apply d: a different epoch means the control plane's store was replaced, so
// its revisions start over; otherwise only a higher revision is news.
func (d *DesiredState) Newer(epoch string, revision uint64) bool {
	return d.Epoch != epoch || d.Revision > revision
}
