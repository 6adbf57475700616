package protocol_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/rampart-fw/rampart/protocol"
)

// randomDoc is a sealed document of random rules and lists, IPv4, IPv6 or
// mixed, with protocols that exist in one family or both.
func randomDoc(rng *rand.Rand) protocol.DesiredState {
	cidr := func() string {
		if rng.IntN(2) == 0 {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(rng.IntN(224)), byte(rng.IntN(256)), 0, 0}), 16).String()
		}
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(rng.IntN(256))}), 40).String()
	}
	d := protocol.DesiredState{OrgID: "org_demo", SiteID: "site_hq", Epoch: "e", Revision: 1}
	for i := range rng.IntN(4) {
		pl := protocol.PrefixList{ID: fmt.Sprintf("prfx_lst_%d", i), Name: "L", CIDRs: []string{}}
		for range rng.IntN(4) {
			pl.CIDRs = append(pl.CIDRs, cidr())
		}
		d.PrefixLists = append(d.PrefixLists, pl)
	}
	g := protocol.SecurityGroup{ID: "sec_grp_1", Name: "G"}
	for i := range rng.IntN(8) {
		r := protocol.Rule{ID: fmt.Sprintf("fltr_%d", i), Direction: protocol.Inbound, Order: i + 1,
			Protocol: []int{0, 1, 6, 17, 58}[rng.IntN(5)], Address: cidr()}
		if len(d.PrefixLists) > 0 && rng.IntN(2) == 0 {
			r.Address = d.PrefixLists[rng.IntN(len(d.PrefixLists))].ID
		}
		g.Rules = append(g.Rules, r)
	}
	d.SecurityGroups = []protocol.SecurityGroup{g}
	d.Seal()
	return d
}

// TestFamilySplitProperties: over generated documents, the split by
// family sends every CIDR to exactly its own family's part, and every rule
// to the parts of the families it applies in, in order; the schema is 2
// exactly when an IPv6 CIDR is present; an agent reading schema 1 refuses
// exactly those documents, with a SchemaTooNewError.
func TestFamilySplitProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 2026))
	for n := range 2000 {
		d := randomDoc(rng)
		if err := d.Validate("org_demo", "site_hq"); err != nil {
			t.Fatalf("doc %d: %v", n, err)
		}
		has6 := false
		parts := map[protocol.Family]protocol.DesiredState{protocol.IPv4: d.ForFamily(protocol.IPv4), protocol.IPv6: d.ForFamily(protocol.IPv6)}
		for _, pl := range d.PrefixLists {
			for _, c := range pl.CIDRs {
				f := protocol.CIDRFamily(c)
				has6 = has6 || f == protocol.IPv6
				for pf, part := range parts {
					i := slices.IndexFunc(part.PrefixLists, func(p protocol.PrefixList) bool { return p.ID == pl.ID })
					in := i >= 0 && slices.Contains(part.PrefixLists[i].CIDRs, c)
					if in != (pf == f) {
						t.Fatalf("doc %d: %s of %s in the %v part: %v", n, c, pl.ID, pf, in)
					}
				}
			}
		}
		lists := d.ListFamilies()
		for _, r := range d.SecurityGroups[0].Rules {
			has6 = has6 || protocol.CIDRFamily(r.Address) == protocol.IPv6
			fams := r.Families(lists)
			if fams&^protocol.ProtocolFamilies(r.Protocol) != 0 {
				t.Fatalf("doc %d: rule %+v applies in %v, outside its protocol's families", n, r, fams)
			}
			for pf, part := range parts {
				if in := slices.Contains(part.SecurityGroups[0].Rules, r); in != fams.Has(pf) {
					t.Fatalf("doc %d: rule %+v (families %v) in the %v part: %v", n, r, fams, pf, in)
				}
			}
		}
		for pf, part := range parts {
			rules := part.SecurityGroups[0].Rules
			if !slices.IsSortedFunc(rules, func(a, b protocol.Rule) int { return a.Order - b.Order }) {
				t.Fatalf("doc %d: the %v part reordered the rules", n, pf)
			}
		}
		if want := map[bool]int{false: 1, true: 2}[has6]; d.Schema != want {
			t.Fatalf("doc %d: schema %d, want %d", n, d.Schema, want)
		}
		var tooNew *protocol.SchemaTooNewError
		if err := d.ValidateMax("org_demo", "site_hq", 1); (err != nil) != has6 || err != nil && !errors.As(err, &tooNew) {
			t.Fatalf("doc %d (IPv6 %v): an agent reading schema 1 says %v", n, has6, err)
		}
	}
}
