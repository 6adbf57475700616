package rossim

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Packet is a probe packet for Evaluate. Its family, from Src (or Dst when
// Src is unset), picks the table: an IPv6 packet walks /ipv6/firewall/filter
// with /ipv6/firewall/address-list, an IPv4 one /ip/firewall/... (an
// IPv4-mapped IPv6 address is IPv6).
type Packet struct {
	Chain                     string // "input", "forward" or "output"
	InInterface, OutInterface string // interface names; lists come from /interface/list/member
	Src, Dst                  netip.Addr
	Protocol                  int // IANA number: 1 icmp, 6 tcp, 17 udp, 58 icmpv6, ...
	SrcPort, DstPort          int
	// ICMPType and ICMPCode, for protocol icmp (1) or icmpv6 (58), are what
	// icmp-options matches: e.g. 135 neighbour solicitation, 136
	// advertisement, 134 router advertisement, 128/129 echo, 130-132 and
	// 143 MLD, 2 packet too big (RFC 4443, 4861, 3810).
	ICMPType, ICMPCode int
	ConnState          string // "new", "established", "related", "invalid", "untracked"
}

// family of the packet: IPv6 when its source (or, unset, its destination)
// is an IPv6 address.
func (p Packet) family() family {
	a := p.Src
	if !a.IsValid() {
		a = p.Dst
	}
	if a.Is6() {
		return fam6
	}
	return fam4
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
func (f Firewall) Evaluate(p Packet) Verdict { return f.Evaluator().Evaluate(p) }

// Evaluator evaluates packets against one firewall state. It indexes the
// chains and address lists once, so probing a state with many packets costs
// a walk per packet, not a rebuild of the state. Not safe for concurrent use.
type Evaluator struct {
	f      Firewall
	lists  [2]map[string][]addrRange // per family (fi): sorted by lo, overlaps merged
	chains [2]map[string][]rule      // per family (fi)
	addrs  map[string]addrRange      // parsed address values
	ports  map[string][][2]int       // parsed port values
	icmp   map[string]parsedICMP     // parsed icmp-options values
}

// parsedICMP is an icmp-options value as parsed once per Evaluator; ok is
// false for a value the evaluator cannot read.
type parsedICMP struct {
	icmpOptions
	ok bool
}

// Evaluator indexes f for Evaluate and Action.
func (f Firewall) Evaluator() *Evaluator {
	return &Evaluator{f: f,
		lists:  [2]map[string][]addrRange{addressLists(fam4, f.AddressList), addressLists(fam6, f.AddressList6)},
		chains: [2]map[string][]rule{indexChains(f.Filter, filterProps), indexChains(f.Filter6, filterProps6)},
		addrs:  map[string]addrRange{}, ports: map[string][][2]int{}, icmp: map[string]parsedICMP{}}
}

// indexChains groups a family's rules by chain, each with its matchers.
func indexChains(filter []Item, props []propSpec) map[string][]rule {
	chains := map[string][]rule{}
	for _, it := range filter {
		r := rule{it: it}
		for _, spec := range props {
			if v, set := it[spec.name]; set && !nonMatchers[spec.name] {
				neg, val := splitNeg(v)
				r.matchers = append(r.matchers, matcher{spec.name, neg, val})
			}
		}
		chains[it["chain"]] = append(chains[it["chain"]], r)
	}
	return chains
}

// rule is a filter row with its matchers, in print order.
type rule struct {
	it       Item
	matchers []matcher
}

type matcher struct {
	name string
	neg  bool
	val  string
}

// Evaluate is Firewall.Evaluate.
func (e *Evaluator) Evaluate(p Packet) Verdict {
	w := walker{Evaluator: e, p: p, fam: p.family(), tracing: true}
	v, decided := w.walk(p.Chain, 0)
	if !decided {
		w.trace = append(w.trace, fmt.Sprintf("end of built-in chain %s: implicit accept", p.Chain))
		v = Verdict{Action: "accept"}
	}
	v.Trace = w.trace
	return v
}

// Action is Evaluate's action alone ("accept", "drop" or "reject"),
// without building the trace: for probing many packets.
func (e *Evaluator) Action(p Packet) string {
	w := walker{Evaluator: e, p: p, fam: p.family()}
	if v, decided := w.walk(p.Chain, 0); decided {
		return v.Action
	}
	return "accept"
}

// walker is one packet's walk through the chains.
type walker struct {
	*Evaluator
	p       Packet
	fam     family // the packet's: which table it walks
	tracing bool
	trace   []string
}

func (w *walker) note(step func() string) {
	if w.tracing {
		w.trace = append(w.trace, step())
	}
}

// addressLists holds the enabled entries of each list, sorted and merged for
// binary search. Dynamic entries (with a timeout) match like static ones [C:
// address-list doc]. Entries stored as DNS names (no address) match nothing:
// the simulator does not resolve names.
func addressLists(fam family, entries []Item) map[string][]addrRange {
	m := map[string][]addrRange{}
	for _, it := range entries {
		if it["disabled"] == "true" {
			continue
		}
		if _, r, ok := normalizeAddrFam(fam, it["address"]); ok {
			m[it["list"]] = append(m[it["list"]], r)
		}
	}
	for k, rs := range m {
		slices.SortFunc(rs, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
		out := rs[:0]
		for _, r := range rs {
			if n := len(out); n > 0 && r.lo.Compare(out[n-1].hi) <= 0 {
				if out[n-1].hi.Less(r.hi) {
					out[n-1].hi = r.hi
				}
				continue
			}
			out = append(out, r)
		}
		m[k] = out
	}
	return m
}

// inAddressList reports whether a is in list name of the walk's family.
func (e *walker) inAddressList(name string, a netip.Addr) bool {
	rs := e.lists[fi(e.fam)][name]
	i := sort.Search(len(rs), func(i int) bool { return a.Less(rs[i].lo) })
	return i > 0 && rs[i-1].contains(a)
}

func (e *walker) addr(v string) (addrRange, bool) {
	if r, ok := e.addrs[v]; ok {
		return r, true
	}
	_, r, ok := normalizeAddrFam(e.fam, v)
	if ok {
		e.addrs[v] = r
	}
	return r, ok
}

func (e *Evaluator) portRanges(v string) [][2]int {
	if r, ok := e.ports[v]; ok {
		return r
	}
	r, _ := parsePorts(v)
	e.ports[v] = r
	return r
}

// walk returns (verdict, true) when a rule decided, or false when the chain
// ended or a return was taken.
func (e *walker) walk(chain string, depth int) (Verdict, bool) {
	if depth > maxJumpDepth {
		e.note(func() string { return "jump depth limit reached in chain " + chain + ": treated as return" })
		return Verdict{}, false
	}
	for _, r := range e.chains[fi(e.fam)][chain] {
		it := r.it
		if it["disabled"] == "true" || it["invalid"] == "true" {
			continue
		}
		ok, why := e.match(r)
		if !ok {
			if why != "" {
				e.note(func() string { return why })
			}
			continue
		}
		id, act := it[".id"], it["action"]
		step := func() string {
			s := fmt.Sprintf("%s chain=%s action=%s", id, chain, act)
			if c := it["comment"]; c != "" {
				s += fmt.Sprintf(" comment=%q", c)
			}
			return s
		}
		switch act {
		case "accept", "drop", "reject":
			e.note(step)
			return Verdict{Action: act, RuleID: id}, true
		case "tarpit":
			// tarpit captures and holds TCP connections: the packet
			// does not get through [C: Filter doc].
			e.note(step)
			return Verdict{Action: "drop", RuleID: id}, true
		case "jump":
			target := it["jump-target"]
			e.note(func() string { return step() + " jump-target=" + target })
			if v, decided := e.walk(target, depth+1); decided {
				return v, true
			}
			e.note(func() string { return "back in chain " + chain + " after " + id })
		case "return":
			e.note(step)
			return Verdict{}, false
		default: // passthrough, log, fasttrack-connection, add-*-to-address-list
			e.note(func() string { return step() + " (continues)" })
		}
	}
	if !builtinChains[chain] {
		e.note(func() string { return "end of chain " + chain + ": return" })
	}
	return Verdict{}, false
}

// match reports whether every matcher of the rule matches the packet. A
// matcher the evaluator does not model makes the rule not match, and says so
// in the trace.
func (e *walker) match(r rule) (bool, string) {
	p, it := e.p, r.it
	for _, mr := range r.matchers {
		k, neg, val := mr.name, mr.neg, mr.val
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
			r, ok := e.addr(val)
			m = ok && r.contains(a)
		case "src-address-list", "dst-address-list":
			a := p.Src
			if k == "dst-address-list" {
				a = p.Dst
			}
			m = e.inAddressList(val, a)
		case "src-port", "dst-port", "port":
			if !portProtocols[p.Protocol] {
				m = false
				break
			}
			ranges := e.portRanges(val)
			for _, r := range ranges {
				if (k != "dst-port" && inRange(p.SrcPort, r)) || (k != "src-port" && inRange(p.DstPort, r)) {
					m = true
					break
				}
			}
		case "icmp-options":
			o, seen := e.icmp[val]
			if !seen {
				o.icmpOptions, o.ok = parseICMPOptions(val)
				e.icmp[val] = o
			}
			if !o.ok {
				// /ip keeps icmp-options as free text (a name such as
				// echo-request, say), which the evaluator does not
				// model: skip the rule, as for any matcher it does not
				// know, rather than match type 0 code 0.
				if !e.tracing {
					return false, ""
				}
				return false, fmt.Sprintf("%s skipped: icmp-options %q is not modelled", it[".id"], val)
			}
			// the rule's protocol (checked on write) is the packet's:
			// icmp in /ip, icmpv6 in /ipv6
			m = (p.Protocol == 1 || p.Protocol == 58) &&
				inRange(p.ICMPType, o.typ) && inRange(p.ICMPCode, o.code)
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
			if !e.tracing {
				return false, ""
			}
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
func (e *walker) inList(iface, list string) bool {
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
