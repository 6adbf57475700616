package bolt_test

import (
	"context"
	"fmt"
	"testing"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// BenchmarkWriteToSitesInSync is a write that moves every site of a group
// from in_sync to syncing: a replace of a 10-rule group on 1 and on 1,000
// sites that have all applied the previous revision (reported through
// Ingest, outside the timer). Each site's record changes state, so each
// records a transition in its history in the write's transaction: this
// is what the history costs a write at most.
//
//	go test -run '^$' -bench WriteToSitesInSync -benchtime 50x -count 3 ./controlplane/store/bolt
func BenchmarkWriteToSitesInSync(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("sites=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s, _ := openClocked(b)
			sites := make([]string, n)
			for i := range sites {
				sites[i] = fmt.Sprintf("site_%d", i)
			}
			group := func(port int) *cp.SecurityGroupWrite {
				w := &cp.SecurityGroupWrite{Name: "written", Sites: sites}
				for r := range 10 {
					w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: r + 1, Protocol: 6, Port: fmt.Sprint(port + r), Address: "0.0.0.0/0"})
				}
				return w
			}
			created, err := s.CreateSecurityGroup(ctx, org, group(1000))
			if err != nil {
				b.Fatal(err)
			}
			reports := make([]cp.Report, n)
			for i := range b.N + 1 {
				if i > 0 {
					b.StartTimer()
					if _, err := s.ReplaceSecurityGroup(ctx, org, created.ID, group(1000+i%2*100)); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				for j, site := range sites {
					st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: s.Epoch(), Revision: uint64(i + 1), State: protocol.StateApplied}
					reports[j] = cp.Report{OrgID: org, SiteID: site, Status: &st}
				}
				if _, err := s.Ingest(ctx, reports); err != nil {
					b.Fatal(err)
				}
				if site, _ := s.GetSite(ctx, org, sites[0]); site.State != cp.SiteInSync {
					b.Fatalf("site after its report: %+v, want in_sync", site)
				}
			}
		})
	}
}
