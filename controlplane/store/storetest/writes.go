package storetest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// syncOf reads the SyncState of group or list id, which the API's JSON
// shows only as a status, through the view the syncer and the compiler
// get (PolicyTx), from a site the resource applies to. Tests use its
// status and error: a PolicyTx need not fill in Awaiting (the compiler
// never reads it), so what a write awaits is read from its Change.
func syncOf(t testing.TB, s Store, site, id string) cp.SyncState {
	t.Helper()
	var st *cp.SyncState
	err := s.ViewPolicy(context.Background(), org, func(tx cp.PolicyTx) error {
		gs, ls, err := tx.Policy([]string{site})
		for _, g := range gs {
			if g.ID == id {
				st = &g.Sync
			}
		}
		for _, l := range ls {
			if l.ID == id {
				st = &l.Sync
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if st == nil {
		t.Fatalf("%s does not apply to %s", id, site)
	}
	return *st
}

func testRevisionsChangesAndConfirm(t *testing.T, open Opener) {
	ctx := context.Background()
	rev := &counter{}
	clk := newClock()
	s := open(t, Options{Revisioner: rev, Now: clk.Now})
	changes := record(s)

	list, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	ssh := cp.FilterRuleWrite{Direction: "inbound", Order: 1, Protocol: 6, Port: "22", Address: list.ID}
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a", "site_b"}, ssh))
	if err != nil {
		t.Fatal(err)
	}
	if g.Status != cp.StatusSyncing {
		t.Fatalf("status %q", g.Status)
	}
	if rev.seen["site_a"] != 1 {
		t.Errorf("the Revisioner did not see the group being written: %v", rev.seen)
	}
	// site_a confirms revision 1 (what the Revisioner assigned); site_b
	// reports an older revision, which does not count.
	if err := confirm(ctx, s, org, "site_a", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := confirm(ctx, s, org, "site_b", 0, true, ""); err != nil {
		t.Fatal(err)
	}
	if got := mustGroup(t, s, g.ID); got.Status != cp.StatusSyncing {
		t.Errorf("after a stale report: %q, want syncing", got.Status)
	}
	if err := confirm(ctx, s, org, "site_b", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	if got := mustGroup(t, s, g.ID); got.Status != cp.StatusActive {
		t.Errorf("after both confirm: %q, want active", got.Status)
	}

	// Move the group from site_a to site_c: both need recompiling.
	if _, err := replaceGroup(ctx, s, org, g.ID, group("Group", []string{"site_b", "site_c"}, ssh)); err != nil {
		t.Fatal(err)
	}
	// A change to the prefix list reaches the group's sites.
	if _, err := replaceList(ctx, s, org, list.ID, &cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "198.51.100.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Hour)
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err != nil {
		t.Fatal(err)
	}
	type short struct {
		Kind    string
		Sites   []string
		Revs    map[string]uint64
		Deleted bool
	}
	var got []short
	for _, c := range changes.list() {
		got = append(got, short{c.Kind, c.Sites, c.Revisions, c.Deleted})
	}
	want := []short{
		{cp.KindPrefixList, []string{}, nil, false},
		{cp.KindSecurityGroup, []string{"site_a", "site_b"}, map[string]uint64{"site_a": 1, "site_b": 1}, false},
		{cp.KindSecurityGroup, []string{"site_a", "site_b", "site_c"}, map[string]uint64{"site_a": 2, "site_b": 2, "site_c": 1}, false},
		{cp.KindPrefixList, []string{"site_b", "site_c"}, map[string]uint64{"site_b": 3, "site_c": 2}, false},
		{cp.KindSecurityGroup, []string{"site_b", "site_c"}, map[string]uint64{"site_b": 4, "site_c": 3}, true},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) || len(a)+len(b) == 0 }),
		cmp.Comparer(func(a, b map[string]uint64) bool { return len(a)+len(b) == 0 || cmp.Equal(a, b) })); d != "" {
		t.Errorf("changes (-want +got):\n%s", d)
	}
	sites, err := s.ListSites(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	var desired []string
	for _, site := range sites {
		desired = append(desired, fmt.Sprintf("%s:%d/%d", site.ID, site.DesiredRevision, site.AppliedRevision))
	}
	if d := cmp.Diff([]string{"site_a:2/1", "site_b:4/1", "site_c:3/0"}, desired); d != "" {
		t.Errorf("site revisions desired/applied (-want +got):\n%s", d)
	}
}

func testFailedWriteLeavesNothing(t *testing.T, open Opener) {
	ctx := context.Background()
	rev := &counter{}
	s := open(t, Options{Revisioner: rev})
	changes := record(s)
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}))
	if err != nil {
		t.Fatal(err)
	}
	list, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}, Sites: []string{"site_a"}})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.ListSites(ctx, org)
	beforeG, beforeL := mustGroup(t, s, g.ID), mustList(t, s, list.ID)
	rev.fail = true
	if _, err := createGroup(ctx, s, org, group("Other", []string{"site_new"})); err == nil {
		t.Fatal("write succeeded although the Revisioner failed")
	}
	if _, err := replaceGroup(ctx, s, org, g.ID, group("Renamed", []string{"site_b"})); err == nil {
		t.Fatal("replace succeeded although the Revisioner failed")
	}
	if _, err := replaceList(ctx, s, org, list.ID, &cp.PrefixListWrite{Name: "L2", Prefixes: []cp.PrefixWrite{}, Sites: []string{"site_c"}}); err == nil {
		t.Fatal("replace of a list succeeded although the Revisioner failed")
	}
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err == nil {
		t.Fatal("delete succeeded although the Revisioner failed")
	}
	gs := listGroups(t, s)
	after, _ := s.ListSites(ctx, org)
	if len(gs) != 1 || gs[0].ID != g.ID || !cmp.Equal(before, after) || len(changes.list()) != 2 {
		t.Errorf("a failed write left traces: groups %v, sites %v -> %v, %d changes", gs, before, after, len(changes.list()))
	}
	if d := cmp.Diff(beforeG, mustGroup(t, s, g.ID)); d != "" {
		t.Errorf("a failed replace changed the group (-before +after):\n%s", d)
	}
	if d := cmp.Diff(beforeL, mustList(t, s, list.ID)); d != "" {
		t.Errorf("a failed replace changed the list (-before +after):\n%s", d)
	}
	if audit, _, err := s.AuditEvents(ctx, org, cp.AuditQuery{Limit: 100}); err != nil || len(audit) != 2 {
		t.Errorf("audit trail after failed writes: %d events, %v; want the 2 that committed", len(audit), err)
	}
}

