// Package compile turns an organisation's policy (security groups and prefix
// lists, each attached to sites) into the DesiredState document of every
// site. It is pure: no storage, no network, no clock, so the control plane can
// recompile on every write and compare hashes to decide what to publish.
//
// # What a site gets
//
// A site's document carries the groups attached to it, every prefix list
// those groups' rules reference, and every prefix list attached to it
// directly (DESIGN.md section 4). A site that has nothing left still gets a
// document, with empty groups and lists, so its agent removes what it
// enforced: an empty MQTT payload is never used to mean "no policy".
//
// # Revisions
//
// Compile leaves Epoch and Revision empty. AssignRevision fills them in from
// the site's previous (revision, hash): the revision grows by one only when
// the content hash changes, so recompiling unchanged policy publishes nothing
// new and agents see no spurious revisions. Revisioner is the
// controlplane.Revisioner that does this inside the store's write
// transaction and keeps (revision, hash) per site there; Stamp gives a
// compiled document the stored revision when it is published.
//
// # Schema
//
// Each document is stamped with the lowest schema that carries its content
// (protocol's Versioning): schema 1 while every CIDR it holds is IPv4,
// schema 2 once one is IPv6. The hash covers content only, so an
// IPv4-only document is the same, byte for byte, as before schema 2 existed.
//
// # Which sites
//
// The caller names the sites to compile (CompileSites): the store knows
// which sites a write affects (old and new sites of the resource, sites of
// groups that use a changed list) and reads only what those sites hold
// (controlplane.PolicyTx.Policy), so a write's cost follows its sites.
package compile

import (
	"slices"
	"strings"

	"github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// Policy is one organisation's whole policy, as the store holds it (the
// domain types of package controlplane). The
// compiler reads only ids, names, sites, rules and CIDRs; descriptions and
// sync bookkeeping never reach a router.
type Policy struct {
	Groups      []controlplane.SecurityGroup
	PrefixLists []controlplane.PrefixList
}

// index is the policy arranged for per-site lookups.
type index struct {
	groups     map[string]*protocol.SecurityGroup // canonical, shared read-only
	lists      map[string]*protocol.PrefixList    // canonical, shared read-only
	listsOf    map[string][]string                // group id -> referenced list ids
	siteGroups map[string][]string
	siteLists  map[string][]string // directly attached
}

func newIndex(p Policy) *index {
	ix := &index{
		groups:     make(map[string]*protocol.SecurityGroup, len(p.Groups)),
		lists:      make(map[string]*protocol.PrefixList, len(p.PrefixLists)),
		listsOf:    make(map[string][]string, len(p.Groups)),
		siteGroups: make(map[string][]string),
		siteLists:  make(map[string][]string),
	}
	for _, l := range p.PrefixLists {
		pl := &protocol.PrefixList{ID: l.ID, Name: l.Name, CIDRs: make([]string, 0, len(l.Prefixes))}
		for _, px := range l.Prefixes {
			pl.CIDRs = append(pl.CIDRs, px.CIDR)
		}
		slices.Sort(pl.CIDRs)
		pl.CIDRs = slices.Compact(pl.CIDRs)
		ix.lists[l.ID] = pl
		for _, s := range l.Sites {
			ix.siteLists[s] = append(ix.siteLists[s], l.ID)
		}
	}
	for _, g := range p.Groups {
		sg := &protocol.SecurityGroup{ID: g.ID, Name: g.Name, Rules: make([]protocol.Rule, 0, len(g.Rules))}
		for _, r := range g.Rules {
			sg.Rules = append(sg.Rules, protocol.Rule{
				ID: r.ID, Direction: r.Direction, Order: r.Order, Protocol: r.Protocol,
				Port: r.Port, Address: r.Address, Description: r.Description,
			})
		}
		slices.SortFunc(sg.Rules, func(a, b protocol.Rule) int {
			if a.Order != b.Order {
				return a.Order - b.Order
			}
			return strings.Compare(a.ID, b.ID)
		})
		ix.groups[g.ID] = sg
		ix.listsOf[g.ID] = g.ReferencedPrefixLists()
		for _, s := range g.Sites {
			ix.siteGroups[s] = append(ix.siteGroups[s], g.ID)
		}
	}
	return ix
}

// members returns the sorted, deduplicated group and list ids a site gets.
// A referenced list that does not exist is left out; the API refuses such
// references, and the agent would refuse the document (Validate) if it were
// carried as a dangling reference, so the document stays self-consistent.
func (ix *index) members(site string) (groups, lists []string) {
	groups = slices.Clone(ix.siteGroups[site])
	slices.Sort(groups)
	groups = slices.Compact(groups)
	lists = slices.Clone(ix.siteLists[site])
	for _, g := range groups {
		lists = append(lists, ix.listsOf[g]...)
	}
	slices.Sort(lists)
	lists = slices.Compact(lists)
	lists = slices.DeleteFunc(lists, func(id string) bool { return ix.lists[id] == nil })
	return groups, lists
}

// content is one distinct set of groups and lists, compiled once and shared
// by every site that has exactly that set.
type content struct {
	groups []protocol.SecurityGroup
	lists  []protocol.PrefixList
	hash   string
	// schema is the lowest that carries the content (protocol
	// NeededSchema): 1 unless a CIDR is IPv6, so sites whose policy is
	// IPv4 only keep working with agents that predate IPv6.
	schema int
}

func (ix *index) content(groups, lists []string, memo map[string]*content) *content {
	key := strings.Join(groups, ",") + "|" + strings.Join(lists, ",")
	if c, ok := memo[key]; ok {
		return c
	}
	c := &content{
		groups: make([]protocol.SecurityGroup, 0, len(groups)),
		lists:  make([]protocol.PrefixList, 0, len(lists)),
	}
	for _, id := range groups {
		c.groups = append(c.groups, *ix.groups[id])
	}
	for _, id := range lists {
		c.lists = append(c.lists, *ix.lists[id])
	}
	d := protocol.DesiredState{SecurityGroups: c.groups, PrefixLists: c.lists}
	c.hash = d.ContentHash()
	c.schema = d.NeededSchema()
	memo[key] = c
	return c
}

// CompileSites returns the documents of the given sites only, including
// sites the policy no longer attaches anything to: those get an empty
// document, which tells their agent to remove everything it manages.
func CompileSites(org string, p Policy, sites []string) map[string]protocol.DesiredState {
	ix := newIndex(p)
	memo := make(map[string]*content)
	out := make(map[string]protocol.DesiredState, len(sites))
	for _, site := range sites {
		g, l := ix.members(site)
		c := ix.content(g, l, memo)
		out[site] = protocol.DesiredState{
			Schema:         c.schema,
			OrgID:          org,
			SiteID:         site,
			Hash:           c.hash,
			SecurityGroups: c.groups,
			PrefixLists:    c.lists,
		}
	}
	return out
}

// Revision is what the control plane remembers of the last document it
// assigned to a site.
type Revision struct {
	Revision uint64
	Hash     string
}

// AssignRevision sets d's Epoch and Revision given the site's previous
// revision (zero if it never had one) and reports whether the content is new.
// The revision grows by one only when the content hash differs from prev's;
// otherwise d keeps prev's revision and republishing it is harmless.
func AssignRevision(prev Revision, d *protocol.DesiredState, epoch string) (changed bool) {
	d.Epoch = epoch
	if prev.Revision > 0 && prev.Hash == d.Hash {
		d.Revision = prev.Revision
		return false
	}
	d.Revision = prev.Revision + 1
	return true
}
