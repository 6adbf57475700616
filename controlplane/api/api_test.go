package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
)

const orgA, orgB = "org_a", "org_b"

// seedCreate is the create page's example body (with the prefix list id
// replaced by one that exists).
func seedCreate(list string) cp.SecurityGroupWrite {
	return cp.SecurityGroupWrite{
		Name:        "Web Application Servers",
		Description: ptr("Allows HTTP/S from the world and SSH from the office."),
		Rules: []cp.FilterRuleWrite{
			{Direction: "inbound", Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "Allow HTTPS"},
			{Direction: "inbound", Order: 20, Protocol: 6, Port: "80", Address: "0.0.0.0/0", Description: "Allow HTTP"},
			{Direction: "inbound", Order: 30, Protocol: 6, Port: "22", Address: list, Description: "Allow SSH from Office"},
		},
		Sites: []string{"site_0ujsswThIGTUYm2K8FjOOfxcYpw", "site_0ujsswThIGTUYm2K8FjOOfxcYpz"},
	}
}

func TestSecurityGroupLifecycle(t *testing.T) {
	e := newEnv(t)
	list := e.createList(orgA, "203.0.113.0/24")

	r := e.do("POST", "/vpc/security-groups", orgA, seedCreate(list.ID))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var g cp.SecurityGroup
	r.decode(t, &g)
	if got, want := r.header.Get("Location"), "/vpc/security-groups/"+g.ID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if !cp.ValidID(cp.SecurityGroupIDPrefix, g.ID) {
		t.Errorf("id %q is not sec_grp_ + KSUID", g.ID)
	}
	want := cp.SecurityGroup{
		ID: g.ID, Name: "Web Application Servers", Description: "Allows HTTP/S from the world and SSH from the office.",
		Status: cp.StatusSyncing, Sites: []string{"site_0ujsswThIGTUYm2K8FjOOfxcYpw", "site_0ujsswThIGTUYm2K8FjOOfxcYpz"},
		Rules: []cp.FilterRule{
			{Direction: "inbound", Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "Allow HTTPS"},
			{Direction: "inbound", Order: 20, Protocol: 6, Port: "80", Address: "0.0.0.0/0", Description: "Allow HTTP"},
			{Direction: "inbound", Order: 30, Protocol: 6, Port: "22", Address: list.ID, Description: "Allow SSH from Office"},
		},
	}
	ignoreRuleIDs := cmpopts.IgnoreFields(cp.FilterRule{}, "ID")
	if d := cmp.Diff(want, g, ignoreRuleIDs); d != "" {
		t.Errorf("created group (-want +got):\n%s", d)
	}
	for _, rl := range g.Rules {
		if !cp.ValidID(cp.FilterRuleIDPrefix, rl.ID) {
			t.Errorf("rule id %q is not fltr_ + KSUID", rl.ID)
		}
	}

	// GET by id under both base paths, and the list.
	for _, p := range []string{"/vpc/security-groups/" + g.ID, "/security-groups/" + g.ID} {
		r = e.do("GET", p, orgA, nil)
		var got cp.SecurityGroup
		r.decode(t, &got)
		if d := cmp.Diff(g, got); r.status != 200 || d != "" {
			t.Errorf("GET %s: %d (-created +got):\n%s", p, r.status, d)
		}
	}
	r = e.do("GET", "/security-groups", orgA, nil)
	var all []cp.SecurityGroup
	r.decode(t, &all)
	if d := cmp.Diff([]cp.SecurityGroup{g}, all); d != "" {
		t.Errorf("list (-want +got):\n%s", d)
	}

	// Syncing locks writes until the deadline; then the group is failed
	// and writable.
	put := seedCreate(list.ID)
	r = e.do("PUT", "/vpc/security-groups/"+g.ID, orgA, put)
	if er := r.errorResponse(t); r.status != http.StatusConflict || er.Code != cp.CodeResourceLocked {
		t.Fatalf("PUT while syncing: %d %s", r.status, r.body)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 120 {
		t.Errorf("Retry-After = %q, want 1-120 seconds", r.header.Get("Retry-After"))
	}
	if r = e.do("DELETE", "/vpc/security-groups/"+g.ID, orgA, nil); r.status != http.StatusConflict {
		t.Errorf("DELETE while syncing: %d, want 409", r.status)
	}
	e.clock.Advance(2*time.Minute + time.Second)
	r = e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil)
	var failed cp.SecurityGroup
	r.decode(t, &failed)
	if failed.Status != cp.StatusFailed {
		t.Errorf("status after the deadline = %q, want failed", failed.Status)
	}

	// PUT: full replacement. The HTTPS rule moves order but keeps its
	// match, so keeps its id; the HTTP rule changes port, so gets a new
	// one; the SSH rule is dropped; sites are replaced.
	put = cp.SecurityGroupWrite{Name: "Web", Description: nil, Sites: []string{},
		Rules: []cp.FilterRuleWrite{
			{Direction: "inbound", Order: 5, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "HTTPS first"},
			{Direction: "inbound", Order: 20, Protocol: 6, Port: "8080", Address: "0.0.0.0/0", Description: "Alt HTTP"},
		}}
	r = e.do("PUT", "/vpc/security-groups/"+g.ID, orgA, put)
	if r.status != http.StatusOK {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	var upd cp.SecurityGroup
	r.decode(t, &upd)
	if upd.Rules[0].ID != g.Rules[0].ID {
		t.Errorf("unchanged HTTPS rule got a new id: %s, was %s", upd.Rules[0].ID, g.Rules[0].ID)
	}
	if upd.Rules[1].ID == g.Rules[1].ID {
		t.Errorf("rule whose port changed kept its id %s", upd.Rules[1].ID)
	}
	if upd.Status != cp.StatusActive || len(upd.Sites) != 0 || upd.Description != "" || upd.Name != "Web" {
		t.Errorf("after PUT: %+v, want active, no sites, empty description, name Web", upd)
	}

	r = e.do("DELETE", "/security-groups/"+g.ID, orgA, nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Errorf("DELETE: %d %q", r.status, r.body)
	}
	if r = e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil); r.status != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d", r.status)
	}
	if r = e.do("DELETE", "/vpc/security-groups/"+g.ID, orgA, nil); r.status != http.StatusNotFound {
		t.Errorf("second DELETE: %d", r.status)
	}
}

