package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/protocol"
)

// decomState is what a decommission may change, read back through the
// store's reads: the bodies and versions of the resources, the site, and
// the audit trail.
type decomState struct {
	Resources map[string]string
	Versions  map[string]uint64
	Site      cp.Site
	SiteErr   string
	Events    int
}

func readDecomState(t *testing.T, s Store, org, site string, res map[string]string) decomState {
	t.Helper()
	ctx := context.Background()
	st := decomState{Resources: map[string]string{}, Versions: map[string]uint64{}}
	for id, kind := range res {
		got, err := s.GetJSON(ctx, org, kind, id)
		if err != nil {
			t.Fatal(err)
		}
		st.Resources[id], st.Versions[id] = string(got.Body), got.Version
	}
	var err error
	if st.Site, err = s.GetSite(ctx, org, site); err != nil {
		st.SiteErr = cp.ErrorCode(err)
	}
	ev, _, err := s.AuditEvents(ctx, org, cp.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	st.Events = len(ev)
	return st
}

func withSubject(sub string) context.Context {
	return cp.WithWriteRequest(context.Background(), cp.WriteRequest{Subject: sub, RequestID: "req-decom", Method: "DELETE"})
}

// testDecommissionAllOrNothing: a decommission takes the site out of
// every group and prefix list in one transaction, or, when one of them is
// locked, changes nothing at all; then the site is forgotten once its
// agent applied the empty document, and its reports are dropped until it
// is enrolled again.
func testDecommissionAllOrNothing(t *testing.T, open Opener) {
	s, clk := compiled(t, open)
	ctx := context.Background()
	a, err := createGroup(ctx, s, org, webGroup("443", "a", "site_1", "site_2"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24", Description: "hq"}}, Sites: []string{"site_1", "site_2"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, site := range []string{"site_1", "site_2"} {
		rec, err := s.GetSite(ctx, org, site)
		if err != nil {
			t.Fatal(err)
		}
		if err := confirm(ctx, s, org, site, rec.DesiredRevision, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	// b is syncing (site_1 never confirms it), so it is locked.
	b, err := createGroup(ctx, s, org, webGroup("22", "b", "site_1"))
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]string{a.ID: cp.KindSecurityGroup, b.ID: cp.KindSecurityGroup, l.ID: cp.KindPrefixList}
	before := readDecomState(t, s, org, "site_1", res)

	_, err = s.DecommissionSite(withSubject("alice"), org, "site_1")
	if cp.ErrorCode(err) != cp.CodeResourceLocked {
		t.Fatalf("decommission with a locked group: %v, want %s", err, cp.CodeResourceLocked)
	}
	if diff := cmp.Diff(before, readDecomState(t, s, org, "site_1", res)); diff != "" {
		t.Fatalf("a refused decommission changed something (-before +after):\n%s", diff)
	}

	// Past b's deadline it is failed, which does not lock.
	clk.add(2 * time.Minute)
	before = readDecomState(t, s, org, "site_1", res)
	got, err := s.DecommissionSite(withSubject("alice"), org, "site_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != cp.SiteDecommissioning || got.ID != "site_1" || got.DesiredRevision <= before.Site.DesiredRevision {
		t.Fatalf("decommissioned site: %+v (before %+v)", got, before.Site)
	}
	after := readDecomState(t, s, org, "site_1", res)
	wantSites := map[string][]string{a.ID: {"site_2"}, b.ID: {}, l.ID: {"site_2"}}
	for id := range res {
		var r struct {
			Sites []string `json:"sites"`
		}
		if err := json.Unmarshal([]byte(after.Resources[id]), &r); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantSites[id], r.Sites); diff != "" {
			t.Errorf("%s sites after the decommission (-want +got):\n%s", id, diff)
		}
		if after.Versions[id] != before.Versions[id]+1 {
			t.Errorf("%s version %d, want %d: one new version each", id, after.Versions[id], before.Versions[id]+1)
		}
	}
	events, _, err := s.AuditEvents(ctx, org, cp.AuditQuery{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, raw := range events {
		var e cp.AuditEvent
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if e.Subject != "alice" || e.RequestID != "req-decom" {
			t.Errorf("event %s %s by %q, request %q", e.Method, e.ResourceID, e.Subject, e.RequestID)
		}
		trail = append(trail, e.Method+" "+e.ResourceKind)
	}
	// Newest first: the site's DELETE, then its resources' PUTs in the
	// members index's order (lists before groups), all in one request.
	if diff := cmp.Diff([]string{"DELETE site", "PUT security_group", "PUT security_group", "PUT prefix_list"}, trail); diff != "" {
		t.Errorf("audit trail of the decommission (-want +got):\n%s", diff)
	}

	// On its way out, nothing may attach or enroll it; a second DELETE
	// changes nothing.
	if _, err := createGroup(ctx, s, org, webGroup("80", "c", "site_1")); cp.ErrorCode(err) != cp.CodeSiteDecommissioning {
		t.Errorf("attach a decommissioning site: %v", err)
	}
	if err := s.ReserveSite(ctx, org, "site_1"); cp.ErrorCode(err) != cp.CodeSiteDecommissioning {
		t.Errorf("enroll a decommissioning site: %v", err)
	}
	again, err := s.DecommissionSite(withSubject("bob"), org, "site_1")
	if err != nil || again.State != cp.SiteDecommissioning || again.DesiredRevision != got.DesiredRevision {
		t.Errorf("second decommission: %+v, %v", again, err)
	}
	if n := readDecomState(t, s, org, "site_1", res).Events; n != after.Events {
		t.Errorf("second decommission recorded %d events", n-after.Events)
	}

	// Forgotten once it applied the empty document.
	if refs, err := s.ForgetDecommissioned(ctx); err != nil || len(refs) != 0 {
		t.Fatalf("forgotten before it applied: %v, %v", refs, err)
	}
	if err := confirm(ctx, s, org, "site_1", got.DesiredRevision, true, ""); err != nil {
		t.Fatal(err)
	}
	refs, err := s.ForgetDecommissioned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]cp.SiteRef{{OrgID: org, SiteID: "site_1"}}, refs); diff != "" {
		t.Fatalf("forgotten (-want +got):\n%s", diff)
	}
	if _, err := s.GetSite(ctx, org, "site_1"); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Errorf("forgotten site still read: %v", err)
	}
	if !s.Decommissioned(org, "site_1") || s.Decommissioned(org, "site_2") {
		t.Errorf("decommissioned: site_1 %v, site_2 %v", s.Decommissioned(org, "site_1"), s.Decommissioned(org, "site_2"))
	}
	counts, _ := s.CountSites(ctx)
	if n := counts[cp.SiteDecommissioning] + counts[cp.SiteInSync] + counts[cp.SiteSyncing] + counts[cp.SiteUnknown] + counts[cp.SiteFailed]; n != 1 {
		t.Errorf("sites counted after the forget: %v", counts)
	}
	// Its reports are dropped: nothing comes back.
	res1, err := reportStatus(ctx, s, org, "site_1", protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: "site_1", Epoch: s.Epoch(), Revision: got.DesiredRevision, State: protocol.StateApplied})
	if err != nil || res1 != cp.ReportDecommissioned {
		t.Errorf("report of a forgotten site: %v, %v", res1, err)
	}
	if err := setPresence(ctx, s, org, "site_1", protocol.Presence{State: protocol.PresenceOffline}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSite(ctx, org, "site_1"); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Errorf("a forgotten site's presence made it known again: %v", err)
	}
	// Returned until the MQTT side cleared its topics.
	if refs, _ := s.ForgetDecommissioned(ctx); len(refs) != 1 {
		t.Errorf("not cleared yet, forgotten again: %v", refs)
	}
	if err := s.SiteCleared(ctx, org, "site_1"); err != nil {
		t.Fatal(err)
	}
	if refs, _ := s.ForgetDecommissioned(ctx); len(refs) != 0 {
		t.Errorf("cleared, still returned: %v", refs)
	}

	// Enrolling it again lifts the refusal; a write gives it a revision
	// above the one it had.
	if err := s.ReserveSite(ctx, org, "site_1"); err != nil {
		t.Fatal(err)
	}
	if s.Decommissioned(org, "site_1") {
		t.Error("enrolled again, still decommissioned")
	}
	// An agent that kept its cache reports the empty document's revision:
	// believed, since the site is given the revision it had.
	res1, err = reportStatus(ctx, s, org, "site_1", protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: "site_1", Epoch: s.Epoch(), Revision: got.DesiredRevision, State: protocol.StateApplied})
	if err != nil || res1 != cp.ReportTaken {
		t.Errorf("the re-enrolled agent's report of its cached revision: %v, %v; want taken", res1, err)
	}
	back, err := createGroup(ctx, s, org, webGroup("80", "c", "site_1"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.GetSite(ctx, org, "site_1")
	if err != nil || rec.DesiredRevision <= got.DesiredRevision || back.Status != cp.StatusSyncing {
		t.Errorf("re-enrolled site: %+v, %v; want a revision above %d", rec, err, got.DesiredRevision)
	}

	// Another organisation's site is not found.
	if _, err := s.DecommissionSite(withSubject("mallory"), "org_b", "site_2"); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Errorf("another organisation's site: %v", err)
	}
}

