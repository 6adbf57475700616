package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/container"
	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/keys"
)

func siteIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("site_%s%06d", prefix, i)
	}
	return out
}

func portList(n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprint(1000 + i)
	}
	return strings.Join(ps, ",")
}

// TestBounds (#13.2, #13.6): every collection and string of a write has a
// bound, and going over is a 422 that names the field and the limit, with
// nothing stored. The security test's bodies: 100,000 sites, a port of
// 20,001 entries.
func TestBounds(t *testing.T) {
	e := newEnv(t)
	group := func(sites []string, port, address string) cp.SecurityGroupWrite {
		return cp.SecurityGroupWrite{Name: "bounded", Rules: []cp.FilterRuleWrite{{Direction: "inbound", Order: 1, Protocol: 6, Port: port, Address: address}}, Sites: sites}
	}
	list := func(sites []string, cidr string) cp.PrefixListWrite {
		return cp.PrefixListWrite{Name: "bounded", Prefixes: []cp.PrefixWrite{{CIDR: cidr}}, Sites: sites}
	}
	cases := []struct {
		name string
		path string
		body any
		want verdict
		hint string
	}{
		{"group 1001 sites", "/vpc/security-groups", group(siteIDs("a", 1001), "443", "0.0.0.0/0"), verdict{422, cp.CodeTooManySites, "sites"}, "at most 1000"},
		{"group 100000 sites", "/vpc/security-groups", group(siteIDs("a", 100000), "443", "0.0.0.0/0"), verdict{422, cp.CodeTooManySites, "sites"}, "at most 1000"},
		{"list 1001 sites", "/vpc/prefix-lists", list(siteIDs("a", 1001), "192.0.2.0/24"), verdict{422, cp.CodeTooManySites, "sites"}, "at most 1000"},
		{"port 16 entries", "/vpc/security-groups", group(nil, portList(16), "0.0.0.0/0"), verdict{422, cp.CodeInvalidPort, "rules[0].port"}, "at most 15"},
		{"port 20001 entries", "/vpc/security-groups", group(nil, portList(20001), "0.0.0.0/0"), verdict{422, cp.CodeInvalidValue, "rules[0].port"}, "at most 255"},
		{"port 256 characters", "/vpc/security-groups", group(nil, strings.Repeat("0", 251)+"80,81", "0.0.0.0/0"), verdict{422, cp.CodeInvalidValue, "rules[0].port"}, "at most 255"},
		{"address 65 characters", "/vpc/security-groups", group(nil, "443", strings.Repeat("1", 65)), verdict{422, cp.CodeInvalidValue, "rules[0].address"}, "at most 64"},
		{"cidr 65 characters", "/vpc/prefix-lists", list(nil, strings.Repeat("1", 65)), verdict{422, cp.CodeInvalidValue, "prefixes[0].cidr"}, "at most 64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if w, ok := c.body.(cp.SecurityGroupWrite); ok {
				w.Sites = append([]string{}, w.Sites...)
				if w.Sites == nil {
					w.Sites = []string{}
				}
				c.body = w
			}
			r := e.do("POST", c.path, orgA, c.body)
			er := r.errorResponse(t)
			got := verdict{Status: r.status, Code: er.Code}
			if strings.HasPrefix(er.Message, c.want.Field) {
				got.Field = c.want.Field
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("verdict (-want +got):\n%s\nmessage: %s", d, er.Message)
			}
			if !strings.Contains(er.Message, c.hint) {
				t.Errorf("message %q does not say %q", er.Message, c.hint)
			}
		})
	}
	for _, p := range []string{"/vpc/security-groups", "/vpc/prefix-lists", "/vpc/sites"} {
		if body := strings.TrimSpace(string(e.do("GET", p, orgA, nil).body)); body != "[]" {
			t.Errorf("GET %s after refused writes = %.200s, want []", p, body)
		}
	}
	// At the limits, writes are taken.
	if r := e.do("POST", "/vpc/security-groups", orgA, group(siteIDs("a", 1000), portList(15), "0.0.0.0/0")); r.status != http.StatusCreated {
		t.Errorf("group with 1000 sites and 15 port entries: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/vpc/prefix-lists", orgA, list(siteIDs("b", 1000), "192.0.2.0/24")); r.status != http.StatusCreated {
		t.Errorf("list with 1000 sites: %d %s", r.status, r.body)
	}
}

