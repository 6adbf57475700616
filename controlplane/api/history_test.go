package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// TestSiteHistory: GET /vpc/sites/{id}/history answers the site's
// transitions newest first, paged through Link rel="next" by seq, every
// answer valid against openapi.yaml; another organisation's site, a site
// nothing named, and a site id that is not one are 404, and a bad
// starting_after is 422 naming it.
func TestSiteHistory(t *testing.T) {
	e := newEnv(t, func(e *env) { e.revise = true })
	t0 := e.clock.Now()
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "443", "0.0.0.0/0")}, Sites: []string{"site_hq"}})
	e.createGroup(orgB, cp.SecurityGroupWrite{Name: "theirs", Rules: []cp.FilterRuleWrite{rule(10, "80", "0.0.0.0/0")}, Sites: []string{"site_theirs"}})
	e.clock.Advance(time.Second)
	if err := e.confirm(t.Context(), orgA, "site_hq", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if r := e.do("PUT", "/vpc/security-groups/"+g.ID, orgA, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "8443", "0.0.0.0/0")}, Sites: []string{"site_hq"}}); r.status != http.StatusOK {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	e.clock.Advance(time.Second)
	if err := e.confirm(t.Context(), orgA, "site_hq", 2, false, "the router said no"); err != nil {
		t.Fatal(err)
	}

	want := []cp.SiteTransition{
		{Seq: 4, At: t0.Add(3 * time.Second), From: cp.SiteSyncing, To: cp.SiteFailed, DesiredRevision: 2, AppliedRevision: 1, Error: "the router said no"},
		{Seq: 3, At: t0.Add(2 * time.Second), From: cp.SiteInSync, To: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 1},
		{Seq: 2, At: t0.Add(time.Second), From: cp.SiteSyncing, To: cp.SiteInSync, DesiredRevision: 1, AppliedRevision: 1},
		{Seq: 1, At: t0, From: cp.SiteUnknown, To: cp.SiteSyncing, DesiredRevision: 1},
	}
	r := e.do("GET", "/vpc/sites/site_hq/history", orgA, nil)
	var all []cp.SiteTransition
	r.decode(t, &all)
	if diff := cmp.Diff(want, all); diff != "" || r.header.Get("Link") != "" {
		t.Errorf("history, Link %q (-want +got):\n%s", r.header.Get("Link"), diff)
	}
	var paged []cp.SiteTransition
	pages := 0
	for next := "/vpc/sites/site_hq/history?limit=3"; next != ""; pages++ {
		r := e.do("GET", next, orgA, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, r.status, r.body)
		}
		var page []cp.SiteTransition
		r.decode(t, &page)
		paged = append(paged, page...)
		next = ""
		if l := r.header.Get("Link"); l != "" {
			next = l[1:strings.Index(l, ">")]
		}
	}
	if diff := cmp.Diff(want, paged); diff != "" || pages != 2 {
		t.Errorf("%d pages of 3 (want 2) (-want +got):\n%s", pages, diff)
	}

	for _, c := range []struct{ org, site string }{
		{orgA, "site_theirs"}, // orgB's site
		{orgB, "site_hq"},     // orgA's site
		{orgA, "site_never"},
		{orgA, "not-a-site"},
	} {
		if r := e.do("GET", "/vpc/sites/"+c.site+"/history", c.org, nil); r.status != http.StatusNotFound {
			t.Errorf("history of %s as %s: %d %s, want 404", c.site, c.org, r.status, r.body)
		}
	}
	for _, bad := range []string{"0", "x", "-1"} {
		r := e.do("GET", "/vpc/sites/site_hq/history?starting_after="+bad, orgA, nil)
		if er := r.errorResponse(t); r.status != http.StatusUnprocessableEntity || !strings.HasPrefix(er.Message, "starting_after") {
			t.Errorf("starting_after=%s: %d %s, want 422 at starting_after", bad, r.status, r.body)
		}
	}
}
