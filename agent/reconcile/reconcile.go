// Package reconcile compares what a router has (rows as the RouterOS API
// prints them) with what the agent wants (package render) and produces the
// ordered list of writes that turns one into the other. It is pure: the same
// observed rows and wanted state always give the same plan, so it is tested
// as state tables without a router.
//
// # Fewest writes
//
// Rows are matched by the key in their "rampart:" comment. A matched row
// whose properties differ is changed with one set (same id, counters kept)
// where a set cannot withdraw traffic (see "No gap"), else replaced by an
// add of the new row and a remove of the old: a changed rule costs at most
// two writes either way. Order inside an owned chain is fixed with the
// fewest moves: the rows on a longest increasing subsequence (by wanted
// position) stay, every other one is moved. New rows are added with
// place-before at their final position. Stale rows and entries are removed
// in one batched remove per phase.
//
// # No gap
//
// Every intermediate state must give each packet the verdict of the old
// policy A or of the new policy B. Inside an owned chain everything between
// the drop-invalid row and the final drop is an accept, so the chain accepts
// the union of what its accept rows match, and a state S is between the
// policies when A ∩ B ⊆ S ⊆ A ∪ B (as sets of packets). The plan keeps a
// stronger invariant by having two halves (see Phase): in the first, each
// write only adds packets B accepts, so S grows from A and holds A; in the
// second, each write only takes packets away, so S shrinks to B and holds
// B. In between S is A ∪ B.
//
// An add is a first-half write, a remove a second-half one, a move changes
// no verdict. A set that turns a row matching a into one matching b takes
// away a \ b and adds b \ a, so it is used only where one of them is empty:
// a widening (a ⊆ b) in the first half, a narrowing (b ⊆ a) in the second,
// a new description (a = b) anywhere. Any other change (another protocol,
// two rules trading what they match, a row edited by hand) is an add of the
// new row in the first half and a remove of the old one in the second.
// Whether a ⊆ b is decided on a model of what a row matches (match.go) that
// answers "no" whenever it cannot tell, which only costs a write.
//
// Address lists are shared between rows, so they change on a timeline: they
// hold A's content until PhaseListAdd, A ∪ B until PhaseListPrune, then B.
// A row that holds a must not match more than A meanwhile: the lists it
// matches on do not gain entries before its set, or it is set before they
// do (PhaseRepoint). A row that holds b must not match more than B: its
// lists lose no entries after its set, or it is set after they do
// (PhaseRepointBack). Containment is checked with the lists' content at the
// moment of the set. The same argument places whole rows: a row that stays
// unchanged sees any content between A's and B's, which its own verdicts
// allow; a leaving row whose list gains entries is first pointed at a
// frozen copy of the old content; an arriving row whose list loses entries
// is added on a copy of the new content and pointed at the list once it is
// pruned. The chains are independent (a packet meets one of them), so both
// follow one timeline. Jumps into a chain that goes away leave first; jumps
// are added only once their chain is complete.
//
// # Families
//
// IPv4 and IPv6 are separate tables on RouterOS, each with its own filter
// and address lists (a Menu). Plan plans each table on its own, with the
// same code, into one plan: a packet is of one family and meets only its
// table, so each table's writes keep the argument above whatever the other
// table's writes do in between. The two tables' writes of one phase are
// sent together (an address-list phase is pipelined across both).
//
// # Ownership
//
// Dynamic rows are never touched. Outside the owned chains, only rows whose
// comment starts with "rampart:" are changed or removed. Inside the owned
// chains and owned address lists (named "rampart-..."), anything the plan
// did not render is removed.
package reconcile

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/rampart-fw/rampart/agent/render"
)

// API menus of the IPv4 table.
const (
	FilterPath      = "/ip/firewall/filter"
	AddressListPath = "/ip/firewall/address-list"
)

// Menu is one family's firewall on the API: its filter table and its
// address lists.
type Menu struct {
	Filter, AddressList string
}

