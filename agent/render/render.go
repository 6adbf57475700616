// Package render turns a site's desired state into the RouterOS rows that
// enforce it: filter rules in the agent's own chains, the jump rules that lead
// into them, and address-list entries. It is pure (no I/O) so every choice is
// table-tested.
//
// # Layout
//
// Inbound (whenever the site has at least one security group):
//
//	input    jump → rampart-in   in-interface-list=<WAN>   (first static row of input)
//	forward  jump → rampart-in   in-interface-list=<WAN>   (first static row of forward)
//	rampart-in: accept established,related,untracked; drop invalid;
//	            the inbound allow rules; drop
//
// Outbound (only when the site has at least one outbound rule):
//
//	forward  jump → rampart-out  out-interface-list=<WAN>  (after the inbound jump)
//	rampart-out: accept established,related,untracked; drop invalid;
//	             accept from the agent's own address (the guard);
//	             the outbound allow rules; drop
//
// Allow rules of all groups are merged and sorted by (order, group id, rule
// id): the order field is what operators reason about, and the ids make ties
// between groups deterministic, so two agents given one document render the
// same chain.
//
// # Ownership
//
// Every rendered row carries the comment "rampart:<key>:<hash>", optionally
// followed by a space and the rule's description. The key names the row
// (a rule id, or in/est, out/drop, jump/input...), the hash is a short digest
// of the row's properties, so a changed rule is recognised from its comment
// alone and a hand edit shows up as properties that no longer match.
// Prefix list X becomes address list "rampart-X", one entry per CIDR,
// comment "rampart:<hash>".
//
// # Families
//
// IPv4 and IPv6 have separate tables on RouterOS (/ip/firewall and
// /ipv6/firewall), so a Wanted holds one Table per Family, each with the
// layout above; the chain names, keys and comments are the same in both.
// A rule lands in the tables of the families it applies in, by the
// protocol package's family rules (protocol.Rule.Families): an IPv4 CIDR's
// in IPv4, an IPv6 CIDR's in IPv6, a prefix list's in each family in which
// the list has a CIDR (a list with none in neither: it would match
// nothing), icmp only in IPv4 and icmpv6 only in IPv6. Prefix list X
// becomes address list "rampart-X" in each table, holding that family's
// CIDRs.
//
// The IPv6 table is managed only when the document carries an IPv6 CIDR
// (the documents of schema 2, protocol.DesiredState.NeededSchema): an
// IPv4-only document renders an empty IPv6 table, which leaves a router's
// IPv6 firewall exactly as it is, or takes out what an earlier dual-stack
// document put there. When it is managed,
// its chains exist on the same conditions as IPv4's (rampart-in when the
// site has a group, rampart-out when it has an outbound rule of either
// family: a site that restricts outbound traffic restricts it in both), and
// rampart-in accepts, right after the connection-state frame, what
// RouterOS's own IPv6 defconf accepts for the router to keep its uplink:
// ICMPv6 (neighbour discovery, path MTU discovery) and DHCPv6 replies from
// link-local addresses (prefix delegation). No policy can drop these.
package render

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/rampart-fw/rampart/protocol"
)

// Names of the agent's own chains and the marker of everything it owns.
const (
	ChainIn       = "rampart-in"
	ChainOut      = "rampart-out"
	CommentPrefix = "rampart:"
	ListPrefix    = "rampart-"
)

// Keys of the rows that do not come from a policy rule.
const (
	KeyJumpInput   = "jump/input"
	KeyJumpFwdIn   = "jump/forward-in"
	KeyJumpFwdOut  = "jump/forward-out"
	KeyInEst       = "in/est"
	KeyInInvalid   = "in/invalid"
	KeyInDrop      = "in/drop"
	KeyOutEst      = "out/est"
	KeyOutInvalid  = "out/invalid"
	KeyOutGuard    = "out/guard"
	KeyOutDrop     = "out/drop"
	KeyInICMPv6    = "in/icmpv6"
	KeyInDHCPv6    = "in/dhcpv6"
	stateAllowed   = "established,related,untracked"
	stateInvalid   = "invalid"
	maxDescription = 64
)

// Props are the properties of one filter rule as sent to RouterOS, without
// .id and comment.
type Props map[string]string

// Rule is one wanted filter rule.
type Rule struct {
	Key     string
	Props   Props // includes "chain"
	Comment string
}

// Chain returns the rule's chain.
func (r Rule) Chain() string { return r.Props["chain"] }

// Entry is one wanted address-list entry.
type Entry struct {
	List, Address, Comment string
}

// Family is an address family, the index of its Table in a Wanted.
type Family int

// The families, in the order the agent plans them.
const (
	IPv4 Family = iota
	IPv6
	NumFamilies = 2
)

