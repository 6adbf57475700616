package rossim

import (
	"net/netip"
	"strconv"
	"strings"
)

// protocolNames are the protocol names RouterOS accepts in /ip/firewall
// (`protocol=?` on the console) with their IANA numbers [3P: terraform
// ipsec-policy validator for the names; IANA for the numbers].
var protocolNames = map[string]int{
	"icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6, "egp": 8,
	"pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27, "iso-tp4": 29,
	"dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6-encap": 41,
	"ipv6-route": 43, "ipv6-frag": 44, "rsvp": 46, "gre": 47, "ipsec-esp": 50,
	"ipsec-ah": 51, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
	"rspf": 73, "vmtp": 81, "ospf": 89, "ipip": 94, "etherip": 97, "encap": 98,
	"pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132, "udp-lite": 136,
}

var protocolByNumber = func() map[int]string {
	m := make(map[int]string, len(protocolNames))
	for n, v := range protocolNames {
		m[v] = n
	}
	return m
}()

// ProtocolName is how the simulator prints protocol number n: RouterOS's name
// when it has one, else the decimal number. Reference section 2.1 leaves the
// printed form unverified and tells clients to compare by number; the console
// and every export show names (`protocol=icmp` in defconf), so names it is.
func ProtocolName(n int) string {
	if s, ok := protocolByNumber[n]; ok {
		return s
	}
	return strconv.Itoa(n)
}

// ProtocolNumber parses a protocol as RouterOS accepts it: a name or 0-255.
func ProtocolNumber(s string) (int, bool) {
	if n, ok := protocolNames[s]; ok {
		return n, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// portProtocols may carry ports: "ports can be specified if proto is
// tcp,udp,udp-lite,dccp,sctp" [3P: danikf/tik4net#52, real router].
var portProtocols = map[int]bool{6: true, 17: true, 136: true, 33: true, 132: true}

// splitNeg strips RouterOS's "!" negation prefix.
func splitNeg(s string) (neg bool, v string) {
	if strings.HasPrefix(s, "!") {
		return true, s[1:]
	}
	return false, s
}

func withNeg(neg bool, v string) string {
	if neg {
		return "!" + v
	}
	return v
}

// parseBool accepts yes/no/true/false; RouterOS prints true/false [C: REST-doc].
func parseBool(s string) (string, bool) {
	switch s {
	case "yes", "true":
		return "true", true
	case "no", "false":
		return "false", true
	}
	return "", false
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ lo, hi netip.Addr }

// contains: an address of the other family is never in the range (the
// tables are separate; an IPv4-mapped IPv6 address is IPv6 here).
func (r addrRange) contains(a netip.Addr) bool {
	return a.BitLen() == r.lo.BitLen() && r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0
}

// family is 4 or 6: the IP version of a menu's table.
type family int

const (
	fam4 family = 4
	fam6 family = 6
)

// normalizeAddrFam is normalizeAddr for a menu's family.
func normalizeAddrFam(f family, s string) (string, addrRange, bool) {
	if f == fam6 {
		return normalizeAddr6(s)
	}
	return normalizeAddr(s)
}

// normalizeAddr6 parses an IPv6 address or prefix and returns RouterOS's
// stored form: canonical lower-case compressed text (RFC 5952, which
// netip prints), host bits cleared [I: as IPv4, reference section 9 says
// check], and always a prefix length, a single address as /128 [3P:
// exports of routers whose defconf added address=::1 print
// address=::1/128; the IPv4-mapped entry typed ::ffff:0:0/96 prints as
// ::ffff:0.0.0.0/96, as netip prints it]. IPv6 ranges a-b, zones and
// IPv4 addresses are refused [I].
func normalizeAddr6(s string) (string, addrRange, bool) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return "", addrRange{}, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return "", addrRange{}, false
		}
		p = netip.PrefixFrom(a, 128)
	}
	if !p.Addr().Is6() || p.Addr().Zone() != "" {
		return "", addrRange{}, false
	}
	p = p.Masked()
	return p.String(), prefixRange(p), true
}

