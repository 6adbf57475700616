package api_test

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/protocol"
)

// TestIPv6ThroughREST: IPv6 rules and a prefix list mixing both families
// go in through the API, come back in canonical form, and reach the
// site's document as schema 2; a site with only IPv4 policy stays schema
// 1. Every refusal is the whole error body.
func TestIPv6ThroughREST(t *testing.T) {
	e := newEnv(t, func(e *env) { e.revise = true })

	// A mixed list; the IPv6 CIDR is written in a non-canonical spelling.
	l := e.createList(orgA, "203.0.113.0/24", "2001:DB8:1:0::/64")
	var cidrs []string
	for _, p := range l.Prefixes {
		cidrs = append(cidrs, p.CIDR)
	}
	if diff := cmp.Diff([]string{"203.0.113.0/24", "2001:db8:1::/64"}, cidrs); diff != "" {
		t.Errorf("stored prefixes (-want +got):\n%s", diff)
	}

	v6 := cp.SecurityGroupWrite{Name: "dual stack", Sites: []string{"site_v6"}, Rules: []cp.FilterRuleWrite{
		rule(10, "443", "::/0"),
		rule(20, "22", l.ID),
		{Direction: "inbound", Order: 30, Protocol: 58, Address: "2001:0DB8::/32", Description: "icmpv6"},
		{Direction: "inbound", Order: 40, Protocol: 1, Address: "192.0.2.0/24", Description: "icmp"},
		{Direction: "outbound", Order: 50, Protocol: 17, Port: "53", Address: "2001:4860:4860::8888/128", Description: "dns"},
	}}
	g := e.createGroup(orgA, v6)
	var addrs []string
	for _, r := range g.Rules {
		addrs = append(addrs, r.Address)
	}
	if diff := cmp.Diff([]string{"::/0", l.ID, "2001:db8::/32", "192.0.2.0/24", "2001:4860:4860::8888/128"}, addrs); diff != "" {
		t.Errorf("stored addresses (-want +got):\n%s", diff)
	}
	// GET answers what POST did.
	var got cp.SecurityGroup
	e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil).decode(t, &got)
	if diff := cmp.Diff(g.Rules, got.Rules); diff != "" {
		t.Errorf("GET after POST (-post +get):\n%s", diff)
	}
	e.createGroup(orgA, cp.SecurityGroupWrite{Name: "four only", Sites: []string{"site_v4"}, Rules: []cp.FilterRuleWrite{rule(10, "443", "0.0.0.0/0")}})

	policy := func(site string) protocol.DesiredState {
		t.Helper()
		var d protocol.DesiredState
		r := e.do("GET", "/vpc/sites/"+site+"/policy", orgA, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET policy of %s: %d %s", site, r.status, r.body)
		}
		r.decode(t, &d)
		if err := d.Validate(orgA, site); err != nil {
			t.Errorf("policy of %s does not validate: %v", site, err)
		}
		return d
	}
	dv6, dv4 := policy("site_v6"), policy("site_v4")
	if dv6.Schema != protocol.SchemaDualStack || dv4.Schema != protocol.SchemaIPv4 {
		t.Errorf("schemas: dual-stack site %d, IPv4 site %d; want 2 and 1", dv6.Schema, dv4.Schema)
	}
	if diff := cmp.Diff([]string{"2001:db8:1::/64", "203.0.113.0/24"}, dv6.PrefixLists[0].CIDRs); diff != "" {
		t.Errorf("document's list (-want +got):\n%s", diff)
	}

	// Refusals, each the whole body; nothing is written.
	bad := func(change func(*cp.SecurityGroupWrite)) cp.SecurityGroupWrite {
		w := v6
		w.Rules = append([]cp.FilterRuleWrite(nil), v6.Rules...)
		change(&w)
		return w
	}
	doc := func(code string) string { return api.DefaultDocBaseURL + code }
	groupCases := []struct {
		name string
		body cp.SecurityGroupWrite
		want api.ErrorResponse
	}{
		{"ipv6 host bits", bad(func(w *cp.SecurityGroupWrite) { w.Rules[0].Address = "2001:db8::1/32" }), api.ErrorResponse{
			Type: "invalid_request_error", Code: cp.CodeInvalidAddress, DocURL: doc(cp.CodeInvalidAddress),
			Message: `rules[0].address: "2001:db8::1/32" has host bits set; did you mean "2001:db8::/32"?`}},
		{"not a cidr", bad(func(w *cp.SecurityGroupWrite) { w.Rules[0].Address = "2001:db8::/129" }), api.ErrorResponse{
			Type: "invalid_request_error", Code: cp.CodeInvalidAddress, DocURL: doc(cp.CodeInvalidAddress),
			Message: `rules[0].address: "2001:db8::/129" is not an IPv4 or IPv6 CIDR such as 192.0.2.0/24 or 2001:db8::/32, or a prefix list id (prfx_lst_...).`}},
		{"icmp with ipv6", bad(func(w *cp.SecurityGroupWrite) { w.Rules[2].Protocol = 1 }), api.ErrorResponse{
			Type: "invalid_request_error", Code: cp.CodeInvalidValue, DocURL: doc(cp.CodeInvalidValue),
			Message: `rules[2].protocol 1 cannot be used with rules[2].address "2001:db8::/32": protocol 1 (icmp) is IPv4 only; use 58 (icmpv6) with an IPv6 address.`}},
		{"icmpv6 with ipv4", bad(func(w *cp.SecurityGroupWrite) { w.Rules[3].Protocol = 58 }), api.ErrorResponse{
			Type: "invalid_request_error", Code: cp.CodeInvalidValue, DocURL: doc(cp.CodeInvalidValue),
			Message: `rules[3].protocol 58 cannot be used with rules[3].address "192.0.2.0/24": protocol 58 (icmpv6) is IPv6 only; use 1 (icmp) with an IPv4 address.`}},
		{"ipv4-mapped", bad(func(w *cp.SecurityGroupWrite) { w.Rules[0].Address = "::ffff:192.0.2.0/120" }), api.ErrorResponse{
			Type: "invalid_request_error", Code: cp.CodeInvalidAddress, DocURL: doc(cp.CodeInvalidAddress),
			Message: `rules[0].address: "::ffff:192.0.2.0/120" is an IPv4-mapped IPv6 prefix, which matches no packet; write the IPv4 CIDR "192.0.2.0/24" instead, or a prefix list id (prfx_lst_...).`}},
	}
	before := e.do("GET", "/vpc/security-groups", orgA, nil).body
	for _, c := range groupCases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("PUT", "/vpc/security-groups/"+g.ID, orgA, c.body)
			if r.status != http.StatusUnprocessableEntity {
				t.Errorf("status %d, want 422", r.status)
			}
			if diff := cmp.Diff(c.want, r.errorResponse(t)); diff != "" {
				t.Errorf("error body (-want +got):\n%s", diff)
			}
		})
	}
	listCases := []struct {
		name  string
		cidrs []string
		want  api.ErrorResponse
	}{
		{"duplicate in two spellings", []string{"2001:db8::/32", "2001:DB8:0::/32"}, api.ErrorResponse{
			Type: "invalid_request_error", Code: cp.CodeDuplicatePrefix, DocURL: doc(cp.CodeDuplicatePrefix),
			Message: `prefixes[1].cidr "2001:db8::/32" is already listed as prefixes[0]; list each CIDR once.`}},
		{"host bits", []string{"203.0.113.0/24", "2001:db8:1::1/64"}, api.ErrorResponse{
			Type: "invalid_request_error", Code: cp.CodeInvalidAddress, DocURL: doc(cp.CodeInvalidAddress),
			Message: `prefixes[1].cidr: "2001:db8:1::1/64" has host bits set; did you mean "2001:db8:1::/64"?`}},
		{"zone", []string{"fe80::/64%eth0"}, api.ErrorResponse{
			Type: "invalid_request_error", Code: cp.CodeInvalidAddress, DocURL: doc(cp.CodeInvalidAddress),
			Message: `prefixes[0].cidr: "fe80::/64%eth0" is not an IPv4 or IPv6 CIDR such as 192.0.2.0/24 or 2001:db8::/32.`}},
	}
	for _, c := range listCases {
		t.Run(c.name, func(t *testing.T) {
			w := cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{}}
			for _, cidr := range c.cidrs {
				w.Prefixes = append(w.Prefixes, cp.PrefixWrite{CIDR: cidr})
			}
			r := e.do("PUT", "/vpc/prefix-lists/"+l.ID, orgA, w)
			if r.status != http.StatusUnprocessableEntity {
				t.Errorf("status %d, want 422", r.status)
			}
			if diff := cmp.Diff(c.want, r.errorResponse(t)); diff != "" {
				t.Errorf("error body (-want +got):\n%s", diff)
			}
		})
	}
	if after := e.do("GET", "/vpc/security-groups", orgA, nil).body; string(after) != string(before) {
		t.Errorf("a refused write changed the store:\n%s\n->\n%s", before, after)
	}
	// A prefix list going back to IPv4 only takes the site back to schema 1
	// only when nothing else of it is IPv6; here the group's rules still are.
	if r := e.do("PUT", "/vpc/prefix-lists/"+l.ID, orgA, cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "203.0.113.0/24"}}}); r.status != http.StatusOK {
		t.Fatalf("PUT list: %d %s", r.status, r.body)
	}
	if d := policy("site_v6"); d.Schema != protocol.SchemaDualStack || d.Revision != dv6.Revision+1 {
		t.Errorf("after the list lost its IPv6: schema %d revision %d", d.Schema, d.Revision)
	}
}
