package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/protocol"
)

// BenchmarkSiteCounts (#13.7): what a scrape of rampart_sites costs at
// 100,000 sites (10 organisations of 10,000). "counts" is the store's
// running counts (what /metrics reads now); "list" lists every site of
// every organisation and counts them, as the scrape did before; "open" is
// what the counts cost instead, once per start.
//
//	go test -run '^$' -bench SiteCounts -benchtime 20x ./controlplane/store/bolt
func BenchmarkSiteCounts(b *testing.B) {
	const orgs, perOrg = 10, 10000
	path := filepath.Join(b.TempDir(), "rampart.db")
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for o := range orgs {
		for i := 0; i < perOrg; i += 1000 {
			var reports []cp.Report
			for j := i; j < i+1000; j++ {
				state := protocol.PresenceOnline
				if j%3 == 0 {
					state = protocol.PresenceOffline
				}
				reports = append(reports, cp.Report{OrgID: fmt.Sprintf("org_%d", o), SiteID: fmt.Sprintf("site_%d", j), Presence: &protocol.Presence{State: state}})
			}
			if _, err := st.Ingest(ctx, reports); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("counts", func(b *testing.B) {
		for range b.N {
			c, err := st.CountSites(ctx)
			if err != nil || c[cp.SiteOffline] != orgs*(perOrg+2)/3 {
				b.Fatalf("counts %v, %v", c, err)
			}
		}
	})
	b.Run("list", func(b *testing.B) {
		for range b.N {
			c := map[cp.SiteState]int{}
			os, err := st.Orgs(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, o := range os {
				sites, err := st.ListSites(ctx, o)
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range sites {
					c[s.State]++
				}
			}
			if c[cp.SiteOffline] != orgs*(perOrg+2)/3 {
				b.Fatalf("listed %v", c)
			}
		}
	})
	st.Close()
	// What the counts cost instead: one count of the file at Open.
	b.Run("open", func(b *testing.B) {
		for range b.N {
			st, err := bolt.Open(path, bolt.Options{})
			if err != nil {
				b.Fatal(err)
			}
			st.Close()
		}
	})
}
