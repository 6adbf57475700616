package rossim

import (
	"net/netip"
	"strconv"
	"strings"
)

type propKind int

const (
	kText        propKind = iota // any string
	kName                        // a non-empty name
	kAction                      // filter action enum
	kProto                       // protocol name or number, optional !
	kAddr                        // IPv4 address, prefix or range, optional !
	kListRef                     // address-list name, optional !
	kPorts                       // port set, optional !
	kConnState                   // comma set of connection states, optional !
	kIface                       // interface name, optional !
	kIfList                      // interface list name, optional !
	kBool                        // yes/no/true/false, printed true/false
	kNatState                    // srcnat,dstnat, optional !
	kIfAddr                      // an interface address a.b.c.d[/n], kept as typed with its prefix
	kSessions                    // max-sessions: 1..1000
	kAddr6                       // IPv6 address or prefix, optional !
	kAction6                     // /ipv6/firewall/filter action enum
	kICMP                        // icmp-options type[:code], each N or N-M
	kRejectWith6                 // /ipv6/firewall/filter reject-with enum
)

type propSpec struct {
	name string
	kind propKind
}

// filterProps are the writable properties of /ip/firewall/filter, in print
// order [C: filter CLI reference and Filter/NAT property tables, reference
// 2.1]. Matchers the evaluator does not model are accepted as text.
var filterProps = []propSpec{
	{"chain", kName}, {"action", kAction}, {"jump-target", kName}, {"reject-with", kText},
	{"address-list", kText}, {"address-list-timeout", kText},
	{"protocol", kProto}, {"src-address", kAddr}, {"dst-address", kAddr},
	{"src-address-list", kListRef}, {"dst-address-list", kListRef},
	{"src-address-type", kText}, {"dst-address-type", kText},
	{"src-port", kPorts}, {"dst-port", kPorts}, {"port", kPorts},
	{"in-interface", kIface}, {"out-interface", kIface},
	{"in-interface-list", kIfList}, {"out-interface-list", kIfList},
	{"in-bridge-port", kText}, {"out-bridge-port", kText}, {"in-bridge-port-list", kText}, {"out-bridge-port-list", kText},
	{"connection-state", kConnState}, {"connection-nat-state", kNatState},
	{"connection-type", kText}, {"connection-mark", kText}, {"packet-mark", kText}, {"routing-mark", kText},
	{"connection-bytes", kText}, {"connection-limit", kText}, {"connection-rate", kText},
	{"ipsec-policy", kText}, {"hw-offload", kBool}, {"tcp-flags", kText}, {"tcp-mss", kText},
	{"icmp-options", kText}, {"limit", kText}, {"dst-limit", kText}, {"nth", kText}, {"random", kText},
	{"src-mac-address", kText}, {"layer7-protocol", kText}, {"content", kText}, {"dscp", kText},
	{"ttl", kText}, {"packet-size", kText}, {"per-connection-classifier", kText}, {"psd", kText},
	{"time", kText}, {"tls-host", kText}, {"fragment", kBool}, {"ipv4-options", kText}, {"priority", kText},
	{"hotspot", kText}, {"p2p", kText},
	{"log", kBool}, {"log-prefix", kText}, {"disabled", kBool}, {"comment", kText},
}

var filterSpec = specMap(filterProps)

// filterProps6 are the writable properties of /ipv6/firewall/filter: the
// IPv4 set with IPv6 addresses and actions, hop-limit and headers instead
// of ttl, ipv4-options and fragment, without the IPv4-only matchers
// (hotspot, p2p, layer7-protocol, tls-host, psd) [C: manual
// cli-reference ipv6/firewall/filter for the menu and its action enum;
// 3P: defconf uses hop-limit=equal:1; I: the exact list beyond the names
// defconf and the agent use].
var filterProps6 = func() []propSpec {
	drop := map[string]bool{"ttl": true, "ipv4-options": true, "fragment": true, "hotspot": true, "p2p": true,
		"layer7-protocol": true, "tls-host": true, "psd": true}
	var out []propSpec
	for _, p := range filterProps {
		switch {
		case drop[p.name]:
			continue
		case p.kind == kAddr:
			p.kind = kAddr6
		case p.kind == kAction:
			p.kind = kAction6
		case p.name == "icmp-options":
			p.kind = kICMP
		case p.name == "reject-with":
			p.kind = kRejectWith6
		case p.name == "packet-size":
			out = append(out, propSpec{"hop-limit", kText}, propSpec{"headers", kText})
		}
		out = append(out, p)
	}
	return out
}()

var filterSpec6 = specMap(filterProps6)

