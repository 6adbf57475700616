package controlplane

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/segmentio/ksuid"

	"github.com/rampart-fw/rampart/protocol"
)

// Validate checks a group write as a whole, in field order, and returns the
// first problem as an *Error naming the field. Whether a referenced prefix
// list exists is checked by the store, inside the write transaction.
func (w *SecurityGroupWrite) Validate() error {
	if err := checkLen("name", w.Name, 3, 255); err != nil {
		return err
	}
	if w.Description != nil {
		if err := checkLen("description", *w.Description, 0, 1024); err != nil {
			return err
		}
	}
	if w.Rules == nil {
		return Errorf(CodeParameterMissing, "rules", "rules is required: send a list of rules, [] for none.")
	}
	if len(w.Rules) > MaxRules {
		return Errorf(CodeTooManyRules, "rules", "rules has %d rules; a security group holds at most %d.", len(w.Rules), MaxRules)
	}
	orders := make(map[int]int, len(w.Rules))
	for i, r := range w.Rules {
		if err := r.validate(i); err != nil {
			return err
		}
		if j, dup := orders[r.Order]; dup {
			return Errorf(CodeDuplicateOrder, fmt.Sprintf("rules[%d].order", i),
				"rules[%d].order %d is already used by rules[%d]; each rule needs its own order from %d to %d.", i, r.Order, j, MinOrder, MaxOrder)
		}
		orders[r.Order] = i
	}
	return validateSites(w.Sites)
}

// validate checks rule i. Its path (rules[i]) is only built for an error:
// building it for every rule was most of the allocations of a valid write.
func (r *FilterRuleWrite) validate(i int) error {
	path := func() string { return "rules[" + strconv.Itoa(i) + "]" }
	if r.Direction != protocol.Inbound && r.Direction != protocol.Outbound {
		return Errorf(CodeInvalidValue, path()+".direction", "%s.direction %q is not valid; use %q or %q.", path(), r.Direction, protocol.Inbound, protocol.Outbound)
	}
	if r.Order < MinOrder || r.Order > MaxOrder {
		return Errorf(CodeInvalidValue, path()+".order", "%s.order %d is outside %d-%d.", path(), r.Order, MinOrder, MaxOrder)
	}
	if r.Protocol < 0 || r.Protocol > 255 {
		return Errorf(CodeInvalidValue, path()+".protocol", "%s.protocol %d is outside 0-255 (0 means all protocols; see /vpc/reference/protocols).", path(), r.Protocol)
	}
	if err := checkPortBounds(r.Port); err != nil {
		return Errorf(CodeInvalidPort, path()+".port", "%s.port %v.", path(), err)
	}
	if err := protocol.ParsePort(r.Port); err != nil {
		return Errorf(CodeInvalidPort, path()+".port", "%s.port: %v.", path(), err)
	}
	if _, ok := protocol.PortProtocols[r.Protocol]; r.Port != "" && !ok {
		return Errorf(CodeInvalidPort, path()+".port",
			"%s.port must be \"\" for protocol %d: ports can only be given with protocol 6 (tcp), 17 (udp), 33 (dccp), 132 (sctp) or 136 (udp-lite).", path(), r.Protocol)
	}
	if n := utf8.RuneCountInString(r.Address); n > MaxAddressLength {
		return Errorf(CodeInvalidAddress, path()+".address", "%s.address is %d characters long; at most %d are allowed (an IPv4 CIDR or a prefix list id).", path(), n, MaxAddressLength)
	}
	if strings.HasPrefix(r.Address, PrefixListIDPrefix) {
		if !ValidID(PrefixListIDPrefix, r.Address) {
			return Errorf(CodePrefixListNotFound, path()+".address", "%s.address %q is not a prefix list id (prfx_lst_ followed by 27 letters and digits).", path(), r.Address)
		}
	} else if _, err := protocol.ParseCIDR(r.Address); err != nil {
		if strings.Contains(err.Error(), "host bits") {
			return Errorf(CodeInvalidAddress, path()+".address", "%s.address: %v", path(), err)
		}
		return Errorf(CodeInvalidAddress, path()+".address", "%s.address: %v, or a prefix list id (prfx_lst_...).", path(), err)
	}
	if checkLen("", r.Description, 0, 255) != nil {
		return checkLen(path()+".description", r.Description, 0, 255)
	}
	return nil
}

// Validate checks a prefix list write, like SecurityGroupWrite.Validate.
func (w *PrefixListWrite) Validate() error {
	if err := checkLen("name", w.Name, 1, 255); err != nil {
		return err
	}
	if w.Description != nil {
		if err := checkLen("description", *w.Description, 0, 1000); err != nil {
			return err
		}
	}
	if w.Prefixes == nil {
		return Errorf(CodeParameterMissing, "prefixes", "prefixes is required: send a list of {cidr, description}, [] for none.")
	}
	if len(w.Prefixes) > MaxPrefixes {
		return Errorf(CodeTooManyPrefixes, "prefixes", "prefixes has %d entries; a prefix list holds at most %d.", len(w.Prefixes), MaxPrefixes)
	}
	seen := make(map[string]int, len(w.Prefixes))
	for i, p := range w.Prefixes {
		path := fmt.Sprintf("prefixes[%d]", i)
		if n := utf8.RuneCountInString(p.CIDR); n > MaxAddressLength {
			return Errorf(CodeInvalidAddress, path+".cidr", "%s.cidr is %d characters long; at most %d are allowed.", path, n, MaxAddressLength)
		}
		if _, err := protocol.ParseCIDR(p.CIDR); err != nil {
			return Errorf(CodeInvalidAddress, path+".cidr", "%s.cidr: %v.", path, err)
		}
		if j, dup := seen[p.CIDR]; dup {
			return Errorf(CodeDuplicatePrefix, path+".cidr", "%s.cidr %q is already listed as prefixes[%d]; list each CIDR once.", path, p.CIDR, j)
		}
		seen[p.CIDR] = i
		if err := checkLen(path+".description", p.Description, 0, 255); err != nil {
			return err
		}
	}
	return validateSites(w.Sites)
}