// Families lists every family.
var Families = [NumFamilies]Family{IPv4, IPv6}

func (f Family) String() string { return f.Protocol().String() }

// Protocol is f as the protocol package's family set.
func (f Family) Protocol() protocol.Family {
	if f == IPv6 {
		return protocol.IPv6
	}
	return protocol.IPv4
}

// FamilyOf returns the family of a CIDR or address as the document or
// RouterOS writes it (IPv6 text always has a colon, IPv4 text never).
func FamilyOf(addr string) Family {
	if strings.IndexByte(addr, ':') >= 0 {
		return IPv6
	}
	return IPv4
}

// AddrFamily returns the family of ip; an IPv4-mapped IPv6 address is
// IPv4, as the kernel uses it.
func AddrFamily(ip netip.Addr) Family {
	if ip.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Table is the rendered state of one family's firewall.
type Table struct {
	// Jumps in the order they must appear: jump/input, jump/forward-in,
	// jump/forward-out (each only when needed).
	Jumps []Rule
	// In and Out are the owned chains' rules in chain order; empty when the
	// chain must not exist.
	In, Out []Rule
	// Entries are the address-list entries sorted by list then address.
	Entries []Entry
}

// Rules returns every wanted filter rule of the table: jumps, then In,
// then Out.
func (t Table) Rules() []Rule {
	return slices.Concat(t.Jumps, t.In, t.Out)
}

// Wanted is the whole rendered state of a site: one Table per family,
// indexed by Family.
type Wanted [NumFamilies]Table

// Rules counts the wanted filter rules of every table.
func (w Wanted) Rules() int {
	n := 0
	for _, t := range w {
		n += len(t.Jumps) + len(t.In) + len(t.Out)
	}
	return n
}

// Entries counts the wanted address-list entries of every table.
func (w Wanted) Entries() int {
	n := 0
	for _, t := range w {
		n += len(t.Entries)
	}
	return n
}

// Options are the site-specific inputs besides the document.
type Options struct {
	// WANList is the interface list that faces the Internet.
	WANList string
	// Guards are the agent's own source addresses towards its broker, by
	// family: each table's rampart-out accepts everything from its
	// family's guard, so no policy can cut the agent off its broker. An
	// invalid address, or one of another family, renders no guard in that
	// table (the agent has no address of that family towards its broker,
	// so that table carries nothing of the agent's to keep).
	Guards [NumFamilies]netip.Addr
}

// Render computes the wanted rows of d, one table per family. d must have
// passed Validate.
func Render(d *protocol.DesiredState, opts Options) Wanted {
	var r Renderer
	return r.Render(d, opts)
}

// Renderer renders one document after another, reusing the address-list
// entries of every prefix list whose CIDRs are those of the last document:
// a small change to a policy with 10,000 entries then costs a comparison
// per CIDR instead of a parse and a hash (BENCHMARKS.md, "Small changes").
// The zero value is ready; it is not safe for concurrent use.
type Renderer struct {
	lists   map[string]renderedList // by prefix list id
	entries [NumFamilies][]Entry    // the last result's entries
}

type renderedList struct {
	cidrs   []string
	entries [NumFamilies][]Entry
}

// Render is the package's Render, remembering d's prefix lists.
func (rr *Renderer) Render(d *protocol.DesiredState, opts Options) Wanted {
	var w Wanted
	lists := rr.renderLists(d, &w)

	// The families each prefix list has CIDRs in (protocol's ListFamilies,
	// from the entries just rendered rather than parsing every CIDR again),
	// and whether the document carries IPv6 (NeededSchema).
	listFams := make(map[string]protocol.Family, len(lists))
	ipv6 := false
	for id, l := range lists {
		var s protocol.Family
		for _, f := range Families {
			if len(l.entries[f]) > 0 {
				s |= f.Protocol()
			}
		}
		listFams[id] = s
		ipv6 = ipv6 || s.Has(protocol.IPv6)
	}
	type ordered struct {
		group string
		r     protocol.Rule
		fams  protocol.Family
	}
	var in, out []ordered
	for _, g := range d.SecurityGroups {
		for _, r := range g.Rules {
			o := ordered{g.ID, r, r.Families(listFams)}
			ipv6 = ipv6 || protocol.CIDRFamily(r.Address) == protocol.IPv6
			if r.Direction == protocol.Outbound {
				out = append(out, o)
			} else {
				in = append(in, o)
			}
		}
	}
	less := func(s []ordered) {
		sort.SliceStable(s, func(i, j int) bool {
			a, b := s[i], s[j]
			if a.r.Order != b.r.Order {
				return a.r.Order < b.r.Order
			}
			if a.group != b.group {
				return a.group < b.group
			}
			return a.r.ID < b.r.ID
		})
	}
	less(in)
	less(out)

	for _, f := range Families {
		if f == IPv6 && !ipv6 {
			continue // an IPv4-only document: the IPv6 table is left alone
		}
		t := &w[f]
		if len(d.SecurityGroups) > 0 {
			t.In = append(t.In,
				rule(KeyInEst, "", Props{"chain": ChainIn, "action": "accept", "connection-state": stateAllowed}),
				rule(KeyInInvalid, "", Props{"chain": ChainIn, "action": "drop", "connection-state": stateInvalid}))
			if f == IPv6 {
				// What RouterOS's IPv6 defconf keeps for the router's own
				// uplink (reference section 9): ahead of every policy rule,
				// so no policy withdraws it.
				t.In = append(t.In,
					rule(KeyInICMPv6, "ICMPv6: neighbour discovery, path MTU", Props{"chain": ChainIn, "action": "accept", "protocol": "icmpv6"}),
					rule(KeyInDHCPv6, "DHCPv6 replies from link-local", Props{"chain": ChainIn, "action": "accept", "protocol": "udp", "dst-port": "546", "src-address": "fe80::/10"}))
			}
			for _, o := range in {
				if o.fams.Has(f.Protocol()) {
					t.In = append(t.In, allow(ChainIn, "src", o.r))
				}
			}
			t.In = append(t.In, rule(KeyInDrop, "", Props{"chain": ChainIn, "action": "drop"}))
			t.Jumps = append(t.Jumps,
				rule(KeyJumpInput, "", Props{"chain": "input", "action": "jump", "jump-target": ChainIn, "in-interface-list": opts.WANList}),
				rule(KeyJumpFwdIn, "", Props{"chain": "forward", "action": "jump", "jump-target": ChainIn, "in-interface-list": opts.WANList}))
		}
		if len(out) > 0 {
			t.Out = append(t.Out,
				rule(KeyOutEst, "", Props{"chain": ChainOut, "action": "accept", "connection-state": stateAllowed}),
				rule(KeyOutInvalid, "", Props{"chain": ChainOut, "action": "drop", "connection-state": stateInvalid}))
			if g := opts.Guards[f].Unmap(); g.IsValid() && AddrFamily(g) == f {
				t.Out = append(t.Out, rule(KeyOutGuard, "agent's own traffic",
					Props{"chain": ChainOut, "action": "accept", "src-address": g.String()}))
			}
			for _, o := range out {
				if o.fams.Has(f.Protocol()) {
					t.Out = append(t.Out, allow(ChainOut, "dst", o.r))
				}
			}
			t.Out = append(t.Out, rule(KeyOutDrop, "", Props{"chain": ChainOut, "action": "drop"}))
			t.Jumps = append(t.Jumps,
				rule(KeyJumpFwdOut, "", Props{"chain": "forward", "action": "jump", "jump-target": ChainOut, "out-interface-list": opts.WANList}))
		}
	}
	return w
}

// renderLists renders the address-list entries of d's prefix lists into
// each table of w and returns the lists by id.
func (rr *Renderer) renderLists(d *protocol.DesiredState, w *Wanted) map[string]renderedList {
	lists := make(map[string]renderedList, len(d.PrefixLists))
	reused := 0
	for _, pl := range d.PrefixLists {
		if prev, ok := rr.lists[pl.ID]; ok && slices.Equal(prev.cidrs, pl.CIDRs) {
			lists[pl.ID] = prev
			reused++
			continue
		}
		list := ListName(pl.ID)
		seen := map[string]bool{}
		var l renderedList
		for _, c := range pl.CIDRs {
			addr := Address(c)
			if seen[addr] {
				continue
			}
			seen[addr] = true
			f := FamilyOf(addr)
			l.entries[f] = append(l.entries[f], Entry{List: list, Address: addr, Comment: CommentPrefix + shortHash("list="+list, "address="+addr)})
		}
		for f := range l.entries {
			slices.SortFunc(l.entries[f], func(a, b Entry) int { return strings.Compare(a.Address, b.Address) })
		}
		// The document is not modified once accepted: its CIDRs are kept,
		// not copied.
		l.cidrs = pl.CIDRs
		lists[pl.ID] = l
	}
	same := reused == len(rr.lists) && reused == len(lists)
	byListAddress := func(a, b Entry) int {
		if c := strings.Compare(a.List, b.List); c != 0 {
			return c
		}
		return strings.Compare(a.Address, b.Address)
	}
	for _, f := range Families {
		t := &w[f]
		if same && rr.entries[f] != nil {
			// The same lists as last time: the same entries, not a copy
			// (nothing writes to a Wanted's entries).
			t.Entries = rr.entries[f]
		} else {
			n := 0
			for _, l := range lists {
				n += len(l.entries[f])
			}
			if n > 0 {
				t.Entries = make([]Entry, 0, n)
			}
			for _, pl := range d.PrefixLists {
				t.Entries = append(t.Entries, lists[pl.ID].entries[f]...)
			}
		}
		if !slices.IsSortedFunc(t.Entries, byListAddress) {
			t.Entries = slices.Clone(t.Entries) // rr.entries is shared
			slices.SortFunc(t.Entries, byListAddress)
		}
		rr.entries[f] = t.Entries
	}
	// Each list's entries are remembered as its range of the table's
	// entries: one copy of 10,000 entries stays live between documents,
	// not two (on a router under the agent's heap limit, live heap is
	// headroom lost). The cap stops an append from writing into the next
	// list's range.
	for id, l := range lists {
		name := ListName(id)
		for _, f := range Families {
			es := w[f].Entries
			lo, _ := slices.BinarySearchFunc(es, name, func(e Entry, n string) int { return strings.Compare(e.List, n) })
			hi := lo + len(l.entries[f])
			l.entries[f] = es[lo:hi:hi]
		}
		lists[id] = l
	}
	rr.lists = lists
	return lists
}

// ListName is the address list of prefix list id.
func ListName(id string) string { return ListPrefix + id }

// Address renders a CIDR as the agent writes it: a /32 (an IPv6 /128) is
// a bare address. The planner compares addresses in this form on both
// sides, so a router that prints a host prefix either way matches.
func Address(cidr string) string {
	if !strings.Contains(cidr, "/") {
		return cidr // a bare address, or text that is none (ParsePrefix would fail, and allocate its error)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return cidr
	}
	p = p.Masked()
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	var buf [64]byte
	if string(p.AppendTo(buf[:0])) == cidr {
		return cidr // already as printed: no new string (the planner calls this per observed entry)
	}
	return p.String()
}

func allow(chain, side string, r protocol.Rule) Rule {
	p := Props{"chain": chain, "action": "accept"}
	if r.Protocol != 0 {
		p["protocol"] = ProtocolName(r.Protocol)
	}
	if r.Port != "" {
		p["dst-port"] = r.Port
	}
	if strings.HasPrefix(r.Address, protocol.PrefixListPrefix) {
		p[side+"-address-list"] = ListName(r.Address)
	} else if r.Address != "0.0.0.0/0" && r.Address != "::/0" {
		// 0.0.0.0/0 (::/0 in IPv6) matches everything: leaving the matcher
		// out is what RouterOS itself does and keeps the printed row
		// identical.
		p[side+"-address"] = Address(r.Address)
	}
	return rule(r.ID, r.Description, p)
}

func rule(key, description string, p Props) Rule {
	c := CommentPrefix + key + ":" + Hash(p)
	if d := sanitize(description); d != "" {
		c += " " + d
	}
	return Rule{Key: key, Props: p, Comment: c}
}

// Hash is the short digest of a rule's properties carried in its comment.
func Hash(p Props) string {
	kv := make([]string, 0, len(p))
	for k, v := range p {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return shortHash(kv...)
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// sanitize keeps a description printable in a RouterOS comment: one line of
// ASCII, short enough to read in Winbox.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxDescription {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte(' ')
		}
	}
	return strings.TrimSpace(b.String())
}