// testDecommissionDeadline: a site whose agent never answers is forgotten
// at the sync deadline, and resources still waiting for it stop waiting.
func testDecommissionDeadline(t *testing.T, open Opener) {
	s, clk := compiled(t, open)
	ctx := context.Background()
	l, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24", Description: "hq"}}})
	if err != nil {
		t.Fatal(err)
	}
	w := webGroup("443", "a", "site_gone")
	w.Rules[0].Address = l.ID
	g, err := createGroup(ctx, s, org, w)
	if err != nil {
		t.Fatal(err)
	}
	// The list, used by the group, awaits site_gone too; the decommission
	// does not write it (it is not attached to the site).
	if _, err := replaceList(ctx, s, org, l.ID, &cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "198.51.100.0/24", Description: "hq"}}}); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Minute)
	if _, err := s.DecommissionSite(withSubject("alice"), org, "site_gone"); err != nil {
		t.Fatal(err)
	}
	if refs, _ := s.ForgetDecommissioned(ctx); len(refs) != 0 {
		t.Fatalf("forgotten before the deadline: %v", refs)
	}
	clk.add(time.Minute)
	refs, err := s.ForgetDecommissioned(ctx)
	if err != nil || len(refs) != 1 {
		t.Fatalf("at the deadline: %v, %v", refs, err)
	}
	if _, err := s.GetSite(ctx, org, "site_gone"); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Errorf("site read after the deadline: %v", err)
	}
	cur, err := getGroup(ctx, s, org, g.ID)
	if err != nil || cur.Status != cp.StatusActive || len(cur.Sites) != 0 {
		t.Errorf("group after its only site was decommissioned: %+v, %v", cur, err)
	}
	list, err := getList(ctx, s, org, l.ID)
	if err != nil || list.Status != cp.StatusActive {
		t.Errorf("prefix list that waited for the forgotten site: %+v, %v; want active", list, err)
	}
}

