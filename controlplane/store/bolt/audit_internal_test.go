package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// auditKeys counts the stored events and resource index entries of org.
func auditKeys(t *testing.T, s *Store, org string) (events, index int) {
	t.Helper()
	s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		ob.Bucket(bucketAudit).ForEach(func(_, _ []byte) error { events++; return nil })
		ob.Bucket(bucketAuditRes).ForEach(func(_, _ []byte) error { index++; return nil })
		return nil
	})
	return events, index
}

// TestPruneAudit: events older than the cutoff go, a bounded batch per
// transaction, with their index entries; newer ones stay, listed and
// filterable as before.
func TestPruneAudit(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const org = "org_a"
	var old []string
	for i := range 23 {
		st, err := s.CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: fmt.Sprint("old ", i), Prefixes: []cp.PrefixWrite{}})
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, st.ID)
	}
	clock.Advance(100 * 24 * time.Hour)
	var kept []string
	for i := range 3 {
		st, err := s.CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: fmt.Sprint("new ", i), Prefixes: []cp.PrefixWrite{}})
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, st.ID)
	}
	cutoff := cp.AuditCutoff(clock.Now(), cp.DefaultAuditRetention)
	var batches []int
	for {
		n, err := s.PruneAudit(ctx, cutoff, 10)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, n)
		if n < 10 {
			break
		}
	}
	if diff := cmp.Diff([]int{10, 10, 3}, batches); diff != "" {
		t.Errorf("batches (-want +got)\n%s", diff)
	}
	if ev, idx := auditKeys(t, s, org); ev != 3 || idx != 3 {
		t.Errorf("after pruning: %d events, %d index entries; want 3 and 3", ev, idx)
	}
	evs, more, err := s.AuditEvents(ctx, org, cp.AuditQuery{Limit: 100})
	if err != nil || more || len(evs) != 3 {
		t.Fatalf("events after pruning: %d %v %v", len(evs), more, err)
	}
	if evs, _, _ := s.AuditEvents(ctx, org, cp.AuditQuery{ResourceID: old[5], Limit: 100}); len(evs) != 0 {
		t.Errorf("a pruned resource still has %d events", len(evs))
	}
	if evs, _, _ := s.AuditEvents(ctx, org, cp.AuditQuery{ResourceID: kept[1], Limit: 100}); len(evs) != 1 {
		t.Errorf("a kept resource has %d events, want 1", len(evs))
	}
}

// TestAuditRetentionOption: the store prunes by itself, every
// AuditPruneInterval, what is older than AuditRetention.
func TestAuditRetentionOption(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{Now: clock.Now, AuditRetention: 24 * time.Hour, AuditPruneInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreatePrefixList(ctx, "org_a", &cp.PrefixListWrite{Name: "old", Prefixes: []cp.PrefixWrite{}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // pruner runs meanwhile: the event is young
	if ev, _ := auditKeys(t, s, "org_a"); ev != 1 {
		t.Fatalf("%d events before the retention period passed, want 1", ev)
	}
	clock.Advance(25 * time.Hour)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if ev, idx := auditKeys(t, s, "org_a"); ev == 0 && idx == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event outlived the retention period")
		}
	}
}

// TestMigrateToAudit (schema 3 → 4): a file written before versions and
// the audit trail opens with both; its resources read as version 0 until
// their next write, which a client can make conditional on "v0".
func TestMigrateToAudit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s, w := layoutStore(t, path)
	st, err := s.CreateSecurityGroup(ctx, "org_a", w)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Rewrite it as schema 3 wrote it: no audit buckets, no versions.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOrgs).Bucket([]byte("org_a"))
		for _, b := range [][]byte{bucketAudit, bucketAuditRes} {
			if err := ob.DeleteBucket(b); err != nil {
				return err
			}
		}
		sync, err := readSync(ob, cp.KindSecurityGroup, st.ID)
		if err != nil {
			return err
		}
		sync.Version = 0
		if err := writeSync(ob, cp.KindSecurityGroup, st.ID, &sync); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("3"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetJSON(ctx, "org_a", cp.KindSecurityGroup, st.ID)
	if err != nil || got.ETag() != `"v0"` {
		t.Fatalf("after migration: ETag %s, %v; want \"v0\"", got.ETag(), err)
	}
	pre, _ := cp.ParseIfMatch(`"v0"`)
	wctx := cp.WithWriteRequest(ctx, cp.WriteRequest{Subject: "alice", Method: "PUT", IfMatch: pre})
	put, err := s.ReplaceSecurityGroup(wctx, "org_a", st.ID, w)
	if err != nil || put.ETag() != `"v1"` {
		t.Fatalf("conditional PUT after migration: %s, %v; want \"v1\"", put.ETag(), err)
	}
	evs, _, err := s.AuditEvents(ctx, "org_a", cp.AuditQuery{Limit: 10})
	if err != nil || len(evs) != 1 {
		t.Fatalf("events after migration and one write: %d, %v; want 1", len(evs), err)
	}
}