// testRuleIDsKeptAcrossReplace: a PUT keeps the id of every rule whose
// match is unchanged, whatever its order or description, and so for the
// prefixes of a list; new matches get new ids.
func testRuleIDsKeptAcrossReplace(t *testing.T, open Opener) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, Options{Now: clk.Now})
	ssh := cp.FilterRuleWrite{Direction: "inbound", Order: 1, Protocol: 6, Port: "22", Address: "10.0.0.0/8"}
	web := cp.FilterRuleWrite{Direction: "inbound", Order: 2, Protocol: 6, Port: "443", Address: "0.0.0.0/0"}
	g, err := createGroup(ctx, s, org, group("G", nil, ssh, web))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, r := range g.Rules {
		if !cp.ValidID(cp.FilterRuleIDPrefix, r.ID) {
			t.Errorf("rule id %q", r.ID)
		}
		ids[r.Port] = r.ID
	}
	ssh.Order, ssh.Description, web.Order = 5, "reordered", 1
	dns := cp.FilterRuleWrite{Direction: "outbound", Order: 3, Protocol: 17, Port: "53", Address: "0.0.0.0/0"}
	g2, err := replaceGroup(ctx, s, org, g.ID, group("G", nil, ssh, web, dns))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range g2.Rules {
		switch r.Port {
		case "22", "443":
			if r.ID != ids[r.Port] {
				t.Errorf("rule %s: id %s after the replace, was %s", r.Port, r.ID, ids[r.Port])
			}
		case "53":
			if slices.Contains([]string{ids["22"], ids["443"]}, r.ID) || !cp.ValidID(cp.FilterRuleIDPrefix, r.ID) {
				t.Errorf("new rule got id %q", r.ID)
			}
		}
	}
	// A changed match is a new rule.
	ssh.Port = "2222"
	g3, err := replaceGroup(ctx, s, org, g.ID, group("G", nil, ssh))
	if err != nil {
		t.Fatal(err)
	}
	if len(g3.Rules) != 1 || g3.Rules[0].ID == ids["22"] {
		t.Errorf("a rule whose port changed kept its id: %+v", g3.Rules)
	}

	l, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}, {CIDR: "198.51.100.0/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := replaceList(ctx, s, org, l.ID, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{{CIDR: "203.0.113.0/24"}, {CIDR: "192.0.2.0/24", Description: "kept"}}})
	if err != nil {
		t.Fatal(err)
	}
	if l2.Prefixes[1].CIDR != "192.0.2.0/24" || l2.Prefixes[1].ID != l.Prefixes[0].ID || l2.Prefixes[0].ID == l.Prefixes[1].ID {
		t.Errorf("prefix ids across a replace: %+v -> %+v", l.Prefixes, l2.Prefixes)
	}
}