// TestSpecBoundsMatchDomain: openapi.yaml states the bounds the domain
// enforces.
func TestSpecBoundsMatchDomain(t *testing.T) {
	doc, err := api.LoadSpec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := doc.Components.Schemas
	rule := s["FilterRuleWrite"].Value.Properties
	for name, c := range map[string]struct{ got, want uint64 }{
		"group sites maxItems": {*s["SecurityGroupWrite"].Value.Properties["sites"].Value.MaxItems, cp.MaxSitesPerResource},
		"list sites maxItems":  {*s["PrefixListWrite"].Value.Properties["sites"].Value.MaxItems, cp.MaxSitesPerResource},
		"port maxLength":       {*rule["port"].Value.MaxLength, cp.MaxPortLength},
		"address maxLength":    {*rule["address"].Value.MaxLength, cp.MaxAddressLength},
		"cidr maxLength":       {*s["PrefixWrite"].Value.Properties["cidr"].Value.MaxLength, cp.MaxAddressLength},
	} {
		if c.got != c.want {
			t.Errorf("%s: openapi.yaml %d, domain %d", name, c.got, c.want)
		}
	}
	if d := rule["port"].Value.Description; !strings.Contains(d, fmt.Sprintf("At most %d comma-separated entries", cp.MaxPortEntries)) {
		t.Errorf("port's description does not state the %d entries: %q", cp.MaxPortEntries, d)
	}
}

