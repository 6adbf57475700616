package bolt_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
)

// What every store must do is tested by the conformance suite
// (controlplane/store/storetest, run by conformance_test.go); this file
// and the package's others test only what is bbolt's: the file, its lock,
// the sweeper loop, batching, migrations and encodings.

const org = "org_a"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// openClocked opens a store in the test's temporary directory, compiling
// with the real Revisioner, on a clock the test moves; it is closed when
// the test ends.
func openClocked(tb testing.TB) (*bolt.Store, *clock) {
	tb.Helper()
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s, err := bolt.Open(filepath.Join(tb.TempDir(), "r.db"), bolt.Options{Revisioner: compile.Revisioner{}, Now: clk.Now, SyncTimeout: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, clk
}

func webGroup(port, desc string, sites ...string) *cp.SecurityGroupWrite {
	return &cp.SecurityGroupWrite{Name: "Web", Description: &desc, Sites: sites, Rules: []cp.FilterRuleWrite{
		{Direction: "inbound", Order: 10, Protocol: 6, Port: port, Address: "0.0.0.0/0", Description: "web"}}}
}

// TestRunSweeper: the sweeper loop fails what passed its deadline, on the
// real clock, until its context ends.
func TestRunSweeper(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "r.db"), bolt.Options{SyncTimeout: 200 * time.Millisecond, Revisioner: compile.Revisioner{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateSecurityGroup(ctx, org, webGroup("443", "", "site_a")); err != nil {
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
		if counts[cp.KindSecurityGroup][cp.StatusFailed] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not failed after 20 s: %v", counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if n, err := s.Sweep(context.Background()); err != nil || n != 0 {
		t.Errorf("sweep after the loop = %d, %v; want nothing left", n, err)
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
