package controlplane_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// TestCheckPrefixLists checks that the first rule naming a prefix list the
// store does not have is the one reported, and CIDRs are never looked up.
func TestCheckPrefixLists(t *testing.T) {
	pl := cp.PrefixListIDPrefix
	known := map[string]bool{pl + "known": true}
	tests := []struct {
		name    string
		addrs   []string
		wantErr string // the error's field; "" for none
	}{
		{"cidrs only", []string{"10.0.0.0/8", "0.0.0.0/0"}, ""},
		{"known list", []string{"10.0.0.0/8", pl + "known"}, ""},
		{"first unknown reported", []string{pl + "known", pl + "gone", pl + "also_gone"}, "rules[1].address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := cp.SecurityGroup{}
			for _, a := range tt.addrs {
				g.Rules = append(g.Rules, cp.FilterRule{Address: a})
			}
			var asked []string
			err := g.CheckPrefixLists(func(id string) bool { asked = append(asked, id); return known[id] })
			got := ""
			if e := (*cp.Error)(nil); errors.As(err, &e) {
				if e.Code != cp.CodePrefixListNotFound {
					t.Errorf("code = %q, want %q", e.Code, cp.CodePrefixListNotFound)
				}
				got = e.Field
			} else if err != nil {
				t.Fatalf("err = %v, want a *controlplane.Error", err)
			}
			if diff := cmp.Diff(tt.wantErr, got); diff != "" {
				t.Errorf("field (-want +got):\n%s", diff)
			}
			for _, id := range asked {
				if !strings.HasPrefix(id, pl) {
					t.Errorf("looked up %q, which is no prefix list id", id)
				}
			}
		})
	}
}
