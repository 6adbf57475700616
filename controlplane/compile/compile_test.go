package compile

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

const (
	office = "prfx_lst_office"
	vpn    = "prfx_lst_vpn"
	lan    = "prfx_lst_lan"
)

var (
	httpsRule = protocol.Rule{ID: "fltr_a", Direction: protocol.Inbound, Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "https"}
	sshRule   = protocol.Rule{ID: "fltr_b", Direction: protocol.Inbound, Order: 30, Protocol: 6, Port: "22", Address: office, Description: "ssh"}
	dnsRule   = protocol.Rule{ID: "fltr_c", Direction: protocol.Outbound, Order: 5, Protocol: 17, Port: "53", Address: vpn, Description: "dns"}
)

// group and list build domain objects; the compiler must ignore
// descriptions, statuses and sync state.
func group(id, name string, sites []string, rules ...protocol.Rule) controlplane.SecurityGroup {
	g := controlplane.SecurityGroup{ID: id, OrgID: "org_x", Name: name, Description: "ignored", Status: controlplane.StatusSyncing, Sites: sites}
	for _, r := range rules {
		g.Rules = append(g.Rules, controlplane.FilterRule{ID: r.ID, Direction: r.Direction, Order: r.Order, Protocol: r.Protocol, Port: r.Port, Address: r.Address, Description: r.Description})
	}
	return g
}

func list(id, name string, sites []string, cidrs ...string) controlplane.PrefixList {
	l := controlplane.PrefixList{ID: id, OrgID: "org_x", Name: name, Description: "ignored", Sites: sites}
	for i, c := range cidrs {
		l.Prefixes = append(l.Prefixes, controlplane.Prefix{ID: fmt.Sprintf("prfx_%d", i), CIDR: c, Description: "ignored"})
	}
	return l
}

func setCIDRs(l *controlplane.PrefixList, cidrs ...string) {
	l.Prefixes = list(l.ID, l.Name, nil, cidrs...).Prefixes
}

func basePolicy() Policy {
	return Policy{
		Groups: []controlplane.SecurityGroup{
			group("sec_grp_web", "Web", []string{"site_b", "site_a"}, sshRule, httpsRule),
			group("sec_grp_dns", "DNS", []string{"site_b", "site_b"}, dnsRule),
		},
		PrefixLists: []controlplane.PrefixList{
			list(office, "Office", nil, "203.0.113.0/24", "198.51.100.0/24", "203.0.113.0/24"),
			list(vpn, "VPN", nil, "10.8.0.0/16"),
			list(lan, "LAN", []string{"site_c"}, "192.168.0.0/16"),
		},
	}
}

func TestCompile(t *testing.T) {
	web := protocol.SecurityGroup{ID: "sec_grp_web", Name: "Web", Rules: []protocol.Rule{httpsRule, sshRule}}
	dns := protocol.SecurityGroup{ID: "sec_grp_dns", Name: "DNS", Rules: []protocol.Rule{dnsRule}}
	officeL := protocol.PrefixList{ID: office, Name: "Office", CIDRs: []string{"198.51.100.0/24", "203.0.113.0/24"}}
	vpnL := protocol.PrefixList{ID: vpn, Name: "VPN", CIDRs: []string{"10.8.0.0/16"}}
	lanL := protocol.PrefixList{ID: lan, Name: "LAN", CIDRs: []string{"192.168.0.0/16"}}
	doc := func(site string, gs []protocol.SecurityGroup, ls []protocol.PrefixList) protocol.DesiredState {
		d := protocol.DesiredState{OrgID: "org_x", SiteID: site, SecurityGroups: gs, PrefixLists: ls}
		d.Seal()
		return d
	}
	tests := []struct {
		name   string
		policy Policy
		sites  []string // nil: Compile
		want   map[string]protocol.DesiredState
	}{
		{
			name:   "groups, referenced lists and directly attached lists",
			policy: basePolicy(),
			want: map[string]protocol.DesiredState{
				"site_a": doc("site_a", []protocol.SecurityGroup{web}, []protocol.PrefixList{officeL}),
				"site_b": doc("site_b", []protocol.SecurityGroup{dns, web}, []protocol.PrefixList{officeL, vpnL}),
				"site_c": doc("site_c", nil, []protocol.PrefixList{lanL}),
			},
		},
		{
			name:   "a site with nothing left gets an empty document",
			policy: basePolicy(),
			sites:  []string{"site_gone", "site_a"},
			want: map[string]protocol.DesiredState{
				"site_a":    doc("site_a", []protocol.SecurityGroup{web}, []protocol.PrefixList{officeL}),
				"site_gone": doc("site_gone", nil, nil),
			},
		},
		{
			name: "list both referenced and attached appears once",
			policy: Policy{
				Groups:      []controlplane.SecurityGroup{group("sec_grp_web", "Web", []string{"site_a"}, httpsRule, sshRule)},
				PrefixLists: []controlplane.PrefixList{list(office, "Office", []string{"site_a"}, "198.51.100.0/24", "203.0.113.0/24")},
			},
			want: map[string]protocol.DesiredState{
				"site_a": doc("site_a", []protocol.SecurityGroup{web}, []protocol.PrefixList{officeL}),
			},
		},
		{
			name:   "empty policy",
			policy: Policy{},
			want:   map[string]protocol.DesiredState{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]protocol.DesiredState
			if tt.sites == nil {
				got = CompileSites("org_x", tt.policy, allSites(tt.policy))
			} else {
				got = CompileSites("org_x", tt.policy, tt.sites)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("compiled documents (-want +got):\n%s", diff)
			}
			for site, d := range got {
				AssignRevision(Revision{}, &d, "epoch1")
				if err := d.Validate("org_x", site); err != nil {
					t.Errorf("%s: compiled document does not validate: %v", site, err)
				}
			}
		})
	}
}

