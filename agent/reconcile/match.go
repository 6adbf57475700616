package reconcile

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/rampart-fw/rampart/agent/render"
)

// This file models what an accept row of an owned chain matches, so the
// planner can tell whether an in-place set widens a row (its new match holds
// the old one) or narrows it (the old holds the new). A row's match is a
// product of independent dimensions (protocol with ports, source and
// destination addresses, connection state, anything else compared as text),
// so one product holds another when each dimension does, or when the other
// is empty. The model is sound, not complete: what it cannot read (a
// matcher it does not know, a negated address list) only ever makes it
// answer "not contained", which costs an add and a remove instead of a set.

// moment is a point of an apply at which address lists are read: before any
// list write, between the additions and the pruning (old ∪ new content), or
// after the pruning (new content).
type moment int

const (
	atStart moment = iota
	atUnion
	atEnd
)

// portProtocols are the protocols a port matcher applies to; a port matcher
// never matches any other protocol, and RouterOS refuses it without one of
// them [3P] danikf/tik4net#52.
var portProtocols = [...]int{6, 17, 33, 132, 136}

// connStates are the values of connection-state.
var connStates = []string{"established", "related", "new", "invalid", "untracked"}

// match is the packet set of one row at one moment. A nil dimension matches
// everything.
type match struct {
	empty   bool // matches nothing (disabled, or a dimension is empty)
	protos  *[256]bool
	ports   map[string][]span // dst-port, src-port, port → port ranges as spans of 16-bit values
	src     []span
	dst     []span
	states  map[string]bool
	other   map[string]string // matchers compared as text
	unknown bool              // a matcher the model cannot read
}

// span is an inclusive range of addresses (ports are stored as addresses
// 0.0.x.y so one set type serves both).
type span struct{ lo, hi netip.Addr }

// listContent returns the addresses of an address list at a moment; ok is
// false for a list whose content the planner does not know.
type listContent func(name string, at moment) ([]span, bool)

// matchOf models the row with properties props (as printed, or as wanted).
func matchOf(props map[string]string, lists listContent, at moment) match {
	m := match{}
	if isTrue(props["disabled"]) {
		m.empty = true
		return m
	}
	for k, v := range props {
		if ignored[k] || k == "chain" || k == "action" || v == "" {
			// Not a matcher (disabled was read above).
			continue
		}
		neg, val := false, v
		if strings.HasPrefix(v, "!") {
			neg, val = true, v[1:]
		}
		switch k {
		case "protocol":
			n, ok := render.ProtocolNumber(val)
			if !ok {
				m.unknown = true
				continue
			}
			var set [256]bool
			set[n] = true
			if neg {
				for i := range set {
					set[i] = !set[i]
				}
			}
			m.protos = intersectProtos(m.protos, &set)
		case "dst-port", "src-port", "port":
			s, ok := parsePortSet(val)
			if !ok {
				m.unknown = true
				continue
			}
			if neg {
				s = complement(s, portUniverse)
			}
			if m.ports == nil {
				m.ports = map[string][]span{}
			}
			m.ports[k] = s
			var pp [256]bool
			for _, p := range portProtocols {
				pp[p] = true
			}
			m.protos = intersectProtos(m.protos, &pp)
		case "src-address", "dst-address":
			s, ok := parseAddrs([]string{val})
			if !ok {
				m.unknown = true
				continue
			}
			if neg {
				s = complement(s, universeOf(s))
			}
			m.setAddr(k == "src-address", s)
		case "src-address-list", "dst-address-list":
			s, ok := lists(val, at)
			if !ok || neg {
				// A negated list shrinks as its list grows: the planner's
				// list moments do not cover it; leave it to add/remove.
				m.unknown = true
				continue
			}
			m.setAddr(k == "src-address-list", s)
		case "connection-state":
			set := map[string]bool{}
			for _, s := range strings.Split(val, ",") {
				set[s] = true
			}
			if neg {
				c := map[string]bool{}
				for _, s := range connStates {
					c[s] = !set[s]
				}
				set = c
			}
			m.states = set
		default:
			if m.other == nil {
				m.other = map[string]string{}
			}
			m.other[k] = v
		}
	}
	m.empty = m.empty || m.isEmpty()
	return m
}

func (m *match) setAddr(src bool, s []span) {
	p := &m.dst
	if src {
		p = &m.src
	}
	if *p == nil {
		*p = s
	} else {
		*p = intersect(*p, s)
	}
	if *p == nil {
		*p = []span{} // empty, not "everything"
	}
}

func (m *match) isEmpty() bool {
	if m.protos != nil && !slices.Contains(m.protos[:], true) {
		return true
	}
	for _, s := range m.ports {
		if len(s) == 0 {
			return true
		}
	}
	if (m.src != nil && len(m.src) == 0) || (m.dst != nil && len(m.dst) == 0) {
		return true
	}
	if m.states != nil {
		for _, v := range m.states {
			if v {
				return false
			}
		}
		return true
	}
	return false
}

