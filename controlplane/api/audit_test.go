package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// as sends a request as subject of org, with extra headers.
func (e *env) as(org, subject, method, path string, hdr map[string]string, body any) response {
	e.t.Helper()
	return e.doWith(method, path, "Bearer "+e.tokenFor(org, subject), hdr, body)
}

// events reads every page of an audit listing (limit per page), following
// Link, and returns the events in order.
func (e *env) events(org, path string) []cp.AuditEvent {
	e.t.Helper()
	var all []cp.AuditEvent
	for page := 0; path != ""; page++ {
		if page > 100 {
			e.t.Fatal("more than 100 pages")
		}
		r := e.do("GET", path, org, nil)
		if r.status != http.StatusOK {
			e.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		var evs []cp.AuditEvent
		r.decode(e.t, &evs)
		all = append(all, evs...)
		path = nextLink(e.t, r.header.Get("Link"))
	}
	return all
}

func nextLink(t testing.TB, h string) string {
	t.Helper()
	if h == "" {
		return ""
	}
	u, ok := strings.CutSuffix(h, `>; rel="next"`)
	if !ok || !strings.HasPrefix(u, "<") {
		t.Fatalf("Link %q", h)
	}
	return u[1:]
}

// summary is what a test compares of an event.
type summary struct {
	Method, Kind, ID, Subject, RequestID string
	Version                              uint64
}

func summarize(evs []cp.AuditEvent) []summary {
	out := []summary{}
	for _, ev := range evs {
		out = append(out, summary{ev.Method, ev.ResourceKind, ev.ResourceID, ev.Subject, ev.RequestID, ev.Version})
	}
	return out
}

// TestAuditTrail: every successful write records who, what, when and the
// request id, with the body as stored; failed writes record nothing; the
// listing is newest first, scoped to the organisation, filterable by
// resource and time, and pages with Link keeping the filters.
func TestAuditTrail(t *testing.T) {
	e := newEnv(t)
	t0 := e.clock.Now()
	hour := func() { e.clock.Advance(time.Hour) }
	var want []summary // oldest first
	write := func(org, subject, method, path string, hdr map[string]string, body any, status int) response {
		t.Helper()
		r := e.as(org, subject, method, path, hdr, body)
		if r.status != status {
			t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, status)
		}
		return r
	}
	r := write(orgA, "alice", "POST", "/vpc/prefix-lists", nil, cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24", Description: "d"}}}, http.StatusCreated)
	var l cp.PrefixList
	r.decode(t, &l)
	want = append(want, summary{"POST", cp.KindPrefixList, l.ID, "alice", r.header.Get("X-Request-Id"), 1})
	hour()
	r = write(orgA, "alice", "POST", "/security-groups", map[string]string{"X-Request-Id": "req-create-1"}, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "22", l.ID)}, Sites: []string{}}, http.StatusCreated)
	var g cp.SecurityGroup
	r.decode(t, &g)
	created := r.body
	want = append(want, summary{"POST", cp.KindSecurityGroup, g.ID, "alice", "req-create-1", 1})
	hour()
	// Failed writes record nothing: in use, a stale If-Match, invalid.
	write(orgA, "bob", "DELETE", "/vpc/prefix-lists/"+l.ID, nil, nil, http.StatusConflict)
	write(orgA, "bob", "PUT", "/vpc/security-groups/"+g.ID, map[string]string{"If-Match": `"v9"`}, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{}, Sites: []string{}}, http.StatusPreconditionFailed)
	write(orgA, "bob", "PUT", "/vpc/security-groups/"+g.ID, nil, cp.SecurityGroupWrite{Name: "w", Rules: []cp.FilterRuleWrite{}, Sites: []string{}}, http.StatusUnprocessableEntity)
	r = write(orgA, "bob", "PUT", "/vpc/security-groups/"+g.ID, nil, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "443", "0.0.0.0/0")}, Sites: []string{}}, http.StatusOK)
	replaced := r.body
	want = append(want, summary{"PUT", cp.KindSecurityGroup, g.ID, "bob", r.header.Get("X-Request-Id"), 2})
	hour()
	r = write(orgA, "bob", "DELETE", "/vpc/prefix-lists/"+l.ID, nil, nil, http.StatusNoContent)
	want = append(want, summary{"DELETE", cp.KindPrefixList, l.ID, "bob", r.header.Get("X-Request-Id"), 2})
	write(orgB, "carol", "POST", "/vpc/security-groups", nil, cp.SecurityGroupWrite{Name: "theirs", Rules: []cp.FilterRuleWrite{}, Sites: []string{}}, http.StatusCreated)

	newestFirst := func(s []summary) []summary {
		out := make([]summary, len(s))
		for i := range s {
			out[i] = s[len(s)-1-i]
		}
		return out
	}
	all := e.events(orgA, "/vpc/audit-events")
	if diff := cmp.Diff(newestFirst(want), summarize(all)); diff != "" {
		t.Fatalf("audit trail of org_a (-want +got)\n%s", diff)
	}
	for i, ev := range all {
		if ev.OrgID != orgA || !ev.At.Equal(t0.Add(time.Duration(len(all)-1-i)*time.Hour)) {
			t.Errorf("event %d: org %q at %v", i, ev.OrgID, ev.At)
		}
	}
	// The body is the resource as stored after the write; a delete's is null.
	for _, c := range []struct {
		ev   cp.AuditEvent
		want []byte
	}{{all[2], created}, {all[1], replaced}} {
		var got, want cp.SecurityGroup
		json.Unmarshal(c.ev.Body, &got)
		json.Unmarshal(c.want, &want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("body of %s %s (-answered +recorded)\n%s", c.ev.Method, c.ev.ResourceID, diff)
		}
	}
	if string(all[0].Body) != "null" {
		t.Errorf("a delete's body: %s", all[0].Body)
	}
	// Paging walks the same events, one at a time.
	if diff := cmp.Diff(summarize(all), summarize(e.events(orgA, "/vpc/audit-events?limit=1"))); diff != "" {
		t.Errorf("paged (-whole +paged)\n%s", diff)
	}
	// Filters, kept across pages.
	filters := []struct {
		name, query string
		want        []summary
	}{
		{"group", "resource_id=" + g.ID, newestFirst(want[1:3])},
		{"list", "resource_id=" + l.ID, []summary{want[3], want[0]}},
		{"since", "since=" + url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339)), newestFirst(want[1:])},
		{"until", "until=" + url.QueryEscape(t0.Add(2*time.Hour).Format(time.RFC3339)), newestFirst(want[:2])},
		{"both", "since=" + url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339)) + "&until=" + url.QueryEscape(t0.Add(3*time.Hour).Format(time.RFC3339)), newestFirst(want[1:3])},
		{"group since", "resource_id=" + g.ID + "&since=" + url.QueryEscape(t0.Add(2*time.Hour).Format(time.RFC3339)), want[2:3]},
		{"another org's group", "resource_id=" + e.createGroup(orgB, cp.SecurityGroupWrite{Name: "other", Rules: []cp.FilterRuleWrite{}, Sites: []string{}}).ID, []summary{}},
	}
	for _, f := range filters {
		for _, limit := range []string{"", "&limit=1"} {
			if diff := cmp.Diff(f.want, summarize(e.events(orgA, "/vpc/audit-events?"+f.query+limit))); diff != "" {
				t.Errorf("%s%s (-want +got)\n%s", f.name, limit, diff)
			}
		}
	}
	// The other organisation sees only its own.
	if got := summarize(e.events(orgB, "/audit-events")); len(got) != 2 || got[1].Subject != "carol" {
		t.Errorf("org_b's trail: %+v", got)
	}
	for _, q := range []string{"limit=0", "limit=1001", "starting_after=evt_nothex", "since=yesterday", "until=2026-13-01T00:00:00Z", "resource_id=hq"} {
		if r := e.do("GET", "/vpc/audit-events?"+q, orgA, nil); r.status != http.StatusUnprocessableEntity {
			t.Errorf("?%s: %d %s, want 422", q, r.status, r.body)
		}
	}
}

