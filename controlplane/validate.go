package controlplane

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rampart-fw/rampart/protocol"
)

// Validate checks a group write as a whole, in field order, and returns the
// first problem as an *Error naming the field. Whether a referenced prefix
// list exists is checked by the store, inside the write transaction.
//
// It also normalises what it accepts: an IPv6 address is stored in its
// canonical form (2001:DB8:0::/32 becomes 2001:db8::/32), the form the
// document carries and the agent compares with what a router prints, so
// two spellings of one network are one rule.
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
	// Which rule holds each order, +1 (0: none): an array on the stack,
	// since validate has bounded the order, not a map on the heap.
	var orders [MaxOrder + 1]int
	for i := range w.Rules {
		r := &w.Rules[i]
		if err := r.validate(i); err != nil {
			return err
		}
		if j := orders[r.Order] - 1; j >= 0 {
			return Errorf(CodeDuplicateOrder, fmt.Sprintf("rules[%d].order", i),
				"rules[%d].order %d is already used by rules[%d]; each rule needs its own order from %d to %d.", i, r.Order, j, MinOrder, MaxOrder)
		}
		orders[r.Order] = i + 1
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
		return Errorf(CodeInvalidAddress, path()+".address", "%s.address is %d characters long; at most %d are allowed (an IPv4 or IPv6 CIDR or a prefix list id).", path(), n, MaxAddressLength)
	}
	if strings.HasPrefix(r.Address, PrefixListIDPrefix) {
		// A prefix list may hold both families: the rule applies in each
		// family its list has CIDRs in, narrowed to its protocol's
		// (protocol.Rule.Families), so icmp with a list is not refused.
		if !ValidID(PrefixListIDPrefix, r.Address) {
			return Errorf(CodePrefixListNotFound, path()+".address", "%s.address %q is not a prefix list id (prfx_lst_ followed by 27 letters and digits).", path(), r.Address)
		}
	} else if p, err := protocol.ParseCIDR(r.Address); err != nil {
		if _, ok := errors.AsType[*protocol.HostBitsError](err); ok {
			return Errorf(CodeInvalidAddress, path()+".address", "%s.address: %v", path(), err)
		}
		return Errorf(CodeInvalidAddress, path()+".address", "%s.address: %v, or a prefix list id (prfx_lst_...).", path(), err)
	} else {
		if p.Addr().Is6() { // an IPv4 CIDR that parses is already canonical
			r.Address = p.String()
		}
		f := protocol.IPv4
		if p.Addr().Is6() {
			f = protocol.IPv6
		}
		if err := protocol.CheckProtocolFamily(r.Protocol, f); err != nil {
			return Errorf(CodeInvalidValue, path()+".protocol", "%s.protocol %d cannot be used with %s.address %q: %v.", path(), r.Protocol, path(), r.Address, err)
		}
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
	for i := range w.Prefixes {
		p := &w.Prefixes[i]
		// The path only for an error, as for rules: Sprintf for every
		// prefix was most of the allocations of a valid write.
		path := func() string { return "prefixes[" + strconv.Itoa(i) + "]" }
		if n := utf8.RuneCountInString(p.CIDR); n > MaxAddressLength {
			return Errorf(CodeInvalidAddress, path()+".cidr", "%s.cidr is %d characters long; at most %d are allowed.", path(), n, MaxAddressLength)
		}
		// IPv4 and IPv6 may be mixed: the agent writes each family's
		// CIDRs to its own table.
		c, err := protocol.ParseCIDR(p.CIDR)
		if err != nil {
			if _, ok := errors.AsType[*protocol.HostBitsError](err); ok {
				return Errorf(CodeInvalidAddress, path()+".cidr", "%s.cidr: %v", path(), err)
			}
			return Errorf(CodeInvalidAddress, path()+".cidr", "%s.cidr: %v.", path(), err)
		}
		if c.Addr().Is6() { // canonical, as for a rule's address
			p.CIDR = c.String()
		}
		if j, dup := seen[p.CIDR]; dup {
			return Errorf(CodeDuplicatePrefix, path()+".cidr", "%s.cidr %q is already listed as prefixes[%d]; list each CIDR once.", path(), p.CIDR, j)
		}
		seen[p.CIDR] = i
		if checkLen("", p.Description, 0, 255) != nil {
			return checkLen(path()+".description", p.Description, 0, 255)
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
		if !protocol.ValidSiteID(s) {
			path := "sites[" + strconv.Itoa(i) + "]" // only for an error
			return Errorf(CodeInvalidSite, path, "%s %q is not a site id; use site_ followed by 1 to 64 letters and digits, such as site_hq1.", path, s)
		}
		if j, dup := seen[s]; dup {
			path := "sites[" + strconv.Itoa(i) + "]"
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