// testLockedWhileSyncing: a group or list still syncing refuses replaces
// and deletes with resource_locked and a retry time, until every site
// confirmed, a site failed, or the deadline passed.
func testLockedWhileSyncing(t *testing.T, open Opener) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, Options{Now: clk.Now, Revisioner: &counter{}, SyncTimeout: time.Minute})
	g, err := createGroup(ctx, s, org, group("G", []string{"site_a", "site_b"}))
	if err != nil {
		t.Fatal(err)
	}
	l, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{}, Sites: []string{"site_c"}})
	if err != nil {
		t.Fatal(err)
	}
	locked := func(step string, err error) {
		t.Helper()
		var e *cp.Error
		if cp.ErrorCode(err) != cp.CodeResourceLocked || !errors.As(err, &e) || e.RetryAfter < time.Second {
			t.Errorf("%s: %v, want resource_locked with a retry time", step, err)
		}
	}
	_, err = s.ReplaceSecurityGroup(ctx, org, g.ID, group("G2", []string{"site_a"}))
	locked("replace while syncing", err)
	locked("delete while syncing", s.DeleteSecurityGroup(ctx, org, g.ID))
	_, err = s.ReplacePrefixList(ctx, org, l.ID, &cp.PrefixListWrite{Name: "L2", Prefixes: []cp.PrefixWrite{}})
	locked("replace a list while syncing", err)
	locked("delete a list while syncing", s.DeletePrefixList(ctx, org, l.ID))
	if got := mustGroup(t, s, g.ID); got.Name != "G" || len(got.Sites) != 2 {
		t.Errorf("a locked write changed the group: %+v", got)
	}
	// One site confirmed: still locked.
	if err := confirm(ctx, s, org, "site_a", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	_, err = s.ReplaceSecurityGroup(ctx, org, g.ID, group("G2", []string{"site_a"}))
	locked("replace with one site left", err)
	// Both: writable.
	if err := confirm(ctx, s, org, "site_b", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplaceSecurityGroup(ctx, org, g.ID, group("G2", []string{"site_a"})); err != nil {
		t.Errorf("replace once active: %v", err)
	}
	// A failure unlocks at once.
	if err := confirm(ctx, s, org, "site_a", 2, false, "no"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err != nil {
		t.Errorf("delete once failed: %v", err)
	}
	// The deadline unlocks, without a sweep.
	clk.add(time.Minute)
	if err := s.DeletePrefixList(ctx, org, l.ID); err != nil {
		t.Errorf("delete past the deadline: %v", err)
	}
}

// testPrefixListReferences: a rule may name only a prefix list of the
// same organisation that exists, and a list stays while a rule names it;
// both are checked in the write's transaction.
func testPrefixListReferences(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{})
	l, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := createList(ctx, s, "org_b", &cp.PrefixListWrite{Name: "B", Prefixes: []cp.PrefixWrite{}})
	if err != nil {
		t.Fatal(err)
	}
	missing := cp.NewID(cp.PrefixListIDPrefix)
	rule := func(addr string) cp.FilterRuleWrite {
		return cp.FilterRuleWrite{Direction: "inbound", Order: 1, Protocol: 6, Port: "22", Address: addr}
	}
	for _, addr := range []string{missing, other.ID} {
		_, err := s.CreateSecurityGroup(ctx, org, group("G", nil, rule(addr)))
		if cp.ErrorCode(err) != cp.CodePrefixListNotFound {
			t.Errorf("a rule naming %s: %v, want prefix_list_not_found", addr, err)
		}
	}
	if gs := listGroups(t, s); len(gs) != 0 {
		t.Errorf("refused creates left groups: %v", gs)
	}
	g, err := createGroup(ctx, s, org, group("G", nil, rule(l.ID)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePrefixList(ctx, org, l.ID); cp.ErrorCode(err) != cp.CodePrefixListInUse {
		t.Errorf("delete of a list in use: %v, want prefix_list_in_use", err)
	}
	if _, err := getList(ctx, s, org, l.ID); err != nil {
		t.Errorf("the list in use is gone: %v", err)
	}
	// A replace that drops the reference frees the list; one that adds a
	// missing list is refused and keeps the old reference.
	if _, err := s.ReplaceSecurityGroup(ctx, org, g.ID, group("G", nil, rule(missing))); cp.ErrorCode(err) != cp.CodePrefixListNotFound {
		t.Errorf("replace naming a missing list: %v", err)
	}
	if err := s.DeletePrefixList(ctx, org, l.ID); cp.ErrorCode(err) != cp.CodePrefixListInUse {
		t.Errorf("after a refused replace, delete of the list in use: %v", err)
	}
	if _, err := s.ReplaceSecurityGroup(ctx, org, g.ID, group("G", nil, rule("10.0.0.0/8"))); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePrefixList(ctx, org, l.ID); err != nil {
		t.Errorf("delete of a list no longer used: %v", err)
	}
	// Deleting the group frees its lists too.
	l2, _ := createList(ctx, s, org, &cp.PrefixListWrite{Name: "L2", Prefixes: []cp.PrefixWrite{}})
	if _, err := s.ReplaceSecurityGroup(ctx, org, g.ID, group("G", nil, rule(l2.ID))); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePrefixList(ctx, org, l2.ID); err != nil {
		t.Errorf("delete of a list whose group was deleted: %v", err)
	}
}

// testNotFoundAcrossOrganisations: another organisation's ids are not
// found, for reads and every write.
func testNotFoundAcrossOrganisations(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{})
	g, err := createGroup(ctx, s, "org_b", group("B", nil))
	if err != nil {
		t.Fatal(err)
	}
	l, err := createList(ctx, s, "org_b", &cp.PrefixListWrite{Name: "B", Prefixes: []cp.PrefixWrite{}})
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"get group":     func() error { _, err := s.GetJSON(ctx, org, cp.KindSecurityGroup, g.ID); return err }(),
		"get list":      func() error { _, err := s.GetJSON(ctx, org, cp.KindPrefixList, l.ID); return err }(),
		"replace group": func() error { _, err := s.ReplaceSecurityGroup(ctx, org, g.ID, group("A", nil)); return err }(),
		"replace list": func() error {
			_, err := s.ReplacePrefixList(ctx, org, l.ID, &cp.PrefixListWrite{Name: "A", Prefixes: []cp.PrefixWrite{}})
			return err
		}(),
		"delete group": s.DeleteSecurityGroup(ctx, org, g.ID),
		"delete list":  s.DeletePrefixList(ctx, org, l.ID),
		"get site":     func() error { _, err := s.GetSite(ctx, org, "site_x"); return err }(),
		"missing group": func() error {
			_, err := s.GetJSON(ctx, "org_b", cp.KindSecurityGroup, cp.NewID(cp.SecurityGroupIDPrefix))
			return err
		}(),
		"delete missing": s.DeleteSecurityGroup(ctx, "org_b", cp.NewID(cp.SecurityGroupIDPrefix)),
	} {
		if cp.ErrorCode(err) != cp.CodeNotFound {
			t.Errorf("%s: %v, want resource_missing", name, err)
		}
	}
}

func testConcurrentWrites(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{Revisioner: &counter{}})
	changes := record(s)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := createGroup(ctx, s, org, group(fmt.Sprintf("Group %d", i), []string{"site_a"})); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	gs := listGroups(t, s)
	if len(gs) != 32 || len(changes.list()) != 32 {
		t.Errorf("%d groups, %d changes", len(gs), len(changes.list()))
	}
	// Every write gave site_a its own revision: 1 to 32, each once.
	var revs []uint64
	for _, c := range changes.list() {
		revs = append(revs, c.Revisions["site_a"])
	}
	slices.Sort(revs)
	for i, r := range revs {
		if r != uint64(i+1) {
			t.Fatalf("site_a's revisions over 32 concurrent writes: %v, want 1…32", revs)
		}
	}
	if got := site(t, s, "site_a"); got.DesiredRevision != 32 {
		t.Errorf("site_a desired revision %d, want 32", got.DesiredRevision)
	}
}