// Menus are the menus of each family, indexed by render.Family.
var Menus = [render.NumFamilies]Menu{
	render.IPv4: {FilterPath, AddressListPath},
	render.IPv6: {"/ipv6/firewall/filter", "/ipv6/firewall/address-list"},
}

// IsAddressList reports whether path is the address-list menu of a family.
func IsAddressList(path string) bool {
	for _, m := range Menus {
		if path == m.AddressList {
			return true
		}
	}
	return false
}

// Item is one row as the API prints it, ".id" included.
type Item map[string]string

// Table is what was read of one family's firewall: the filter rows in
// global order and the address-list entries.
type Table struct {
	Filter  []Item
	Entries []Entry
}

// Observed is what was read of every family's firewall, indexed by
// render.Family.
type Observed [render.NumFamilies]Table

// Entry is one address-list entry as printed. Address lists are read as
// these compact structs rather than Items: a router can hold tens of
// thousands of entries.
type Entry struct {
	ID, List, Address, Comment string
	Dynamic, Disabled          bool
}

// EntryFromPairs builds an Entry from printed properties; intern, if not
// nil, deduplicates list names (few lists, many entries).
func EntryFromPairs(kv func(yield func(k, v string) bool), intern map[string]string) Entry {
	var e Entry
	for k, v := range kv {
		switch k {
		case ".id":
			e.ID = v
		case "list":
			if s, ok := intern[v]; ok {
				v = s
			} else if intern != nil {
				intern[v] = v
			}
			e.List = v
		case "address":
			e.Address = v
		case "comment":
			e.Comment = v
		case "dynamic":
			e.Dynamic = isTrue(v)
		case "disabled":
			e.Disabled = isTrue(v)
		}
	}
	return e
}

// Kind is the kind of a write.
type Kind string

// Kinds of writes.
const (
	Add    Kind = "add"
	Set    Kind = "set"
	Remove Kind = "remove"
	Move   Kind = "move"
)

// Phase orders the plan; the executor runs phases one after the other, and
// may run the writes of a Concurrent phase in parallel.
type Phase int

// Phases, in execution order.
const (
	PhaseJumpRemove  Phase = iota // jumps into chains that go away, stray managed rules outside owned chains
	PhaseListCopy                 // frozen copies of changing lists: the old content for leaving rules, the new for arriving ones
	PhaseRepoint                  // leaving rules switched to the old copies; rows widened before any list changes
	PhaseListAdd                  // address-list additions and repairs
	PhaseChains                   // widenings, other repairs, moves and additions inside rampart-in and rampart-out
	PhaseChainRemove              // narrowings, then stale rows of the owned chains (the second half starts here)
	PhaseListPrune                // stale entries of the rampart-<id> lists
	PhaseListReAdd                // entries that had to wait for a dynamic duplicate to leave
	PhaseRepointBack              // arriving rules switched from the new copies to the real lists; narrowings that need the lists' new content
	PhaseJumps                    // jump repairs, moves and additions
	PhaseListRemove               // copies and other stale entries
)

// Concurrent reports whether the writes of phase p are independent of each
// other, so an executor may send them over several sessions at once.
func (p Phase) Concurrent() bool {
	return p == PhaseListAdd || p == PhaseListReAdd || p == PhaseListCopy
}

// Ref is how an op names the row an earlier Add of the same plan creates:
// "+N" for the result of op N. Executors resolve refs to real ids.
func Ref(op int) string { return "+" + strconv.Itoa(op) }

// IsRef reports whether id is a Ref, and which op it names.
func IsRef(id string) (int, bool) {
	if !strings.HasPrefix(id, "+") {
		return 0, false
	}
	n, err := strconv.Atoi(id[1:])
	return n, err == nil
}