func TestAssignRevision(t *testing.T) {
	tests := []struct {
		name        string
		prev        Revision
		hash        string
		wantRev     uint64
		wantChanged bool
	}{
		{"first document", Revision{}, "sha256:a", 1, true},
		{"same content keeps revision", Revision{Revision: 4, Hash: "sha256:a"}, "sha256:a", 4, false},
		{"new content bumps by one", Revision{Revision: 4, Hash: "sha256:a"}, "sha256:b", 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := protocol.DesiredState{Hash: tt.hash}
			changed := AssignRevision(tt.prev, &d, "ep")
			if changed != tt.wantChanged || d.Revision != tt.wantRev || d.Epoch != "ep" {
				t.Errorf("AssignRevision(%+v) = changed %v, revision %d, epoch %q; want %v, %d, %q",
					tt.prev, changed, d.Revision, d.Epoch, tt.wantChanged, tt.wantRev, "ep")
			}
		})
	}
}

// TestRecompileUnchanged checks the property revisions depend on: compiling
// the same policy twice, with its inputs in another order, gives the same
// hashes, so AssignRevision publishes nothing new.
func TestRecompileUnchanged(t *testing.T) {
	p := basePolicy()
	q := basePolicy()
	q.Groups[0], q.Groups[1] = q.Groups[1], q.Groups[0]
	setCIDRs(&q.PrefixLists[0], "198.51.100.0/24", "203.0.113.0/24")
	a, b := CompileSites("org_x", p, allSites(p)), CompileSites("org_x", q, allSites(q))
	for site := range a {
		prev := Revision{Revision: 7, Hash: a[site].Hash}
		d := b[site]
		if AssignRevision(prev, &d, "ep") {
			t.Errorf("%s: reordered but equal policy got a new revision (%s vs %s)", site, a[site].Hash, d.Hash)
		}
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// benchPolicy is sites sites, 50 groups of 20 rules and 20 prefix lists of
// 50 CIDRs; each site carries 3 groups.
func benchPolicy(sites int) Policy {
	var p Policy
	for l := range 20 {
		var cidrs []string
		for c := range 50 {
			cidrs = append(cidrs, fmt.Sprintf("10.%d.%d.0/24", l, c))
		}
		p.PrefixLists = append(p.PrefixLists, list(fmt.Sprintf("prfx_lst_%02d", l), fmt.Sprintf("L%d", l), nil, cidrs...))
	}
	for g := range 50 {
		var rules []protocol.Rule
		for r := range 20 {
			addr := "0.0.0.0/0"
			if r%4 == 0 {
				addr = p.PrefixLists[(g+r)%20].ID
			}
			rules = append(rules, protocol.Rule{ID: fmt.Sprintf("fltr_%d_%d", g, r), Direction: protocol.Inbound, Order: r + 1, Protocol: 6, Port: fmt.Sprint(1000 + r), Address: addr, Description: "r"})
		}
		p.Groups = append(p.Groups, group(fmt.Sprintf("sec_grp_%02d", g), fmt.Sprintf("G%d", g), nil, rules...))
	}
	for s := range sites {
		id := fmt.Sprintf("site_%d", s)
		for k := range 3 {
			g := &p.Groups[(s*7+k*13)%50]
			g.Sites = append(g.Sites, id)
		}
	}
	return p
}

func BenchmarkCompile10000Sites(b *testing.B) {
	p := benchPolicy(10000)
	sites := allSites(p)
	b.ReportAllocs()
	for b.Loop() {
		if got := CompileSites("org_bench", p, sites); len(got) != 10000 {
			b.Fatalf("compiled %d sites", len(got))
		}
	}
}

// allSites is every site the policy attaches something to, sorted.
func allSites(p Policy) []string {
	var out []string
	for _, g := range p.Groups {
		out = append(out, g.Sites...)
	}
	for _, l := range p.PrefixLists {
		out = append(out, l.Sites...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
