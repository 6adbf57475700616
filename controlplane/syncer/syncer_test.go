package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/controlplane/syncer"
	"github.com/rampart-fw/rampart/internal/wait"
	"github.com/rampart-fw/rampart/protocol"
)

const org = "org_a"

// recorder is a Publisher that keeps what it was given and can be told to
// fail, as a broker that is away would.
type recorder struct {
	mu      sync.Mutex
	fails   int
	docs    []protocol.DesiredState
	cleared []string // org/site
}

func (r *recorder) ClearSite(_ context.Context, org, site string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fails > 0 {
		r.fails--
		return errors.New("broker away")
	}
	r.cleared = append(r.cleared, org+"/"+site)
	return nil
}

func (r *recorder) clearedSites() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.cleared...)
}

func (r *recorder) PublishDesired(_ context.Context, docs ...protocol.DesiredState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fails > 0 {
		r.fails--
		return errors.New("broker away")
	}
	r.docs = append(r.docs, docs...)
	return nil
}

func (r *recorder) take() []protocol.DesiredState {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.docs
	r.docs = nil
	return d
}

func setup(t *testing.T, pub *recorder, opts ...func(*syncer.Options)) (*bolt.Store, *syncer.Syncer, *prometheus.Registry) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "rampart.db"), bolt.Options{Revisioner: compile.Revisioner{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	o := syncer.Options{Store: st, Registry: reg, Logger: slog.New(slog.DiscardHandler), RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	s := syncer.New(o)
	st.OnChange(s.Changed)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, pub)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return st, s, reg
}

// published waits until the recorder holds a document for each of sites.
func published(t *testing.T, pub *recorder, sites ...string) map[string]protocol.DesiredState {
	t.Helper()
	out := map[string]protocol.DesiredState{}
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, d := range pub.take() {
			out[d.SiteID] = d
		}
		missing := false
		for _, s := range sites {
			if _, ok := out[s]; !ok {
				missing = true
			}
		}
		if !missing {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("published %d documents, want sites %v", len(out), sites)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func group(port string, sites ...string) *cp.SecurityGroupWrite {
	desc := ""
	return &cp.SecurityGroupWrite{Name: "Web", Description: &desc, Sites: sites, Rules: []cp.FilterRuleWrite{
		{Direction: "inbound", Order: 10, Protocol: 6, Port: port, Address: "0.0.0.0/0", Description: "web"}}}
}

// TestPublishAfterWriteAndRepublish: a write publishes each affected site's
// document with the store's epoch and the stored revision; republishing
// every site gives the same documents again (idempotent); a site detached
// from everything gets an empty document.
func TestPublishAfterWriteAndRepublish(t *testing.T) {
	pub := &recorder{}
	st, s, _ := setup(t, pub)
	ctx := context.Background()
	created, err := st.CreateSecurityGroup(ctx, org, group("443", "site_a", "site_b"))
	gid := created.ID
	if err != nil {
		t.Fatal(err)
	}
	first := published(t, pub, "site_a", "site_b")
	for _, d := range first {
		if d.Epoch != st.Epoch() || d.Revision != 1 || len(d.SecurityGroups) != 1 || d.SecurityGroups[0].ID != gid || d.Validate(org, d.SiteID) != nil {
			t.Errorf("document %+v", d)
		}
	}
	s.RepublishAll()
	again := published(t, pub, "site_a", "site_b")
	for site, d := range again {
		if d.Revision != first[site].Revision || d.Hash != first[site].Hash {
			t.Errorf("republished %s as revision %d %s, was %d %s", site, d.Revision, d.Hash, first[site].Revision, first[site].Hash)
		}
	}
	if _, err := st.ReplaceSecurityGroup(ctx, org, gid, group("443", "site_a")); !isLocked(err) {
		t.Fatalf("PUT while syncing: %v", err)
	}
	for _, site := range []string{"site_a", "site_b"} {
		applied := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: st.Epoch(), Revision: 1, State: protocol.StateApplied}
		if _, err := st.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Status: &applied}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.ReplaceSecurityGroup(ctx, org, gid, group("443", "site_a")); err != nil {
		t.Fatal(err)
	}
	docs := published(t, pub, "site_b")
	if d := docs["site_b"]; d.Revision != 2 || len(d.SecurityGroups)+len(d.PrefixLists) != 0 {
		t.Errorf("detached site got %+v, want an empty revision 2", d)
	}
}

func isLocked(err error) bool {
	e, ok := errors.AsType[*cp.Error](err)
	return ok && e.Code == cp.CodeResourceLocked
}

// TestRetryAfterFailedPublish: a publish that fails is retried until it
// goes through, and counted.
func TestRetryAfterFailedPublish(t *testing.T) {
	pub := &recorder{fails: 3}
	st, s, reg := setup(t, pub)
	if _, err := st.CreateSecurityGroup(context.Background(), org, group("443", "site_a")); err != nil {
		t.Fatal(err)
	}
	published(t, pub, "site_a")
	if n := counter(t, reg, "rampart_desired_publish_retries_total"); n < 3 {
		t.Errorf("retries counted %v, want at least 3", n)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !s.Idle() {
		if time.Now().After(deadline) {
			t.Fatal("not idle after publishing")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counter is a gathered counter's value.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestMetrics: propagation is observed once the last site confirms, sites
// are counted by state, and promlint finds nothing.
func TestMetrics(t *testing.T) {
	pub := &recorder{}
	st, s, reg := setup(t, pub)
	ctx := context.Background()
	if _, err := st.CreateSecurityGroup(ctx, org, group("443", "site_a", "site_b")); err != nil {
		t.Fatal(err)
	}
	published(t, pub, "site_a", "site_b")
	applied := func(site string) {
		s.SiteStatus(ctx, org, site, protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: st.Epoch(), Revision: 1, State: protocol.StateApplied})
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := s.Drain(dctx); err != nil {
			t.Fatal(err)
		}
	}
	applied("site_a")
	if n := testutil.CollectAndCount(reg, "rampart_propagation_seconds"); n != 1 {
		t.Fatalf("propagation series: %d", n)
	}
	expect := func(count int) string {
		return `
# HELP rampart_sites Sites known to the control plane, by state (in_sync, syncing, failed, offline, unknown, decommissioning).
# TYPE rampart_sites gauge
rampart_sites{state="decommissioning"} 0
rampart_sites{state="failed"} 0
rampart_sites{state="in_sync"} ` + string(rune('0'+count)) + `
rampart_sites{state="offline"} 0
rampart_sites{state="syncing"} ` + string(rune('0'+2-count)) + `
rampart_sites{state="unknown"} 0
`
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect(1)), "rampart_sites"); err != nil {
		t.Error(err)
	}
	applied("site_b")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect(2)), "rampart_sites"); err != nil {
		t.Error(err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "rampart_propagation_seconds" {
			if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c != 1 {
				t.Errorf("propagation observed %d times, want 1 (once the last site confirmed)", c)
			}
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Errorf("promlint: %v", problems)
	}
}

// TestUnheardSitesGoOffline: after a (re)connection, a site stored as
// online whose agent does not announce itself within the grace is marked
// offline (an embedded broker that restarted lost the retained presence,
// and a dead agent leaves no last will); one that does stays online.
func TestUnheardSitesGoOffline(t *testing.T) {
	pub := &recorder{}
	st, s, _ := setup(t, pub, func(o *syncer.Options) { o.PresenceGrace = 300 * time.Millisecond })
	ctx := context.Background()
	online := protocol.Presence{State: protocol.PresenceOnline, At: time.Now()}
	for _, site := range []string{"site_a", "site_b"} {
		if _, err := st.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Presence: &online}}); err != nil {
			t.Fatal(err)
		}
	}
	s.RepublishAll() // a connection
	s.SitePresence(ctx, org, "site_a", online)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := st.GetSite(ctx, org, "site_b")
		if !b.Online && b.State == cp.SiteOffline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unheard site still %+v", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, _ := st.GetSite(ctx, org, "site_a"); !a.Online {
		t.Errorf("site heard from after the connection was marked offline: %+v", a)
	}
}

