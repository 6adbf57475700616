package syncer_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/controlplane/syncer"
	"github.com/rampart-fw/rampart/protocol"
)

// listCounting is the store with its ListSites calls counted: a scrape
// must make none.
type listCounting struct {
	*bolt.Store
	lists atomic.Int64
}

func (l *listCounting) ListSites(ctx context.Context, org string) ([]cp.Site, error) {
	l.lists.Add(1)
	return l.Store.ListSites(ctx, org)
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// TestSiteCountsStayRight (#13.7): rampart_sites comes from running counts,
// not from listing every site on each scrape. It must still say what GET
// /vpc/sites says, through writes, status reports, presence, a sync
// deadline passing (syncing reads unknown) and a restart.
func TestSiteCountsStayRight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rampart.db")
	clock := &testClock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	var st *bolt.Store
	var s *syncer.Syncer
	var reg *prometheus.Registry
	var stop func()
	var counted *listCounting
	open := func() {
		var err error
		st, err = bolt.Open(path, bolt.Options{Revisioner: compile.Revisioner{}, Now: clock.Now, SyncTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		reg = prometheus.NewRegistry()
		counted = &listCounting{Store: st}
		s = syncer.New(syncer.Options{Store: counted, Registry: reg, Logger: slog.New(slog.DiscardHandler), Now: clock.Now, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
		st.OnChange(s.Changed)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.Run(rctx, &recorder{}) }()
		stop = func() { cancel(); <-done; st.Close() }
	}
	open()
	defer func() { stop() }()
	drain := func() {
		t.Helper()
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := s.Drain(dctx); err != nil {
			t.Fatal(err)
		}
	}
	// check compares the metric with the wanted counts and with a count of
	// what the store lists, the reference the running counts replace.
	check := func(step string, want map[cp.SiteState]int) {
		t.Helper()
		listed := map[cp.SiteState]int{}
		orgs, err := st.Orgs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range orgs {
			sites, err := st.ListSites(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, site := range sites {
				listed[site.State]++
			}
		}
		var b strings.Builder
		b.WriteString("# HELP rampart_sites Sites known to the control plane, by state (in_sync, syncing, failed, offline, unknown, decommissioning).\n# TYPE rampart_sites gauge\n")
		for _, state := range []cp.SiteState{cp.SiteDecommissioning, cp.SiteFailed, cp.SiteInSync, cp.SiteOffline, cp.SiteSyncing, cp.SiteUnknown} {
			if listed[state] != want[state] {
				t.Errorf("%s: the store lists %d %s sites, the test expects %d", step, listed[state], state, want[state])
			}
			fmt.Fprintf(&b, "rampart_sites{state=%q} %d\n", state, want[state])
		}
		before := counted.lists.Load()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(b.String()), "rampart_sites"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
		if n := counted.lists.Load() - before; n != 0 {
			t.Errorf("%s: a scrape listed sites %d times; it must cost O(1) in the sites", step, n)
		}
	}
	check("empty", nil)
	created, err := st.CreateSecurityGroup(ctx, org, group("443", "site_a", "site_b", "site_c", "site_d"))
	gid := created.ID
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSecurityGroup(ctx, "org_other", group("22", "site_a")); err != nil {
		t.Fatal(err)
	}
	check("after writes", map[cp.SiteState]int{cp.SiteSyncing: 5})
	report := func(o, site string, state string) {
		s.SiteStatus(ctx, o, site, protocol.SiteStatus{Schema: 1, OrgID: o, SiteID: site, Epoch: st.Epoch(), Revision: 1, State: state, Error: "boom"})
	}
	report(org, "site_a", protocol.StateApplied)
	report(org, "site_b", protocol.StateFailed)
	report("org_other", "site_a", protocol.StateApplied)
	s.SitePresence(ctx, org, "site_c", protocol.Presence{State: protocol.PresenceOffline})
	drain()
	check("after reports", map[cp.SiteState]int{cp.SiteInSync: 2, cp.SiteFailed: 1, cp.SiteOffline: 1, cp.SiteSyncing: 1})
	clock.Add(2 * time.Minute) // site_d's deadline passes: it reads unknown
	check("after the deadline", map[cp.SiteState]int{cp.SiteInSync: 2, cp.SiteFailed: 1, cp.SiteOffline: 1, cp.SiteUnknown: 1})
	stop()
	open()
	check("after a restart", map[cp.SiteState]int{cp.SiteInSync: 2, cp.SiteFailed: 1, cp.SiteOffline: 1, cp.SiteUnknown: 1})
	// A new write after the restart: the group's sites sync again.
	if _, err := st.ReplaceSecurityGroup(ctx, org, gid, group("8443", "site_a", "site_d", "site_e")); err != nil {
		t.Fatal(err)
	}
	drain()
	want := map[cp.SiteState]int{cp.SiteFailed: 1, cp.SiteOffline: 1, cp.SiteInSync: 1}
	// site_a, site_e and site_d are syncing again (site_d was unknown: a
	// new write marks it syncing only if the store says so; take the
	// store's word, checked against the listing above).
	sites, _ := st.ListSites(ctx, org)
	for _, site := range sites {
		if site.ID == "site_a" || site.ID == "site_d" || site.ID == "site_e" {
			want[site.State]++
		}
	}
	check("after a write after the restart", want)
}