// Op is one write.
type Op struct {
	Phase Phase
	Kind  Kind
	Path  string
	// ID is the row of a set or move (a real id or a Ref).
	ID string
	// IDs are the rows of a remove.
	IDs []string
	// Before is place-before of an add or destination of a move; empty
	// means at the end of the list.
	Before string
	// Props are the properties of an add or set; in a set, a key "!name"
	// unsets name.
	Props map[string]string
	// Entry, for an address-list add, is the entry to add (in place of
	// Props).
	Entry *render.Entry
	// Key names what the op is about, for logs.
	Key string
}

func (o Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", o.Kind, o.Path)
	if o.ID != "" {
		fmt.Fprintf(&b, " %s", o.ID)
	}
	if len(o.IDs) > 0 {
		fmt.Fprintf(&b, " %s", strings.Join(o.IDs, ","))
	}
	if o.Before != "" {
		fmt.Fprintf(&b, " before %s", o.Before)
	}
	if l := o.Label(); l != "" {
		fmt.Fprintf(&b, " [%s]", l)
	}
	return b.String()
}

// Label names what the op is about.
func (o Op) Label() string {
	if o.Key == "" && o.Entry != nil {
		return o.Entry.List + " " + o.Entry.Address
	}
	return o.Key
}

// Words renders the op as API words, with refs resolved by resolve.
func (o Op) Words(resolve func(string) string) []string {
	w := []string{o.Path + "/" + string(o.Kind)}
	switch o.Kind {
	case Add:
		if e := o.Entry; e != nil {
			w = append(w, "=list="+e.List, "=address="+e.Address, "=comment="+e.Comment)
		}
		w = appendProps(w, o.Props)
		if o.Before != "" {
			w = append(w, "=place-before="+resolve(o.Before))
		}
	case Set:
		w = append(w, "=.id="+resolve(o.ID))
		w = appendProps(w, o.Props)
	case Move:
		w = append(w, "=numbers="+resolve(o.ID))
		if o.Before != "" {
			w = append(w, "=destination="+resolve(o.Before))
		}
	case Remove:
		ids := make([]string, 0, len(o.IDs))
		for _, id := range o.IDs {
			// An add that found its entry already present has no id.
			if r := resolve(id); r != "" {
				ids = append(ids, r)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		w = append(w, "=.id="+strings.Join(ids, ","))
	}
	return w
}

func appendProps(w []string, p map[string]string) []string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w = append(w, "="+k+"="+p[k])
	}
	return w
}

// maxBatch bounds the ids of one remove, to keep sentences small.
const maxBatch = 200

// Plan returns the writes that make a router whose tables are obs equal to
// w, family by family. Of a filter row outside the owned chains without a
// rampart: comment (someone else's) it reads only .id, chain, comment,
// dynamic and builtin; the agent keeps no more of such rows.
func Plan(obs Observed, w render.Wanted) []Op {
	p := &planner{}
	for _, f := range render.Families {
		p.menu = Menus[f]
		lists := p.addressLists(obs[f].Entries, w[f].Entries)
		p.filter(obs[f].Filter, w[f], lists)
	}
	return p.plan()
}

const numPhases = int(PhaseListRemove) + 1

type planner struct {
	menu    Menu // of the table being planned
	buckets [numPhases][]Op
	// locs[n] is where the op behind provisional ref "~n" was emitted.
	locs []loc
}

type loc struct{ phase, idx int }

// emit records op in its phase and returns a provisional ref naming its
// result; plan turns provisional refs into Refs.
func (p *planner) emit(op Op) string {
	b := &p.buckets[op.Phase]
	p.locs = append(p.locs, loc{int(op.Phase), len(*b)})
	*b = append(*b, op)
	return "~" + strconv.Itoa(len(p.locs)-1)
}

func (p *planner) plan() []Op {
	var offsets [numPhases]int
	n := 0
	for i := range p.buckets {
		offsets[i] = n
		n += len(p.buckets[i])
	}
	fix := func(s string) string {
		if !strings.HasPrefix(s, "~") {
			return s
		}
		k, _ := strconv.Atoi(s[1:])
		l := p.locs[k]
		return Ref(offsets[l.phase] + l.idx)
	}
	ops := make([]Op, 0, n)
	for _, b := range p.buckets {
		for _, op := range b {
			op.ID, op.Before = fix(op.ID), fix(op.Before)
			for i := range op.IDs {
				op.IDs[i] = fix(op.IDs[i])
			}
			ops = append(ops, op)
		}
	}
	return ops
}

