package protocol_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/protocol"
)

func TestParseCIDR(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
		hostBits          string // the network a *HostBitsError names
	}{
		{in: "192.0.2.0/24", want: "192.0.2.0/24"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "2001:DB8:0:0::/64", want: "2001:db8::/64"},
		{in: "::/0", want: "::/0"},
		{in: "fe80::1/128", want: "fe80::1/128"},
		{in: "10.0.0.1/24", wantErr: `"10.0.0.1/24" has host bits set; did you mean "10.0.0.0/24"?`, hostBits: "10.0.0.0/24"},
		{in: "2001:db8::1/32", wantErr: `"2001:db8::1/32" has host bits set; did you mean "2001:db8::/32"?`, hostBits: "2001:db8::/32"},
		{in: "2001:db8::", wantErr: `"2001:db8::" is not an IPv4 or IPv6 CIDR such as 192.0.2.0/24 or 2001:db8::/32`},
		{in: "fe80::/10%eth0", wantErr: `"fe80::/10%eth0" is not an IPv4 or IPv6 CIDR such as 192.0.2.0/24 or 2001:db8::/32`},
		{in: "2001:db8::/129", wantErr: `"2001:db8::/129" is not an IPv4 or IPv6 CIDR such as 192.0.2.0/24 or 2001:db8::/32`},
		{in: "::ffff:192.0.2.0/120", wantErr: `"::ffff:192.0.2.0/120" is an IPv4-mapped IPv6 prefix, which matches no packet; write the IPv4 CIDR "192.0.2.0/24" instead`},
		{in: "::ffff:0:0/80", wantErr: `"::ffff:0:0/80" is an IPv4-mapped IPv6 prefix, which matches no packet; write an IPv4 CIDR such as 192.0.2.0/24 instead`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := protocol.ParseCIDR(tt.in)
			var got, gotErr string
			if err != nil {
				gotErr = err.Error()
			} else {
				got = p.String()
			}
			if diff := cmp.Diff(tt.want+"|"+tt.wantErr, got+"|"+gotErr); diff != "" {
				t.Errorf("ParseCIDR(%q) (-want +got):\n%s", tt.in, diff)
			}
			var hb *protocol.HostBitsError
			if errors.As(err, &hb) != (tt.hostBits != "") || hb != nil && hb.Network.String() != tt.hostBits {
				t.Errorf("ParseCIDR(%q): HostBitsError %+v, want network %q", tt.in, hb, tt.hostBits)
			}
		})
	}
}

func dualStack() protocol.DesiredState {
	d := protocol.DesiredState{
		OrgID: "org_demo", SiteID: "site_hq", Epoch: "e", Revision: 1,
		SecurityGroups: []protocol.SecurityGroup{{ID: "sec_grp_1", Name: "Web", Rules: []protocol.Rule{
			{ID: "fltr_v4", Direction: protocol.Inbound, Order: 1, Protocol: 6, Port: "443", Address: "0.0.0.0/0"},
			{ID: "fltr_v6", Direction: protocol.Inbound, Order: 2, Protocol: 6, Port: "443", Address: "::/0"},
			{ID: "fltr_both", Direction: protocol.Inbound, Order: 3, Protocol: 6, Port: "22", Address: "prfx_lst_both"},
			{ID: "fltr_only4", Direction: protocol.Inbound, Order: 4, Protocol: 17, Port: "53", Address: "prfx_lst_only4"},
			{ID: "fltr_empty", Direction: protocol.Inbound, Order: 5, Protocol: 0, Address: "prfx_lst_empty"},
			{ID: "fltr_icmp", Direction: protocol.Inbound, Order: 6, Protocol: 1, Address: "prfx_lst_both"},
			{ID: "fltr_icmpv6", Direction: protocol.Inbound, Order: 7, Protocol: 58, Address: "prfx_lst_both"},
			{ID: "fltr_icmpv6_4", Direction: protocol.Inbound, Order: 8, Protocol: 58, Address: "prfx_lst_only4"},
		}}},
		PrefixLists: []protocol.PrefixList{
			{ID: "prfx_lst_both", Name: "Both", CIDRs: []string{"2001:db8::/32", "203.0.113.0/24"}},
			{ID: "prfx_lst_empty", Name: "Empty", CIDRs: []string{}},
			{ID: "prfx_lst_only4", Name: "Four", CIDRs: []string{"198.51.100.0/24"}},
		},
	}
	d.Seal()
	return d
}

// TestFamilies holds the family rules of the package doc: CIDR family,
// list families, and icmp/icmpv6 narrowing.
func TestFamilies(t *testing.T) {
	d := dualStack()
	lists := d.ListFamilies()
	if diff := cmp.Diff(map[string]protocol.Family{
		"prfx_lst_both": protocol.BothFamilies, "prfx_lst_empty": 0, "prfx_lst_only4": protocol.IPv4,
	}, lists); diff != "" {
		t.Errorf("ListFamilies (-want +got):\n%s", diff)
	}
	got := map[string]string{}
	for _, r := range d.SecurityGroups[0].Rules {
		got[r.ID] = r.Families(lists).String()
	}
	want := map[string]string{
		"fltr_v4": "IPv4", "fltr_v6": "IPv6", "fltr_both": "IPv4 and IPv6", "fltr_only4": "IPv4",
		"fltr_empty": "none", "fltr_icmp": "IPv4", "fltr_icmpv6": "IPv6", "fltr_icmpv6_4": "none",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Rule.Families (-want +got):\n%s", diff)
	}
}