// testConcurrentReplaceOfOneGroup makes writes of one group collide: every
// PUT must succeed (the group is not locked: no sites), and the group must
// end as one of them, whole.
func testConcurrentReplaceOfOneGroup(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, Options{})
	g, err := createGroup(ctx, s, org, group("Group", []string{}))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rules := []cp.FilterRuleWrite{}
			for j := range 5 {
				rules = append(rules, cp.FilterRuleWrite{Direction: "inbound", Order: j + 1, Protocol: 6, Port: fmt.Sprint(1000*i + j + 1), Address: "0.0.0.0/0"})
			}
			if _, err := replaceGroup(ctx, s, org, g.ID, group(fmt.Sprintf("Writer %d", i), []string{}, rules...)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got := mustGroup(t, s, g.ID)
	var writer int
	fmt.Sscanf(got.Name, "Writer %d", &writer)
	for j, r := range got.Rules {
		if r.Port != fmt.Sprint(1000*writer+j+1) {
			t.Fatalf("group mixes writers: name %q, rule %d port %s", got.Name, j, r.Port)
		}
	}
	if st, _ := s.GetJSON(ctx, org, cp.KindSecurityGroup, g.ID); st.Version != 17 {
		t.Errorf("version %d after a create and 16 replaces, want 17", st.Version)
	}
}

