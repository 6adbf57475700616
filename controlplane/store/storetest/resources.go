package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// testQuotas: creates beyond an organisation's quota of groups or lists,
// and writes that would add sites beyond its site quota, are refused with
// quota_exceeded and change nothing; other organisations are not counted;
// concurrent creates together stay within the quota.
func testQuotas(t *testing.T, open Opener) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, Options{Now: clk.Now, Quotas: cp.Quotas{Sites: 3, SecurityGroups: 2, PrefixLists: 1}})
	quota := func(step string, err error) {
		t.Helper()
		if cp.ErrorCode(err) != cp.CodeQuotaExceeded {
			t.Errorf("%s: %v, want quota_exceeded", step, err)
		}
	}
	g, err := createGroup(ctx, s, org, group("G1", []string{"site_a", "site_b"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := createGroup(ctx, s, org, group("G2", []string{"site_b"})); err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateSecurityGroup(ctx, org, group("G3", nil))
	quota("third group", err)
	if _, err := s.CreateSecurityGroup(ctx, "org_b", group("B", nil)); err != nil {
		t.Errorf("another organisation's group: %v", err)
	}
	if _, err := s.CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: "L1", Prefixes: []cp.PrefixWrite{}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: "L2", Prefixes: []cp.PrefixWrite{}})
	quota("second list", err)

	// Sites: two known, one more fits, two more do not.
	clk.add(time.Hour) // past the sync deadline: writable
	_, err = s.ReplaceSecurityGroup(ctx, org, g.ID, group("G1", []string{"site_a", "site_c", "site_d"}))
	quota("two new sites over a quota of 3", err)
	if got := mustGroup(t, s, g.ID); !slices.Equal(got.Sites, []string{"site_a", "site_b"}) {
		t.Errorf("a refused write changed the group: %v", got.Sites)
	}
	quota("reserve past the quota", func() error {
		if err := s.ReserveSite(ctx, org, "site_c"); err != nil {
			return fmt.Errorf("the first fits: %w", err)
		}
		return s.ReserveSite(ctx, org, "site_d")
	}())
	if err := s.ReserveSite(ctx, org, "site_a"); err != nil {
		t.Errorf("reserving a known site: %v", err)
	}
	// Known sites never count against the quota.
	if _, err := s.ReplaceSecurityGroup(ctx, org, g.ID, group("G1", []string{"site_a", "site_b", "site_c"})); err != nil {
		t.Errorf("a write naming only known sites: %v", err)
	}
	sites, _ := s.ListSites(ctx, org)
	if len(sites) != 3 {
		t.Errorf("%d sites, want 3: %+v", len(sites), sites)
	}

	// Concurrent creates in a fresh organisation: exactly the quota wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, refused := 0, 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.CreateSecurityGroup(ctx, "org_c", group(fmt.Sprint("C", i), nil))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case cp.ErrorCode(err) == cp.CodeQuotaExceeded:
				refused++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if created != 2 || refused != 6 {
		t.Errorf("8 concurrent creates with a quota of 2: %d created, %d refused", created, refused)
	}
}