func (p *planner) removeBatched(phase Phase, path string, ids []string, key string) {
	for len(ids) > 0 {
		n := min(len(ids), maxBatch)
		p.emit(Op{Phase: phase, Kind: Remove, Path: path, IDs: slices.Clone(ids[:n]), Key: key})
		ids = ids[n:]
	}
}

// row is a static filter row with its place in the global list.
type row struct {
	pos  int
	id   string
	item Item
}

func (p *planner) filter(filter []Item, w render.Table, lists map[string]*listInfo) {
	owned := map[string][]render.Rule{render.ChainIn: w.In, render.ChainOut: w.Out}
	wantedJump := map[string]render.Rule{}
	for _, j := range w.Jumps {
		wantedJump[j.Key] = j
	}

	var static []row
	for i, it := range filter {
		if isTrue(it["dynamic"]) || isTrue(it["builtin"]) {
			continue
		}
		static = append(static, row{pos: i, id: it[".id"], item: it})
	}

	removedEarly := map[string]bool{} // rows gone before PhaseChains
	var staleJumps, staleChain []string
	keptJump := map[string]row{}
	chainRows := map[string][]row{}
	for _, r := range static {
		chain := r.item["chain"]
		key, _, managed := render.ParseComment(r.item["comment"])
		if _, isOwned := owned[chain]; isOwned {
			chainRows[chain] = append(chainRows[chain], r)
			continue
		}
		if !managed {
			continue // someone else's rule: never touched
		}
		j, ok := wantedJump[key]
		if _, dup := keptJump[key]; ok && !dup && j.Chain() == chain {
			keptJump[key] = r
			continue
		}
		staleJumps = append(staleJumps, r.id)
		removedEarly[r.id] = true
	}
	p.removeBatched(PhaseJumpRemove, p.menu.Filter, staleJumps, "stale jumps")

	removedLate := map[string]bool{}
	for _, chain := range []string{render.ChainIn, render.ChainOut} {
		stale := p.ownedChain(chain, chainRows[chain], owned[chain], static, removedEarly, lists)
		if len(owned[chain]) > 0 {
			// The chain stays reachable while its stale rows wait for
			// removal: any of them that uses a list about to change is
			// pointed at a frozen copy of it first.
			gone := p.repoint(chainRows[chain], stale, lists)
			stale = slices.DeleteFunc(stale, func(id string) bool { return gone[id] })
		}
		for _, id := range stale {
			removedLate[id] = true
		}
		staleChain = append(staleChain, stale...)
	}
	p.removeBatched(PhaseChainRemove, p.menu.Filter, staleChain, "stale rows of owned chains")

	p.jumps(w.Jumps, keptJump, static, removedEarly, removedLate)
}

// repoint plans PhaseRepoint for the stale rows of a chain and returns the
// rows it already removes.
func (p *planner) repoint(rows []row, stale []string, lists map[string]*listInfo) map[string]bool {
	gone := map[string]bool{}
	isStale := map[string]bool{}
	for _, id := range stale {
		isStale[id] = true
	}
	for _, r := range rows {
		if !isStale[r.id] {
			continue
		}
		for _, prop := range []string{"src-address-list", "dst-address-list"} {
			name, neg := strings.CutPrefix(r.item[prop], "!")
			l := lists[name]
			if l == nil || !l.gains {
				continue // it matches what it matched before: nothing to protect
			}
			if !l.filled && !neg {
				// It matches nothing today; removing it now changes no
				// verdict and saves the copy.
				p.emit(Op{Phase: PhaseRepoint, Kind: Remove, Path: p.menu.Filter, IDs: []string{r.id}, Key: "leaving rule on an empty list"})
				gone[r.id] = true
				break
			}
			cp := p.freezeOld(name, l, lists)
			if neg {
				cp = "!" + cp
			}
			p.emit(Op{Phase: PhaseRepoint, Kind: Set, Path: p.menu.Filter, ID: r.id, Props: map[string]string{prop: cp}, Key: "leaving rule to " + cp})
		}
	}
	return gone
}

