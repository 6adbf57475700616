package reconcile

import (
	"maps"
	"slices"
	"strings"

	"github.com/rampart-fw/rampart/agent/render"
)

// listInfo is what the planner knows of one owned address list.
type listInfo struct {
	obs     observedRange  // its observed entries, sorted by address
	want    []render.Entry // wanted entries, sorted by address
	filled  bool           // it holds an enabled entry now
	gains   bool           // wanted has addresses no enabled static entry has
	loses   bool           // an enabled entry has an address wanted lacks
	oldCopy string         // set once a copy of the present content was planned
	newCopy string         // set once a copy of the wanted content was planned

	content [3][]span // what the list holds at each moment, once computed
	known   [3]bool
}

// now returns the addresses of the list's enabled entries (static ones
// only, or dynamic ones too: they match like static ones), sorted.
func (l *listInfo) now(withDynamic bool) []string {
	var out []string
	r := l.obs
	for k := r.from; k < r.to; k++ {
		i := k
		if r.order != nil {
			i = int(r.order[k])
		}
		e := &r.addrs[i]
		if !e.Disabled && (withDynamic || !e.Dynamic) {
			if a := render.Address(e.Address); len(out) == 0 || out[len(out)-1] != a {
				out = append(out, a)
			}
		}
	}
	return out
}

// observedRange is where a list's entries are in the observation: walk
// positions from..to, through order when the observation was not sorted.
type observedRange struct {
	addrs    []Entry
	order    []int32
	from, to int
}

func (l *listInfo) wantedAddrs() []string {
	out := make([]string, len(l.want))
	for i, e := range l.want {
		out[i] = e.Address
	}
	return out
}

// at returns what the list holds at a moment of the apply: before any list
// write, once the additions are in (old ∪ new), after the pruning (new).
func (l *listInfo) at(m moment) []span {
	if !l.known[m] {
		var addrs []string
		if m != atEnd {
			addrs = l.now(true)
		}
		if m != atStart {
			addrs = append(addrs, l.wantedAddrs()...)
		}
		s, _ := parseAddrs(addrs)
		if s == nil {
			s = []span{}
		}
		l.content[m], l.known[m] = s, true
	}
	return l.content[m]
}

// Frozen copies of list rampart-X live only during an apply (see
// PhaseListCopy): rampart-old-X holds its content before the apply,
// rampart-new-X its content after.
const (
	CopyPrefix    = render.ListPrefix + "old-"
	NewCopyPrefix = render.ListPrefix + "new-"
)

func isCopy(list string) bool {
	return strings.HasPrefix(list, CopyPrefix) || strings.HasPrefix(list, NewCopyPrefix)
}

// observed is an entry the planner may touch, keyed as the wanted entries
// are.
type observed struct {
	list, addr string
	pos        int // in the router's order
	e          *Entry
}

func compareEntries(a, b render.Entry) int {
	if c := strings.Compare(a.List, b.List); c != 0 {
		return c
	}
	return strings.Compare(a.Address, b.Address)
}