// filterOrder is each filter property's place in print order, in both
// families' menus (hop-limit and headers, IPv6 only, where filterProps6
// has them).
var filterOrder = func() map[string]int {
	m := make(map[string]int, len(filterProps)+2)
	i := 0
	for _, p := range filterProps {
		if p.name == "packet-size" {
			m["hop-limit"], m["headers"] = i, i+1
			i += 2
		}
		m[p.name] = i
		i++
	}
	return m
}()

// modelledMatchers are the matchers Evaluate understands; a rule with any
// other matcher never matches a probe packet (documented in the package doc).
var nonMatchers = map[string]bool{
	"chain": true, "action": true, "jump-target": true, "reject-with": true, "address-list": true,
	"address-list-timeout": true, "hw-offload": true, "log": true, "log-prefix": true,
	"disabled": true, "comment": true,
}

var addrProps = []propSpec{
	{"list", kName}, {"address", kText}, {"timeout", kText}, {"dynamic", kBool},
	{"disabled", kBool}, {"comment", kText},
}

var addrSpec = specMap(addrProps)

var memberSpec = specMap([]propSpec{{"list", kIfList}, {"interface", kIface}, {"disabled", kBool}, {"comment", kText}})

var vethSpec = specMap([]propSpec{{"name", kName}, {"address", kText}, {"gateway", kText}, {"gateway6", kText},
	{"mac-address", kText}, {"container-mac-address", kText}, {"disabled", kBool}, {"comment", kText}})

var ifListSpec = specMap([]propSpec{{"name", kName}, {"include", kText}, {"exclude", kText}, {"comment", kText}})

func specMap(ps []propSpec) map[string]propKind {
	m := make(map[string]propKind, len(ps))
	for _, p := range ps {
		m[p.name] = p.kind
	}
	return m
}

var filterActions = map[string]bool{
	"accept": true, "add-dst-to-address-list": true, "add-src-to-address-list": true, "drop": true,
	"fasttrack-connection": true, "jump": true, "log": true, "passthrough": true, "reject": true,
	"return": true, "tarpit": true,
}

// filterActions6 has no tarpit: the IPv6 action enum is accept jump
// return log passthrough add-src-to-address-list add-dst-to-address-list
// drop reject fasttrack-connection [C: manual cli-reference
// ipv6/firewall/filter].
var filterActions6 = func() map[string]bool {
	m := map[string]bool{}
	for a := range filterActions {
		if a != "tarpit" {
			m[a] = true
		}
	}
	return m
}()

// rejectWith6 are the ICMPv6 errors /ipv6/firewall/filter can reject with;
// another value is "input does not match any value of reject-with" [C:
// manual cli-reference ipv6/firewall/filter; 3P: terraform-provider-routeros
// #810, a real router's REST answer to IPv4 values].
var rejectWith6 = map[string]bool{"icmp-address-unreachable": true, "icmp-admin-prohibited": true,
	"icmp-err-src-routing-header": true, "icmp-headers-too-long": true, "icmp-no-route": true,
	"icmp-not-neighbour": true, "icmp-port-unreachable": true, "tcp-reset": true}

// Traps used in several places. Texts and sources are in the package doc.
func errUnknownParam(name string) *Trap { return &Trap{Message: "unknown parameter " + name} }

// errNoMatch: "input does not match any value of <property>", category 1
// [C: API-doc example for interface; 3P for protocol/action].
func errNoMatch(name string) *Trap {
	return &Trap{Message: "input does not match any value of " + name, Category: "1"}
}

// errBadValue: "invalid value for argument <name>" for badly typed values [3P,
// reference 2.4].
func errBadValue(name string) *Trap { return &Trap{Message: "invalid value for argument " + name} }

// errNoSuchItem: the v7 text "no such item (4)" [3P: tik4net#13 and several
// codebases that match it against real routers; reference 2.4 prefers it].
// DESIGN.md section 7 says "no such item": this is a prefix of it, which is
// what clients must match on.
var errNoSuchItem = &Trap{Message: "no such item (4)"}