// ownedChain plans one owned chain and returns the ids of its stale rows.
func (p *planner) ownedChain(chain string, rows []row, want []render.Rule, static []row, removedEarly map[string]bool, lists map[string]*listInfo) []string {
	index := make(map[string]int, len(want))
	for i, r := range want {
		index[r.Key] = i
	}
	// Of several rows with one key (an interrupted add-then-remove, a copy
	// made by hand), the one that already matches is kept.
	kept := make(map[string]row, len(want))
	diffs := make(map[string]map[string]string, len(want))
	for _, r := range rows {
		key, _, managed := render.ParseComment(r.item["comment"])
		i, wanted := index[key]
		if !managed || !wanted {
			continue
		}
		d := Diff(r.item, want[i])
		if k, dup := kept[key]; dup && (diffs[k.id] == nil || d != nil) {
			continue
		}
		kept[key] = r
		diffs[r.id] = d
	}
	var keptSeq []row // kept rows in observed order
	var stale []row
	for _, r := range rows {
		key, _, _ := render.ParseComment(r.item["comment"])
		if k, ok := kept[key]; ok && k.id == r.id {
			keptSeq = append(keptSeq, r)
		} else {
			stale = append(stale, r)
		}
	}

	// Repairs first: they touch neither order nor other rows. A row whose
	// change may withdraw what the new policy accepts is replaced instead:
	// it goes stale and its key is added anew.
	content := content(lists)
	keptSeq = slices.DeleteFunc(keptSeq, func(r row) bool {
		key, _, _ := render.ParseComment(r.item["comment"])
		set := diffs[r.id]
		if set == nil {
			return false
		}
		phase := PhaseChains
		if onlyFromCopy(r.item, set) {
			// Left pointing at a copy by an interrupted apply: back to
			// the real list once it holds exactly the new content.
			phase = PhaseRepointBack
		} else if ph, ok := setPhase(r.item, want[index[key]], set, content, lists); ok {
			phase = ph
		} else {
			delete(kept, key)
			stale = append(stale, r)
			return true
		}
		p.emit(Op{Phase: phase, Kind: Set, Path: p.menu.Filter, ID: r.id, Props: set, Key: key})
		return false
	})
	slices.SortFunc(stale, func(a, b row) int { return a.pos - b.pos })
	staleIDs := make([]string, len(stale))
	for i, r := range stale {
		staleIDs[i] = r.id
	}

	// The rows on a longest increasing subsequence by wanted position stay.
	seq := make([]int, len(keptSeq))
	for i, r := range keptSeq {
		key, _, _ := render.ParseComment(r.item["comment"])
		seq[i] = index[key]
	}
	stay := map[string]bool{}
	for _, i := range lis(seq) {
		stay[keptSeq[i].id] = true
	}

	// The anchor after the chain: the first static row past the chain's last
	// row that still exists during PhaseChains; rows placed before it end
	// the chain. Empty means the end of the list.
	anchor := ""
	if len(rows) > 0 {
		last := rows[len(rows)-1].pos
		for _, r := range static {
			if r.pos > last && !removedEarly[r.id] {
				anchor = r.id
				break
			}
		}
	}
	// Walk the wanted chain from its end: every row lands just before the
	// row that must follow it, which is already in its final place.
	for i := len(want) - 1; i >= 0; i-- {
		wr := want[i]
		if r, ok := kept[wr.Key]; ok {
			if !stay[r.id] {
				p.emit(Op{Phase: PhaseChains, Kind: Move, Path: p.menu.Filter, ID: r.id, Before: anchor, Key: wr.Key})
			}
			anchor = r.id
			continue
		}
		props := addProps(wr)
		var back map[string]string
		for _, prop := range []string{"src-address-list", "dst-address-list"} {
			if l := lists[props[prop]]; l != nil && l.loses {
				// The list still holds entries this new rule must not
				// match until they are pruned: it starts on a copy of the
				// list's new content.
				back = map[string]string{prop: props[prop]}
				props[prop] = p.freezeNew(props[prop], l, lists)
			}
		}
		anchor = p.emit(Op{Phase: PhaseChains, Kind: Add, Path: p.menu.Filter, Props: props, Before: anchor, Key: wr.Key})
		if back != nil {
			p.emit(Op{Phase: PhaseRepointBack, Kind: Set, Path: p.menu.Filter, ID: anchor, Props: back, Key: wr.Key})
		}
	}
	return staleIDs
}

