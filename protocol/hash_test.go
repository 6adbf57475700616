package protocol_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rampart-fw/rampart/protocol"
)

// referenceHash is the hash's definition: sha256 of encoding/json's output
// for the canonicalized content. ContentHash streams the same bytes.
func referenceHash(d protocol.DesiredState) string {
	c := protocol.DesiredState{SecurityGroups: slices.Clone(d.SecurityGroups), PrefixLists: slices.Clone(d.PrefixLists)}
	for i := range c.SecurityGroups {
		c.SecurityGroups[i].Rules = slices.Clone(c.SecurityGroups[i].Rules)
	}
	for i := range c.PrefixLists {
		c.PrefixLists[i].CIDRs = slices.Clone(c.PrefixLists[i].CIDRs)
	}
	c.Canonicalize()
	b, err := json.Marshal(struct {
		SecurityGroups []protocol.SecurityGroup `json:"security_groups"`
		PrefixLists    []protocol.PrefixList    `json:"prefix_lists"`
	}{c.SecurityGroups, c.PrefixLists})
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestContentHashIsCanonicalJSON checks, on generated documents in and out
// of canonical order (ties, duplicate CIDRs, nil and empty slices, strings
// that encoding/json escapes), that ContentHash is the hash agents and
// control planes of every version compute.
func TestContentHashIsCanonicalJSON(t *testing.T) {
	// Pinned: the sample's hash as published since the first release.
	if got, want := sample().Hash, "sha256:52c62e945a67decc24b843a1aef36cc0f31781272851ab546453b29745e1275c"; got != want {
		t.Fatalf("sample hash = %s, want %s", got, want)
	}
	strs := []string{"", "a", "fltr_1", "Web", "0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/8", "<b>&amp;</b>", `quote " and \ back`,
		"tab\tnew\nline\x00\x1f", "café ☕", "\u2028\u2029", "\xff\xfe invalid", "\b\f", "del\x7f", "emoji 🙂"}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return strs[rng.IntN(len(strs))] }
	for n := range 500 {
		var d protocol.DesiredState
		if rng.IntN(4) > 0 {
			d.SecurityGroups = []protocol.SecurityGroup{}
		}
		if rng.IntN(4) > 0 {
			d.PrefixLists = []protocol.PrefixList{}
		}
		for range rng.IntN(4) {
			g := protocol.SecurityGroup{ID: pick(), Name: pick()}
			if rng.IntN(5) > 0 {
				g.Rules = []protocol.Rule{}
			}
			for range rng.IntN(5) {
				g.Rules = append(g.Rules, protocol.Rule{ID: pick(), Direction: pick(), Order: rng.IntN(5) - 1, Protocol: rng.IntN(300) - 20,
					Port: pick(), Address: pick(), Description: pick()})
			}
			d.SecurityGroups = append(d.SecurityGroups, g)
		}
		for range rng.IntN(4) {
			pl := protocol.PrefixList{ID: pick(), Name: pick()}
			if rng.IntN(5) > 0 {
				pl.CIDRs = []string{}
			}
			for range rng.IntN(6) {
				pl.CIDRs = append(pl.CIDRs, pick())
			}
			d.PrefixLists = append(d.PrefixLists, pl)
		}
		if rng.IntN(2) == 0 {
			d.Canonicalize() // the control plane's order: no copy taken
		}
		before, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := d.ContentHash(), referenceHash(d); got != want {
			t.Fatalf("document %d: ContentHash = %s, encoding/json gives %s\n%s", n, got, want, before)
		}
		if after, _ := json.Marshal(d); string(after) != string(before) {
			t.Fatalf("document %d: ContentHash modified it:\n%s\n%s", n, before, after)
		}
	}
}

// BenchmarkContentHash hashes a canonical document of 250 rules and 10,000
// CIDRs, as the agent does for every document it receives.
func BenchmarkContentHash(b *testing.B) {
	d := protocol.DesiredState{SecurityGroups: []protocol.SecurityGroup{{ID: "sec_grp_1", Name: "G"}}}
	for i := range 250 {
		d.SecurityGroups[0].Rules = append(d.SecurityGroups[0].Rules, protocol.Rule{ID: fmt.Sprintf("fltr_%03d", i), Direction: protocol.Inbound, Order: i, Protocol: 6, Port: "443", Address: "10.0.0.0/8", Description: "rule"})
	}
	pl := protocol.PrefixList{ID: "prfx_lst_1", Name: "L"}
	for i := range 10000 {
		pl.CIDRs = append(pl.CIDRs, fmt.Sprintf("100.%d.%d.%d/32", 64+i/65536, i/256%256, i%256))
	}
	d.PrefixLists = []protocol.PrefixList{pl}
	d.Canonicalize()
	b.ReportAllocs()
	for b.Loop() {
		d.ContentHash()
	}
}