// gatedStore holds every Ingest until the test lets it through, as a slow
// disk would.
type gatedStore struct {
	*bolt.Store
	gate chan struct{}
}

func (g gatedStore) Ingest(ctx context.Context, reports []cp.Report) ([]cp.ReportResult, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Store.Ingest(ctx, reports)
}

// TestReportQueueIsBounded: with the store slow, receiving waits once
// MaxQueuedReports are queued, and when the store catches up every report
// is taken, none lost.
func TestReportQueueIsBounded(t *testing.T) {
	gate := make(chan struct{})
	var open sync.Once
	pub := &recorder{}
	var gs gatedStore
	st, s, _ := setup(t, pub, func(o *syncer.Options) {
		gs = gatedStore{Store: o.Store.(*bolt.Store), gate: gate}
		o.Store, o.MaxQueuedReports = gs, 2
	})
	t.Cleanup(func() { open.Do(func() { close(gate) }) }) // before setup's: a failure must not hang the syncer
	ctx := context.Background()
	if _, err := st.CreateSecurityGroup(ctx, org, group("443", "site_a")); err != nil {
		t.Fatal(err)
	}
	doc := published(t, pub, "site_a")["site_a"]
	report := func(state string) {
		s.SiteStatus(ctx, org, "site_a", protocol.SiteStatus{Schema: protocol.SchemaVersion, OrgID: org, SiteID: "site_a",
			Epoch: doc.Epoch, Revision: doc.Revision, State: state, AppliedAt: time.Now()})
	}
	report(protocol.StateApplying)
	report(protocol.StateApplying)
	third := make(chan struct{})
	go func() {
		defer close(third)
		report(protocol.StateApplied)
	}()
	select {
	case <-third:
		t.Fatal("a third report was queued while two waited for the store (MaxQueuedReports 2)")
	case <-time.After(200 * time.Millisecond):
	}
	open.Do(func() { close(gate) })
	<-third
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	site, err := st.GetSite(ctx, org, "site_a")
	if err != nil {
		t.Fatal(err)
	}
	if site.AppliedRevision != doc.Revision || site.State != cp.SiteInSync {
		t.Errorf("after the queue drained, site is %+v; want applied revision %d, in_sync", site, doc.Revision)
	}
}