// TestRestoreAVersion is #16's round trip: PUT v1, PUT v2, restore v1 by
// its body; GET equals v1 and the audit trail shows the three writes with
// their authors. A group version naming a deleted prefix list says so at
// restore time (422), and versions are scoped like everything else.
func TestRestoreAVersion(t *testing.T) {
	e := newEnv(t)
	l := e.createList(orgA, "192.0.2.0/24")
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{}, Sites: []string{}})
	path := "/vpc/security-groups/" + g.ID
	v1 := cp.SecurityGroupWrite{Name: "web v1", Description: ptr("first"), Rules: []cp.FilterRuleWrite{rule(10, "22", l.ID), rule(20, "443", "0.0.0.0/0")}, Sites: []string{}}
	v2 := cp.SecurityGroupWrite{Name: "web v2", Description: ptr("second"), Rules: []cp.FilterRuleWrite{rule(10, "80", "0.0.0.0/0")}, Sites: []string{}}
	for _, w := range []struct {
		who  string
		body cp.SecurityGroupWrite
	}{{"alice", v1}, {"bob", v2}} {
		if r := e.as(orgA, w.who, "PUT", path, nil, w.body); r.status != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", w.body.Name, r.status, r.body)
		}
	}
	r := e.do("GET", path+"/versions", orgA, nil)
	if r.status != http.StatusOK {
		t.Fatalf("versions: %d %s", r.status, r.body)
	}
	var vs []cp.Version
	r.decode(t, &vs)
	var got []string
	for _, v := range vs {
		got = append(got, fmt.Sprintf("%s v%d %s", v.Method, v.Version, v.Subject))
	}
	if diff := cmp.Diff([]string{"PUT v3 bob", "PUT v2 alice", "POST v1 rampart-token:org_a"}, got); diff != "" {
		t.Fatalf("versions (-want +got)\n%s", diff)
	}
	var v1Body cp.SecurityGroupWrite
	if err := json.Unmarshal(vs[1].Body, &v1Body); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v1, v1Body); diff != "" {
		t.Fatalf("version 2's body is not what was PUT (-put +listed)\n%s", diff)
	}
	// Restore: a PUT of the listed body, conditional on the current version.
	if r := e.as(orgA, "carol", "PUT", path, map[string]string{"If-Match": `"v3"`}, vs[1].Body); r.status != http.StatusOK {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	r = e.do("GET", path, orgA, nil)
	var now cp.SecurityGroup
	r.decode(t, &now)
	form, err := cp.WriteForm(cp.KindSecurityGroup, r.body)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(vs[1].Body), string(form)); diff != "" {
		t.Errorf("GET after restore is not v1 (-v1 +now)\n%s", diff)
	}
	var authors []string
	for _, ev := range e.events(orgA, "/vpc/audit-events?resource_id="+g.ID) {
		authors = append(authors, ev.Method+" "+ev.Subject)
	}
	if diff := cmp.Diff([]string{"PUT carol", "PUT bob", "PUT alice", "POST rampart-token:org_a"}, authors); diff != "" {
		t.Errorf("audit trail of the group (-want +got)\n%s", diff)
	}
	// Paging the versions.
	r = e.do("GET", path+"/versions?limit=2", orgA, nil)
	if next := nextLink(t, r.header.Get("Link")); !strings.Contains(next, "starting_after=evt_") {
		t.Errorf("versions' Link %q", r.header.Get("Link"))
	}

	// Versions and ETags are stored: a restart keeps them.
	e.restart()
	r = e.do("GET", path+"/versions", orgA, nil)
	var after []cp.Version
	r.decode(t, &after)
	if len(after) != 4 || after[0].Subject != "carol" {
		t.Errorf("after a restart: %d versions, want 4, the newest by carol: %+v", len(after), after)
	}
	if etag := e.do("GET", path, orgA, nil).header.Get("ETag"); etag != `"v4"` {
		t.Errorf("after a restart: ETag %q, want \"v4\"", etag)
	}

	// The list v1 names goes: restoring v1 again is a 422 naming it.
	if r := e.do("PUT", path, orgA, v2); r.status != http.StatusOK {
		t.Fatalf("PUT v2: %d", r.status)
	}
	if r := e.do("DELETE", "/vpc/prefix-lists/"+l.ID, orgA, nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE list: %d %s", r.status, r.body)
	}
	r = e.do("PUT", path, orgA, vs[1].Body)
	if er := r.errorResponse(t); r.status != http.StatusUnprocessableEntity || er.Code != cp.CodePrefixListNotFound || !strings.Contains(er.Message, l.ID) {
		t.Errorf("restore of a version naming a deleted list: %d %s", r.status, r.body)
	}
	// The deleted list keeps its versions; ids of nothing, or of another
	// organisation, are 404.
	r = e.do("GET", "/vpc/prefix-lists/"+l.ID+"/versions", orgA, nil)
	if r.status != http.StatusOK {
		t.Errorf("versions of a deleted list: %d", r.status)
	}
	for _, c := range []struct{ org, path string }{
		{orgB, path + "/versions"},
		{orgB, "/vpc/prefix-lists/" + l.ID + "/versions"},
		{orgA, "/vpc/security-groups/" + cp.NewID(cp.SecurityGroupIDPrefix) + "/versions"},
		{orgA, "/prefix-lists/" + cp.NewID(cp.PrefixListIDPrefix) + "/versions"},
	} {
		if r := e.do("GET", c.path, c.org, nil); r.status != http.StatusNotFound {
			t.Errorf("GET %s as %s: %d %s, want 404", c.path, c.org, r.status, r.body)
		}
	}
}

// TestWalk2500Sites is #16's paging check: walking every page of 2,500
// sites yields each exactly once, in id order, at the default page size
// and at the largest.
func TestWalk2500Sites(t *testing.T) {
	e := newEnv(t, func(e *env) { e.quotas = cp.Quotas{Sites: 3000} })
	all := siteIDs("w", 2500)
	for i := 0; i < len(all); i += cp.MaxSitesPerResource {
		w := cp.SecurityGroupWrite{Name: "walk", Rules: []cp.FilterRuleWrite{}, Sites: all[i:min(i+cp.MaxSitesPerResource, len(all))]}
		if r := e.do("POST", "/vpc/security-groups", orgA, w); r.status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
	}
	for _, c := range []struct {
		first string
		pages int
	}{{"/vpc/sites", 25}, {"/vpc/sites?limit=1000", 3}} {
		pages, ids := walkPages(t, e, orgA, c.first)
		if len(pages) != c.pages {
			t.Errorf("%s: %d pages, want %d", c.first, len(pages), c.pages)
		}
		if diff := cmp.Diff(all, ids); diff != "" {
			t.Errorf("%s: sites over every page (-want +got)\n%s", c.first, diff)
		}
	}
}