func validateSites(sites []string) error {
	if len(sites) > MaxSitesPerResource { // before looking at any of them
		return Errorf(CodeTooManySites, "sites", "sites has %d items; at most %d are allowed.", len(sites), MaxSitesPerResource)
	}
	seen := make(map[string]int, len(sites))
	for i, s := range sites {
		path := fmt.Sprintf("sites[%d]", i)
		if !protocol.ValidSiteID(s) {
			return Errorf(CodeInvalidSite, path, "%s %q is not a site id; use site_ followed by 1 to 64 letters and digits, such as site_hq1.", path, s)
		}
		if j, dup := seen[s]; dup {
			return Errorf(CodeDuplicateSite, path, "%s %q is already listed as sites[%d]; list each site once.", path, s, j)
		}
		seen[s] = i
	}
	return nil
}

// checkPortBounds checks a port's size before it is parsed: its length
// and its number of comma-separated entries (MaxPortEntries). The error
// completes a sentence that starts with the field's path.
func checkPortBounds(port string) error {
	if n := utf8.RuneCountInString(port); n > MaxPortLength {
		return fmt.Errorf("is %d characters long; at most %d are allowed", n, MaxPortLength)
	}
	if n := strings.Count(port, ",") + 1; n > MaxPortEntries {
		return fmt.Errorf("has %d entries; a rule takes at most %d ports or ranges (N or N-M), so split it into several rules", n, MaxPortEntries)
	}
	return nil
}

func checkLen(path, s string, lo, hi int) error {
	n := utf8.RuneCountInString(s)
	if n < lo || n > hi {
		if lo == 0 {
			return Errorf(CodeInvalidValue, path, "%s is %d characters long; at most %d are allowed.", path, n, hi)
		}
		return Errorf(CodeInvalidValue, path, "%s is %d characters long; it must be %d to %d characters.", path, n, lo, hi)
	}
	return nil
}

// NewSecurityGroup builds a group from a validated write, with new ids for
// the group and every rule, rules sorted by order, and no status yet.
func (w *SecurityGroupWrite) NewSecurityGroup(org, id string) SecurityGroup {
	g := SecurityGroup{ID: id, OrgID: org, Name: w.Name, Sites: slices.Clone(w.Sites), Rules: make([]FilterRule, len(w.Rules))}
	if w.Description != nil {
		g.Description = *w.Description
	}
	if g.Sites == nil {
		g.Sites = []string{}
	}
	ids := newIDs(FilterRuleIDPrefix)
	for i, r := range w.Rules {
		g.Rules[i] = FilterRule{ID: ids(), Direction: r.Direction, Order: r.Order, Protocol: r.Protocol,
			Port: r.Port, Address: r.Address, Description: r.Description}
	}
	slices.SortStableFunc(g.Rules, func(a, b FilterRule) int { return a.Order - b.Order })
	return g
}

// newIDs returns a generator of ids for one write: a KSUID sequence from
// one random seed, so a 250-rule group costs one random read instead of 250
// (a sequence holds 65536 ids, far more than a write needs).
func newIDs(prefix string) func() string {
	seq := ksuid.Sequence{Seed: ksuid.New()}
	return func() string {
		id, err := seq.Next()
		if err != nil { // exhausted: start a new seed
			seq = ksuid.Sequence{Seed: ksuid.New()}
			id, _ = seq.Next()
		}
		return prefix + id.String()
	}
}

// KeepRuleIDs gives each rule of next the id of an unused rule of prev that
// matches the same traffic (FilterRule.SameMatch), so a PUT that leaves a
// rule's direction, protocol, port and address alone keeps its id.
func KeepRuleIDs(prev, next []FilterRule) {
	used := make([]bool, len(prev))
	for i := range next {
		for j := range prev {
			if !used[j] && prev[j].SameMatch(next[i]) {
				next[i].ID, used[j] = prev[j].ID, true
				break
			}
		}
	}
}

// NewPrefixList builds a prefix list from a validated write, with new ids.
func (w *PrefixListWrite) NewPrefixList(org, id string) PrefixList {
	l := PrefixList{ID: id, OrgID: org, Name: w.Name, Sites: slices.Clone(w.Sites), Prefixes: make([]Prefix, len(w.Prefixes))}
	if w.Description != nil {
		l.Description = *w.Description
	}
	if l.Sites == nil {
		l.Sites = []string{}
	}
	ids := newIDs(PrefixIDPrefix)
	for i, p := range w.Prefixes {
		l.Prefixes[i] = Prefix{ID: ids(), CIDR: p.CIDR, Description: p.Description}
	}
	return l
}

// KeepPrefixIDs gives each prefix of next the id of the prefix of prev with
// the same CIDR.
func KeepPrefixIDs(prev, next []Prefix) {
	ids := make(map[string]string, len(prev))
	for _, p := range prev {
		ids[p.CIDR] = p.ID
	}
	for i := range next {
		if id, ok := ids[next[i].CIDR]; ok {
			next[i].ID = id
		}
	}
}

// ReferencedPrefixLists returns the prefix list ids a group's rules use,
// sorted and unique.
func (g *SecurityGroup) ReferencedPrefixLists() []string {
	var ids []string
	for _, r := range g.Rules {
		if strings.HasPrefix(r.Address, PrefixListIDPrefix) {
			ids = append(ids, r.Address)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