// jumps plans the jump rules: each must be, in order, among the first static
// rows of its chain.
func (p *planner) jumps(want []render.Rule, kept map[string]row, static []row, removedEarly, removedLate map[string]bool) {
	for _, j := range want {
		if r, ok := kept[j.Key]; ok {
			if set := Diff(r.item, j); len(set) > 0 {
				p.emit(Op{Phase: PhaseJumps, Kind: Set, Path: p.menu.Filter, ID: r.id, Props: set, Key: j.Key})
			}
		}
	}
	byChain := map[string][]render.Rule{}
	var chains []string
	for _, j := range want {
		if _, ok := byChain[j.Chain()]; !ok {
			chains = append(chains, j.Chain())
		}
		byChain[j.Chain()] = append(byChain[j.Chain()], j)
	}
	for _, chain := range chains {
		// The chain's static rows as they will be when the jumps are placed.
		var seq []string
		for _, r := range static {
			if r.item["chain"] == chain && !removedEarly[r.id] && !removedLate[r.id] {
				seq = append(seq, r.id)
			}
		}
		for pos, j := range byChain[chain] {
			r, exists := kept[j.Key]
			if exists && pos < len(seq) && seq[pos] == r.id {
				continue
			}
			before := ""
			if pos < len(seq) {
				before = seq[pos]
			}
			var id string
			if exists {
				p.emit(Op{Phase: PhaseJumps, Kind: Move, Path: p.menu.Filter, ID: r.id, Before: before, Key: j.Key})
				id = r.id
				seq = slices.DeleteFunc(seq, func(s string) bool { return s == id })
			} else {
				id = p.emit(Op{Phase: PhaseJumps, Kind: Add, Path: p.menu.Filter, Props: addProps(j), Before: before, Key: j.Key})
			}
			seq = slices.Insert(seq, min(pos, len(seq)), id)
		}
	}
}

// setPhase decides whether a kept accept row may be changed in place by
// set, and in which phase; ok is false when only an add of the new row and a
// remove of the old one keep every intermediate state between the policies
// (see the package doc, "Sets").
func setPhase(it Item, want render.Rule, set map[string]string, content listContent, lists map[string]*listInfo) (Phase, bool) {
	neutral := true
	for k := range set {
		neutral = neutral && (k == "comment" || k == "log")
	}
	if neutral || it["action"] != "accept" || want.Props["action"] != "accept" {
		// A new description or log flag changes no verdict. The frame of a
		// chain (its drops) only changes by hand, one write puts it back.
		return PhaseChains, true
	}
	// changes reports whether a list the row matches on changes in that
	// direction during the apply.
	changes := func(props map[string]string, gain bool) bool {
		if isTrue(props["disabled"]) {
			return false
		}
		for _, k := range [...]string{"src-address-list", "dst-address-list"} {
			if l := lists[props[k]]; l != nil && ((gain && l.gains) || (!gain && l.loses)) {
				return true
			}
		}
		return false
	}
	oldGains, newLoses := changes(it, true), changes(want.Props, false)
	old := func(at moment) match { return matchOf(it, content, at) }
	now := func(at moment) match { return matchOf(want.Props, content, at) }
	switch {
	case !oldGains && !newLoses && within(old(atUnion), now(atUnion)):
		return PhaseChains, true // widened while the lists hold old ∪ new
	case !newLoses && within(old(atStart), now(atStart)):
		return PhaseRepoint, true // widened before any list changes
	case !oldGains && !newLoses && within(now(atUnion), old(atUnion)):
		return PhaseChainRemove, true // narrowed once every new row is in
	case !oldGains && within(now(atEnd), old(atEnd)):
		return PhaseRepointBack, true // narrowed once the lists hold the new content
	}
	return 0, false
}