// addressLists plans the entries of the managed and owned lists by walking
// the observed and the wanted entries side by side, both sorted by list and
// address: one comparison per entry, no map of ten thousand keys (the plan
// runs twice per apply, before the writes and on the read-back).
func (p *planner) addressLists(addrs []Entry, want []render.Entry) map[string]*listInfo {
	if !slices.IsSortedFunc(want, compareEntries) {
		want = slices.Clone(want)
		slices.SortFunc(want, compareEntries)
	}
	lists := map[string]*listInfo{}
	var cur *listInfo
	curName := ""
	info := func(name string) *listInfo {
		if cur != nil && curName == name {
			return cur
		}
		l := lists[name]
		if l == nil {
			l = &listInfo{}
			lists[name] = l
		}
		cur, curName = l, name
		return l
	}
	for i := 0; i < len(want); {
		j := i + 1
		for j < len(want) && want[j].List == want[i].List {
			j++
		}
		info(want[i].List).want = want[i:j:j]
		i = j
	}

	// The agent keeps its observation sorted (SortEntries), so this walks
	// it in order and allocates nothing per entry; otherwise it sorts
	// indices first.
	var order []int32
	key := func(i int) (string, string) { return addrs[i].List, render.Address(addrs[i].Address) }
	sorted := true
	for i := 1; i < len(addrs) && sorted; i++ {
		l0, a0 := key(i - 1)
		l1, a1 := key(i)
		sorted = l0 < l1 || (l0 == l1 && a0 <= a1)
	}
	if !sorted {
		order = make([]int32, len(addrs))
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortStableFunc(order, func(x, y int32) int {
			lx, ax := key(int(x))
			ly, ay := key(int(y))
			if c := strings.Compare(lx, ly); c != 0 {
				return c
			}
			return strings.Compare(ax, ay)
		})
	}
	// next returns the next observed entry that is ours.
	k := 0
	next := func() (observed, bool) {
		for ; k < len(addrs); k++ {
			i := k
			if order != nil {
				i = int(order[k])
			}
			it := &addrs[i]
			if !strings.HasPrefix(it.List, render.ListPrefix) && !strings.HasPrefix(it.Comment, render.CommentPrefix) {
				continue // not ours
			}
			k++
			return observed{it.List, render.Address(it.Address), i, it}, true
		}
		return observed{}, false
	}

	var prune, stale []observed
	// seen records an observed entry in its list.
	seen := func(o observed) *listInfo {
		if !strings.HasPrefix(o.list, render.ListPrefix) {
			return lists[o.list] // a managed entry in someone else's list
		}
		l := info(o.list)
		if l.obs.addrs == nil {
			l.obs = observedRange{addrs: addrs, order: order, from: k - 1}
		}
		l.obs.to = k
		l.filled = l.filled || !o.e.Disabled
		return l
	}
	head, ok := next()
	j := 0
	for ok || j < len(want) {
		c := 0
		switch {
		case !ok:
			c = 1
		case j == len(want):
			c = -1
		default:
			if c = strings.Compare(head.list, want[j].List); c == 0 {
				c = strings.Compare(head.addr, want[j].Address)
			}
		}
		switch {
		case c < 0: // observed, not wanted
			o := head
			l := seen(o)
			owned := strings.HasPrefix(o.list, render.ListPrefix)
			if (l != nil && l.want != nil) || (owned && !isCopy(o.list)) {
				prune = append(prune, o)
			} else {
				stale = append(stale, o)
			}
			if l != nil && !o.e.Disabled {
				l.loses = true
			}
			head, ok = next()
		case c > 0: // wanted, absent
			e := &want[j]
			info(e.List).gains = true
			// Entry instead of Props: a first apply plans one op per entry,
			// and tens of thousands of small maps would dominate the
			// agent's memory.
			p.emit(Op{Phase: PhaseListAdd, Kind: Add, Path: p.menu.AddressList, Entry: e})
			j++
		default: // wanted and observed, maybe several times
			e := &want[j]
			kept, blocked, enabled := false, false, false
			for ; ok && head.list == e.List && head.addr == e.Address; head, ok = next() {
				o := head
				seen(o)
				switch {
				case kept:
					prune = append(prune, o)
				case o.e.Dynamic:
					// A dynamic entry (one with a timeout) blocks a static
					// one with the same address; it is pruned and the
					// static entry added after it.
					prune = append(prune, o)
					blocked = true
				default:
					kept, enabled = true, !o.e.Disabled
					if o.e.Disabled || o.e.Comment != e.Comment {
						set := map[string]string{}
						if o.e.Disabled {
							set["disabled"] = "no"
						}
						if o.e.Comment != e.Comment {
							set["comment"] = e.Comment
						}
						p.emit(Op{Phase: PhaseListAdd, Kind: Set, Path: p.menu.AddressList, ID: o.e.ID, Props: set, Key: e.List + " " + e.Address})
					}
				}
			}
			if !enabled {
				info(e.List).gains = true
			}
			if !kept {
				phase := PhaseListAdd
				if blocked {
					phase = PhaseListReAdd
				}
				p.emit(Op{Phase: phase, Kind: Add, Path: p.menu.AddressList, Entry: e})
			}
			j++
		}
	}
	p.removeBatched(PhaseListPrune, p.menu.AddressList, inRouterOrder(prune), "stale entries of rampart lists")
	p.removeBatched(PhaseListRemove, p.menu.AddressList, inRouterOrder(stale), "stale address-list entries")
	return lists
}

func inRouterOrder(es []observed) []string {
	slices.SortFunc(es, func(a, b observed) int { return a.pos - b.pos })
	ids := make([]string, len(es))
	for i, o := range es {
		ids[i] = o.e.ID
	}
	return ids
}

