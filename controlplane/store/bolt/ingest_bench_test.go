package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/protocol"
)

// BenchmarkIngest: every site of a group confirms it, in batches as the
// syncer sends them (batch=4096) or one report per transaction (batch=1).
// One iteration is the whole fleet's confirmations.
//
//	go test -run '^$' -bench Ingest -benchtime 3x ./controlplane/store/bolt
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct{ sites, batch int }{{2000, 1}, {2000, 4096}, {10000, 4096}} {
		b.Run(fmt.Sprintf("sites=%d/batch=%d", c.sites, c.batch), func(b *testing.B) {
			ctx := context.Background()
			var sites []string
			for i := range c.sites {
				sites = append(sites, fmt.Sprintf("site_%d", i))
			}
			for range b.N {
				b.StopTimer()
				s, err := bolt.Open(filepath.Join(b.TempDir(), "rampart.db"), bolt.Options{Revisioner: compile.Revisioner{}})
				if err != nil {
					b.Fatal(err)
				}
				w := webGroup("443", "", sites...)
				if _, err := s.CreateSecurityGroup(ctx, org, w); err != nil {
					b.Fatal(err)
				}
				var reports []cp.Report
				for _, site := range sites {
					st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: s.Epoch(), Revision: 1, State: protocol.StateApplied}
					reports = append(reports, cp.Report{OrgID: org, SiteID: site, Status: &st})
				}
				b.StartTimer()
				for len(reports) > 0 {
					n := min(len(reports), c.batch)
					if _, err := s.Ingest(ctx, reports[:n]); err != nil {
						b.Fatal(err)
					}
					reports = reports[n:]
				}
				b.StopTimer()
				s.Close()
			}
		})
	}
}