// testDecommissionQuota: past the quota of decommissioned sites a
// decommission is refused, whole; enrolling one again makes room.
func testDecommissionQuota(t *testing.T, open Opener) {
	clk := newClock()
	s := open(t, Options{Now: clk.Now, SyncTimeout: time.Minute, Revisioner: compile.Revisioner{}, Quotas: cp.Quotas{Decommissioned: 1}})
	ctx := context.Background()
	for _, site := range []string{"site_1", "site_2"} {
		if err := s.ReserveSite(ctx, org, site); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DecommissionSite(withSubject("alice"), org, "site_1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecommissionSite(withSubject("alice"), org, "site_2"); cp.ErrorCode(err) != cp.CodeQuotaExceeded {
		t.Fatalf("over the quota: %v", err)
	}
	clk.add(2 * time.Minute)
	if refs, err := s.ForgetDecommissioned(ctx); err != nil || len(refs) != 1 {
		t.Fatalf("forget: %v, %v", refs, err)
	}
	if _, err := s.DecommissionSite(withSubject("alice"), org, "site_2"); cp.ErrorCode(err) != cp.CodeQuotaExceeded {
		t.Fatalf("over the quota once forgotten: %v", err)
	}
	if err := s.ReserveSite(ctx, org, "site_1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecommissionSite(withSubject("alice"), org, "site_2"); err != nil {
		t.Fatalf("after re-enrolling site_1: %v", err)
	}
}
