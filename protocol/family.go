package protocol

import (
	"fmt"
	"net/netip"
	"strings"
)

// Family is a set of address families: IPv4, IPv6, both (IPv4|IPv6) or
// none (0). The family rules are in the package doc, "Address families".
type Family uint8

// Address families.
const (
	IPv4 Family = 1 << iota
	IPv6
	// BothFamilies is every family.
	BothFamilies = IPv4 | IPv6
)

// Has reports whether f includes every family of g (and g is not empty).
func (f Family) Has(g Family) bool { return g != 0 && f&g == g }

func (f Family) String() string {
	switch f {
	case 0:
		return "none"
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	case BothFamilies:
		return "IPv4 and IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// Protocol numbers that exist in one family only.
const (
	ProtocolICMP   = 1
	ProtocolICMPv6 = 58
)

// CIDRFamily is the family of a CIDR: IPv4 or IPv6, or 0 for anything
// that is not a CIDR (a prefix list id, say). It does not check host bits;
// ParseCIDR does.
func CIDRFamily(s string) Family {
	if strings.HasPrefix(s, PrefixListPrefix) {
		return 0
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return 0
	case p.Addr().Is4():
		return IPv4
	}
	return IPv6
}

// ProtocolFamilies is where IP protocol n exists: icmp (1) in IPv4 only,
// icmpv6 (58) in IPv6 only, every other protocol (and 0, all protocols) in
// both.
func ProtocolFamilies(n int) Family {
	switch n {
	case ProtocolICMP:
		return IPv4
	case ProtocolICMPv6:
		return IPv6
	}
	return BothFamilies
}

// CheckProtocolFamily says whether protocol n can be used with an address
// of family f (a CIDR's). The error names the protocol to use instead, for
// the API to put in its sentence.
func CheckProtocolFamily(n int, f Family) error {
	if f == 0 || ProtocolFamilies(n).Has(f) {
		return nil
	}
	if f == IPv6 {
		return fmt.Errorf("protocol %d (icmp) is IPv4 only; use %d (icmpv6) with an IPv6 address", n, ProtocolICMPv6)
	}
	return fmt.Errorf("protocol %d (icmpv6) is IPv6 only; use %d (icmp) with an IPv4 address", n, ProtocolICMP)
}

// ListFamilies returns, for each prefix list of d, the families it has
// CIDRs in.
func (d *DesiredState) ListFamilies() map[string]Family {
	m := make(map[string]Family, len(d.PrefixLists))
	for _, pl := range d.PrefixLists {
		var f Family
		for _, c := range pl.CIDRs {
			if f |= CIDRFamily(c); f == BothFamilies {
				break
			}
		}
		m[pl.ID] |= f
	}
	return m
}

// Families is where rule r applies, given its document's ListFamilies: its
// CIDR's family, or the families its prefix list has CIDRs in, narrowed to
// the families its protocol exists in. A rule that applies nowhere (icmpv6
// from an IPv4-only list, a list with no CIDRs) is rendered in no table.
func (r Rule) Families(lists map[string]Family) Family {
	var f Family
	if strings.HasPrefix(r.Address, PrefixListPrefix) {
		f = lists[r.Address]
	} else {
		f = CIDRFamily(r.Address)
	}
	return f & ProtocolFamilies(r.Protocol)
}

// ForFamily returns the part of d that family f (IPv4 or IPv6) enforces:
// every group, with only the rules that apply in f (Rule.Families), and the
// prefix lists that have CIDRs in f, with only those CIDRs. Order is kept;
// the envelope is copied and Hash left as it was (the part is a view for
// rendering, not a document for the wire). d is not modified, and slices
// that need no filtering are shared with it.
func (d *DesiredState) ForFamily(f Family) DesiredState {
	lists := d.ListFamilies()
	out := *d
	out.SecurityGroups = make([]SecurityGroup, len(d.SecurityGroups))
	for i, g := range d.SecurityGroups {
		keep := 0
		for _, r := range g.Rules {
			if r.Families(lists).Has(f) {
				keep++
			}
		}
		if keep != len(g.Rules) {
			rules := make([]Rule, 0, keep)
			for _, r := range g.Rules {
				if r.Families(lists).Has(f) {
					rules = append(rules, r)
				}
			}
			g.Rules = rules
		}
		out.SecurityGroups[i] = g
	}
	out.PrefixLists = make([]PrefixList, 0, len(d.PrefixLists))
	for _, pl := range d.PrefixLists {
		lf := lists[pl.ID]
		if !lf.Has(f) {
			continue
		}
		if lf != f {
			cidrs := make([]string, 0, len(pl.CIDRs))
			for _, c := range pl.CIDRs {
				if CIDRFamily(c) == f {
					cidrs = append(cidrs, c)
				}
			}
			pl.CIDRs = cidrs
		}
		out.PrefixLists = append(out.PrefixLists, pl)
	}
	return out
}
