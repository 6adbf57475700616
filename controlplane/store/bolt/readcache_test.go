package bolt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
)

// TestGetJSONSeesEveryChange reads a group through GetJSON (which serves
// repeated reads from a cache) after each kind of change: a replace, a
// confirmation, the clock passing the sync deadline, a sweep, a failed
// report and a delete. Each read must equal what the decoding read path
// (GetSecurityGroup, uncached) says at that moment.
func TestGetJSONSeesEveryChange(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s, _ := open(t, bolt.Options{Revisioner: &counter{}, Now: clk.Now, SyncTimeout: time.Minute})
	g, err := createGroup(ctx, s, org, group("Group", []string{"site_a"}))
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, wantName string, want cp.Status) {
		t.Helper()
		for range 2 { // the second read is a cache hit
			stored, err := s.GetJSON(ctx, org, cp.KindSecurityGroup, g.ID)
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			var got cp.SecurityGroup
			if err := json.Unmarshal(stored.Body, &got); err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			if got.Name != wantName || got.Status != want {
				t.Fatalf("%s: GetJSON says %q %q, want %q %q", step, got.Name, got.Status, wantName, want)
			}
			dec, err := s.GetSecurityGroup(ctx, org, g.ID)
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			if dec.Status != got.Status || dec.Name != got.Name {
				t.Fatalf("%s: GetJSON says %q %q, GetSecurityGroup %q %q", step, got.Name, got.Status, dec.Name, dec.Status)
			}
		}
	}
	check("created", "Group", cp.StatusSyncing)
	if err := confirm(ctx, s, org, "site_a", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	check("confirmed", "Group", cp.StatusActive)
	if _, err := replaceGroup(ctx, s, org, g.ID, group("Renamed", []string{"site_a"})); err != nil {
		t.Fatal(err)
	}
	check("replaced", "Renamed", cp.StatusSyncing)
	clk.add(2 * time.Minute) // no write: only the clock says it failed
	check("past the deadline", "Renamed", cp.StatusFailed)
	if n, err := s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	check("swept", "Renamed", cp.StatusFailed)
	if _, err := replaceGroup(ctx, s, org, g.ID, group("Fourth", []string{"site_a"})); err != nil {
		t.Fatal(err)
	}
	check("replaced after failing", "Fourth", cp.StatusSyncing)
	if err := confirm(ctx, s, org, "site_a", 3, false, "no such item"); err != nil {
		t.Fatal(err)
	}
	check("failed report", "Fourth", cp.StatusFailed)
	before, _ := s.GetJSON(ctx, org, cp.KindSecurityGroup, g.ID)
	if err := s.DeleteSecurityGroup(ctx, org, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetJSON(ctx, org, cp.KindSecurityGroup, g.ID); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Fatalf("after delete: %v, want not found", err)
	}
	if !bytes.Contains(before.Body, []byte(`"Fourth"`)) {
		t.Fatalf("an answer given out changed: %s", before.Body)
	}
}
