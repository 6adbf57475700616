package compile

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/protocol"
)

// goldenIPv4 is what the compiler of commit 3becaf2 (main before schema 2
// existed) published for basePolicy, revision 1 of epoch "epoch1": an
// IPv4-only policy must stay schema 1, byte for byte, with the same hash,
// or agents that predate IPv6 would refuse it (or re-apply it).
var goldenIPv4 = map[string]string{
	"site_a": `{"schema":1,"org_id":"org_x","site_id":"site_a","epoch":"epoch1","revision":1,"hash":"sha256:c0be241849247a603ee736ecc2009b5d37b5216458a973c3204c79135bcbd805","security_groups":[{"id":"sec_grp_web","name":"Web","rules":[{"id":"fltr_a","direction":"inbound","order":10,"protocol":6,"port":"443","address":"0.0.0.0/0","description":"https"},{"id":"fltr_b","direction":"inbound","order":30,"protocol":6,"port":"22","address":"prfx_lst_office","description":"ssh"}]}],"prefix_lists":[{"id":"prfx_lst_office","name":"Office","cidrs":["198.51.100.0/24","203.0.113.0/24"]}]}`,
	"site_b": `{"schema":1,"org_id":"org_x","site_id":"site_b","epoch":"epoch1","revision":1,"hash":"sha256:f109b09241a80ff61ce72279e66be60441da3a7a122cfe5bdd4016732df77526","security_groups":[{"id":"sec_grp_dns","name":"DNS","rules":[{"id":"fltr_c","direction":"outbound","order":5,"protocol":17,"port":"53","address":"prfx_lst_vpn","description":"dns"}]},{"id":"sec_grp_web","name":"Web","rules":[{"id":"fltr_a","direction":"inbound","order":10,"protocol":6,"port":"443","address":"0.0.0.0/0","description":"https"},{"id":"fltr_b","direction":"inbound","order":30,"protocol":6,"port":"22","address":"prfx_lst_office","description":"ssh"}]}],"prefix_lists":[{"id":"prfx_lst_office","name":"Office","cidrs":["198.51.100.0/24","203.0.113.0/24"]},{"id":"prfx_lst_vpn","name":"VPN","cidrs":["10.8.0.0/16"]}]}`,
	"site_c": `{"schema":1,"org_id":"org_x","site_id":"site_c","epoch":"epoch1","revision":1,"hash":"sha256:9dd45c4162175964c581fe203b0853eb91ffb5aa9070dcb1382b20fae31c65c3","security_groups":[],"prefix_lists":[{"id":"prfx_lst_lan","name":"LAN","cidrs":["192.168.0.0/16"]}]}`,
}

func published(t *testing.T, docs map[string]protocol.DesiredState) map[string]string {
	t.Helper()
	out := map[string]string{}
	for site, d := range docs {
		AssignRevision(Revision{}, &d, "epoch1")
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out[site] = string(b)
	}
	return out
}

func TestIPv4OnlyStaysSchema1(t *testing.T) {
	got := published(t, CompileSites("org_x", basePolicy(), []string{"site_a", "site_b", "site_c"}))
	if diff := cmp.Diff(goldenIPv4, got); diff != "" {
		t.Errorf("IPv4-only documents changed from before schema 2 (-golden +got):\n%s", diff)
	}
}

// TestDualStackIsSchema2: a site whose policy holds an IPv6 CIDR, in a
// rule or in a list, gets schema 2; a site of the same organisation
// without one stays schema 1. Every document validates for an agent of
// this build; an agent limited to schema 1 refuses exactly the schema 2
// ones, with the upgrade sentence.
func TestDualStackIsSchema2(t *testing.T) {
	p := basePolicy()
	// site_b's DNS rule goes to the VPN list, which becomes dual stack;
	// site_a gets an IPv6 rule address; site_c keeps its IPv4 list.
	setCIDRs(&p.PrefixLists[1], "10.8.0.0/16", "2001:db8:8::/48")
	v6 := protocol.Rule{ID: "fltr_d", Direction: protocol.Inbound, Order: 40, Protocol: 58, Address: "2001:db8::/32", Description: "icmpv6"}
	p.Groups = append(p.Groups, group("sec_grp_v6", "V6", []string{"site_a"}, v6))
	docs := CompileSites("org_x", p, []string{"site_a", "site_b", "site_c"})
	got := map[string]int{}
	for site, d := range docs {
		got[site] = d.Schema
		AssignRevision(Revision{}, &d, "epoch1")
		if err := d.Validate("org_x", site); err != nil {
			t.Errorf("%s: %v", site, err)
		}
		var tooNew *protocol.SchemaTooNewError
		err := d.ValidateMax("org_x", site, protocol.SchemaIPv4)
		if refused := err != nil; refused != (d.Schema == protocol.SchemaDualStack) || refused && !errors.As(err, &tooNew) {
			t.Errorf("%s (schema %d): an agent reading schema 1 says %v", site, d.Schema, err)
		}
	}
	want := map[string]int{"site_a": 2, "site_b": 2, "site_c": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schemas (-want +got):\n%s", diff)
	}
	// The hash names the content alone: the same content sealed by hand
	// (Seal stamps the same schema) hashes the same.
	b := docs["site_b"]
	sealed := protocol.DesiredState{OrgID: "org_x", SiteID: "site_b", SecurityGroups: b.SecurityGroups, PrefixLists: b.PrefixLists}
	sealed.Seal()
	if sealed.Hash != b.Hash || sealed.Schema != b.Schema {
		t.Errorf("compiled (%d, %s) and sealed (%d, %s) disagree", b.Schema, b.Hash, sealed.Schema, sealed.Hash)
	}
}
