package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// TestDecommissionSite: DELETE /vpc/sites/{siteId} answers 202 with the
// site decommissioning, takes it out of the organisation's groups and
// lists, refuses what would attach it meanwhile, answers 404 for unknown
// ids and another organisation's sites, and, once the site is forgotten,
// 404 for everything about it. Every answer is validated against
// openapi.yaml (doWith).
func TestDecommissionSite(t *testing.T) {
	e := newEnv(t, func(e *env) { e.revise = true })
	ctx := context.Background()
	g := e.createGroup("org_a", cp.SecurityGroupWrite{Name: "Web", Rules: []cp.FilterRuleWrite{rule(10, "443", "0.0.0.0/0")}, Sites: []string{"site_a", "site_b"}})
	l := e.createList("org_a", "192.0.2.0/24")
	var lw cp.PrefixListWrite
	lw.Name, lw.Prefixes, lw.Sites = "Office", []cp.PrefixWrite{{CIDR: "192.0.2.0/24", Description: "d"}}, []string{"site_a"}
	if r := e.do("PUT", "/vpc/prefix-lists/"+l.ID, "org_a", lw); r.status != http.StatusOK {
		t.Fatalf("attach the list: %d %s", r.status, r.body)
	}
	for _, site := range []string{"site_a", "site_b"} {
		var s cp.Site
		e.do("GET", "/vpc/sites/"+site, "org_a", nil).decode(t, &s)
		if err := e.confirm(ctx, "org_a", site, s.DesiredRevision, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	var siteB cp.Site
	e.do("GET", "/vpc/sites/site_b", "org_a", nil).decode(t, &siteB)

	// Errors first: nothing changes.
	for _, c := range []struct {
		name, org, path string
		hdr             map[string]string
		status          int
		code            string
	}{
		{"no token", "", "/vpc/sites/site_a", nil, http.StatusUnauthorized, cp.CodeUnauthenticated},
		{"unknown site", "org_a", "/vpc/sites/site_nope", nil, http.StatusNotFound, cp.CodeNotFound},
		{"not a site id", "org_a", "/vpc/sites/hq", nil, http.StatusNotFound, cp.CodeNotFound},
		{"another organisation's site", "org_b", "/vpc/sites/site_b", nil, http.StatusNotFound, cp.CodeNotFound},
		{"a version in If-Match", "org_a", "/vpc/sites/site_a", map[string]string{"If-Match": `"v1"`}, http.StatusUnprocessableEntity, cp.CodeInvalidValue},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.doWith("DELETE", c.path, e.bearer(c.org), c.hdr, nil)
			if r.status != c.status || r.errorResponse(t).Code != c.code {
				t.Errorf("%d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
		})
	}

	r := e.doWith("DELETE", "/vpc/sites/site_a", e.bearer("org_a"), map[string]string{"If-Match": "*"}, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("decommission: %d %s", r.status, r.body)
	}
	var got cp.Site
	r.decode(t, &got)
	if got.ID != "site_a" || got.State != cp.SiteDecommissioning {
		t.Errorf("answer: %+v", got)
	}
	var cur cp.SecurityGroup
	e.do("GET", "/vpc/security-groups/"+g.ID, "org_a", nil).decode(t, &cur)
	if diff := cmp.Diff([]string{"site_b"}, cur.Sites); diff != "" {
		t.Errorf("group's sites (-want +got):\n%s", diff)
	}
	var list cp.PrefixList
	e.do("GET", "/vpc/prefix-lists/"+l.ID, "org_a", nil).decode(t, &list)
	if len(list.Sites) != 0 {
		t.Errorf("list's sites: %v", list.Sites)
	}
	var b cp.Site
	e.do("GET", "/vpc/sites/site_b", "org_a", nil).decode(t, &b)
	if diff := cmp.Diff(siteB, b); diff != "" {
		t.Errorf("the other site changed (-before +after):\n%s", diff)
	}
	var events []cp.AuditEvent
	e.do("GET", "/vpc/audit-events?resource_id=site_a", "org_a", nil).decode(t, &events)
	if len(events) != 1 || events[0].Method != "DELETE" || events[0].ResourceKind != cp.KindSite {
		t.Errorf("audit trail of site_a: %+v", events)
	}

	// While it decommissions: the alias answers the same, nothing may
	// attach or enroll it.
	if r := e.do("DELETE", "/sites/site_a", "org_a", nil); r.status != http.StatusAccepted {
		t.Errorf("second DELETE: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/vpc/security-groups", "org_a", cp.SecurityGroupWrite{Name: "Again", Rules: []cp.FilterRuleWrite{rule(10, "22", "0.0.0.0/0")}, Sites: []string{"site_a"}})
	if r.status != http.StatusConflict || r.errorResponse(t).Code != cp.CodeSiteDecommissioning {
		t.Errorf("attach a decommissioning site: %d %s", r.status, r.body)
	}

	// A site of a syncing group: the whole decommission waits.
	e.createGroup("org_a", cp.SecurityGroupWrite{Name: "Sync", Rules: []cp.FilterRuleWrite{rule(10, "80", "0.0.0.0/0")}, Sites: []string{"site_b"}})
	r = e.do("DELETE", "/vpc/sites/site_b", "org_a", nil)
	if r.status != http.StatusConflict || r.errorResponse(t).Code != cp.CodeResourceLocked || r.header.Get("Retry-After") == "" {
		t.Errorf("decommission with a syncing group: %d %s %v", r.status, r.body, r.header)
	}
	e.do("GET", "/vpc/sites/site_b", "org_a", nil).decode(t, &b)
	if b.State == cp.SiteDecommissioning {
		t.Errorf("refused decommission left site_b %q", b.State)
	}

	// Forgotten once its agent applied the empty document: 404 throughout.
	if err := e.confirm(ctx, "org_a", "site_a", got.DesiredRevision, true, ""); err != nil {
		t.Fatal(err)
	}
	if refs, err := e.store.ForgetDecommissioned(ctx); err != nil || len(refs) != 1 {
		t.Fatalf("forget: %v, %v", refs, err)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/vpc/sites/site_a"}, {"GET", "/vpc/sites/site_a/policy"}, {"DELETE", "/vpc/sites/site_a"},
	} {
		if r := e.do(c.method, c.path, "org_a", nil); r.status != http.StatusNotFound {
			t.Errorf("%s %s once forgotten: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	var sites []cp.Site
	e.do("GET", "/vpc/sites", "org_a", nil).decode(t, &sites)
	for _, s := range sites {
		if s.ID == "site_a" {
			t.Errorf("forgotten site listed: %+v", s)
		}
	}
	// Enrolling it again is allowed and makes it known again.
	e.clock.Advance(time.Second)
	if !e.store.Decommissioned("org_a", "site_a") {
		t.Fatal("forgotten site not refused")
	}
	if err := e.store.ReserveSite(ctx, "org_a", "site_a"); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/vpc/sites/site_a", "org_a", nil); r.status != http.StatusOK || e.store.Decommissioned("org_a", "site_a") {
		t.Errorf("re-enrolled site: %d %s", r.status, r.body)
	}
}