// normalize checks one value of a property of kind k and returns the form
// RouterOS stores and prints.
func (d *db) normalize(name string, k propKind, v string) (string, *Trap) {
	switch k {
	case kText:
		return v, nil
	case kName:
		if v == "" {
			return "", errBadValue(name)
		}
		return v, nil
	case kAction:
		if !filterActions[v] {
			return "", errNoMatch(name)
		}
		return v, nil
	case kAction6:
		if !filterActions6[v] {
			return "", errNoMatch(name)
		}
		return v, nil
	case kRejectWith6:
		if !rejectWith6[v] {
			return "", errNoMatch(name)
		}
		return v, nil
	case kAddr6:
		// An IPv4 address in the IPv6 menu is a badly typed value, as a
		// bad IPv4 address is in the IPv4 menu [I: the text by analogy
		// with reference 2.4].
		neg, s := splitNeg(v)
		a, _, ok := normalizeAddr6(s)
		if !ok {
			return "", errBadValue(name)
		}
		return withNeg(neg, a), nil
	case kICMP:
		neg, s := splitNeg(v)
		if _, ok := parseICMPOptions(s); !ok {
			return "", errBadValue(name) // [I] as for ports
		}
		return withNeg(neg, s), nil
	case kBool:
		b, ok := parseBool(v)
		if !ok {
			// A boolean is an enum of yes/no on RouterOS [I: same family
			// of message as other enums].
			return "", errNoMatch(name)
		}
		return b, nil
	case kProto:
		neg, s := splitNeg(v)
		n, ok := ProtocolNumber(s)
		if !ok {
			return "", errNoMatch(name)
		}
		return withNeg(neg, ProtocolName(n)), nil
	case kAddr:
		neg, s := splitNeg(v)
		a, _, ok := normalizeAddr(s)
		if !ok {
			return "", errBadValue(name)
		}
		return withNeg(neg, a), nil
	case kListRef:
		neg, s := splitNeg(v)
		if s == "" {
			return "", errBadValue(name)
		}
		return withNeg(neg, s), nil
	case kPorts:
		neg, s := splitNeg(v)
		if _, ok := parsePorts(s); !ok {
			return "", errBadValue(name)
		}
		return withNeg(neg, s), nil
	case kConnState:
		neg, s := splitNeg(v)
		seen := map[string]bool{}
		var out []string
		for _, st := range strings.Split(s, ",") {
			if !connStates[st] {
				return "", errNoMatch(name)
			}
			if !seen[st] {
				seen[st] = true
				out = append(out, st)
			}
		}
		return withNeg(neg, strings.Join(out, ",")), nil
	case kNatState:
		neg, s := splitNeg(v)
		for _, st := range strings.Split(s, ",") {
			if st != "srcnat" && st != "dstnat" {
				return "", errNoMatch(name)
			}
		}
		return withNeg(neg, s), nil
	case kSessions:
		// 1..1000 [C: manual ip/service]
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 1000 {
			return "", errBadValue(name)
		}
		return v, nil
	case kIfAddr:
		if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
			return v + "/32", nil
		}
		if p, err := netip.ParsePrefix(v); err == nil && p.Addr().Is4() {
			return v, nil
		}
		return "", errBadValue(name)
	case kIface:
		neg, s := splitNeg(v)
		if !d.hasName(tInterface, s) {
			// "input does not match any value of interface" for an
			// unknown interface [C: API-doc]; the firewall names the
			// property, "... of in-interface" [3P, reference 2.4].
			return "", errNoMatch(name)
		}
		return withNeg(neg, s), nil
	case kIfList:
		neg, s := splitNeg(v)
		if !d.hasName(tIfList, s) {
			// By analogy with interfaces: an interface list is an
			// enumerated reference [I: reference 2.4 lists the
			// "... of in-interface" family].
			return "", errNoMatch(name)
		}
		return withNeg(neg, s), nil
	}
	return v, nil
}

func (d *db) hasName(t tableID, name string) bool {
	for _, r := range d.t[t].rows {
		if r.props["name"] == name {
			return true
		}
	}
	return false
}

// checkFilter validates a whole filter row of a family's menu after add
// or set.
func checkFilter(f family, p map[string]string) *Trap {
	if p["chain"] == "" {
		// The API text for a missing mandatory argument is undocumented;
		// the console says this [3P: CLI simulator following 7.16
		// captures, reference 2.4].
		return &Trap{Message: "missing value(s) of argument(s) chain"}
	}
	if p["action"] == "jump" && p["jump-target"] == "" {
		// [3P: jeff-nasseri/mikrotik-mcp#137, live router:
		// "failure: no target chain specified"]
		return &Trap{Message: "failure: no target chain specified"}
	}
	neg, proto := splitNeg(p["protocol"])
	n, hasProto := ProtocolNumber(proto)
	if p["src-port"] != "" || p["dst-port"] != "" || p["port"] != "" {
		if !hasProto || neg || !portProtocols[n] {
			// [3P: danikf/tik4net#52, real router]
			return &Trap{Message: "failure: ports can be specified if proto is tcp,udp,udp-lite,dccp,sctp"}
		}
	}
	if p["tcp-flags"] != "" && (!hasProto || neg || n != 6) {
		return &Trap{Message: "failure: tcp-flags works only with tcp"} // [3P, reference 2.4]
	}
	if f == fam6 && p["icmp-options"] != "" && (!hasProto || neg || n != 58) {
		// [I] the IPv4 text with the IPv6 protocol's name
		return &Trap{Message: "failure: icmp-options can be specified if proto is icmpv6"}
	}
	if f == fam4 && p["icmp-options"] != "" && (!hasProto || neg || n != 1) {
		return &Trap{Message: "failure: icmp-options can be specified if proto is icmp"} // [3P, reference 2.4]
	}
	return nil
}
