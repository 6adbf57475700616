package bolt_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// BenchmarkWriteInLargeOrg is the cost of one write (a replace of a
// 10-rule group, compiled by the real Revisioner in the write's
// transaction) in an organisation of 10 groups and 5 prefix lists and in
// one of 1,000 groups and 500 prefix lists (on 500 sites, each group's
// rules using a list, every other list also attached to a site), for a
// group on 1 site and on 50. Its cost must follow the sites the write
// touches, not the organisation's size.
//
//	go test -run '^$' -bench WriteInLargeOrg -benchtime 200x ./controlplane/store/bolt
func BenchmarkWriteInLargeOrg(b *testing.B) {
	for _, size := range []struct{ groups, lists int }{{10, 5}, {1000, 500}} {
		for _, touched := range []int{1, 50} {
			b.Run(fmt.Sprintf("groups=%d/lists=%d/sites=%d", size.groups, size.lists, touched), func(b *testing.B) {
				ctx := context.Background()
				s, clk := openClocked(b)
				lists := make([]string, size.lists)
				for i := range lists {
					w := &cp.PrefixListWrite{Name: fmt.Sprint("list ", i), Prefixes: []cp.PrefixWrite{{CIDR: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)}}}
					if i%2 == 1 {
						w.Sites = []string{fmt.Sprintf("site_%d", i%500)}
					}
					created, err := s.CreatePrefixList(ctx, org, w)
					if err != nil {
						b.Fatal(err)
					}
					lists[i] = created.ID
				}
				groupOf := func(name string, port int, sites []string, list string) *cp.SecurityGroupWrite {
					w := &cp.SecurityGroupWrite{Name: name, Sites: sites}
					for r := range 10 {
						addr := "0.0.0.0/0"
						if r == 0 {
							addr = list
						}
						w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: r + 1, Protocol: 6, Port: fmt.Sprint(port + r), Address: addr})
					}
					return w
				}
				for i := range size.groups - 1 {
					if _, err := s.CreateSecurityGroup(ctx, org, groupOf(fmt.Sprint("group ", i), 1000, []string{fmt.Sprintf("site_%d", i%500)}, lists[i%len(lists)])); err != nil {
						b.Fatal(err)
					}
				}
				var sites []string
				for i := range touched {
					sites = append(sites, fmt.Sprintf("site_w%d", i))
				}
				created, err := s.CreateSecurityGroup(ctx, org, groupOf("written", 2000, sites, lists[0]))
				id := created.ID
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := range b.N {
					clk.add(2 * time.Minute) // past the last write's sync deadline
					if _, err := s.ReplaceSecurityGroup(ctx, org, id, groupOf("written", 2000+i%2*100, sites, lists[0])); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
