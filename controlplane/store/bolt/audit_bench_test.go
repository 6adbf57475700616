package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// BenchmarkReplace250 replaces a 250-rule group again and again, one
// writer (NoBatch: one transaction per write), and reports what bbolt
// allocated and wrote per write: the cost the audit trail adds to a PUT.
//
//	go test -run '^$' -bench BenchmarkReplace250 -benchtime 2000x ./controlplane/store/bolt
func BenchmarkReplace250(b *testing.B) {
	ctx := context.Background()
	s, err := Open(filepath.Join(b.TempDir(), "db"), Options{NoBatch: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	writes := make([]*cp.SecurityGroupWrite, 2)
	for v := range writes {
		w := &cp.SecurityGroupWrite{Name: "big", Sites: []string{}}
		for i := range 250 {
			w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + i + v), Address: "10.0.0.0/8", Description: "a rule of a large group, described at some length"})
		}
		writes[v] = w
	}
	st, err := s.CreateSecurityGroup(ctx, "org_a", writes[0])
	if err != nil {
		b.Fatal(err)
	}
	before := s.db.Stats()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.ReplaceSecurityGroup(ctx, "org_a", st.ID, writes[(i+1)%2]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after := s.db.Stats()
	d := after.Sub(&before)
	b.ReportMetric(float64(d.TxStats.GetPageAlloc())/float64(b.N)/1024, "page-alloc-KB/op")
	b.ReportMetric(float64(d.TxStats.GetWrite())/float64(b.N), "page-writes/op")
}

// BenchmarkPruneAuditBatch times one prune transaction of a full batch
// (controlplane.AuditPruneBatch events of a 250-rule group): how long
// pruning a backlog holds the single writer at a time.
//
//	go test -run '^$' -bench BenchmarkPruneAuditBatch -benchtime 3x ./controlplane/store/bolt
func BenchmarkPruneAuditBatch(b *testing.B) {
	ctx := context.Background()
	clock := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := Open(filepath.Join(b.TempDir(), "db"), Options{Now: clock.Now, AuditPruneInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := &cp.SecurityGroupWrite{Name: "big", Sites: []string{}}
	for i := range 250 {
		w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + i), Address: "10.0.0.0/8", Description: "a rule of a large group, described at some length"})
	}
	st, err := s.CreateSecurityGroup(ctx, "org_a", w)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		b.StopTimer()
		var wg sync.WaitGroup
		for range 10 { // ten writers: the committer batches them
			wg.Go(func() {
				for range cp.AuditPruneBatch / 10 {
					if _, err := s.ReplaceSecurityGroup(ctx, "org_a", st.ID, w); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		clock.Advance(cp.DefaultAuditRetention + time.Hour)
		b.StartTimer()
		n, err := s.PruneAudit(ctx, cp.AuditCutoff(clock.Now(), cp.DefaultAuditRetention), cp.AuditPruneBatch)
		if err != nil || n != cp.AuditPruneBatch {
			b.Fatalf("pruned %d: %v", n, err)
		}
	}
}