// TestForgedStatusCounted: a status for a revision the site was never
// given is refused by the store and counted as refused.
func TestForgedStatusCounted(t *testing.T) {
	pub := &recorder{}
	st, s, reg := setup(t, pub)
	ctx := context.Background()
	if _, err := st.CreateSecurityGroup(ctx, org, group("443", "site_a")); err != nil {
		t.Fatal(err)
	}
	s.SiteStatus(ctx, org, "site_a", protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: "site_a", Epoch: st.Epoch(), Revision: math.MaxUint64, State: protocol.StateApplied})
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP rampart_status_reports_total Site status reports folded into the store, by result (taken, stale, other_epoch, refused: a revision the site was never given; behind: taken, an outcome of an older revision than the site was given, so its document is published again; decommissioned: a forgotten site's; over_quota: a site its organisation does not know, beyond its site quota).
# TYPE rampart_status_reports_total counter
rampart_status_reports_total{result="behind"} 0
rampart_status_reports_total{result="decommissioned"} 0
rampart_status_reports_total{result="other_epoch"} 0
rampart_status_reports_total{result="over_quota"} 0
rampart_status_reports_total{result="refused"} 1
rampart_status_reports_total{result="stale"} 0
rampart_status_reports_total{result="taken"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "rampart_status_reports_total"); err != nil {
		t.Error(err)
	}
	if site, _ := st.GetSite(ctx, org, "site_a"); site.AppliedRevision != 0 {
		t.Errorf("forged revision applied: %+v", site)
	}
}

// viewCounter counts the syncer's compiles (each reads a ViewPolicy).
type viewCounter struct {
	syncer.Store
	mu    sync.Mutex
	views int
}

func (v *viewCounter) ViewPolicy(ctx context.Context, org string, fn func(cp.PolicyTx) error) error {
	v.mu.Lock()
	v.views++
	v.mu.Unlock()
	return v.Store.ViewPolicy(ctx, org, fn)
}

func (v *viewCounter) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.views
}

