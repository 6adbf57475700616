package bolt

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

func TestGroupIndexRoundTrip(t *testing.T) {
	g := cp.SecurityGroup{Sites: []string{"site_a", "site_b"}, Rules: []cp.FilterRule{
		{ID: "fltr_1", Direction: "inbound", Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "not indexed"},
		{ID: "fltr_2", Direction: "outbound", Protocol: 255, Port: "", Address: "prfx_lst_x"},
	}}
	b := encodeGroupIndex(&g)
	sites, rules, err := decodeGroupIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	g.Rules[0].Description = ""
	if d := cmp.Diff(g.Sites, sites); d != "" {
		t.Errorf("sites (-want +got):\n%s", d)
	}
	if d := cmp.Diff(g.Rules, rules); d != "" {
		t.Errorf("rules (-want +got):\n%s", d)
	}
	// Every truncation fails cleanly instead of panicking or inventing data.
	for i := range len(b) {
		if _, _, err := decodeGroupIndex(b[:i]); err == nil {
			t.Errorf("truncated to %d bytes: no error", i)
		}
	}
}