// testReadsSeeEveryChange reads a group after each kind of change: a
// replace, a confirmation, the clock passing the sync deadline, a sweep, a
// failed report and a delete. Answers given out earlier do not change.
func testReadsSeeEveryChange(t *testing.T, open Opener) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, Options{Revisioner: &counter{}, Now: clk.Now, SyncTimeout: time.Minute})
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}))
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, wantName string, want cp.Status) {
		t.Helper()
		for range 2 { // a store may answer the second read from a cache
			got := mustGroup(t, s, g.ID)
			if got.Name != wantName || got.Status != want {
				t.Fatalf("%s: read %q %q, want %q %q", step, got.Name, got.Status, wantName, want)
			}
			page := listGroups(t, s)
			if len(page) != 1 || page[0].Name != wantName || page[0].Status != want {
				t.Fatalf("%s: list %+v, want %q %q", step, page, wantName, want)
			}
		}
	}
	check("created", "Group", cp.StatusSyncing)
	if err := confirm(ctx, s, org, "site_a", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	check("confirmed", "Group", cp.StatusActive)
	if _, err := replaceGroup(ctx, s, org, g.ID, group("Renamed", []string{"site_a"})); err != nil {
		t.Fatal(err)
	}
	check("replaced", "Renamed", cp.StatusSyncing)
	clk.add(2 * time.Minute) // no write: only the clock says it failed
	check("past the deadline", "Renamed", cp.StatusFailed)
	if n, err := s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	check("swept", "Renamed", cp.StatusFailed)
	if _, err := replaceGroup(ctx, s, org, g.ID, group("Fourth", []string{"site_a"})); err != nil {
		t.Fatal(err)
	}
	check("replaced after failing", "Fourth", cp.StatusSyncing)
	if err := confirm(ctx, s, org, "site_a", 3, false, "no such item"); err != nil {
		t.Fatal(err)
	}
	check("failed report", "Fourth", cp.StatusFailed)
	before, _ := s.GetJSON(ctx, org, cp.KindSecurityGroup, g.ID)
	kept := string(before.Body)
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetJSON(ctx, org, cp.KindSecurityGroup, g.ID); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Fatalf("after delete: %v, want not found", err)
	}
	if string(before.Body) != kept {
		t.Fatalf("an answer given out changed: %s", before.Body)
	}
	if gs := listGroups(t, s); len(gs) != 0 {
		t.Fatalf("list after delete: %+v", gs)
	}
}