// TestWriteIsCompiledOnce: a write's documents, compiled in its
// transaction, are published as they are, without the syncer compiling
// them again; a republish (no write behind it) compiles, and gives the
// same documents.
func TestWriteIsCompiledOnce(t *testing.T) {
	pub := &recorder{}
	var views *viewCounter
	st, s, _ := setup(t, pub, func(o *syncer.Options) { views = &viewCounter{Store: o.Store}; o.Store = views })
	ctx := context.Background()
	if _, err := st.CreateSecurityGroup(ctx, org, group("443", "site_a", "site_b")); err != nil {
		t.Fatal(err)
	}
	first := published(t, pub, "site_a", "site_b")
	if n := views.count(); n != 0 {
		t.Errorf("the syncer compiled %d times after a write", n)
	}
	for _, d := range first {
		if d.Epoch != st.Epoch() || d.Revision != 1 || d.Validate(org, d.SiteID) != nil {
			t.Errorf("handed-over document %+v", d)
		}
	}
	s.RepublishAll()
	again := published(t, pub, "site_a", "site_b")
	if views.count() == 0 {
		t.Error("a republish did not compile")
	}
	if d := cmp.Diff(first, again); d != "" {
		t.Errorf("republished documents differ from the write's (-write +republish):\n%s", d)
	}
}

// TestLateChangeNeverRegresses: a change announced after a newer one was
// published (writes committed together announce in any order) publishes
// nothing older.
func TestLateChangeNeverRegresses(t *testing.T) {
	pub := &recorder{}
	_, s, _ := setup(t, pub)
	doc := func(rev uint64) protocol.DesiredState {
		return protocol.DesiredState{Schema: protocol.SchemaVersion, OrgID: org, SiteID: "site_a", Revision: rev}
	}
	s.Changed(cp.Change{OrgID: org, Sites: []string{"site_a"}, Documents: map[string]protocol.DesiredState{"site_a": doc(6)}})
	if got := published(t, pub, "site_a")["site_a"]; got.Revision != 6 {
		t.Fatalf("published revision %d, want 6", got.Revision)
	}
	s.Changed(cp.Change{OrgID: org, Sites: []string{"site_a"}, Documents: map[string]protocol.DesiredState{"site_a": doc(5)}})
	for deadline := time.Now().Add(10 * time.Second); !s.Idle(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the syncer never went idle")
		}
	}
	for _, d := range pub.take() {
		if d.Revision < 6 {
			t.Errorf("published revision %d after 6", d.Revision)
		}
	}
}

// TestDecommissionedSiteForgotten: once a decommissioning site applied its
// empty document, the syncer has the store forget it, closes its broker
// connections, then clears its retained topics; a clearing that fails is
// tried again, and a cleared site is not cleared twice.
func TestDecommissionedSiteForgotten(t *testing.T) {
	pub := &recorder{}
	var mu sync.Mutex
	var order []string
	st, _, _ := setup(t, pub, func(o *syncer.Options) {
		o.ForgetInterval = 20 * time.Millisecond
		o.Disconnect = func(org, site string) int {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, "disconnect "+org+"/"+site+fmt.Sprintf(" after %d clears", len(pub.clearedSites())))
			return 1
		}
	})
	ctx := context.Background()
	if _, err := st.CreateSecurityGroup(ctx, org, group("443", "site_a", "site_b")); err != nil {
		t.Fatal(err)
	}
	for site, d := range published(t, pub, "site_a", "site_b") {
		st.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Status: &protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site,
			Epoch: st.Epoch(), Revision: d.Revision, State: protocol.StateApplied}}})
	}
	site, err := st.DecommissionSite(ctx, org, "site_a")
	if err != nil {
		t.Fatal(err)
	}
	docs := published(t, pub, "site_a")
	if d := docs["site_a"]; d.Revision != site.DesiredRevision || len(d.SecurityGroups)+len(d.PrefixLists) != 0 {
		t.Fatalf("site_a's document after the decommission: %+v, want revision %d and empty", d, site.DesiredRevision)
	}
	pub.mu.Lock()
	pub.fails = 2 // the first clearings fail: the broker is away
	pub.mu.Unlock()
	st.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: "site_a", Status: &protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: "site_a",
		Epoch: st.Epoch(), Revision: site.DesiredRevision, State: protocol.StateApplied}}})
	wait.Until(t, 20*time.Second, "site_a cleared", func() string {
		if got := pub.clearedSites(); len(got) != 1 || got[0] != org+"/site_a" {
			return fmt.Sprintf("cleared %v", got)
		}
		return ""
	})
	if _, err := st.GetSite(ctx, org, "site_a"); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Errorf("site_a still known: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // several ticks: nothing is cleared twice
	if got := pub.clearedSites(); len(got) != 1 {
		t.Errorf("cleared %v, want site_a once", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) < 1 || order[0] != "disconnect "+org+"/site_a after 0 clears" {
		t.Errorf("disconnects %v: want site_a's before its topics were cleared", order)
	}
}