// TestQuotas (#13.2, #13.5): each organisation's sites, groups and prefix
// lists are bounded; going over is a 422 quota_exceeded naming the quota
// and its flag, changes nothing, and leaves other organisations alone.
// Enrollment mints credentials only for sites within the quota.
func TestQuotas(t *testing.T) {
	e := newEnv(t, func(e *env) { e.quotas = cp.Quotas{Sites: 5, SecurityGroups: 2, PrefixLists: 1} })
	a := e.srv.Config.Handler.(*api.Server)
	key := keys.FromBytes([]byte("quota test key, at least 32 bytes long"))
	a.EnableEnrollment(api.EnrollerFunc(func(org, site string) container.Site {
		return container.ForSite(key, org, site, "tcp://broker.example:1883")
	}))
	group := func(sites ...string) cp.SecurityGroupWrite {
		return cp.SecurityGroupWrite{Name: "quota", Rules: []cp.FilterRuleWrite{}, Sites: sites}
	}
	refused := func(r response, quota, flag string) {
		t.Helper()
		er := r.errorResponse(t)
		if r.status != 422 || er.Code != cp.CodeQuotaExceeded || !strings.Contains(er.Message, quota) || !strings.Contains(er.Message, flag) {
			t.Errorf("got %d %s %q; want 422 quota_exceeded naming %q and %s", r.status, er.Code, er.Message, quota, flag)
		}
	}
	sites := func(org string) []string {
		var ss []cp.Site
		e.do("GET", "/vpc/sites", org, nil).decode(t, &ss)
		var ids []string
		for _, s := range ss {
			ids = append(ids, s.ID)
		}
		return ids
	}
	r := e.do("POST", "/vpc/security-groups", orgA, group("site_1", "site_2", "site_3"))
	if r.status != http.StatusCreated {
		t.Fatalf("first group: %d %s", r.status, r.body)
	}
	var g cp.SecurityGroup
	r.decode(t, &g)
	// 3 known + 3 new = 6 > 5.
	refused(e.do("POST", "/vpc/security-groups", orgA, group("site_3", "site_4", "site_5", "site_6")), "quota is 5 sites", "--quota-sites")
	// A PUT of a syncing group is locked (409) before any quota; once the
	// sync deadline failed it, the PUT meets the quota.
	if r := e.do("PUT", "/vpc/security-groups/"+g.ID, orgA, group("site_1", "site_4", "site_5", "site_6")); r.status != http.StatusConflict {
		t.Errorf("PUT of a syncing group: %d %s", r.status, r.body)
	}
	e.clock.Advance(3 * time.Minute)
	if _, err := e.store.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	refused(e.do("PUT", "/vpc/security-groups/"+g.ID, orgA, group("site_1", "site_4", "site_5", "site_6")), "quota is 5 sites", "--quota-sites")
	if d := cmp.Diff([]string{"site_1", "site_2", "site_3"}, sites(orgA)); d != "" {
		t.Errorf("sites after refused writes (-want +got):\n%s", d)
	}
	// Known sites cost nothing; up to the quota is fine.
	if r := e.do("POST", "/vpc/security-groups", orgA, group("site_1", "site_4", "site_5")); r.status != http.StatusCreated {
		t.Fatalf("second group within quota: %d %s", r.status, r.body)
	}
	refused(e.do("POST", "/vpc/security-groups", orgA, group([]string{}...)), "quota of 2", "--quota-security-groups")
	if r := e.do("POST", "/vpc/prefix-lists", orgA, cp.PrefixListWrite{Name: "one", Prefixes: []cp.PrefixWrite{}}); r.status != http.StatusCreated {
		t.Fatalf("first list: %d %s", r.status, r.body)
	}
	refused(e.do("POST", "/vpc/prefix-lists", orgA, cp.PrefixListWrite{Name: "two", Prefixes: []cp.PrefixWrite{}}), "quota of 1", "--quota-prefix-lists")
	// Enrollment: a known site is enrolled again and again; a new one
	// would be the sixth site.
	if r := e.do("GET", "/vpc/sites/site_1/enrollment", orgA, nil); r.status != http.StatusOK {
		t.Errorf("enroll a known site: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/vpc/sites/site_new/enrollment", orgA, nil)
	refused(r, "quota is 5 sites", "--quota-sites")
	if strings.Contains(string(r.body), "RAMPART_SITE_SECRET") {
		t.Error("a refused enrollment carries credentials")
	}
	// Another organisation has its own quota: enrollment makes its sites
	// known, up to 5.
	for i := range 5 {
		if r := e.do("GET", fmt.Sprintf("/vpc/sites/site_b%d/enrollment", i), orgB, nil); r.status != http.StatusOK {
			t.Fatalf("enroll site %d of org B: %d %s", i, r.status, r.body)
		}
	}
	if got := len(sites(orgB)); got != 5 {
		t.Errorf("org B knows %d sites after 5 enrollments, want 5", got)
	}
	refused(e.do("GET", "/vpc/sites/site_b5/enrollment", orgB, nil), "quota is 5 sites", "--quota-sites")
	// Quotas hold across a restart (they count what is stored).
	e.restart()
	refused(e.do("POST", "/vpc/security-groups", orgA, group("site_9")), "quota", "--quota")
}

// TestSitesPaging (#13.2): GET /vpc/sites answers a page at a time (bare
// arrays, default 100), the Link header leads through every site exactly
// once in id order, and bad paging parameters are 422s naming them.
func TestSitesPaging(t *testing.T) { testSitesPaging(t, newEnv(t)) }

func testSitesPaging(t *testing.T, e *env) {
	all := siteIDs("p", 250)
	for i := 0; i < len(all); i += 100 {
		w := cp.SecurityGroupWrite{Name: "paging", Rules: []cp.FilterRuleWrite{}, Sites: all[i:min(i+100, len(all))]}
		if r := e.do("POST", "/vpc/security-groups", orgA, w); r.status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
	}
	walk := func(first string) ([]int, []string) { return walkPages(t, e, orgA, first) }
	pages, ids := walk("/vpc/sites")
	if d := cmp.Diff([]int{100, 100, 50}, pages); d != "" {
		t.Errorf("default page sizes (-want +got):\n%s", d)
	}
	if d := cmp.Diff(all, ids); d != "" {
		t.Errorf("sites over all pages (-want +got):\n%s", d)
	}
	pages, ids = walk("/sites?limit=125")
	if d := cmp.Diff([]int{125, 125}, pages); d != "" {
		t.Errorf("limit=125 pages (-want +got):\n%s", d)
	}
	if d := cmp.Diff(all, ids); d != "" {
		t.Errorf("sites over limit=125 pages (-want +got):\n%s", d)
	}
	if _, ids = walk("/vpc/sites?limit=1000&starting_after=" + all[199]); cmp.Diff(all[200:], ids) != "" {
		t.Errorf("starting_after %s gave %v", all[199], ids)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=ten", "starting_after=nope"} {
		r := e.do("GET", "/vpc/sites?"+q, orgA, nil)
		er := r.errorResponse(t)
		field, _, _ := strings.Cut(q, "=")
		if r.status != 422 || er.Code != cp.CodeInvalidValue || !strings.HasPrefix(er.Message, field) {
			t.Errorf("GET /vpc/sites?%s: %d %s %q; want 422 invalid_value naming %s", q, r.status, er.Code, er.Message, field)
		}
	}
}

// TestResourceCountsStayRight (#13.7): rampart_resources is a running
// count; it follows creates, status changes (a confirmation, the
// deadline's sweep), deletes and a restart.
func TestResourceCountsStayRight(t *testing.T) {
	e := newEnv(t)
	want := func(step string, gActive, gSyncing, gFailed, lActive int) {
		t.Helper()
		text := fmt.Sprintf(`
# HELP rampart_resources Security groups and prefix lists, by kind and sync status.
# TYPE rampart_resources gauge
rampart_resources{kind="prefix_list",status="active"} %d
rampart_resources{kind="prefix_list",status="failed"} 0
rampart_resources{kind="prefix_list",status="syncing"} 0
rampart_resources{kind="security_group",status="active"} %d
rampart_resources{kind="security_group",status="failed"} %d
rampart_resources{kind="security_group",status="syncing"} %d
`, lActive, gActive, gFailed, gSyncing)
		if err := testutil.GatherAndCompare(e.reg, strings.NewReader(text), "rampart_resources"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	ctx := context.Background()
	a := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Active", Rules: []cp.FilterRuleWrite{}, Sites: []string{}})
	e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Syncing", Rules: []cp.FilterRuleWrite{}, Sites: []string{"site_a"}})
	e.createGroup(orgB, cp.SecurityGroupWrite{Name: "Syncing B", Rules: []cp.FilterRuleWrite{}, Sites: []string{"site_b"}})
	l := e.createList(orgB, "10.0.0.0/8")
	want("after creates", 1, 2, 0, 1)
	if err := e.confirm(ctx, orgA, "site_a", cp.UnknownRevision, true, ""); err != nil {
		t.Fatal(err)
	}
	want("after a confirmation", 2, 1, 0, 1)
	e.clock.Advance(3 * time.Minute)
	if _, err := e.store.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	want("after the deadline", 2, 0, 1, 1)
	if r := e.do("DELETE", "/vpc/security-groups/"+a.ID, orgA, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/vpc/prefix-lists/"+l.ID, orgB, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete list: %d %s", r.status, r.body)
	}
	want("after deletes", 1, 0, 1, 0)
	e.restart()
	want("after a restart", 1, 0, 1, 0)
}

// walkPages follows the Link headers from first and returns the size of
// each page and every id, in order.
func walkPages(t *testing.T, e *env, org, first string) (pages []int, ids []string) {
	t.Helper()
	for next := first; next != ""; {
		r := e.do("GET", next, org, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", next, r.status, r.body)
		}
		var items []struct {
			ID string `json:"id"`
		}
		r.decode(t, &items)
		pages = append(pages, len(items))
		for _, it := range items {
			ids = append(ids, it.ID)
		}
		next = ""
		if l := r.header.Get("Link"); l != "" {
			u, rel, ok := strings.Cut(l, ">; ")
			if !ok || rel != `rel="next"` || !strings.HasPrefix(u, "<") {
				t.Fatalf("Link %q", l)
			}
			next = u[1:]
		}
		if len(pages) > 100 {
			t.Fatalf("%s: paging does not end", first)
		}
	}
	return pages, ids
}

// TestGroupAndListPaging (#13.2, #16): the groups and prefix lists page the
// same way as the sites, with the same helper, and so does a store that
// cannot page itself (the API pages its whole list).
func TestGroupAndListPaging(t *testing.T) {
	t.Run("store pages", func(t *testing.T) { testGroupAndListPaging(t, newEnv(t)) })
	t.Run("api pages", func(t *testing.T) {
		testGroupAndListPaging(t, newEnv(t, func(e *env) {
			e.wrap = func(s api.Store) api.Store { return struct{ api.Store }{s} } // no RawStore, no pagers
		}))
	})
}

func testGroupAndListPaging(t *testing.T, e *env) {
	var groups, lists []string
	for i := range 130 {
		groups = append(groups, e.createGroup(orgA, cp.SecurityGroupWrite{Name: fmt.Sprintf("group %d", i), Rules: []cp.FilterRuleWrite{}, Sites: []string{}}).ID)
		if i < 105 {
			lists = append(lists, e.createList(orgA, fmt.Sprintf("10.%d.0.0/16", i)).ID)
		}
	}
	e.createGroup(orgB, cp.SecurityGroupWrite{Name: "other org", Rules: []cp.FilterRuleWrite{}, Sites: []string{}})
	slices.Sort(groups) // ids order lists: KSUIDs of one second are in random order
	slices.Sort(lists)
	for _, c := range []struct {
		path  string
		want  []string
		pages []int
	}{
		{"/vpc/security-groups", groups, []int{100, 30}},
		{"/security-groups?limit=50", groups, []int{50, 50, 30}},
		{"/vpc/prefix-lists", lists, []int{100, 5}},
		{"/vpc/prefix-lists?limit=105", lists, []int{105}},
		{"/vpc/sites", nil, []int{0}},
	} {
		pages, ids := walkPages(t, e, orgA, c.path)
		if d := cmp.Diff(c.pages, pages); d != "" {
			t.Errorf("%s: page sizes (-want +got):\n%s", c.path, d)
		}
		if d := cmp.Diff(c.want, ids); d != "" {
			t.Errorf("%s: ids over all pages (-want +got):\n%s", c.path, d)
		}
	}
	for _, q := range []string{"/vpc/security-groups?limit=0", "/vpc/security-groups?starting_after=" + lists[0], "/vpc/prefix-lists?starting_after=site_a"} {
		r := e.do("GET", q, orgA, nil)
		if er := r.errorResponse(t); r.status != 422 || er.Code != cp.CodeInvalidValue {
			t.Errorf("GET %s: %d %+v; want 422 invalid_value", q, r.status, er)
		}
	}
}

// TestQuotaHoldsUnderConcurrentWrites: the quota is checked inside the
// write transaction, so writes committed together (group commit) see each
// other: of 40 concurrent writes each adding one new site to an
// organisation with room for 10, exactly 10 are taken.
func TestQuotaHoldsUnderConcurrentWrites(t *testing.T) {
	e := newEnv(t, func(e *env) { e.quotas = cp.Quotas{Sites: 10} })
	codes := make(chan int, 40)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := cp.SecurityGroupWrite{Name: fmt.Sprintf("g%d", i), Rules: []cp.FilterRuleWrite{}, Sites: []string{fmt.Sprintf("site_c%d", i)}}
			codes <- e.do("POST", "/vpc/security-groups", orgA, w).status
		}()
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	if d := cmp.Diff(map[int]int{201: 10, 422: 30}, got); d != "" {
		t.Errorf("answers by status (-want +got):\n%s", d)
	}
	var sites []cp.Site
	e.do("GET", "/vpc/sites", orgA, nil).decode(t, &sites)
	if len(sites) != 10 {
		t.Errorf("%d sites stored, quota 10", len(sites))
	}
	// The running counts saw only what committed (the refused writes were
	// rolled back with the batches they were tried in).
	counts, err := e.store.CountSites(context.Background())
	total := 0
	for _, n := range counts {
		total += n
	}
	if err != nil || counts[cp.SiteSyncing] != 10 || total != 10 {
		t.Errorf("site counts %v, %v; want 10 syncing", counts, err)
	}
}

// TestDocumentTooLarge: a POST that would make a site's policy document
// larger than an agent takes (protocol.MaxDesiredStateBytes) is a 422
// document_too_large naming the site and the limit, and creates nothing;
// the groups before it stay, and the site keeps its revision.
func TestDocumentTooLarge(t *testing.T) {
	e := newEnv(t, func(e *env) { e.revise = true })
	big := func(name string) cp.SecurityGroupWrite {
		rules := make([]cp.FilterRuleWrite, cp.MaxRules)
		for i := range rules {
			// JSON escapes "<" to six bytes: about 450 KB a group.
			rules[i] = cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + i),
				Address: "10.0.0.0/8", Description: strings.Repeat("<", 255)}
		}
		return cp.SecurityGroupWrite{Name: name, Rules: rules, Sites: []string{"site_a"}}
	}
	site := func() cp.Site {
		t.Helper()
		var s cp.Site
		if r := e.do("GET", "/vpc/sites/site_a", orgA, nil); r.status != http.StatusOK {
			t.Fatalf("GET site: %d %s", r.status, r.body)
		} else {
			r.decode(t, &s)
		}
		return s
	}
	var last response
	created := 0
	var before cp.Site
	for i := range 12 {
		if created > 0 {
			before = site()
		}
		last = e.do("POST", "/vpc/security-groups", orgA, big(fmt.Sprintf("Big %02d", i)))
		if last.status != http.StatusCreated {
			break
		}
		created++
	}
	er := last.errorResponse(t)
	if last.status != http.StatusUnprocessableEntity || er.Code != cp.CodeDocumentTooLarge || er.Type != "invalid_request_error" ||
		!strings.HasSuffix(er.DocURL, "#document_too_large") {
		t.Fatalf("after %d groups: %d %+v; want 422 document_too_large", created, last.status, er)
	}
	for _, want := range []string{`site "site_a"`, "4194304 bytes", "nothing was changed"} {
		if !strings.Contains(er.Message, want) {
			t.Errorf("message %q does not say %q", er.Message, want)
		}
	}
	var groups []cp.SecurityGroup
	e.do("GET", "/vpc/security-groups?limit=100", orgA, nil).decode(t, &groups)
	if len(groups) != created || created < 5 {
		t.Errorf("%d groups after the refusal; %d were created", len(groups), created)
	}
	if d := cmp.Diff(before, site()); d != "" {
		t.Errorf("the refused write changed site_a (-before +after):\n%s", d)
	}
}