// testVersionsAndIfMatch: every write gives a resource its next version,
// the same in the write's answer and later reads; If-Match lets a write
// through only at a version it names, checked in the write's transaction.
func testVersionsAndIfMatch(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{})
	ifMatch := func(h string) context.Context {
		t.Helper()
		p, err := cp.ParseIfMatch(h)
		if err != nil {
			t.Fatal(err)
		}
		return cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "alice", Method: "PUT", IfMatch: p})
	}
	created, err := s.CreateSecurityGroup(ctx, org, group("G", nil))
	if err != nil {
		t.Fatal(err)
	}
	if created.Version != 1 || created.ETag() != `"v1"` {
		t.Errorf("create: version %d, ETag %s", created.Version, created.ETag())
	}
	id := created.ID
	for i, h := range []string{"", `"v2"`, `W/"v3", "v3"`, "*"} {
		st, err := s.ReplaceSecurityGroup(ifMatch(h), org, id, group(fmt.Sprint("G", i), nil))
		if err != nil {
			t.Fatalf("replace %d with If-Match %q: %v", i, h, err)
		}
		if want := uint64(i + 2); st.Version != want {
			t.Errorf("replace %d: version %d, want %d", i, st.Version, want)
		}
		if got, _ := s.GetJSON(ctx, org, cp.KindSecurityGroup, id); got.Version != st.Version || string(got.Body) != string(st.Body) {
			t.Errorf("read after replace %d: version %d body %s; the write answered %d %s", i, got.Version, got.Body, st.Version, st.Body)
		}
	}
	for _, h := range []string{`"v4"`, `W/"v5"`, `"v1", "v2"`, `"other"`} {
		_, err := s.ReplaceSecurityGroup(ifMatch(h), org, id, group("stale", nil))
		if cp.ErrorCode(err) != cp.CodePreconditionFailed {
			t.Errorf("replace with If-Match %s at v5: %v, want precondition_failed", h, err)
		}
		if err := s.DeleteSecurityGroup(ifMatch(h), org, id); cp.ErrorCode(err) != cp.CodePreconditionFailed {
			t.Errorf("delete with If-Match %s at v5: %v, want precondition_failed", h, err)
		}
	}
	if got := mustGroup(t, s, id); got.Name != "G3" {
		t.Errorf("refused writes changed the group: %q", got.Name)
	}
	if err := s.DeleteSecurityGroup(ifMatch(`"v5"`), org, id); err != nil {
		t.Errorf("delete at the named version: %v", err)
	}

	// Lists have versions too.
	l, err := s.CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplacePrefixList(ifMatch(`"v2"`), org, l.ID, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{}}); cp.ErrorCode(err) != cp.CodePreconditionFailed {
		t.Errorf("list replace at a wrong version: %v", err)
	}
	l2, err := s.ReplacePrefixList(ifMatch(`"v1"`), org, l.ID, &cp.PrefixListWrite{Name: "L2", Prefixes: []cp.PrefixWrite{}})
	if err != nil || l2.Version != 2 {
		t.Errorf("list replace at v1: %v, version %d", err, l2.Version)
	}

	// Concurrent edits at one version: exactly one wins.
	g, err := s.CreateSecurityGroup(ctx, org, group("race", nil))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.ReplaceSecurityGroup(ifMatch(`"v1"`), org, g.ID, group(fmt.Sprint("racer ", i), nil))
			if err != nil && cp.ErrorCode(err) != cp.CodePreconditionFailed {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won++
			}
		}()
	}
	wg.Wait()
	if got, _ := s.GetJSON(ctx, org, cp.KindSecurityGroup, g.ID); won != 1 || got.Version != 2 {
		t.Errorf("8 edits at v1: %d won, version now %d; want 1 and 2", won, got.Version)
	}
}

