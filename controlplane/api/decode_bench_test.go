package api

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// BenchmarkDecodeValidate250 is the CPU of a 250-rule PUT's body without
// HTTP or storage: decode it (the typed decoder of decode.go, which stands
// for the check against openapi.yaml), run the domain checks, build the
// group with new ids and encode it with encoding/json (the store does the
// last two cheaper, see store/bolt/group.go).
//
//	go test -run '^$' -bench DecodeValidate -benchmem ./controlplane/api
func BenchmarkDecodeValidate250(b *testing.B) {
	body, schemas := body250(b)
	for b.Loop() {
		var got cp.SecurityGroupWrite
		if err := decodeBody(body, schemas["SecurityGroupWrite"], &got); err != nil {
			b.Fatal(err)
		}
		g := got.NewSecurityGroup("org_a", "sec_grp_x", nil)
		if _, err := json.Marshal(&g); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode250 is decodeBody alone on a 250-rule body: the typed
// decoder and the domain checks, what a PUT spends before the store (the
// store builds, keeps ids and encodes on its own, see store/bolt).
//
//	go test -run '^$' -bench 'Decode250$' -benchmem ./controlplane/api
func BenchmarkDecode250(b *testing.B) {
	body, schemas := body250(b)
	for b.Loop() {
		var got cp.SecurityGroupWrite
		if err := decodeBody(body, schemas["SecurityGroupWrite"], &got); err != nil {
			b.Fatal(err)
		}
	}
}

// body250 is a 250-rule SecurityGroupWrite body and the body schemas to
// decode it with; it sets the benchmark's bytes and reports allocations.
func body250(b *testing.B) ([]byte, bodySchemas) {
	doc, err := LoadSpec(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	schemas, err := newBodySchemas(doc)
	if err != nil {
		b.Fatal(err)
	}
	w := cp.SecurityGroupWrite{Name: "Big group", Sites: []string{}}
	for i := range cp.MaxRules {
		w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6,
			Port: fmt.Sprint(1000 + i), Address: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Description: "benchmark rule with a description"})
	}
	body, _ := json.Marshal(w)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	return body, schemas
}

// BenchmarkDecodePrefixList500 is decodeBody alone on a 500-prefix list
// body: the typed decoder and the domain checks.
//
//	go test -run '^$' -bench 'DecodePrefixList500$' -benchmem ./controlplane/api
func BenchmarkDecodePrefixList500(b *testing.B) {
	_, schemas := body250(b)
	w := cp.PrefixListWrite{Name: "Big list", Sites: []string{"site_a"}}
	for i := range cp.MaxPrefixes {
		w.Prefixes = append(w.Prefixes, cp.PrefixWrite{CIDR: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Description: "benchmark prefix"})
	}
	body, _ := json.Marshal(w)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var got cp.PrefixListWrite
		if err := decodeBody(body, schemas["PrefixListWrite"], &got); err != nil {
			b.Fatal(err)
		}
	}
}
