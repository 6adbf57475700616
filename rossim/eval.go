package rossim

import (
	"fmt"
	"net/netip"
	"strings"
)

// Packet is a probe packet for Evaluate.
type Packet struct {
	Chain                     string // "input", "forward" or "output"
	InInterface, OutInterface string // interface names; lists come from /interface/list/member
	Src, Dst                  netip.Addr
	Protocol                  int // IANA number
	SrcPort, DstPort          int
	ConnState                 string // "new", "established", "related", "invalid", "untracked"
}

// Verdict is what the firewall does to a packet.
type Verdict struct {
	Action string   // "accept", "drop" or "reject"
	RuleID string   // the deciding rule; "" for the implicit accept at the end of a built-in chain
	Trace  []string // the rules that matched, in order, and how the walk ended
}

// maxJumpDepth bounds jump recursion; RouterOS refuses jump loops at
// configuration time in some versions [I], the evaluator just stops there.
const maxJumpDepth = 32

// Evaluate walks the packet through the filter as RouterOS does [C: Filter
// doc]: rules of the packet's chain in global order, disabled and invalid
// rules skipped; accept, drop, reject and tarpit decide; jump enters the
// target chain and return (or the end of a user chain) goes back to the rule
// after the jump; passthrough, log, fasttrack-connection and
// add-*-to-address-list go on to the next rule; a packet that reaches the end
// of a built-in chain is accepted.
func (f Firewall) Evaluate(p Packet) Verdict {
	e := evaluator{f: f, p: p, lists: f.addressLists(), chains: map[string][]Item{}}
	for _, it := range f.Filter {
		e.chains[it["chain"]] = append(e.chains[it["chain"]], it)
	}
	v, decided := e.walk(p.Chain, 0)
	if !decided {
		e.trace = append(e.trace, fmt.Sprintf("end of built-in chain %s: implicit accept", p.Chain))
		v = Verdict{Action: "accept"}
	}
	v.Trace = e.trace
	return v
}

type evaluator struct {
	f      Firewall
	p      Packet
	lists  map[string][]addrRange
	chains map[string][]Item
	trace  []string
}

// addressLists holds the enabled entries of each list. Entries stored as DNS
// names (no address) match nothing: the simulator does not resolve names.
func (f Firewall) addressLists() map[string][]addrRange {
	m := map[string][]addrRange{}
	for _, it := range f.AddressList {
		if it["disabled"] == "true" {
			continue
		}
		if _, r, ok := normalizeAddr(it["address"]); ok {
			m[it["list"]] = append(m[it["list"]], r)
		}
	}
	return m
}

// walk returns (verdict, true) when a rule decided, or false when the chain
// ended or a return was taken.
func (e *evaluator) walk(chain string, depth int) (Verdict, bool) {
	if depth > maxJumpDepth {
		e.trace = append(e.trace, "jump depth limit reached in chain "+chain+": treated as return")
		return Verdict{}, false
	}
	for _, it := range e.chains[chain] {
		if it["disabled"] == "true" || it["invalid"] == "true" {
			continue
		}
		ok, why := e.match(it)
		if !ok {
			if why != "" {
				e.trace = append(e.trace, why)
			}
			continue
		}
		id, act := it[".id"], it["action"]
		step := fmt.Sprintf("%s chain=%s action=%s", id, chain, act)
		if c := it["comment"]; c != "" {
			step += fmt.Sprintf(" comment=%q", c)
		}
		switch act {
		case "accept", "drop", "reject":
			e.trace = append(e.trace, step)
			return Verdict{Action: act, RuleID: id}, true
		case "tarpit":
			// tarpit captures and holds TCP connections: the packet
			// does not get through [C: Filter doc].
			e.trace = append(e.trace, step)
			return Verdict{Action: "drop", RuleID: id}, true
		case "jump":
			target := it["jump-target"]
			e.trace = append(e.trace, step+" jump-target="+target)
			if v, decided := e.walk(target, depth+1); decided {
				return v, true
			}
			e.trace = append(e.trace, "back in chain "+chain+" after "+id)
		case "return":
			e.trace = append(e.trace, step)
			return Verdict{}, false
		default: // passthrough, log, fasttrack-connection, add-*-to-address-list
			e.trace = append(e.trace, step+" (continues)")
		}
	}
	if !builtinChains[chain] {
		e.trace = append(e.trace, "end of chain "+chain+": return")
	}
	return Verdict{}, false
}

// match reports whether every matcher of the rule matches the packet. A
// matcher the evaluator does not model makes the rule not match, and says so
// in the trace.
func (e *evaluator) match(it Item) (bool, string) {
	p := e.p
	for _, spec := range filterProps {
		k := spec.name
		v, set := it[k]
		if !set || nonMatchers[k] {
			continue
		}
		neg, val := splitNeg(v)
		var m bool
		switch k {
		case "protocol":
			n, _ := ProtocolNumber(val)
			m = n == p.Protocol
		case "src-address", "dst-address":
			a := p.Src
			if k == "dst-address" {
				a = p.Dst
			}
			_, r, ok := normalizeAddr(val)
			m = ok && r.contains(a)
		case "src-address-list", "dst-address-list":
			a := p.Src
			if k == "dst-address-list" {
				a = p.Dst
			}
			for _, r := range e.lists[val] {
				if r.contains(a) {
					m = true
					break
				}
			}
		case "src-port", "dst-port", "port":
			if !portProtocols[p.Protocol] {
				m = false
				break
			}
			ranges, _ := parsePorts(val)
			for _, r := range ranges {
				if (k != "dst-port" && inRange(p.SrcPort, r)) || (k != "src-port" && inRange(p.DstPort, r)) {
					m = true
					break
				}
			}
		case "connection-state":
			for _, s := range strings.Split(val, ",") {
				if s == p.ConnState {
					m = true
					break
				}
			}
		case "connection-nat-state":
			m = false // probe packets are never NATed
		case "in-interface":
			m = p.InInterface != "" && p.InInterface == val
		case "out-interface":
			m = p.OutInterface != "" && p.OutInterface == val
		case "in-interface-list":
			m = e.inList(p.InInterface, val)
		case "out-interface-list":
			m = e.inList(p.OutInterface, val)
		case "ipsec-policy":
			// direction,ipsec|none: probe packets never travel in IPsec.
			_, kind, _ := strings.Cut(val, ",")
			m = kind == "none"
		default:
			return false, fmt.Sprintf("%s skipped: matcher %s is not modelled", it[".id"], k)
		}
		if m == neg {
			return false, ""
		}
	}
	return true, ""
}

func inRange(port int, r [2]int) bool { return port >= r[0] && port <= r[1] }

// inList resolves interface lists from /interface/list/member; the builtin
// list "all" holds every interface and "none" none [C: interface list doc].
func (e *evaluator) inList(iface, list string) bool {
	if iface == "" {
		return false
	}
	switch list {
	case "all", "static":
		return true
	case "none", "dynamic":
		return false
	}
	for _, m := range e.f.members[list] {
		if m == iface {
			return true
		}
	}
	return false
}