// ParseComment splits a managed comment into its key and hash; ok is false
// for comments the agent does not own. An address-list comment has a hash
// and no key.
func ParseComment(c string) (key, hash string, ok bool) {
	rest, found := strings.CutPrefix(c, CommentPrefix)
	if !found {
		return "", "", false
	}
	rest, _, _ = strings.Cut(rest, " ")
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		return rest[:i], rest[i+1:], true
	}
	return "", rest, true
}

// sentNames are the protocols the agent sends by name; every other protocol
// is sent as its number, which RouterOS accepts for any protocol.
var sentNames = map[int]bool{1: true, 6: true, 17: true, 33: true, 58: true, 132: true, 136: true}

// ProtocolName is how the agent writes protocol n.
func ProtocolName(n int) string {
	if name, ok := protocol.IPProtocolName(n); ok && sentNames[n] {
		return name
	}
	return strconv.Itoa(n)
}

// protocolAliases are other spellings seen in RouterOS documentation for the
// same numbers; the agent sends numbers for these, so it only has to read them.
var protocolAliases = map[string]int{"ip-encap": 4, "ipv6": 41}

// ProtocolNumber normalises a printed protocol (name or number) to its
// number, so "tcp" and "6" compare equal; ok is false for unknown text.
func ProtocolNumber(s string) (int, bool) {
	if n, ok := protocolAliases[s]; ok {
		return n, true
	}
	return protocol.IPProtocolNumber(s)
}
