package controlplane_test

import (
	"fmt"
	"testing"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// BenchmarkValidate is the domain checks of the largest writes alone, what
// they cost before the store and what they allocate: a 250-rule group (the
// body of BenchmarkAPIWrk's PUT250), a group on 1,000 sites and a
// 500-prefix list.
//
//	go test -run '^$' -bench 'Validate$' -benchmem ./controlplane
func BenchmarkValidate(b *testing.B) {
	rules := cp.SecurityGroupWrite{Name: "Big group", Sites: []string{"site_a", "site_b"}}
	for i := range cp.MaxRules {
		rules.Rules = append(rules.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6,
			Port: fmt.Sprint(1000 + i), Address: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Description: "rule"})
	}
	sites := cp.SecurityGroupWrite{Name: "Wide group", Rules: []cp.FilterRuleWrite{}}
	for i := range cp.MaxSitesPerResource {
		sites.Sites = append(sites.Sites, fmt.Sprintf("site_%05d", i))
	}
	list := cp.PrefixListWrite{Name: "Big list", Sites: []string{"site_a"}}
	for i := range cp.MaxPrefixes {
		list.Prefixes = append(list.Prefixes, cp.PrefixWrite{CIDR: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Description: "prefix"})
	}
	for _, c := range []struct {
		name string
		w    interface{ Validate() error }
	}{{"rules=250", &rules}, {"sites=1000", &sites}, {"prefixes=500", &list}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.w.Validate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