// copyList plans list name (the content addrs) built from scratch during
// this apply and removed at its end, reusing entries an interrupted apply
// left; entries of an old copy that do not belong are removed at the end
// too.
func (p *planner) copyList(name string, addrs []string, lists map[string]*listInfo) {
	have := map[string]bool{}
	if c := lists[name]; c != nil {
		for _, a := range c.now(false) {
			have[a] = true
		}
	}
	var ids []string
	for _, a := range addrs {
		if have[a] {
			continue
		}
		ids = append(ids, p.emit(Op{Phase: PhaseListCopy, Kind: Add, Path: p.menu.AddressList,
			Props: map[string]string{"list": name, "address": a, "comment": render.CommentPrefix + "copy"}, Key: name + " " + a}))
	}
	p.removeBatched(PhaseListRemove, p.menu.AddressList, ids, "frozen list copy")
}

// freezeOld returns a copy of list name as it is, for the rules that leave:
// they keep matching what they matched while the list gains entries.
func (p *planner) freezeOld(name string, l *listInfo, lists map[string]*listInfo) string {
	if l.oldCopy == "" {
		l.oldCopy = CopyPrefix + strings.TrimPrefix(name, render.ListPrefix)
		addrs := l.now(true)
		slices.Sort(addrs)
		p.copyList(l.oldCopy, slices.Compact(addrs), lists)
	}
	return l.oldCopy
}

// freezeNew returns a copy of list name as it will be, for the rules that
// arrive: they match only the new content while the list still holds
// entries that are leaving.
func (p *planner) freezeNew(name string, l *listInfo, lists map[string]*listInfo) string {
	if l.newCopy == "" {
		l.newCopy = NewCopyPrefix + strings.TrimPrefix(name, render.ListPrefix)
		p.copyList(l.newCopy, l.wantedAddrs(), lists)
	}
	return l.newCopy
}

// content is the listContent of the planner's lists: an owned list's
// content at each moment; copies and other lists are not modelled.
func content(lists map[string]*listInfo) listContent {
	return func(name string, at moment) ([]span, bool) {
		if !strings.HasPrefix(name, render.ListPrefix) || isCopy(name) {
			return nil, false
		}
		l := lists[name]
		if l == nil {
			return []span{}, true // no entry now or later: matches nothing
		}
		return l.at(at), true
	}
}

// WrittenLists returns the address lists of menu a plan writes to, sorted:
// after the writes only these need reading back (addrs is the observation
// of that menu the plan was made from; a remove or set names entries by
// id).
func WrittenLists(ops []Op, menu string, addrs []Entry) []string {
	lists := map[string]bool{}
	ids := map[string]bool{}
	for _, op := range ops {
		if op.Path != menu {
			continue
		}
		if op.Entry != nil {
			lists[op.Entry.List] = true
		} else if l := op.Props["list"]; l != "" {
			lists[l] = true
		}
		if op.ID != "" {
			ids[op.ID] = true
		}
		for _, id := range op.IDs {
			ids[id] = true // a Ref names an add above, whose list is counted
		}
	}
	if len(ids) > 0 {
		for _, e := range addrs {
			if ids[e.ID] {
				lists[e.List] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(lists))
}

// SortEntries sorts entries by list and address, keeping the router's order
// among equal ones: Plan reads a sorted observation in one pass.
func SortEntries(es []Entry) {
	slices.SortStableFunc(es, compareObserved)
}

func compareObserved(a, b Entry) int {
	if c := strings.Compare(a.List, b.List); c != 0 {
		return c
	}
	return strings.Compare(a.Address, b.Address)
}

// ReplaceLists returns the sorted observation es with the entries of lists
// (sorted names) replaced by read, the lists' entries as just read back.
// It reuses es's array.
func ReplaceLists(es []Entry, lists []string, read []Entry) []Entry {
	es = slices.DeleteFunc(es, func(e Entry) bool {
		_, found := slices.BinarySearch(lists, e.List)
		return found
	})
	SortEntries(read)
	for len(read) > 0 {
		n := 1
		for n < len(read) && read[n].List == read[0].List {
			n++
		}
		at, _ := slices.BinarySearchFunc(es, read[0], func(e, t Entry) int { return strings.Compare(e.List, t.List) })
		es = slices.Insert(es, at, read[:n]...)
		read = read[n:]
	}
	return es
}