// normalizeAddr parses an IPv4 address, prefix or range a-b and returns
// RouterOS's stored form: host bits cleared (1.1.1.1/24 -> 1.1.1.0/24) [C:
// v2.9 manual, address-list doc], /32 printed as a bare address [3P:
// socialwifi/RouterOS-api#62], and a range that is exactly one prefix stored as
// that prefix [C: address-list doc].
func normalizeAddr(s string) (string, addrRange, bool) {
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(lo)
		b, err2 := netip.ParseAddr(hi)
		if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() || b.Less(a) {
			return "", addrRange{}, false
		}
		r := addrRange{a, b}
		if p, ok := rangeAsPrefix(a, b); ok {
			return prefixString(p), r, true
		}
		return a.String() + "-" + b.String(), r, true
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return "", addrRange{}, false
		}
		p = p.Masked()
		return prefixString(p), prefixRange(p), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return "", addrRange{}, false
	}
	return a.String(), addrRange{a, a}, true
}

func prefixString(p netip.Prefix) string {
	if p.Bits() == 32 {
		return p.Addr().String()
	}
	return p.String()
}

// prefixRange is the first and last address of a masked prefix of
// either family.
func prefixRange(p netip.Prefix) addrRange {
	b := p.Addr().AsSlice()
	for i := range b {
		// bits of byte i that belong to the network
		net := p.Bits() - 8*i
		switch {
		case net <= 0:
			b[i] = 0xff
		case net < 8:
			b[i] |= 0xff >> net
		}
	}
	hi, _ := netip.AddrFromSlice(b)
	return addrRange{p.Addr(), hi}
}

func rangeAsPrefix(a, b netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= 32; bits++ {
		p, err := a.Prefix(bits)
		if err != nil || p.Addr() != a {
			continue
		}
		if prefixRange(p).hi == b {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// parsePorts validates a RouterOS port set: N, N-M or a comma list of those,
// within 0..65535 (type multi{range [..65535]} [C: filter CLI reference]).
func parsePorts(s string) ([][2]int, bool) {
	if s == "" {
		return nil, false
	}
	var out [][2]int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 65535 {
			return nil, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > 65535 {
				return nil, false
			}
		}
		out = append(out, [2]int{a, b})
	}
	return out, true
}

var connStates = map[string]bool{"established": true, "related": true, "new": true, "invalid": true, "untracked": true}

// idString formats an internal item number the way RouterOS prints it: "*"
// then upper-case hex [C: REST-doc `*3C`].
func idString(n uint64) string {
	return "*" + strings.ToUpper(strconv.FormatUint(n, 16))
}

// parseID accepts only "*HEX". Bare numbers are console numbers, not ids, and
// are refused [3P: librouteros#20, mikrotik-mcp#128; reference 1.8 says
// rejecting is the safer choice].
func parseID(s string) (uint64, bool) {
	if len(s) < 2 || s[0] != '*' {
		return 0, false
	}
	n, err := strconv.ParseUint(s[1:], 16, 64)
	return n, err == nil
}

// icmpOptions is a parsed icmp-options value: type and code ranges; a
// missing code matches any.
type icmpOptions struct{ typ, code [2]int }

// parseICMPOptions parses type[:code], each N or N-M within 0..255, as
// RouterOS's icmp-options (e.g. icmp-options=154:4-5 in public 7.x
// exports [3P]; names such as echo-request are not modelled [I]).
func parseICMPOptions(s string) (icmpOptions, bool) {
	rng := func(v string) ([2]int, bool) {
		lo, hi, isRange := strings.Cut(v, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 255 {
			return [2]int{}, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > 255 {
				return [2]int{}, false
			}
		}
		return [2]int{a, b}, true
	}
	t, c, hasCode := strings.Cut(s, ":")
	var o icmpOptions
	var ok bool
	if o.typ, ok = rng(t); !ok {
		return o, false
	}
	o.code = [2]int{0, 255}
	if hasCode {
		if o.code, ok = rng(c); !ok {
			return o, false
		}
	}
	return o, true
}
