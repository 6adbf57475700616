package controlplane

import (
	"slices"
	"strings"

	"github.com/segmentio/ksuid"
)

// This file builds resources from validated writes: the ids a write
// keeps and the ids it draws.

// NewSecurityGroup builds a group from a validated write: rules sorted by
// order (stably), each keeping the id of a rule of prev that matches the
// same traffic (KeepRuleIDs), the others with new ids; no status yet. prev
// is the stored group's rules for a replace, nil for a create.
func (w *SecurityGroupWrite) NewSecurityGroup(org, id string, prev []FilterRule) SecurityGroup {
	g := SecurityGroup{ID: id, OrgID: org, Name: w.Name, Sites: slices.Clone(w.Sites), Rules: make([]FilterRule, len(w.Rules))}
	if w.Description != nil {
		g.Description = *w.Description
	}
	if g.Sites == nil {
		g.Sites = []string{}
	}
	for i, r := range w.Rules {
		g.Rules[i] = FilterRule{Direction: r.Direction, Order: r.Order, Protocol: r.Protocol,
			Port: r.Port, Address: r.Address, Description: r.Description}
	}
	slices.SortStableFunc(g.Rules, func(a, b FilterRule) int { return a.Order - b.Order })
	KeepRuleIDs(prev, g.Rules)
	var ids func() string
	for i := range g.Rules {
		if g.Rules[i].ID == "" {
			if ids == nil {
				ids = newIDs(FilterRuleIDPrefix)
			}
			g.Rules[i].ID = ids()
		}
	}
	return g
}

// newIDs returns a generator of ids for one write: a KSUID sequence from
// one random seed, so a 250-rule group costs one random read instead of 250
// (a sequence holds 65536 ids, far more than a write needs).
func newIDs(prefix string) func() string {
	seq := ksuid.Sequence{Seed: ksuid.New()}
	return func() string {
		id, err := seq.Next()
		if err != nil { // exhausted: start a new seed
			seq = ksuid.Sequence{Seed: ksuid.New()}
			id, _ = seq.Next()
		}
		return prefix + id.String()
	}
}

// matchKey is what FilterRule.SameMatch compares.
type matchKey struct {
	direction string
	protocol  int
	port      string
	address   string
}

// KeepRuleIDs gives each rule of next the id of the first unused rule of
// prev (in prev's order) that matches the same traffic
// (FilterRule.SameMatch), so a PUT that leaves a rule's direction,
// protocol, port and address alone keeps its id. It takes linear time:
// per match key, prev's rules are chained in order and taken from the
// front.
func KeepRuleIDs(prev, next []FilterRule) {
	// The common replace leaves most rules where they were: while rule i
	// of both matches, every earlier rule of prev is taken, so prev[i] is
	// the first unused match of next[i].
	i := 0
	for ; i < len(prev) && i < len(next) && prev[i].SameMatch(next[i]); i++ {
		next[i].ID = prev[i].ID
	}
	prev, next = prev[i:], next[i:]
	if len(prev) == 0 || len(next) == 0 {
		return
	}
	key := func(r *FilterRule) matchKey { return matchKey{r.Direction, r.Protocol, r.Port, r.Address} }
	head := make(map[matchKey]int, len(prev))
	chain := make([]int, len(prev)) // next prev rule with the same key, or -1
	for j := len(prev) - 1; j >= 0; j-- {
		k := key(&prev[j])
		if h, ok := head[k]; ok {
			chain[j] = h
		} else {
			chain[j] = -1
		}
		head[k] = j
	}
	for i := range next {
		k := key(&next[i])
		j, ok := head[k]
		if !ok || j < 0 {
			continue
		}
		next[i].ID = prev[j].ID
		head[k] = chain[j]
	}
}

// NewPrefixList builds a prefix list from a validated write: each prefix
// keeps the id of the prefix of prev with the same CIDR, the others get
// new ids. prev is the stored list's prefixes for a replace, nil for a
// create.
func (w *PrefixListWrite) NewPrefixList(org, id string, prev []Prefix) PrefixList {
	l := PrefixList{ID: id, OrgID: org, Name: w.Name, Sites: slices.Clone(w.Sites), Prefixes: make([]Prefix, len(w.Prefixes))}
	if w.Description != nil {
		l.Description = *w.Description
	}
	if l.Sites == nil {
		l.Sites = []string{}
	}
	kept := make(map[string]string, len(prev))
	for _, p := range prev {
		kept[p.CIDR] = p.ID
	}
	ids := newIDs(PrefixIDPrefix)
	for i, p := range w.Prefixes {
		pid, ok := kept[p.CIDR]
		if !ok {
			pid = ids()
		}
		l.Prefixes[i] = Prefix{ID: pid, CIDR: p.CIDR, Description: p.Description}
	}
	return l
}

// CheckPrefixLists answers UnknownPrefixList for the first rule whose
// address names a prefix list that exists does not know, nil when every
// one is known. Each store asks its own storage, in the write's
// transaction; the rule and its error are the domain's.
func (g *SecurityGroup) CheckPrefixLists(exists func(id string) bool) error {
	for i, r := range g.Rules {
		if strings.HasPrefix(r.Address, PrefixListIDPrefix) && !exists(r.Address) {
			return UnknownPrefixList(i, r.Address)
		}
	}
	return nil
}

// ReferencedPrefixLists returns the prefix list ids a group's rules use,
// sorted and unique.
func (g *SecurityGroup) ReferencedPrefixLists() []string {
	var ids []string
	for _, r := range g.Rules {
		if strings.HasPrefix(r.Address, PrefixListIDPrefix) {
			ids = append(ids, r.Address)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
