package bolt_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
)

// BenchmarkDecommission is how long one decommission holds the store's
// writer in the widest case the quotas allow it to be: a site in 20
// groups of 1,000 sites each (the most a group holds), all 20 rewritten
// in one transaction and the 1,000 sites compiled once; beside it, one
// PUT of one such group, which compiles the same 1,000 sites.
//
//	go test -run '^$' -bench Decommission -benchtime 20x ./controlplane/store/bolt
func BenchmarkDecommission(b *testing.B) {
	const groups, sites = 20, cp.MaxSitesPerResource
	setup := func(b *testing.B) (*bolt.Store, *clock, []string, []string) {
		s, clk := openClocked(b)
		var ids, names []string
		for i := range sites {
			names = append(names, fmt.Sprintf("site_%d", i))
		}
		for g := range groups {
			st, err := s.CreateSecurityGroup(context.Background(), org, webGroup(fmt.Sprint(1000+g), "bench", names...))
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, st.ID)
		}
		return s, clk, ids, names
	}
	b.Run(fmt.Sprintf("decommission/groups=%d/sites=%d", groups, sites), func(b *testing.B) {
		s, clk, _, names := setup(b)
		if b.N > len(names) {
			b.Fatalf("at most %d decommissions: -benchtime %dx", len(names), len(names))
		}
		ctx := cp.WithWriteRequest(context.Background(), cp.WriteRequest{Subject: "bench", Method: "DELETE"})
		b.ResetTimer()
		for i := range b.N {
			clk.add(2 * time.Minute) // past the last write's sync deadline
			if _, err := s.DecommissionSite(ctx, org, names[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(fmt.Sprintf("put-one-group/sites=%d", sites), func(b *testing.B) {
		s, clk, ids, names := setup(b)
		ctx := context.Background()
		b.ResetTimer()
		for i := range b.N {
			clk.add(2 * time.Minute)
			if _, err := s.ReplaceSecurityGroup(ctx, org, ids[0], webGroup(fmt.Sprint(2000+i%2), "bench", names...)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
