package controlplane_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// documents is a Revisioner that returns fixed documents: the domain's
// size rule is checked on what any Revisioner returns.
type documents map[string]protocol.DesiredState

func (d documents) Revise(cp.PolicyTx, string, []string) (map[string]protocol.DesiredState, error) {
	return d, nil
}

// TestReviseRefusesLargeDocuments: around the limit, with content JSON
// escapes (so the cheap bound must hold for it), the sites Revise refuses
// are exactly those whose document, stamped with an epoch of 64
// characters (the room it leaves: stores' epochs have 16), is larger than
// protocol.MaxDesiredStateBytes; so every document it accepts fits once
// published. Sites of one content differ in id length and revision, which
// it must count.
func TestReviseRefusesLargeDocuments(t *testing.T) {
	long := "site_" + strings.Repeat("z", 64)
	sites := []string{"site_a", long}
	// A name of n bytes of JSON tunes the size byte by byte, and is what
	// JSON escapes ("<" to six bytes), as the rule's description is, so
	// the cheap bound is close to the size and must not be below it.
	docsWith := func(n int) documents {
		rules := []protocol.Rule{{ID: "fr_1", Direction: "inbound", Order: 1, Protocol: 6, Port: "443", Address: "10.0.0.0/8",
			Description: strings.Repeat("<\u2028\"é", 60)}}
		list := protocol.PrefixList{ID: "prfx_1", Name: strings.Repeat("<", n/6) + strings.Repeat("x", n%6), CIDRs: []string{"192.0.2.0/24"}}
		content := protocol.DesiredState{Schema: 1, OrgID: "org_a", Hash: "sha256:" + strings.Repeat("0", 64),
			SecurityGroups: []protocol.SecurityGroup{{ID: "sg_1", Name: "G", Rules: rules}}, PrefixLists: []protocol.PrefixList{list}}
		a, b := content, content
		a.SiteID, a.Revision = "site_a", 1
		b.SiteID, b.Revision = long, 1_000_000_000_000_000
		return documents{"site_a": a, long: b}
	}
	stamped := func(d protocol.DesiredState) int {
		d.Epoch = strings.Repeat("e", 64)
		b, err := json.Marshal(&d)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	// Around the name length that brings each site's document to the
	// limit.
	empty := docsWith(0)
	var sizes []int
	for _, s := range sites {
		at := protocol.MaxDesiredStateBytes - stamped(empty[s])
		sizes = append(sizes, at-2, at-1, at, at+1, at+2)
	}
	refusals := 0
	for _, n := range sizes {
		docs := docsWith(n)
		var over []string
		for _, s := range sites {
			if stamped(docs[s]) > protocol.MaxDesiredStateBytes {
				over = append(over, s)
			}
		}
		got, err := cp.Revise(docs, nil, "org_a", sites)
		if len(over) == 0 {
			if err != nil || len(got) != 2 {
				t.Errorf("name of %d bytes (%d and %d bytes): %v; want both accepted", n, stamped(docs["site_a"]), stamped(docs[long]), err)
			}
			continue
		}
		refusals++
		if cp.ErrorCode(err) != cp.CodeDocumentTooLarge {
			t.Errorf("name of %d bytes, %v over: %v; want document_too_large", n, over, err)
			continue
		}
		slices.Sort(over)
		first := over[0]
		want := cp.DocumentTooLarge(first, stamped(docs[first]), len(over)-1)
		if d := cmp.Diff(want.Error(), err.Error()); d != "" {
			t.Errorf("name of %d bytes (-want +got):\n%s", n, d)
		}
	}
	if refusals != 7 {
		t.Errorf("%d of 10 sizes around the limits refused; want 7 (3 at each site's limit, and the long site's over at site_a's)", refusals)
	}
}
