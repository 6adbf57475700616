package bolt_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/protocol"
)

const org = "org_a"

// counter is a Revisioner like the compiler will be: it reads the policy
// the write will commit, keeps a per-site counter in the transaction's site
// data and bumps it for every affected site.
type counter struct {
	mu    sync.Mutex
	fail  bool
	seen  map[string]int // site → groups the policy of the affected sites applies to it, at the last call
	calls int
}

func (c *counter) Revise(tx cp.PolicyTx, org string, sites []string) (map[string]protocol.DesiredState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fail {
		return nil, errors.New("compiler exploded")
	}
	groups, _, err := tx.Policy(sites)
	if err != nil {
		return nil, err
	}
	c.seen = map[string]int{}
	for _, g := range groups {
		for _, s := range g.Sites {
			c.seen[s]++
		}
	}
	out := map[string]protocol.DesiredState{}
	for _, s := range sites {
		b, err := tx.SiteData(s)
		if err != nil {
			return nil, err
		}
		var rev uint64
		if len(b) == 8 {
			rev = binary.BigEndian.Uint64(b)
		}
		rev++
		if err := tx.SetSiteData(s, binary.BigEndian.AppendUint64(nil, rev)); err != nil {
			return nil, err
		}
		out[s] = protocol.DesiredState{OrgID: org, SiteID: s, Revision: rev}
	}
	return out, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func open(t *testing.T, opts bolt.Options) (*bolt.Store, *[]cp.Change) {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "r.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var mu sync.Mutex
	changes := &[]cp.Change{}
	s.OnChange(func(c cp.Change) { mu.Lock(); *changes = append(*changes, c); mu.Unlock() })
	return s, changes
}

func group(name string, sites []string, rules ...cp.FilterRuleWrite) *cp.SecurityGroupWrite {
	if rules == nil {
		rules = []cp.FilterRuleWrite{}
	}
	return &cp.SecurityGroupWrite{Name: name, Rules: rules, Sites: sites}
}

func TestRevisionsChangesAndConfirm(t *testing.T) {
	ctx := context.Background()
	rev := &counter{}
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s, changes := open(t, bolt.Options{Revisioner: rev, Now: clk.Now})

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
	if got, _ := s.GetSecurityGroup(ctx, org, g.ID); got.Status != cp.StatusSyncing {
		t.Errorf("after a stale report: %q, want syncing", got.Status)
	}
	if err := confirm(ctx, s, org, "site_b", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSecurityGroup(ctx, org, g.ID); got.Status != cp.StatusActive {
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
	for _, c := range *changes {
		got = append(got, short{c.Kind, c.Sites, c.Revisions, c.Deleted})
	}
	want := []short{
		{cp.KindPrefixList, []string{}, nil, false},
		{cp.KindSecurityGroup, []string{"site_a", "site_b"}, map[string]uint64{"site_a": 1, "site_b": 1}, false},
		{cp.KindSecurityGroup, []string{"site_a", "site_b", "site_c"}, map[string]uint64{"site_a": 2, "site_b": 2, "site_c": 1}, false},
		{cp.KindPrefixList, []string{"site_b", "site_c"}, map[string]uint64{"site_b": 3, "site_c": 2}, false},
		{cp.KindSecurityGroup, []string{"site_b", "site_c"}, map[string]uint64{"site_b": 4, "site_c": 3}, true},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) || len(a)+len(b) == 0 })); d != "" {
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

func TestFailedReportFailsAndRecovers(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, bolt.Options{Revisioner: &counter{}})
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := confirm(ctx, s, org, "site_a", 1, false, "no such item"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetSecurityGroup(ctx, org, g.ID)
	site, _ := s.GetSite(ctx, org, "site_a")
	if got.Status != cp.StatusFailed || site.State != cp.SiteFailed || site.LastError != "no such item" {
		t.Errorf("after a failure: group %q, site %+v", got.Status, site)
	}
	// failed does not lock: the next write starts a new sync.
	g2, err := replaceGroup(ctx, s, org, g.ID, group("Group 2", []string{"site_a"}))
	if err != nil || g2.Status != cp.StatusSyncing {
		t.Errorf("write after failure: %v, %q", err, g2.Status)
	}
}

func TestFailedWriteLeavesNothing(t *testing.T) {
	ctx := context.Background()
	rev := &counter{}
	s, changes := open(t, bolt.Options{Revisioner: rev})
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.ListSites(ctx, org)
	rev.fail = true
	if _, err := createGroup(ctx, s, org, group("Other", []string{"site_new"})); err == nil {
		t.Fatal("write succeeded although the Revisioner failed")
	}
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err == nil {
		t.Fatal("delete succeeded although the Revisioner failed")
	}
	gs, _ := s.ListSecurityGroups(ctx, org)
	after, _ := s.ListSites(ctx, org)
	if len(gs) != 1 || gs[0].ID != g.ID || !cmp.Equal(before, after) || len(*changes) != 1 {
		t.Errorf("a failed write left traces: groups %v, sites %v -> %v, %d changes", gs, before, after, len(*changes))
	}
}

func TestSweeperFailsAtDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _ := open(t, bolt.Options{SyncTimeout: 200 * time.Millisecond})
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}))
	if err != nil {
		t.Fatal(err)
	}
	l, err := createList(ctx, s, org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{}, Sites: []string{"site_b"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.RunSweeper(ctx, 50*time.Millisecond, func(err error) { t.Error(err) }) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		counts, err := s.CountByStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts[cp.KindSecurityGroup][cp.StatusFailed] == 1 && counts[cp.KindPrefixList][cp.StatusFailed] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not failed after 20 s: %v", counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	got, _ := s.GetSecurityGroup(ctx, org, g.ID)
	gotL, _ := s.GetPrefixList(ctx, org, l.ID)
	if got.Status != cp.StatusFailed || gotL.Status != cp.StatusFailed {
		t.Errorf("statuses %q %q", got.Status, gotL.Status)
	}
	if n, err := s.Sweep(context.Background()); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v; want nothing left", n, err)
	}
}

func TestOpenTimesOutWhenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if _, err := bolt.Open(path, bolt.Options{LockTimeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("opened a locked database")
	}
	if time.Since(start) > 10*time.Second {
		t.Error("waited far beyond the lock timeout")
	}
}

func TestConcurrentWrites(t *testing.T) {
	for _, noBatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoBatch=%v", noBatch), func(t *testing.T) {
			ctx := context.Background()
			s, changes := open(t, bolt.Options{NoBatch: noBatch})
			var wg sync.WaitGroup
			for i := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := createGroup(ctx, s, org, group(fmt.Sprintf("Group %d", i), []string{})); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			gs, err := s.ListSecurityGroups(ctx, org)
			if err != nil || len(gs) != 32 || len(*changes) != 32 {
				t.Errorf("%d groups, %d changes, %v", len(gs), len(*changes), err)
			}
		})
	}
}

// TestConcurrentReplaceOfOneGroup makes optimistic writes collide: every
// PUT must succeed (retrying when another committed in between), and the
// group must end as one of them, whole.
func TestConcurrentReplaceOfOneGroup(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, bolt.Options{})
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
	got, err := s.GetSecurityGroup(ctx, org, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	var writer int
	fmt.Sscanf(got.Name, "Writer %d", &writer)
	for j, r := range got.Rules {
		if r.Port != fmt.Sprint(1000*writer+j+1) {
			t.Fatalf("group mixes writers: name %q, rule %d port %s", got.Name, j, r.Port)
		}
	}
}

// TestDecodedGroupsAreNotShared checks that what reads return can be changed
// by the caller without changing what later reads return.
func TestDecodedGroupsAreNotShared(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, bolt.Options{})
	r := cp.FilterRuleWrite{Direction: "inbound", Order: 1, Protocol: 6, Port: "22", Address: "10.0.0.0/8"}
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}, r))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := s.GetSecurityGroup(ctx, org, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Rules[0].Port != "22" || got.Sites[0] != "site_a" {
			t.Fatalf("read %+v after a caller changed an earlier read", got)
		}
		got.Rules[0].Port, got.Sites[0] = "changed", "changed"
		all, _ := s.ListSecurityGroups(ctx, org)
		all[0].Rules[0].Port = "changed too"
	}
	// A replace is seen at once.
	if err := confirm(ctx, s, org, "site_a", 0, true, ""); err != nil {
		t.Fatal(err)
	}
	r.Port = "2222"
	if _, err := replaceGroup(ctx, s, org, g.ID, group("Group", []string{}, r)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSecurityGroup(ctx, org, g.ID); got.Rules[0].Port != "2222" || len(got.Sites) != 0 {
		t.Errorf("read after replace: %+v", got)
	}
}

func TestViewPolicyAndOrgs(t *testing.T) {
	ctx := context.Background()
	rev := &counter{}
	s, _ := open(t, bolt.Options{Revisioner: rev})
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
		if err != nil || binary.BigEndian.Uint64(data) != 1 {
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

// TestPolicyOfSites: a PolicyTx gives what the sites' documents are made of
// (their groups, their lists and the lists those groups use) and nothing
// else, through writes, moves and deletes.
func TestPolicyOfSites(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s, _ := open(t, bolt.Options{Now: clk.Now})
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