// within reports whether every packet a matches, b matches too; false when
// the model cannot tell.
func within(a, b match) bool {
	if a.empty && !a.unknown {
		return true
	}
	if a.unknown || b.unknown || b.empty {
		return false
	}
	for k, v := range b.other {
		if a.other[k] != v {
			return false
		}
	}
	if b.protos != nil {
		for i := range 256 {
			if b.protos[i] {
				continue
			}
			if a.protos == nil || a.protos[i] {
				return false
			}
		}
	}
	for k, bs := range b.ports {
		as, ok := a.ports[k]
		if !ok || !subset(as, bs) {
			return false
		}
	}
	if b.src != nil && (a.src == nil || !subset(a.src, b.src)) {
		return false
	}
	if b.dst != nil && (a.dst == nil || !subset(a.dst, b.dst)) {
		return false
	}
	if b.states != nil {
		for _, s := range connStates {
			if (a.states == nil || a.states[s]) && !b.states[s] {
				return false
			}
		}
	}
	return true
}

func intersectProtos(a, b *[256]bool) *[256]bool {
	if a == nil {
		return b
	}
	var out [256]bool
	for i := range out {
		out[i] = a[i] && b[i]
	}
	return &out
}

var (
	v4Universe   = span{netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255})}
	v6Universe   = span{netip.IPv6Unspecified(), netip.AddrFrom16([16]byte{0: 0xff, 1: 0xff, 2: 0xff, 3: 0xff, 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff, 8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff})}
	portUniverse = span{portAddr(0), portAddr(65535)}
)

// universeOf is every address of the family of s (one parsed value): a
// negated IPv6 block is the rest of IPv6, not of IPv4.
func universeOf(s []span) span {
	if len(s) > 0 && s[0].lo.Is6() {
		return v6Universe
	}
	return v4Universe
}

func portAddr(p int) netip.Addr { return netip.AddrFrom4([4]byte{0, 0, byte(p >> 8), byte(p)}) }

// parsePortSet reads "80", "80,443", "1000-2000" and mixes of them.
func parsePortSet(v string) ([]span, bool) {
	var out []span
	for _, part := range strings.Split(v, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b > 65535 || a > b {
			return nil, false
		}
		out = append(out, span{portAddr(a), portAddr(b)})
	}
	return normalize(out), true
}

// parseAddrs reads addresses, prefixes and ranges as RouterOS prints them.
// Text that is none of these (a DNS name in an address list) matches
// nothing here, as in the simulator, which does not resolve names; ok is
// false only for a single value that cannot be read.
func parseAddrs(vs []string) ([]span, bool) {
	out := make([]span, 0, len(vs))
	for _, v := range vs {
		s, ok := parseAddr(v)
		if !ok {
			if len(vs) == 1 {
				return nil, false
			}
			continue
		}
		out = append(out, s)
	}
	return normalize(out), true
}

func parseAddr(v string) (span, bool) {
	if lo, hi, ok := strings.Cut(v, "-"); ok {
		a, err1 := netip.ParseAddr(lo)
		b, err2 := netip.ParseAddr(hi)
		if err1 != nil || err2 != nil || b.Less(a) || a.BitLen() != b.BitLen() {
			return span{}, false
		}
		return span{a, b}, true
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return span{}, false
		}
		p = p.Masked()
		return span{p.Addr(), lastAddr(p)}, true
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return span{}, false
	}
	return span{a, a}, true
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// normalize sorts spans and merges those that overlap or touch.
func normalize(s []span) []span {
	slices.SortFunc(s, func(a, b span) int { return a.lo.Compare(b.lo) })
	out := s[:0]
	for _, x := range s {
		if n := len(out); n > 0 && out[n-1].hi.BitLen() == x.lo.BitLen() {
			// Only within a family: the last IPv4 address has no Next, and
			// must not swallow the IPv6 span after it.
			last := &out[n-1]
			if next := last.hi.Next(); !next.IsValid() || !next.Less(x.lo) {
				if last.hi.Less(x.hi) {
					last.hi = x.hi
				}
				continue
			}
		}
		out = append(out, x)
	}
	return out
}

// subset reports whether every address of a is in b (both normalized).
func subset(a, b []span) bool {
	j := 0
	for _, x := range a {
		for j < len(b) && b[j].hi.Less(x.lo) {
			j++
		}
		if j == len(b) || x.lo.Less(b[j].lo) || b[j].hi.Less(x.hi) {
			return false
		}
	}
	return true
}

func intersect(a, b []span) []span {
	var out []span
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := a[i].lo, a[i].hi
		if lo.Less(b[j].lo) {
			lo = b[j].lo
		}
		if b[j].hi.Less(hi) {
			hi = b[j].hi
		}
		if !hi.Less(lo) {
			out = append(out, span{lo, hi})
		}
		if a[i].hi.Less(b[j].hi) {
			i++
		} else {
			j++
		}
	}
	return out
}

// complement returns u minus s (s normalized, within u).
func complement(s []span, u span) []span {
	var out []span
	lo := u.lo
	for _, x := range s {
		if lo.Less(x.lo) {
			out = append(out, span{lo, x.lo.Prev()})
		}
		if !x.hi.Less(u.hi) {
			return out
		}
		lo = x.hi.Next()
	}
	return append(out, span{lo, u.hi})
}

// union merges normalized span sets.
func union(a, b []span) []span {
	return normalize(slices.Concat(a, b))
}
