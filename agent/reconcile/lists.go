package reconcile

import (
	"slices"
	"strings"

	"github.com/rampart-fw/rampart/agent/render"
)

// listInfo is what the planner knows of one owned address list.
type listInfo struct {
	static  []string       // enabled static addresses as observed, sorted
	dynamic []string       // enabled dynamic addresses as observed (they match too)
	want    []render.Entry // wanted entries, sorted by address
	gains   bool           // wanted has addresses static lacks
	loses   bool           // static or dynamic has addresses wanted lacks
	oldCopy string         // set once a copy of the present content was planned
	newCopy string         // set once a copy of the wanted content was planned

	content [3][]span // what the list holds at each moment, once computed
	known   [3]bool
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
			addrs = slices.Concat(l.static, l.dynamic)
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

// observedEntry is an entry the planner may touch, keyed as the wanted
// entries are.
type observedEntry struct {
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

	obs := make([]observedEntry, 0, len(addrs))
	for i := range addrs {
		it := &addrs[i]
		if !strings.HasPrefix(it.List, render.ListPrefix) && !strings.HasPrefix(it.Comment, render.CommentPrefix) {
			continue // not ours
		}
		obs = append(obs, observedEntry{it.List, render.Address(it.Address), i, it})
	}
	slices.SortFunc(obs, func(a, b observedEntry) int {
		if c := strings.Compare(a.list, b.list); c != 0 {
			return c
		}
		if c := strings.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		return a.pos - b.pos
	})

	var prune, stale []observedEntry
	// seen records an observed entry's address in its list's content.
	seen := func(o observedEntry) *listInfo {
		if !strings.HasPrefix(o.list, render.ListPrefix) {
			return lists[o.list] // a managed entry in someone else's list
		}
		l := info(o.list)
		if !o.e.Disabled {
			if o.e.Dynamic {
				l.dynamic = append(l.dynamic, o.addr)
			} else if n := len(l.static); n == 0 || l.static[n-1] != o.addr {
				l.static = append(l.static, o.addr)
			}
		}
		return l
	}
	i, j := 0, 0
	for i < len(obs) || j < len(want) {
		c := 0
		switch {
		case i == len(obs):
			c = 1
		case j == len(want):
			c = -1
		default:
			if c = strings.Compare(obs[i].list, want[j].List); c == 0 {
				c = strings.Compare(obs[i].addr, want[j].Address)
			}
		}
		switch {
		case c < 0: // observed, not wanted
			o := obs[i]
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
			i++
		case c > 0: // wanted, absent
			e := &want[j]
			info(e.List).gains = true
			// Entry instead of Props: a first apply plans one op per entry,
			// and tens of thousands of small maps would dominate the
			// agent's memory.
			p.emit(Op{Phase: PhaseListAdd, Kind: Add, Path: AddressListPath, Entry: e})
			j++
		default: // wanted and observed, maybe several times
			e := &want[j]
			kept, blocked, enabled := false, false, false
			for ; i < len(obs) && obs[i].list == e.List && obs[i].addr == e.Address; i++ {
				o := obs[i]
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
					set := map[string]string{}
					if o.e.Disabled {
						set["disabled"] = "no"
					}
					if o.e.Comment != e.Comment {
						set["comment"] = e.Comment
					}
					if len(set) > 0 {
						p.emit(Op{Phase: PhaseListAdd, Kind: Set, Path: AddressListPath, ID: o.e.ID, Props: set, Key: e.List + " " + e.Address})
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
				p.emit(Op{Phase: phase, Kind: Add, Path: AddressListPath, Entry: e})
			}
			j++
		}
	}
	p.removeBatched(PhaseListPrune, AddressListPath, inRouterOrder(prune), "stale entries of rampart lists")
	p.removeBatched(PhaseListRemove, AddressListPath, inRouterOrder(stale), "stale address-list entries")
	return lists
}

func inRouterOrder(es []observedEntry) []string {
	slices.SortFunc(es, func(a, b observedEntry) int { return a.pos - b.pos })
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
		for _, a := range c.static {
			have[a] = true
		}
	}
	var ids []string
	for _, a := range addrs {
		if have[a] {
			continue
		}
		ids = append(ids, p.emit(Op{Phase: PhaseListCopy, Kind: Add, Path: AddressListPath,
			Props: map[string]string{"list": name, "address": a, "comment": render.CommentPrefix + "copy"}, Key: name + " " + a}))
	}
	p.removeBatched(PhaseListRemove, AddressListPath, ids, "frozen list copy")
}

// freezeOld returns a copy of list name as it is, for the rules that leave:
// they keep matching what they matched while the list gains entries.
func (p *planner) freezeOld(name string, l *listInfo, lists map[string]*listInfo) string {
	if l.oldCopy == "" {
		l.oldCopy = CopyPrefix + strings.TrimPrefix(name, render.ListPrefix)
		addrs := slices.Concat(l.static, l.dynamic)
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