func TestNullDescriptionReadsBackAsEmptyString(t *testing.T) {
	e := newEnv(t)
	body := `{"name":"Null desc","description":null,"rules":[],"sites":[]}`
	r := e.do("POST", "/vpc/security-groups", orgA, body)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"description":""`) {
		t.Errorf("body %s lacks \"description\":\"\"", r.body)
	}
	var g cp.SecurityGroup
	r.decode(t, &g)
	r = e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil)
	if !strings.Contains(string(r.body), `"description":""`) {
		t.Errorf("GET %s lacks \"description\":\"\"", r.body)
	}
	r = e.do("POST", "/vpc/prefix-lists", orgA, `{"name":"L","description":null,"prefixes":[]}`)
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), `"description":""`) {
		t.Errorf("prefix list with null description: %d %s", r.status, r.body)
	}
}

func TestPrefixListLifecycle(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/prefix-lists", orgA, cp.PrefixListWrite{Name: "Office", Description: ptr("HQ and branch"),
		Prefixes: []cp.PrefixWrite{{CIDR: "203.0.113.0/24", Description: "HQ"}, {CIDR: "198.51.100.0/25", Description: "Branch"}}})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var l cp.PrefixList
	r.decode(t, &l)
	if r.header.Get("Location") != "/prefix-lists/"+l.ID || !cp.ValidID(cp.PrefixListIDPrefix, l.ID) || l.Status != cp.StatusActive {
		t.Errorf("created %+v at %q", l, r.header.Get("Location"))
	}
	for _, p := range l.Prefixes {
		if !cp.ValidID(cp.PrefixIDPrefix, p.ID) {
			t.Errorf("prefix id %q is not prfx_ + KSUID", p.ID)
		}
	}
	// A group with sites uses it.
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "SSH", Rules: []cp.FilterRuleWrite{rule(1, "22", l.ID)}, Sites: []string{"site_a"}})
	r = e.do("DELETE", "/vpc/prefix-lists/"+l.ID, orgA, nil)
	if er := r.errorResponse(t); r.status != http.StatusConflict || er.Code != cp.CodePrefixListInUse || !strings.Contains(er.Message, g.ID) {
		t.Errorf("DELETE of a used list: %d %s", r.status, r.body)
	}
	// PUT keeps the id of an unchanged CIDR; the list is syncing because
	// the group's site gets new content.
	r = e.do("PUT", "/vpc/prefix-lists/"+l.ID, orgA, cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "203.0.113.0/24"}, {CIDR: "192.0.2.0/24"}}})
	if r.status != http.StatusOK {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	var upd cp.PrefixList
	r.decode(t, &upd)
	if upd.Prefixes[0].ID != l.Prefixes[0].ID || upd.Prefixes[1].ID == l.Prefixes[1].ID {
		t.Errorf("prefix ids after PUT: %+v, before %+v", upd.Prefixes, l.Prefixes)
	}
	if upd.Status != cp.StatusSyncing {
		t.Errorf("status = %q, want syncing (a group with a site refers to it)", upd.Status)
	}
	for _, m := range []string{"PUT", "DELETE"} {
		var body any
		if m == "PUT" {
			body = cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{}}
		}
		r := e.do(m, "/vpc/prefix-lists/"+l.ID, orgA, body)
		if er := r.errorResponse(t); r.status != http.StatusConflict || er.Code != cp.CodeResourceLocked || r.header.Get("Retry-After") == "" {
			t.Errorf("%s of a syncing prefix list: %d %s", m, r.status, r.body)
		}
	}
	r = e.do("GET", "/vpc/prefix-lists", orgA, nil)
	var all []cp.PrefixList
	r.decode(t, &all)
	if d := cmp.Diff([]cp.PrefixList{upd}, all); d != "" {
		t.Errorf("list (-want +got):\n%s", d)
	}
	// Once nothing refers to it and it is no longer syncing, it can go.
	e.clock.Advance(3 * time.Minute)
	if r = e.do("DELETE", "/vpc/security-groups/"+g.ID, orgA, nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE group: %d %s", r.status, r.body)
	}
	if r = e.do("DELETE", "/vpc/prefix-lists/"+l.ID, orgA, nil); r.status != http.StatusNoContent {
		t.Errorf("DELETE list: %d %s", r.status, r.body)
	}
	if r = e.do("GET", "/prefix-lists/"+l.ID, orgA, nil); r.status != http.StatusNotFound {
		t.Errorf("GET deleted list: %d", r.status)
	}
}

func TestListsAreOrderedByID(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := range 5 {
		g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: fmt.Sprintf("group %d", i), Rules: []cp.FilterRuleWrite{}, Sites: []string{}})
		ids = append(ids, g.ID)
	}
	slices.Sort(ids)
	var all []cp.SecurityGroup
	e.do("GET", "/vpc/security-groups", orgA, nil).decode(t, &all)
	var got []string
	for _, g := range all {
		got = append(got, g.ID)
	}
	if d := cmp.Diff(ids, got); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
	// An organisation with nothing gets a bare empty array.
	if r := e.do("GET", "/vpc/prefix-lists", orgB, nil); string(r.body) != "[]\n" {
		t.Errorf("empty list body = %q", r.body)
	}
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	l := e.createList(orgA, "10.0.0.0/8")
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "A's", Rules: []cp.FilterRuleWrite{rule(1, "22", l.ID)}, Sites: []string{}})
	w := cp.SecurityGroupWrite{Name: "B's", Rules: []cp.FilterRuleWrite{}, Sites: []string{}}
	for _, c := range []struct{ method, path string }{
		{"GET", "/vpc/security-groups/" + g.ID},
		{"PUT", "/vpc/security-groups/" + g.ID},
		{"DELETE", "/vpc/security-groups/" + g.ID},
		{"GET", "/vpc/prefix-lists/" + l.ID},
		{"PUT", "/vpc/prefix-lists/" + l.ID},
		{"DELETE", "/vpc/prefix-lists/" + l.ID},
	} {
		var body any
		if c.method == "PUT" {
			body = w
			if strings.Contains(c.path, "prefix") {
				body = cp.PrefixListWrite{Name: "B", Prefixes: []cp.PrefixWrite{}}
			}
		}
		r := e.do(c.method, c.path, orgB, body)
		if er := r.errorResponse(t); r.status != http.StatusNotFound || er.Code != cp.CodeNotFound {
			t.Errorf("%s %s as another org: %d %s, want 404 %s", c.method, c.path, r.status, r.body, cp.CodeNotFound)
		}
	}
	// B cannot refer to A's prefix list.
	r := e.do("POST", "/vpc/security-groups", orgB, cp.SecurityGroupWrite{Name: "B's", Rules: []cp.FilterRuleWrite{rule(1, "22", l.ID)}, Sites: []string{}})
	if er := r.errorResponse(t); r.status != http.StatusUnprocessableEntity || er.Code != cp.CodePrefixListNotFound || !strings.HasPrefix(er.Message, "rules[0].address") {
		t.Errorf("reference to another org's list: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/vpc/security-groups", "/vpc/prefix-lists", "/vpc/sites"} {
		if r := e.do("GET", p, orgB, nil); string(r.body) != "[]\n" {
			t.Errorf("GET %s as B = %s, want []", p, r.body)
		}
	}
	// A still has both, unchanged.
	if r := e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil); r.status != 200 {
		t.Errorf("A's group after B's attempts: %d", r.status)
	}
}

func TestRestartKeepsData(t *testing.T) {
	e := newEnv(t)
	l := e.createList(orgA, "192.0.2.0/24")
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Kept", Rules: []cp.FilterRuleWrite{rule(1, "22", l.ID)}, Sites: []string{"site_x"}})
	epoch := e.store.Epoch()
	e.restart()
	if e.store.Epoch() != epoch {
		t.Errorf("epoch changed across restart: %s -> %s", epoch, e.store.Epoch())
	}
	var got cp.SecurityGroup
	r := e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil)
	r.decode(t, &got)
	if d := cmp.Diff(g, got); d != "" {
		t.Errorf("group after restart (-before +after):\n%s", d)
	}
	// The sync deadline survives too: still locked, then failed.
	if r := e.do("DELETE", "/vpc/security-groups/"+g.ID, orgA, nil); r.status != http.StatusConflict {
		t.Errorf("DELETE after restart while syncing: %d", r.status)
	}
	e.clock.Advance(5 * time.Minute)
	if n, err := e.store.Sweep(context.Background()); err != nil || n != 1 {
		t.Errorf("Sweep after restart = %d, %v; want 1 failed", n, err)
	}
	e.restart()
	e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil).decode(t, &got)
	if got.Status != cp.StatusFailed {
		t.Errorf("status after sweep and restart = %q, want failed", got.Status)
	}
}

func TestSites(t *testing.T) {
	e := newEnv(t)
	e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Group G", Rules: []cp.FilterRuleWrite{}, Sites: []string{"site_b", "site_a"}})
	var sites []cp.Site
	r := e.do("GET", "/vpc/sites", orgA, nil)
	r.decode(t, &sites)
	want := []cp.Site{{ID: "site_a", State: cp.SiteSyncing}, {ID: "site_b", State: cp.SiteSyncing}}
	if d := cmp.Diff(want, sites); d != "" {
		t.Errorf("sites (-want +got):\n%s", d)
	}
	e.clock.Advance(3 * time.Minute)
	var one cp.Site
	r = e.do("GET", "/sites/site_a", orgA, nil)
	r.decode(t, &one)
	if one.State != cp.SiteUnknown {
		t.Errorf("site state after an unconfirmed deadline = %q, want unknown", one.State)
	}
	if r = e.do("GET", "/vpc/sites/site_zz", orgA, nil); r.status != http.StatusNotFound {
		t.Errorf("unknown site: %d", r.status)
	}
	if r = e.do("GET", "/vpc/sites/site_a", orgB, nil); r.status != http.StatusNotFound {
		t.Errorf("another org's site: %d", r.status)
	}
}

func TestConfirmMakesGroupActive(t *testing.T) {
	e := newEnv(t)
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Group G", Rules: []cp.FilterRuleWrite{}, Sites: []string{"site_a", "site_b"}})
	ctx := context.Background()
	if err := e.confirm(ctx, orgA, "site_a", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	var got cp.SecurityGroup
	e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil).decode(t, &got)
	if got.Status != cp.StatusSyncing {
		t.Errorf("after one of two sites: %q, want syncing", got.Status)
	}
	if err := e.confirm(ctx, orgA, "site_b", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/vpc/security-groups/"+g.ID, orgA, nil).decode(t, &got)
	if got.Status != cp.StatusActive {
		t.Errorf("after both sites: %q, want active", got.Status)
	}
	var site cp.Site
	e.do("GET", "/vpc/sites/site_b", orgA, nil).decode(t, &site)
	if site.State != cp.SiteInSync || site.AppliedRevision != 1 {
		t.Errorf("site after confirm: %+v", site)
	}
	// Writable again at once.
	if r := e.do("PUT", "/vpc/security-groups/"+g.ID, orgA, cp.SecurityGroupWrite{Name: "Group G2", Rules: []cp.FilterRuleWrite{}, Sites: []string{}}); r.status != 200 {
		t.Errorf("PUT after confirmation: %d %s", r.status, r.body)
	}
}

func TestReferenceData(t *testing.T) {
	e := newEnv(t)
	var protos []api.Protocol
	r := e.do("GET", "/vpc/reference/protocols", orgA, nil)
	r.decode(t, &protos)
	byNum := map[int]api.Protocol{}
	for _, p := range protos {
		byNum[p.Number] = p
	}
	for _, want := range []api.Protocol{
		{0, "all", "ALL", false}, {1, "icmp", "ICMP", false}, {6, "tcp", "TCP", true}, {17, "udp", "UDP", true},
		{33, "dccp", "DCCP", true}, {132, "sctp", "SCTP", true}, {136, "udp-lite", "UDPLite", true}, {47, "gre", "GRE", false},
		{58, "icmpv6", "IPv6-ICMP", false},
	} {
		if d := cmp.Diff(want, byNum[want.Number]); d != "" {
			t.Errorf("protocol %d (-want +got):\n%s", want.Number, d)
		}
	}
	var svcs []api.Service
	e.do("GET", "/reference/services", orgA, nil).decode(t, &svcs)
	if !slices.Contains(svcs, api.Service{Name: "https", Protocol: 6, Port: "443"}) {
		t.Errorf("services lack https: %+v", svcs)
	}
	for _, s := range svcs {
		if _, ok := byNum[s.Protocol]; !ok || !byNum[s.Protocol].SupportsPorts {
			t.Errorf("service %+v uses a protocol without ports", s)
		}
	}
	if r := e.do("GET", "/vpc/reference/protocols", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("reference data without a token: %d", r.status)
	}
}

func TestUnauthenticatedRoutes(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		if r := e.do("GET", p, "", nil); r.status != 200 {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
	r := e.do("GET", "/openapi.yaml", "", nil)
	if string(r.body) != string(api.OpenAPI) {
		t.Error("/openapi.yaml is not the embedded document")
	}
	if r := e.do("GET", "/vpc/nothing", orgA, nil); r.status != 404 {
		t.Errorf("unknown route: %d", r.status)
	}
	if r := e.do("PATCH", "/vpc/security-groups", orgA, nil); r.status != 405 || r.header.Get("Allow") == "" {
		t.Errorf("PATCH: %d Allow=%q", r.status, r.header.Get("Allow"))
	}
}

// brokenStore fails one call the way a broken disk would.
type brokenStore struct{ api.Store }

func (brokenStore) ListJSONPage(context.Context, string, string, string, int) ([]byte, string, bool, error) {
	return nil, "", false, errors.New("read /var/lib/rampart/rampart.db: input/output error")
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	e := &env{}
	*e = *newEnv(t)
	e.wrap = func(s api.Store) api.Store { return brokenStore{s} }
	e.restart()
	r := e.do("GET", "/vpc/security-groups", orgA, nil)
	er := r.errorResponse(t)
	if r.status != 500 || er.Type != "api_error" || er.Code != cp.CodeInternal {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if strings.Contains(er.Message, "rampart.db") || strings.Contains(er.Message, "input/output") {
		t.Errorf("500 leaks internals: %s", er.Message)
	}
	if id := r.header.Get("X-Request-Id"); !strings.Contains(er.Message, id) {
		t.Errorf("message %q does not carry the request id %q", er.Message, id)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Active", Rules: []cp.FilterRuleWrite{}, Sites: []string{}})
	e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Syncing", Rules: []cp.FilterRuleWrite{}, Sites: []string{"site_a"}})
	e.createList(orgB, "10.0.0.0/8")
	want := `
# HELP rampart_resources Security groups and prefix lists, by kind and sync status.
# TYPE rampart_resources gauge
rampart_resources{kind="prefix_list",status="active"} 1
rampart_resources{kind="prefix_list",status="failed"} 0
rampart_resources{kind="prefix_list",status="syncing"} 0
rampart_resources{kind="security_group",status="active"} 1
rampart_resources{kind="security_group",status="failed"} 0
rampart_resources{kind="security_group",status="syncing"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "rampart_resources"); err != nil {
		t.Error(err)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "rampart_http_requests_total":
				found["count "+labels["route"]+" "+labels["code"]] = m.GetCounter().GetValue()
			case "rampart_http_request_duration_seconds":
				found["latency "+labels["route"]] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for k, want := range map[string]float64{
		"count POST /vpc/security-groups 201": 2,
		"count POST /vpc/prefix-lists 201":    1,
		"latency POST /vpc/security-groups":   2,
	} {
		if found[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, found[k], want, found)
		}
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	expired, err := auth.Mint(auth.MintOptions{Key: testKey, Org: orgA, TTL: time.Minute, Now: e.clock.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := auth.Mint(auth.MintOptions{Key: bytes.Repeat([]byte("w"), 32), Org: orgA, TTL: time.Hour, Now: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	wrongAud, err := auth.Mint(auth.MintOptions{Key: testKey, Org: orgA, Audience: "other", TTL: time.Hour, Now: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"org_id": orgA, "iss": auth.DefaultIssuer, "aud": auth.DefaultAudience,
		"exp": e.clock.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	for name, authz := range map[string]string{
		"missing":        "",
		"not bearer":     "Basic dXNlcjpwYXNz",
		"garbage":        "Bearer garbage",
		"alg none":       "Bearer " + none,
		"wrong key":      "Bearer " + wrongKey,
		"expired":        "Bearer " + expired,
		"wrong audience": "Bearer " + wrongAud,
	} {
		r := e.doRaw("GET", "/vpc/security-groups", authz, nil)
		er := r.errorResponse(t)
		if r.status != http.StatusUnauthorized || er.Type != "authentication_error" || er.Code != cp.CodeUnauthenticated {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
		if strings.Contains(er.Message, strings.TrimPrefix(authz, "Bearer ")) && authz != "" {
			t.Errorf("%s: message echoes the token", name)
		}
	}
}

// TestStatusSpliceIgnoresLookalikes stores text that looks like the status
// field and checks that reads (which splice the current status into the
// stored JSON) change only the real field.
func TestStatusSpliceIgnoresLookalikes(t *testing.T) {
	e := newEnv(t)
	tricky := `x","status":"active","y":"`
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: tricky, Description: ptr(tricky), Rules: []cp.FilterRuleWrite{}, Sites: []string{"site_a"}})
	e.clock.Advance(time.Hour)
	for _, path := range []string{"/vpc/security-groups/" + g.ID, "/vpc/security-groups"} {
		r := e.do("GET", path, orgA, nil)
		var got cp.SecurityGroup
		if strings.HasSuffix(path, "groups") {
			var all []cp.SecurityGroup
			r.decode(t, &all)
			got = all[0]
		} else {
			r.decode(t, &got)
		}
		if got.Name != tricky || got.Description != tricky || got.Status != cp.StatusFailed {
			t.Errorf("GET %s: name %q, description %q, status %q", path, got.Name, got.Description, got.Status)
		}
	}
}

// TestErrorCodesAreDocumented keeps errors.md (where doc_url points) and the
// error table in step.
func TestErrorCodesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("errors.md")
	if err != nil {
		t.Fatal(err)
	}
	for code := range api.ErrorTable() {
		if !strings.Contains(string(doc), `<a id="`+code+`"></a>`) {
			t.Errorf("errors.md has no anchor for %s", code)
		}
	}
}

// TestSpecLimitsMatchDomain checks that the limits openapi.yaml enforces are
// the domain's.
func TestSpecLimitsMatchDomain(t *testing.T) {
	doc, err := api.LoadSpec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := doc.Components.Schemas
	for name, c := range map[string]struct{ got, want uint64 }{
		"rules maxItems":    {*s["SecurityGroupWrite"].Value.Properties["rules"].Value.MaxItems, cp.MaxRules},
		"prefixes maxItems": {*s["PrefixListWrite"].Value.Properties["prefixes"].Value.MaxItems, cp.MaxPrefixes},
		"order maximum":     {uint64(*s["FilterRuleWrite"].Value.Properties["order"].Value.Max), cp.MaxOrder},
		"order minimum":     {uint64(*s["FilterRuleWrite"].Value.Properties["order"].Value.Min), cp.MinOrder},
	} {
		if c.got != c.want {
			t.Errorf("%s: openapi.yaml %d, domain %d", name, c.got, c.want)
		}
	}
}

// TestMetricsLint runs promlint (what `promtool check metrics` runs) over
// the API's metrics.
func TestMetricsLint(t *testing.T) {
	e := newEnv(t)
	e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Group", Rules: []cp.FilterRuleWrite{}, Sites: []string{}})
	r := e.do("GET", "/metrics", "", nil)
	problems, err := promlint.New(bytes.NewReader(r.body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, name := range []string{"rampart_http_requests_total", "rampart_http_request_duration_seconds", "rampart_resources"} {
		if !bytes.Contains(r.body, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
