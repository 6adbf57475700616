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

// Wanted is the whole rendered state of a site.
type Wanted struct {
	// Jumps in the order they must appear: jump/input, jump/forward-in,
	// jump/forward-out (each only when needed).
	Jumps []Rule
	// In and Out are the owned chains' rules in chain order; empty when the
	// chain must not exist.
	In, Out []Rule
	// Entries are the address-list entries sorted by list then address.
	Entries []Entry
}

// Rules returns every wanted filter rule: jumps, then In, then Out.
func (w Wanted) Rules() []Rule {
	return slices.Concat(w.Jumps, w.In, w.Out)
}

// Options are the site-specific inputs besides the document.
type Options struct {
	// WANList is the interface list that faces the Internet.
	WANList string
	// Guard is the agent's own IPv4 source address; rampart-out accepts
	// everything from it so no policy can cut the agent off its broker. An
	// invalid or non-IPv4 address renders no guard.
	Guard netip.Addr
}

// Render computes the wanted rows of d. d must have passed Validate.
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
	entries []Entry                 // the last result's entries
}

type renderedList struct {
	cidrs   []string
	entries []Entry
}

// Render is the package's Render, remembering d's prefix lists.
func (rr *Renderer) Render(d *protocol.DesiredState, opts Options) Wanted {
	var w Wanted
	type ordered struct {
		group string
		r     protocol.Rule
	}
	var in, out []ordered
	for _, g := range d.SecurityGroups {
		for _, r := range g.Rules {
			if r.Direction == protocol.Outbound {
				out = append(out, ordered{g.ID, r})
			} else {
				in = append(in, ordered{g.ID, r})
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

	if len(d.SecurityGroups) > 0 {
		w.In = append(w.In,
			rule(KeyInEst, "", Props{"chain": ChainIn, "action": "accept", "connection-state": stateAllowed}),
			rule(KeyInInvalid, "", Props{"chain": ChainIn, "action": "drop", "connection-state": stateInvalid}))
		for _, o := range in {
			w.In = append(w.In, allow(ChainIn, "src", o.r))
		}
		w.In = append(w.In, rule(KeyInDrop, "", Props{"chain": ChainIn, "action": "drop"}))
		w.Jumps = append(w.Jumps,
			rule(KeyJumpInput, "", Props{"chain": "input", "action": "jump", "jump-target": ChainIn, "in-interface-list": opts.WANList}),
			rule(KeyJumpFwdIn, "", Props{"chain": "forward", "action": "jump", "jump-target": ChainIn, "in-interface-list": opts.WANList}))
	}
	if len(out) > 0 {
		w.Out = append(w.Out,
			rule(KeyOutEst, "", Props{"chain": ChainOut, "action": "accept", "connection-state": stateAllowed}),
			rule(KeyOutInvalid, "", Props{"chain": ChainOut, "action": "drop", "connection-state": stateInvalid}))
		if opts.Guard.IsValid() && opts.Guard.Unmap().Is4() {
			w.Out = append(w.Out, rule(KeyOutGuard, "agent's own traffic",
				Props{"chain": ChainOut, "action": "accept", "src-address": opts.Guard.Unmap().String()}))
		}
		for _, o := range out {
			w.Out = append(w.Out, allow(ChainOut, "dst", o.r))
		}
		w.Out = append(w.Out, rule(KeyOutDrop, "", Props{"chain": ChainOut, "action": "drop"}))
		w.Jumps = append(w.Jumps,
			rule(KeyJumpFwdOut, "", Props{"chain": "forward", "action": "jump", "jump-target": ChainOut, "out-interface-list": opts.WANList}))
	}

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
		var entries []Entry
		for _, c := range pl.CIDRs {
			addr := Address(c)
			if seen[addr] {
				continue
			}
			seen[addr] = true
			entries = append(entries, Entry{List: list, Address: addr, Comment: CommentPrefix + shortHash("list="+list, "address="+addr)})
		}
		slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Address, b.Address) })
		// The document is not modified once accepted: its CIDRs are kept,
		// not copied.
		lists[pl.ID] = renderedList{cidrs: pl.CIDRs, entries: entries}
	}
	if reused == len(rr.lists) && reused == len(lists) && rr.entries != nil {
		// The same lists as last time: the same entries, not a copy
		// (nothing writes to a Wanted's entries).
		w.Entries = rr.entries
	} else {
		n := 0
		for _, l := range lists {
			n += len(l.entries)
		}
		if n > 0 {
			w.Entries = make([]Entry, 0, n)
		}
		for _, pl := range d.PrefixLists {
			w.Entries = append(w.Entries, lists[pl.ID].entries...)
		}
	}
	rr.lists = lists
	byListAddress := func(a, b Entry) int {
		if c := strings.Compare(a.List, b.List); c != 0 {
			return c
		}
		return strings.Compare(a.Address, b.Address)
	}
	if !slices.IsSortedFunc(w.Entries, byListAddress) {
		w.Entries = slices.Clone(w.Entries) // rr.entries is shared
		slices.SortFunc(w.Entries, byListAddress)
	}
	// Each list's entries are remembered as its range of w.Entries: one
	// copy of 10,000 entries stays live between documents, not two (on a
	// router under the agent's heap limit, live heap is headroom lost).
	// The cap stops an append from writing into the next list's range.
	for id, l := range lists {
		name := ListName(id)
		lo, _ := slices.BinarySearchFunc(w.Entries, name, func(e Entry, n string) int { return strings.Compare(e.List, n) })
		hi := lo + len(l.entries)
		l.entries = w.Entries[lo:hi:hi]
		lists[id] = l
	}
	rr.entries = w.Entries
	return w
}

// ListName is the address list of prefix list id.
func ListName(id string) string { return ListPrefix + id }

// Address renders a CIDR as RouterOS prints it: a /32 is a bare address.
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
	} else if r.Address != "0.0.0.0/0" {
		// 0.0.0.0/0 matches everything: leaving the matcher out is what
		// RouterOS itself does and keeps the printed row identical.
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
var sentNames = map[int]bool{1: true, 6: true, 17: true, 33: true, 132: true, 136: true}

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