func TestForFamily(t *testing.T) {
	d := dualStack()
	ids := func(p protocol.DesiredState) (rules []string, lists map[string][]string) {
		lists = map[string][]string{}
		for _, g := range p.SecurityGroups {
			for _, r := range g.Rules {
				rules = append(rules, r.ID)
			}
		}
		for _, pl := range p.PrefixLists {
			lists[pl.ID] = pl.CIDRs
		}
		return rules, lists
	}
	for _, tt := range []struct {
		f         protocol.Family
		wantRules []string
		wantLists map[string][]string
	}{
		{protocol.IPv4, []string{"fltr_v4", "fltr_both", "fltr_only4", "fltr_icmp"},
			map[string][]string{"prfx_lst_both": {"203.0.113.0/24"}, "prfx_lst_only4": {"198.51.100.0/24"}}},
		{protocol.IPv6, []string{"fltr_v6", "fltr_both", "fltr_icmpv6"},
			map[string][]string{"prfx_lst_both": {"2001:db8::/32"}}},
	} {
		before := d.ContentHash()
		rules, lists := ids(d.ForFamily(tt.f))
		if diff := cmp.Diff(tt.wantRules, rules); diff != "" {
			t.Errorf("ForFamily(%v) rules (-want +got):\n%s", tt.f, diff)
		}
		if diff := cmp.Diff(tt.wantLists, lists); diff != "" {
			t.Errorf("ForFamily(%v) lists (-want +got):\n%s", tt.f, diff)
		}
		if d.ContentHash() != before {
			t.Errorf("ForFamily(%v) modified the document", tt.f)
		}
	}
}

func TestCheckProtocolFamily(t *testing.T) {
	for _, tt := range []struct {
		proto   int
		f       protocol.Family
		wantErr string
	}{
		{1, protocol.IPv4, ""},
		{58, protocol.IPv6, ""},
		{6, protocol.IPv6, ""},
		{0, protocol.IPv4, ""},
		{1, protocol.IPv6, "protocol 1 (icmp) is IPv4 only; use 58 (icmpv6) with an IPv6 address"},
		{58, protocol.IPv4, "protocol 58 (icmpv6) is IPv6 only; use 1 (icmp) with an IPv4 address"},
	} {
		var got string
		if err := protocol.CheckProtocolFamily(tt.proto, tt.f); err != nil {
			got = err.Error()
		}
		if got != tt.wantErr {
			t.Errorf("CheckProtocolFamily(%d, %v) = %q, want %q", tt.proto, tt.f, got, tt.wantErr)
		}
	}
}

// TestLowestSchema: a document is stamped with the lowest schema that
// carries it, and the hash does not depend on the schema.
func TestLowestSchema(t *testing.T) {
	v4 := sample()
	if v4.Schema != protocol.SchemaIPv4 {
		t.Errorf("IPv4-only document sealed as schema %d, want %d", v4.Schema, protocol.SchemaIPv4)
	}
	ds := dualStack()
	if ds.Schema != protocol.SchemaDualStack {
		t.Errorf("dual-stack document sealed as schema %d, want %d", ds.Schema, protocol.SchemaDualStack)
	}
	// IPv6 only in a rule's address is enough.
	v6rule := sample()
	v6rule.SecurityGroups[0].Rules[0].Address = "2001:db8::/32"
	if got := v6rule.NeededSchema(); got != protocol.SchemaDualStack {
		t.Errorf("NeededSchema with an IPv6 rule address = %d, want %d", got, protocol.SchemaDualStack)
	}
	h := ds.Hash
	ds.Schema = 7
	if ds.ContentHash() != h {
		t.Error("the content hash depends on the schema")
	}
}

// TestOldAgentRefuses: an agent limited to schema 1 refuses a dual-stack
// document with a *SchemaTooNewError and accepts an IPv4-only one; the
// default reads both.
func TestOldAgentRefuses(t *testing.T) {
	ds, v4 := dualStack(), sample()
	err := ds.ValidateMax("org_demo", "site_hq", 1)
	var tooNew *protocol.SchemaTooNewError
	if !errors.As(err, &tooNew) || *tooNew != (protocol.SchemaTooNewError{Schema: 2, Max: 1}) {
		t.Fatalf("ValidateMax(1) of a dual-stack document = %v, want a SchemaTooNewError{2, 1}", err)
	}
	want := "the desired state has schema 2, newer than this agent reads (schemas 1 to 1): the document needs a newer agent (schema 2 adds IPv6), so nothing of it was applied; upgrade the agent"
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("error sentence (-want +got):\n%s", diff)
	}
	for name, check := range map[string]error{
		"ipv4 at max 1":        v4.ValidateMax("org_demo", "site_hq", 1),
		"dual stack at max 0":  ds.ValidateMax("org_demo", "site_hq", 0),
		"dual stack, Validate": ds.Validate("org_demo", "site_hq"),
	} {
		if check != nil {
			t.Errorf("%s: %v", name, check)
		}
	}
}

func ExampleDesiredState_ForFamily() {
	d := protocol.DesiredState{OrgID: "org_demo", SiteID: "site_hq", Epoch: "e1", Revision: 1,
		SecurityGroups: []protocol.SecurityGroup{{ID: "sec_grp_1", Name: "SSH", Rules: []protocol.Rule{
			{ID: "fltr_1", Direction: protocol.Inbound, Order: 1, Protocol: 6, Port: "22", Address: "prfx_lst_office"}}}},
		PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_office", Name: "Office", CIDRs: []string{"203.0.113.0/24", "2001:db8:1::/48"}}}}
	d.Seal()
	v6 := d.ForFamily(protocol.IPv6)
	fmt.Println(d.Schema, len(v6.SecurityGroups[0].Rules), v6.PrefixLists[0].CIDRs)
	// Output: 2 1 [2001:db8:1::/48]
}
