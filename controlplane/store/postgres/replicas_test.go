package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/syncer"
	"github.com/rampart-fw/rampart/internal/pgtest"
	"github.com/rampart-fw/rampart/protocol"
)

// Several control planes on one database (#15 item 2): what only a shared
// database can get wrong.

// replicas opens n stores on one fresh database.
func replicas(t *testing.T, n int, opts Options) []*Store {
	t.Helper()
	dsn := pgtest.DSN(t)
	out := make([]*Store, n)
	for i := range out {
		o := opts
		o.ReplicaID = fmt.Sprintf("replica-%d", i)
		out[i] = openStore(t, dsn, o)
	}
	return out
}

// changes collects the Changes a store announces.
type changes struct {
	mu  sync.Mutex
	all []cp.Change
}

func (c *changes) add(ch cp.Change) {
	c.mu.Lock()
	c.all = append(c.all, ch)
	c.mu.Unlock()
}

func rule(order int, addr string) cp.FilterRuleWrite {
	return cp.FilterRuleWrite{Direction: protocol.Inbound, Order: order, Protocol: 6, Port: "443", Address: addr}
}

// TestReplicasNoLostUpdate: two replicas create groups on the same sites
// at once, while a third ingests the sites' reports. No write is lost (the
// site's document holds every group), revisions are monotonic and
// contiguous per site (each write that changed a site's content gave it
// the next revision), no revision names two contents, and every group
// ends active once the sites applied the last revision.
func TestReplicasNoLostUpdate(t *testing.T) {
	rs := replicas(t, 3, Options{Revisioner: compile.Revisioner{}})
	ctx := context.Background()
	var seen changes
	for _, r := range rs {
		r.OnChange(seen.add)
	}
	const org, perReplica = "org", 15
	sites := []string{"s1", "s2", "s3"}
	var wg sync.WaitGroup
	errs := make(chan error, 2*perReplica)
	var groups sync.Map
	for w := range 2 {
		wg.Go(func() {
			for i := range perReplica {
				// Each group on two of the three sites, so the replicas'
				// writes overlap in different ways.
				gs := []string{sites[(w+i)%3], sites[(w+i+1)%3]}
				slices.Sort(gs)
				st, err := rs[w].CreateSecurityGroup(ctx, org, &cp.SecurityGroupWrite{Name: fmt.Sprintf("group %d-%d", w, i),
					Rules: []cp.FilterRuleWrite{rule(1, fmt.Sprintf("10.%d.%d.0/24", w, i))}, Sites: gs})
				if err != nil {
					errs <- err
					return
				}
				groups.Store(st.ID, gs)
			}
		})
	}
	stop := make(chan struct{})
	ingested := make(chan error, 1)
	go func() {
		// The third replica applies whatever the sites were given, as
		// agents would, racing the writes.
		for {
			select {
			case <-stop:
				ingested <- nil
				return
			default:
			}
			var reports []cp.Report
			for _, site := range sites {
				rec, err := rs[2].GetSite(ctx, org, site)
				if err != nil {
					continue // not created yet
				}
				reports = append(reports, cp.Report{OrgID: org, SiteID: site, Status: &protocol.SiteStatus{
					Epoch: rs[2].Epoch(), Revision: rec.DesiredRevision, State: protocol.StateApplied}})
			}
			if _, err := rs[2].Ingest(ctx, reports); err != nil {
				ingested <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	if err := <-ingested; err != nil {
		t.Fatalf("ingest: %v", err)
	}
	close(errs)
	for err := range errs {
		t.Fatalf("write: %v", err)
	}

	// Every revision a site was given, from every replica's Changes.
	revs := map[string]map[uint64]string{} // site → revision → hash
	seen.mu.Lock()
	for _, ch := range seen.all {
		for site, d := range ch.Documents {
			if revs[site] == nil {
				revs[site] = map[uint64]string{}
			}
			if h, ok := revs[site][d.Revision]; ok && h != d.Hash {
				t.Errorf("site %s: revision %d given to two contents (%s, %s)", site, d.Revision, h, d.Hash)
			}
			revs[site][d.Revision] = d.Hash
		}
	}
	seen.mu.Unlock()
	want := map[string]int{}
	groups.Range(func(_, v any) bool {
		for _, site := range v.([]string) {
			want[site]++
		}
		return true
	})
	for _, site := range sites {
		var got []uint64
		for rev := range revs[site] {
			got = append(got, rev)
		}
		slices.Sort(got)
		var contiguous []uint64
		for i := range want[site] {
			contiguous = append(contiguous, uint64(i+1))
		}
		if d := cmp.Diff(contiguous, got); d != "" {
			t.Errorf("site %s: revisions given (-want 1..%d +got):\n%s", site, want[site], d)
		}
		rec, err := rs[0].GetSite(ctx, org, site)
		if err != nil || rec.DesiredRevision != uint64(want[site]) {
			t.Errorf("site %s: desired revision %d (%v); want %d", site, rec.DesiredRevision, err, want[site])
		}
	}
	// The stored documents hold every group.
	err := rs[1].ViewPolicy(ctx, org, func(tx cp.PolicyTx) error {
		docs, err := compile.Published(tx, org, sites, rs[1].Epoch(), func(site string, err error) { t.Errorf("stamp %s: %v", site, err) })
		for _, d := range docs {
			if len(d.SecurityGroups) != want[d.SiteID] {
				t.Errorf("site %s: document of revision %d has %d groups; want %d", d.SiteID, d.Revision, len(d.SecurityGroups), want[d.SiteID])
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Once every site applied its last revision, every group is active.
	var reports []cp.Report
	for _, site := range sites {
		reports = append(reports, cp.Report{OrgID: org, SiteID: site, Status: &protocol.SiteStatus{
			Epoch: rs[0].Epoch(), Revision: uint64(want[site]), State: protocol.StateApplied}})
	}
	if _, err := rs[0].Ingest(ctx, reports); err != nil {
		t.Fatal(err)
	}
	counts, err := rs[1].CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := counts[cp.KindSecurityGroup][cp.StatusActive]; got != 2*perReplica {
		t.Errorf("%d groups active (%v); want all %d", got, counts, 2*perReplica)
	}
}

// TestReplicasReplaceOneGroup: replicas replacing one group at once never
// lose a replace: each one gets the next version (its ETag), and the audit
// trail has every version once.
func TestReplicasReplaceOneGroup(t *testing.T) {
	rs := replicas(t, 2, Options{Revisioner: compile.Revisioner{}})
	ctx := context.Background()
	const org, perReplica = "org", 20
	g, err := rs[0].CreateSecurityGroup(ctx, org, &cp.SecurityGroupWrite{Name: "shared", Rules: []cp.FilterRuleWrite{}})
	if err != nil {
		t.Fatal(err)
	}
	versions := make(chan uint64, 2*perReplica)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range perReplica {
				st, err := rs[w].ReplaceSecurityGroup(ctx, org, g.ID, &cp.SecurityGroupWrite{Name: fmt.Sprintf("by %d, %d", w, i),
					Rules: []cp.FilterRuleWrite{rule(1, "10.0.0.0/8"), rule(2, fmt.Sprintf("10.%d.%d.0/24", w, i))}})
				if err != nil {
					t.Error(err)
					return
				}
				versions <- st.Version
			}
		})
	}
	wg.Wait()
	close(versions)
	var got []uint64
	for v := range versions {
		got = append(got, v)
	}
	slices.Sort(got)
	var want []uint64
	for v := range 2 * perReplica {
		want = append(want, uint64(v+2))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("versions of the replaces (-want +got):\n%s", d)
	}
	evs, _, err := rs[1].AuditEvents(ctx, org, cp.AuditQuery{ResourceID: g.ID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var audited []uint64
	for _, raw := range evs {
		v, ok, err := cp.VersionOf(mustEvent(t, raw))
		if err != nil || !ok {
			t.Fatalf("event %s: %v", raw, err)
		}
		audited = append(audited, v.Version)
	}
	slices.Sort(audited)
	if d := cmp.Diff(append([]uint64{1}, want...), audited); d != "" {
		t.Errorf("versions in the audit trail (-want +got):\n%s", d)
	}
	// The rule every replace kept kept its id from the first of them.
	final, err := rs[0].GetJSON(ctx, org, cp.KindSecurityGroup, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	var v2, last cp.SecurityGroup
	if err := json.Unmarshal(mustEvent(t, evs[len(evs)-2]).Body, &v2); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(final.Body, &last); err != nil {
		t.Fatal(err)
	}
	if final.Version != 2*perReplica+1 || len(v2.Rules) != 2 || len(last.Rules) != 2 || v2.Rules[0].ID != last.Rules[0].ID {
		t.Errorf("final version %d, rule ids %v then %v; want version %d and the first rule's id kept", final.Version, v2.Rules, last.Rules, 2*perReplica+1)
	}
}

// TestReplicasQuota: replicas creating groups at once never exceed the
// quota between them.
func TestReplicasQuota(t *testing.T) {
	rs := replicas(t, 2, Options{Quotas: cp.Quotas{SecurityGroups: 5, Sites: 3}})
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, refused := 0, 0
	for w := range 2 {
		wg.Go(func() {
			for i := range 6 {
				_, err := rs[w].CreateSecurityGroup(ctx, "org", &cp.SecurityGroupWrite{Name: "quota", Rules: []cp.FilterRuleWrite{},
					Sites: []string{fmt.Sprintf("s%d-%d", w, i)}})
				mu.Lock()
				if err == nil {
					created++
				} else if cp.ErrorCode(err) == cp.CodeQuotaExceeded {
					refused++
				} else {
					t.Error(err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sites, err := rs[0].ListSites(ctx, "org")
	if err != nil {
		t.Fatal(err)
	}
	// Each group adds a new site: the site quota (3) binds first.
	if created != 3 || refused != 9 || len(sites) != 3 {
		t.Errorf("created %d, refused %d, %d sites; want 3, 9 and 3 (quota of 3 sites)", created, refused, len(sites))
	}
}

// TestReplicasIngestEveryReport: every replica receives every report
// (one broker subscription each) and ingests it, in batches of its own
// sizes, at once: the sites end as one ingestion of the reports makes
// them, and the group active.
func TestReplicasIngestEveryReport(t *testing.T) {
	rs := replicas(t, 3, Options{Revisioner: compile.Revisioner{}})
	ctx := context.Background()
	const org = "org"
	var sites []string
	for i := range 50 {
		sites = append(sites, fmt.Sprintf("site-%02d", i))
	}
	g, err := rs[0].CreateSecurityGroup(ctx, org, &cp.SecurityGroupWrite{Name: "all", Rules: []cp.FilterRuleWrite{rule(1, "10.0.0.0/8")}, Sites: sites})
	if err != nil {
		t.Fatal(err)
	}
	var reports []cp.Report
	for _, site := range sites {
		for _, state := range []string{protocol.StateApplying, protocol.StateApplied} {
			reports = append(reports, cp.Report{OrgID: org, SiteID: site, Status: &protocol.SiteStatus{Epoch: rs[0].Epoch(), Revision: 1, State: state}})
		}
	}
	results := make([][]cp.ReportResult, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			// Each replica in batches of its own size, so their
			// transactions overlap differently.
			for batch := range slices.Chunk(reports, 7+i*5) {
				res, err := r.Ingest(ctx, batch)
				if err != nil {
					t.Error(err)
					return
				}
				results[i] = append(results[i], res...)
			}
		})
	}
	wg.Wait()
	// Ingesting them once, on one store, makes the same sites.
	one := openStore(t, pgtest.DSN(t), Options{Revisioner: compile.Revisioner{}})
	if _, err := one.CreateSecurityGroup(ctx, org, &cp.SecurityGroupWrite{Name: "all", Rules: []cp.FilterRuleWrite{rule(1, "10.0.0.0/8")}, Sites: sites}); err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		r.Status.Epoch = one.Epoch() // the same reports, to this store
	}
	if _, err := one.Ingest(ctx, reports); err != nil {
		t.Fatal(err)
	}
	want, err := one.ListSites(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	all, err := rs[0].ListSites(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, all, cmpopts.IgnoreFields(cp.Site{}, "SyncDeadline")); d != "" {
		t.Errorf("sites after every replica ingested every report (-once +thrice):\n%s", d)
	}
	got, err := rs[1].GetJSON(ctx, org, cp.KindSecurityGroup, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := rs[2].CountSites(ctx)
	if err != nil || counts[cp.SiteInSync] != len(sites) {
		t.Errorf("sites by state %v (%v); want all %d in sync", counts, err, len(sites))
	}
	if st := statusOf(t, got.Body); st != cp.StatusActive {
		t.Errorf("group %s after every site applied; want active", st)
	}
}

// TestPublishFence: replica A commits a site's revision 5, replica B
// revision 6; whichever order their publishes come in, 6 is the last one
// out, and A's 5 never follows it.
func TestPublishFence(t *testing.T) {
	rs := replicas(t, 2, Options{})
	ctx := context.Background()
	doc := func(rev uint64) protocol.DesiredState {
		return protocol.DesiredState{OrgID: "org", SiteID: "s1", Revision: rev, Epoch: rs[0].Epoch()}
	}
	var mu sync.Mutex
	var out []uint64 // what reached the broker, in order
	broker := func(_ context.Context, docs []protocol.DesiredState) error {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range docs {
			out = append(out, d.Revision)
		}
		return nil
	}

	// B's 6 first: A's 5 is skipped.
	if err := rs[1].Publish(ctx, "org", []protocol.DesiredState{doc(6)}, broker); err != nil {
		t.Fatal(err)
	}
	if err := rs[0].Publish(ctx, "org", []protocol.DesiredState{doc(5)}, broker); err != nil {
		t.Fatal(err)
	}
	// The same revision again goes out (a republish after a connection).
	if err := rs[0].Publish(ctx, "org", []protocol.DesiredState{doc(6)}, broker); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]uint64{6, 6}, out); d != "" {
		t.Errorf("published revisions (-want +got):\n%s", d)
	}

	// A's 7 still on its way to the broker while B publishes 8: B waits
	// for A, so 8 lands last.
	out = nil
	inA, releaseA := make(chan struct{}), make(chan struct{})
	done := make(chan error, 2)
	go func() {
		done <- rs[0].Publish(ctx, "org", []protocol.DesiredState{doc(7)}, func(ctx context.Context, docs []protocol.DesiredState) error {
			close(inA)
			<-releaseA
			return broker(ctx, docs)
		})
	}()
	<-inA
	go func() { done <- rs[1].Publish(ctx, "org", []protocol.DesiredState{doc(8)}, broker) }()
	time.Sleep(200 * time.Millisecond) // B is waiting on the site's row, not publishing
	mu.Lock()
	early := slices.Clone(out)
	mu.Unlock()
	close(releaseA)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if len(early) != 0 {
		t.Errorf("B published %v while A held the site", early)
	}
	if d := cmp.Diff([]uint64{7, 8}, out); d != "" {
		t.Errorf("published revisions (-want +got):\n%s", d)
	}

	// A publish the broker refuses records nothing: the revision is
	// published again later.
	out = nil
	refused := errors.New("broker refused")
	if err := rs[0].Publish(ctx, "org", []protocol.DesiredState{doc(9)}, func(context.Context, []protocol.DesiredState) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("publish: %v; want the broker's error", err)
	}
	if err := rs[1].Publish(ctx, "org", []protocol.DesiredState{doc(8)}, broker); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]uint64{8}, out); d != "" {
		t.Errorf("after a refused 9, 8 is still the newest published (-want +got):\n%s", d)
	}
}

// TestUnpublished: a revision committed and never published (its replica
// died) is found once older than the grace, and no longer once published;
// RunRepublisher hands it to the syncer on one replica.
func TestUnpublished(t *testing.T) {
	rs := replicas(t, 2, Options{Revisioner: compile.Revisioner{}, LeaseTTL: time.Second})
	ctx := context.Background()
	var seen changes
	rs[0].OnChange(seen.add)
	if _, err := rs[0].CreateSecurityGroup(ctx, "org", &cp.SecurityGroupWrite{Name: "g", Rules: []cp.FilterRuleWrite{rule(1, "10.0.0.0/8")}, Sites: []string{"s1", "s2"}}); err != nil {
		t.Fatal(err)
	}
	got, err := rs[1].Unpublished(ctx, time.Hour)
	if err != nil || len(got) != 0 {
		t.Errorf("unpublished older than an hour: %v (%v); want none", got, err)
	}
	time.Sleep(50 * time.Millisecond)
	got, err = rs[1].Unpublished(ctx, 10*time.Millisecond)
	if d := cmp.Diff(map[string][]string{"org": {"s1", "s2"}}, got); d != "" || err != nil {
		t.Errorf("unpublished (%v) (-want +got):\n%s", err, d)
	}
	// Replica 0 publishes s1 only, then "dies".
	docs := seen.all[0].Documents
	if err := rs[0].Publish(ctx, "org", []protocol.DesiredState{docs["s1"]}, func(context.Context, []protocol.DesiredState) error { return nil }); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	republished := make(chan cp.Change, 10)
	for _, r := range rs {
		go r.RunRepublisher(rctx, 20*time.Millisecond, 10*time.Millisecond, func(c cp.Change) {
			select {
			case republished <- c:
			default:
			}
		}, nil)
	}
	select {
	case c := <-republished:
		if d := cmp.Diff(cp.Change{OrgID: "org", Sites: []string{"s2"}}, c); d != "" {
			t.Errorf("republished (-want +got):\n%s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing republished")
	}
}

func mustEvent(t *testing.T, raw []byte) cp.AuditEvent {
	t.Helper()
	var e cp.AuditEvent
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func statusOf(t *testing.T, body []byte) cp.Status {
	t.Helper()
	var v struct{ Status cp.Status }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	return v.Status
}

// TestReplicasMixedLoad: three replicas write, delete, ingest, settle and
// sweep one organisation's groups and lists over shared sites at once for
// a while. Nothing fails but as the domain says (locked, missing, in use),
// and PostgreSQL never had to break a deadlock: the lock order holds.
func TestReplicasMixedLoad(t *testing.T) {
	clk := newClock()
	rs := replicas(t, 3, Options{Revisioner: compile.Revisioner{}, Now: clk.Now, SyncTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	const org = "org"
	sites := []string{"s1", "s2", "s3", "s4", "s5"}
	l, err := rs[0].CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: "shared", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}, Sites: sites[:1]})
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(err error) bool {
		switch cp.ErrorCode(err) {
		case cp.CodeResourceLocked, cp.CodeNotFound, cp.CodePrefixListInUse:
			return true
		}
		return err == nil || ctx.Err() != nil
	}
	var wg sync.WaitGroup
	ops := make([]int, len(rs))
	for i, r := range rs {
		wg.Go(func() {
			var mine []string
			for n := 0; ctx.Err() == nil; n++ {
				var err error
				switch n % 6 {
				case 0, 1:
					var st cp.Stored
					st, err = r.CreateSecurityGroup(ctx, org, &cp.SecurityGroupWrite{Name: fmt.Sprintf("g %d %d", i, n),
						Rules: []cp.FilterRuleWrite{rule(1, l.ID), rule(2, fmt.Sprintf("10.%d.%d.0/24", i, n%250))},
						Sites: []string{sites[(i+n)%5], sites[(i+n+2)%5]}})
					if err == nil {
						mine = append(mine, st.ID)
					}
				case 2:
					if len(mine) > 0 {
						err = r.DeleteSecurityGroup(ctx, org, mine[0])
						if err == nil {
							mine = mine[1:]
						}
					}
				case 3:
					_, err = r.ReplacePrefixList(ctx, org, l.ID, &cp.PrefixListWrite{Name: "shared",
						Prefixes: []cp.PrefixWrite{{CIDR: fmt.Sprintf("198.51.%d.0/24", n%250)}}, Sites: sites[i : i+2]})
				case 4:
					var reports []cp.Report
					for _, site := range sites {
						if rec, err := r.GetSite(ctx, org, site); err == nil {
							reports = append(reports, cp.Report{OrgID: org, SiteID: site, Status: &protocol.SiteStatus{
								Epoch: r.Epoch(), Revision: rec.DesiredRevision, State: protocol.StateApplied}})
						}
					}
					_, err = r.Ingest(ctx, reports)
					if err == nil {
						err = r.Settle(ctx, org, sites)
					}
				case 5:
					clk.Add(10 * time.Second)
					_, err = r.Sweep(ctx)
				}
				if !allowed(err) {
					t.Errorf("replica %d, op %d: %v", i, n%6, err)
					return
				}
				ops[i]++
			}
		})
	}
	wg.Wait()
	for i, r := range rs {
		if n := r.deadlocks.Load(); n != 0 {
			t.Errorf("replica %d: %d deadlocks broken by PostgreSQL; want none", i, n)
		}
	}
	t.Logf("operations per replica: %v", ops)
}

// recorder is a Publisher that keeps what it was sent.
type recorder struct {
	mu   sync.Mutex
	docs []protocol.DesiredState
}

func (r *recorder) PublishDesired(_ context.Context, docs ...protocol.DesiredState) error {
	r.mu.Lock()
	r.docs = append(r.docs, docs...)
	r.mu.Unlock()
	return nil
}

func (r *recorder) ClearSite(context.Context, string, string) error { return nil }

func (r *recorder) revisions() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, d := range r.docs {
		out = append(out, d.Revision)
	}
	return out
}

// TestSyncersPublishThroughTheFence: two replicas' syncers, each
// publishing what its replica committed, through the store's Publish (the
// published revision is recorded); a republish of everything (after a
// broker connection) sends the newest revision, whichever replica wrote it.
func TestSyncersPublishThroughTheFence(t *testing.T) {
	rs := replicas(t, 2, Options{Revisioner: compile.Revisioner{}, SyncTimeout: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubs := []*recorder{{}, {}}
	sys := make([]*syncer.Syncer, 2)
	for i, r := range rs {
		sys[i] = syncer.New(syncer.Options{Store: r, PresenceGrace: -1})
		r.OnChange(sys[i].Changed)
		go sys[i].Run(ctx, pubs[i])
	}
	published := func() uint64 {
		var rev int64
		if err := rs[0].pool.QueryRow(ctx, `SELECT coalesce(max(revision), 0) FROM site_published WHERE site_id = 's1'`).Scan(&rev); err != nil {
			t.Fatal(err)
		}
		return uint64(rev)
	}
	wait := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for published() != want {
			if time.Now().After(deadline) {
				t.Fatalf("published revision %d; want %d (sent: %v, %v)", published(), want, pubs[0].revisions(), pubs[1].revisions())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	g, err := rs[0].CreateSecurityGroup(ctx, "org", &cp.SecurityGroupWrite{Name: "g", Rules: []cp.FilterRuleWrite{rule(1, "10.0.0.0/8")}, Sites: []string{"s1"}})
	if err != nil {
		t.Fatal(err)
	}
	wait(1)
	time.Sleep(5 * time.Millisecond) // past the sync deadline: writable again
	if _, err := rs[1].ReplaceSecurityGroup(ctx, "org", g.ID, &cp.SecurityGroupWrite{Name: "g", Rules: []cp.FilterRuleWrite{rule(1, "10.1.0.0/16")}, Sites: []string{"s1"}}); err != nil {
		t.Fatal(err)
	}
	wait(2)
	if d := cmp.Diff([]uint64{1}, pubs[0].revisions()); d != "" {
		t.Errorf("replica 0 published (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]uint64{2}, pubs[1].revisions()); d != "" {
		t.Errorf("replica 1 published (-want +got):\n%s", d)
	}
	sys[0].RepublishAll()
	deadline := time.Now().Add(10 * time.Second)
	for len(pubs[0].revisions()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := cmp.Diff([]uint64{1, 2}, pubs[0].revisions()); d != "" {
		t.Errorf("replica 0 published, then republished (-want +got):\n%s", d)
	}
}

// TestReplicasCreateSitesAtOnce: replicas hearing of the same new sites at
// once (every replica receives every presence) each try to insert them;
// the one that finds a site inserted meanwhile starts over with the
// stored row, so every presence is folded in and no site is lost or
// doubled.
func TestReplicasCreateSitesAtOnce(t *testing.T) {
	rs := replicas(t, 3, Options{})
	ctx := context.Background()
	var reports []cp.Report
	for i := range 300 {
		reports = append(reports, cp.Report{OrgID: "org", SiteID: fmt.Sprintf("site-%03d", i), Presence: &protocol.Presence{State: protocol.PresenceOnline}})
	}
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			for batch := range slices.Chunk(reports, 10+i*7) {
				if _, err := r.Ingest(ctx, batch); err != nil {
					t.Errorf("replica %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	sites, err := rs[0].ListSites(ctx, "org")
	if err != nil {
		t.Fatal(err)
	}
	online := 0
	for _, s := range sites {
		if s.Online {
			online++
		}
	}
	if len(sites) != 300 || online != 300 {
		t.Errorf("%d sites, %d online; want 300 and 300", len(sites), online)
	}
}

// TestInsertedMeanwhileStartsOver: a site that another transaction is
// inserting when a report for it arrives: the report's transaction waits
// for it, finds the site inserted, and starts over on the stored row
// (the other replica's record is kept and the report folded into it).
func TestInsertedMeanwhileStartsOver(t *testing.T) {
	rs := replicas(t, 1, Options{})
	ctx := context.Background()
	other, err := rs[0].pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, `INSERT INTO sites (org_id, id, agent_version) VALUES ('org', 's1', 'from the other replica')`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := rs[0].Ingest(ctx, []cp.Report{{OrgID: "org", SiteID: "s1", Presence: &protocol.Presence{State: protocol.PresenceOnline}}})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the ingestion waits on the insert
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("ingest: %v", err)
	}
	site, err := rs[0].GetSite(ctx, "org", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if !site.Online || site.AgentVersion != "from the other replica" {
		t.Errorf("site %+v; want the other replica's record, online", site)
	}
}

// TestIngestDoesNotWaitForWrites: status ingestion takes sites' rows, not
// the organisation's lock, so reports are taken while a write of the same
// organisation (on other sites) holds it.
func TestIngestDoesNotWaitForWrites(t *testing.T) {
	rs := replicas(t, 1, Options{})
	ctx := context.Background()
	if err := rs[0].ReserveSite(ctx, "org", "s1"); err != nil {
		t.Fatal(err)
	}
	writer, err := rs[0].pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback(ctx)
	if err := lockOrg(ctx, writer, "org"); err != nil {
		t.Fatal(err)
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := rs[0].Ingest(ictx, []cp.Report{{OrgID: "org", SiteID: "s1", Presence: &protocol.Presence{State: protocol.PresenceOnline}}}); err != nil {
		t.Errorf("ingest while a write holds the organisation: %v", err)
	}
}

// TestReplicasForgetOnce: every replica's syncer asks to forget the
// decommissioned sites that are done, at once: each site is forgotten
// once (its record gone, its credentials refused), none is lost between
// them, and once cleared none is returned again.
func TestReplicasForgetOnce(t *testing.T) {
	clk := newClock()
	rs := replicas(t, 3, Options{Revisioner: compile.Revisioner{}, Now: clk.Now, SyncTimeout: time.Minute})
	ctx := context.Background()
	var sites []string
	for i := range 12 {
		sites = append(sites, fmt.Sprintf("site-%02d", i))
	}
	if _, err := rs[0].CreateSecurityGroup(ctx, "org", &cp.SecurityGroupWrite{Name: "all", Rules: []cp.FilterRuleWrite{rule(1, "10.0.0.0/8")}, Sites: sites}); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute) // past the group's deadline: writable
	for i, site := range sites[:8] {
		if _, err := rs[i%3].DecommissionSite(ctx, "org", site); err != nil {
			t.Fatalf("decommission %s: %v", site, err)
		}
		clk.Add(2 * time.Minute)
	}
	// The agents applied their empty documents.
	var reports []cp.Report
	for _, site := range sites[:8] {
		rec, err := rs[0].GetSite(ctx, "org", site)
		if err != nil {
			t.Fatal(err)
		}
		reports = append(reports, cp.Report{OrgID: "org", SiteID: site, Status: &protocol.SiteStatus{Epoch: rs[0].Epoch(), Revision: rec.DesiredRevision, State: protocol.StateApplied}})
	}
	if _, err := rs[1].Ingest(ctx, reports); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	forgotten := map[string]int{}
	for _, r := range rs {
		wg.Go(func() {
			refs, err := r.ForgetDecommissioned(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			for _, ref := range refs {
				forgotten[ref.SiteID]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, site := range sites[:8] {
		if forgotten[site] == 0 || !rs[2].Decommissioned("org", site) {
			t.Errorf("site %s: returned %d times, refused %v; want it forgotten and refused", site, forgotten[site], rs[2].Decommissioned("org", site))
		}
	}
	left, err := rs[0].ListSites(ctx, "org")
	if err != nil || len(left) != 4 {
		t.Errorf("%d sites left (%v); want 4", len(left), err)
	}
	var n int
	if err := rs[0].pool.QueryRow(ctx, `SELECT count(*) FROM denied_sites`).Scan(&n); err != nil || n != 8 {
		t.Errorf("%d refused sites (%v); want 8", n, err)
	}
	for _, site := range sites[:8] {
		if err := rs[0].SiteCleared(ctx, "org", site); err != nil {
			t.Fatal(err)
		}
	}
	if refs, err := rs[1].ForgetDecommissioned(ctx); err != nil || len(refs) != 0 {
		t.Errorf("after clearing: %v (%v); want nothing", refs, err)
	}
}