// testAuditTrail: every committed write records who, what and the body as
// stored, newest first, by organisation and by resource, paged, with time
// bounds.
func testAuditTrail(t *testing.T, open Opener) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, Options{Now: clk.Now})
	as := func(subject, method string) context.Context {
		return cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: subject, RequestID: "req-" + subject + "-" + method, Method: method})
	}
	g, err := s.CreateSecurityGroup(as("alice", "POST"), org, group("G", nil))
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	l, err := s.CreatePrefixList(as("bob", "POST"), org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{}})
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	put, err := s.ReplaceSecurityGroup(as("carol", "PUT"), org, g.ID, group("G2", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSecurityGroup(as("mallory", "POST"), "org_b", group("B", nil)); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	if err := s.DeleteSecurityGroup(as("dave", "DELETE"), org, g.ID); err != nil {
		t.Fatal(err)
	}
	// A write without a request (not from the API) is recorded too.
	clk.add(time.Second)
	if _, err := s.ReplacePrefixList(ctx, org, l.ID, &cp.PrefixListWrite{Name: "L2", Prefixes: []cp.PrefixWrite{}}); err != nil {
		t.Fatal(err)
	}
	events := func(q cp.AuditQuery) ([]cp.AuditEvent, bool) {
		t.Helper()
		raw, more, err := s.AuditEvents(ctx, org, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []cp.AuditEvent
		for _, r := range raw {
			out = append(out, decode[cp.AuditEvent](t, r))
		}
		return out, more
	}
	type short struct {
		Subject, Method, Kind, ID string
		Version                   uint64
		At                        time.Time
	}
	summary := func(evs []cp.AuditEvent) []short {
		var out []short
		for _, e := range evs {
			out = append(out, short{e.Subject, e.Method, e.ResourceKind, e.ResourceID, e.Version, e.At})
		}
		return out
	}
	all, more := events(cp.AuditQuery{Limit: 100})
	want := []short{
		{"unknown", "PUT", cp.KindPrefixList, l.ID, 2, epoch.Add(4 * time.Second)},
		{"dave", "DELETE", cp.KindSecurityGroup, g.ID, 3, epoch.Add(3 * time.Second)},
		{"carol", "PUT", cp.KindSecurityGroup, g.ID, 2, epoch.Add(2 * time.Second)},
		{"bob", "POST", cp.KindPrefixList, l.ID, 1, epoch.Add(time.Second)},
		{"alice", "POST", cp.KindSecurityGroup, g.ID, 1, epoch},
	}
	if d := cmp.Diff(want, summary(all), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); d != "" || more {
		t.Errorf("audit trail (-want +got), more=%v:\n%s", more, d)
	}
	if len(all) == 5 {
		if all[2].RequestID != "req-carol-PUT" || all[2].OrgID != org || !validEventID(all[2].ID) {
			t.Errorf("event: %+v", all[2])
		}
		// The body is the resource as stored: what the write answered.
		var a, b any
		json.Unmarshal(all[2].Body, &a)
		json.Unmarshal(put.Body, &b)
		if d := cmp.Diff(b, a); d != "" {
			t.Errorf("the event's body is not the write's answer (-answer +event):\n%s", d)
		}
		if string(all[1].Body) != "null" {
			t.Errorf("a delete's body: %s, want null", all[1].Body)
		}
		ids := map[string]bool{}
		for _, e := range all {
			ids[e.ID] = true
		}
		if len(ids) != 5 {
			t.Errorf("event ids are not unique: %v", ids)
		}
	}

	// By resource, paged two at a time.
	var got []cp.AuditEvent
	q := cp.AuditQuery{ResourceID: g.ID, Limit: 2}
	for range 5 {
		page, more := events(q)
		got = append(got, page...)
		if !more {
			break
		}
		k, ok := cp.ParseAuditEventID(page[len(page)-1].ID)
		if !ok {
			t.Fatalf("event id %q", page[len(page)-1].ID)
		}
		q.Before = &k
	}
	if d := cmp.Diff(want[1:3], summary(got)[:2], cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); d != "" || len(got) != 3 {
		t.Errorf("the group's events, paged (-want +got):\n%s", d)
	}
	// Time bounds: Since inclusive, Until exclusive.
	bounded, _ := events(cp.AuditQuery{Since: epoch.Add(time.Second), Until: epoch.Add(3 * time.Second), Limit: 100})
	if d := cmp.Diff(want[2:4], summary(bounded), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); d != "" {
		t.Errorf("events in [1s, 3s) (-want +got):\n%s", d)
	}
	if other, _, err := s.AuditEvents(ctx, "org_b", cp.AuditQuery{Limit: 100}); err != nil || len(other) != 1 {
		t.Errorf("org_b's trail: %d events, %v", len(other), err)
	}
	if none, more, err := s.AuditEvents(ctx, "org_none", cp.AuditQuery{Limit: 100}); err != nil || len(none) != 0 || more {
		t.Errorf("an unknown organisation's trail: %d events, %v, %v", len(none), more, err)
	}
}

// testPaging: lists come in id order, a page at a time, each page after
// the last id of the one before, and with nothing missed or repeated.
func testPaging(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{})
	var ids []string
	for i := range 7 {
		g, err := s.CreateSecurityGroup(ctx, org, group(fmt.Sprint("G", i), []string{fmt.Sprintf("site_%02d", i)}))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, g.ID)
	}
	if _, err := s.CreateSecurityGroup(ctx, "org_b", group("B", nil)); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	for _, limit := range []int{1, 3, 7, 100} {
		var got []string
		for _, g := range listAll[cp.SecurityGroup](t, s, org, cp.KindSecurityGroup, limit) {
			got = append(got, g.ID)
		}
		if d := cmp.Diff(ids, got); d != "" {
			t.Errorf("groups %d at a time (-want +got):\n%s", limit, d)
		}
	}
	body, last, more, err := s.ListJSONPage(ctx, org, cp.KindSecurityGroup, "", 3)
	if err != nil || last != ids[2] || !more || len(decode[[]cp.SecurityGroup](t, body)) != 3 {
		t.Errorf("first page of 3: last %q more %v, %v", last, more, err)
	}
	body, last, more, err = s.ListJSONPage(ctx, org, cp.KindSecurityGroup, ids[6], 3)
	if err != nil || more || len(decode[[]cp.SecurityGroup](t, body)) != 0 {
		t.Errorf("after the last: %s last %q more %v, %v", body, last, more, err)
	}
	if body, _, more, err := s.ListJSONPage(ctx, "org_none", cp.KindPrefixList, "", 10); err != nil || more || len(decode[[]cp.PrefixList](t, body)) != 0 {
		t.Errorf("an empty organisation's lists: %s, %v", body, err)
	}

	// Sites, likewise.
	var all []string
	after := ""
	for {
		page, more, err := s.ListSitesPage(ctx, org, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range page {
			all = append(all, st.ID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].ID
	}
	if d := cmp.Diff([]string{"site_00", "site_01", "site_02", "site_03", "site_04", "site_05", "site_06"}, all); d != "" {
		t.Errorf("sites 2 at a time (-want +got):\n%s", d)
	}
	if page, more, err := s.ListSitesPage(ctx, org, "site_06", 2); err != nil || more || len(page) != 0 {
		t.Errorf("sites after the last: %v %v %v", page, more, err)
	}
}

func validEventID(id string) bool {
	_, ok := cp.ParseAuditEventID(id)
	return ok
}