// onlyFromCopy reports whether set only moves a row's list matchers from a
// frozen copy to the real list.
func onlyFromCopy(it Item, set map[string]string) bool {
	for k := range set {
		if k != "src-address-list" && k != "dst-address-list" {
			return false
		}
		if !isCopy(strings.TrimPrefix(it[k], "!")) {
			return false
		}
	}
	return true
}

func addProps(r render.Rule) map[string]string {
	m := make(map[string]string, len(r.Props)+1)
	for k, v := range r.Props {
		m[k] = v
	}
	m["comment"] = r.Comment
	return m
}

// ignored are printed properties that are read-only or that the agent does
// not manage.
var ignored = map[string]bool{
	".id": true, "bytes": true, "packets": true, "invalid": true, "dynamic": true,
	"builtin": true, "disabled": true, "comment": true, "log-prefix": true, "log": true,
	".nextid": true, ".dead": true, ".about": true,
}

// Diff returns the set that turns the printed row it into the wanted rule
// (nil when they already match). Properties the rule does not have are
// unset with "!name".
func Diff(it Item, want render.Rule) map[string]string {
	var set map[string]string // allocated only for a row that differs
	put := func(k, v string) {
		if set == nil {
			set = map[string]string{}
		}
		set[k] = v
	}
	for k, v := range want.Props {
		if !equalProp(k, it[k], v) {
			put(k, v)
		}
	}
	for k, v := range it {
		if _, ok := want.Props[k]; ok || ignored[k] || v == "" {
			continue
		}
		put("!"+k, "")
	}
	if isTrue(it["disabled"]) {
		put("disabled", "no")
	}
	if isTrue(it["log"]) {
		put("log", "no")
	}
	if it["comment"] != want.Comment {
		put("comment", want.Comment)
	}
	return set
}

func equalProp(k, got, want string) bool {
	if got == want {
		return true
	}
	switch k {
	case "protocol":
		a, ok1 := render.ProtocolNumber(got)
		b, ok2 := render.ProtocolNumber(want)
		return ok1 && ok2 && a == b
	case "src-address", "dst-address":
		return render.Address(got) == render.Address(want)
	case "connection-state":
		return sameSet(got, want)
	}
	return false
}

func sameSet(a, b string) bool {
	x, y := strings.Split(a, ","), strings.Split(b, ",")
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func isTrue(s string) bool { return s == "true" || s == "yes" }

// lis returns the indices of a longest strictly increasing subsequence of
// seq, in order (patience sorting, O(n log n)).
func lis(seq []int) []int {
	if len(seq) == 0 {
		return nil
	}
	tails := []int{} // index into seq of the smallest tail of each length
	prev := make([]int, len(seq))
	for i, v := range seq {
		j := sort.Search(len(tails), func(k int) bool { return seq[tails[k]] >= v })
		if j > 0 {
			prev[i] = tails[j-1]
		} else {
			prev[i] = -1
		}
		if j == len(tails) {
			tails = append(tails, i)
		} else {
			tails[j] = i
		}
	}
	out := make([]int, len(tails))
	for i, k := len(tails)-1, tails[len(tails)-1]; i >= 0; i, k = i-1, prev[k] {
		out[i] = k
	}
	return out
}