func testViewPolicyAndOrgs(t *testing.T, open Opener) {
	ctx := context.Background()
	rev := &counter{}
	s := open(t, Options{Revisioner: rev})
	if _, err := createGroup(ctx, s, "org_b", group("Group B", []string{"site_b"})); err != nil {
		t.Fatal(err)
	}
	if _, err := createGroup(ctx, s, org, group("Group A", []string{"site_a"})); err != nil {
		t.Fatal(err)
	}
	orgs, err := s.Orgs(ctx)
	if err != nil || !slices.Equal(orgs, []string{"org_a", "org_b"}) {
		t.Errorf("Orgs = %v, %v", orgs, err)
	}
	err = s.ViewPolicy(ctx, org, func(tx cp.PolicyTx) error {
		gs, _, err := tx.Policy([]string{"site_a"})
		if err != nil || len(gs) != 1 || gs[0].Name != "Group A" {
			t.Errorf("groups %v, %v", gs, err)
		}
		data, err := tx.SiteData("site_a")
		if err != nil || len(data) != 8 || binary.BigEndian.Uint64(data) != 1 {
			t.Errorf("site data %x, %v: want the Revisioner's revision 1", data, err)
		}
		if tx.SetSiteData("site_a", nil) == nil {
			t.Error("a read-only view accepted a write")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ViewPolicy(ctx, "org_none", func(tx cp.PolicyTx) error {
		gs, _, err := tx.Policy([]string{"site_a"})
		if len(gs) != 0 || err != nil {
			t.Errorf("empty org: %v, %v", gs, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// testPolicyOfSites: a PolicyTx gives what the sites' documents are made of
// (their groups, their lists and the lists those groups use) and nothing
// else, through writes, moves and deletes.
func testPolicyOfSites(t *testing.T, open Opener) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, Options{Now: clk.Now})
	list := func(name string, sites ...string) string {
		l, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: name, Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}, Sites: sites})
		if err != nil {
			t.Fatal(err)
		}
		return l.ID
	}
	used, direct := list("Used"), list("Direct", "site_a")
	list("Other", "site_b")
	ssh := cp.FilterRuleWrite{Direction: "inbound", Order: 1, Protocol: 6, Port: "22", Address: used}
	g1, err := createGroup(ctx, s, org, group("G1", []string{"site_a"}, ssh))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := createGroup(ctx, s, org, group("G2", []string{"site_b"})); err != nil {
		t.Fatal(err)
	}
	policy := func(sites ...string) []string {
		t.Helper()
		var names []string
		err := s.ViewPolicy(ctx, org, func(tx cp.PolicyTx) error {
			gs, ls, err := tx.Policy(sites)
			for _, g := range gs {
				names = append(names, "group "+g.Name)
			}
			for _, l := range ls {
				names = append(names, "list "+l.Name)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(names) // ids order them, and ids made in one second are in no particular order
		return names
	}
	if d := cmp.Diff([]string{"group G1", "list Direct", "list Used"}, policy("site_a")); d != "" {
		t.Errorf("site_a (-want +got):\n%s", d)
	}
	clk.add(time.Hour) // past every sync deadline: writable
	if _, err := replaceGroup(ctx, s, org, g1.ID, group("G1", []string{"site_c"}, ssh)); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"list Direct"}, policy("site_a")); d != "" {
		t.Errorf("site_a after G1 moved (-want +got):\n%s", d)
	}
	if err := s.DeletePrefixList(ctx, org, direct); err != nil {
		t.Fatal(err)
	}
	if got := policy("site_a"); len(got) != 0 {
		t.Errorf("site_a after its list was deleted: %v", got)
	}
	if d := cmp.Diff([]string{"group G2", "list Other"}, policy("site_b")); d != "" {
		t.Errorf("site_b (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"group G1", "list Used"}, policy("site_c", "site_zz")); d != "" {
		t.Errorf("site_c (-want +got):\n%s", d)
	}
}
