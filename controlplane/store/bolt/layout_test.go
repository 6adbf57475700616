package bolt

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// toOldLayout moves a group back to the layout of files written before
// groups had buckets of their own: the JSON as the value groups/<id>, the
// index at gindex/<id>.
func toOldLayout(t *testing.T, s *Store, org, id string) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOrgs).Bucket([]byte(org))
		groups := ob.Bucket(bucketGroups)
		g := groups.Bucket([]byte(id))
		if g == nil {
			t.Fatalf("group %s has no bucket of its own", id)
		}
		raw, idx := slices.Clone(g.Get(keyGroupJSON)), slices.Clone(g.Get(keyGroupIndex))
		if err := groups.DeleteBucket([]byte(id)); err != nil {
			return err
		}
		if err := groups.Put([]byte(id), raw); err != nil {
			return err
		}
		return ob.Bucket(bucketGIndex).Put([]byte(id), idx)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.reads.invalidate()
}

// layout reports how a group is stored: "bucket", "old" (value and
// gindex entry) or "" (nowhere), failing on a mix.
func layout(t *testing.T, s *Store, org, id string) string {
	t.Helper()
	var got string
	s.db.View(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOrgs).Bucket([]byte(org))
		inBucket := ob.Bucket(bucketGroups).Bucket([]byte(id)) != nil
		value := ob.Bucket(bucketGroups).Get([]byte(id)) != nil
		index := ob.Bucket(bucketGIndex).Get([]byte(id)) != nil
		switch {
		case inBucket && !value && !index:
			got = "bucket"
		case !inBucket && value && index:
			got = "old"
		case !inBucket && !value && !index:
			got = ""
		default:
			t.Fatalf("group %s: bucket %v, value %v, gindex %v", id, inBucket, value, index)
		}
		return nil
	})
	return got
}

// TestOldLayoutIsReadAndMoved: a group stored as files written before
// groups had their own bucket reads the same, keeps its rule ids when
// replaced (which moves it to its bucket), and deletes cleanly.
func TestOldLayoutIsReadAndMoved(t *testing.T) {
	ctx := context.Background()
	s, w := layoutStore(t)
	g, err := createGroup(ctx, s, "org_a", w)
	if err != nil {
		t.Fatal(err)
	}
	other, err := createGroup(ctx, s, "org_a", w)
	if err != nil {
		t.Fatal(err)
	}
	if l := layout(t, s, "org_a", g.ID); l != "bucket" {
		t.Fatalf("new group stored as %q", l)
	}
	wantJSON, err := s.GetJSON(ctx, "org_a", cp.KindSecurityGroup, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON = slices.Clone(wantJSON)
	wantList, err := s.ListJSON(ctx, "org_a", cp.KindSecurityGroup)
	if err != nil {
		t.Fatal(err)
	}

	toOldLayout(t, s, "org_a", g.ID)
	if l := layout(t, s, "org_a", g.ID); l != "old" {
		t.Fatalf("group stored as %q after toOldLayout", l)
	}
	gotJSON, err := s.GetJSON(ctx, "org_a", cp.KindSecurityGroup, g.ID)
	if err != nil || string(gotJSON) != string(wantJSON) {
		t.Errorf("GetJSON of the old layout = %s, %v; want %s", gotJSON, err, wantJSON)
	}
	gotList, err := s.ListJSON(ctx, "org_a", cp.KindSecurityGroup)
	if err != nil || string(gotList) != string(wantList) {
		t.Errorf("ListJSON with the old layout = %s, %v; want %s", gotList, err, wantList)
	}
	got, err := s.GetSecurityGroup(ctx, "org_a", g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(g.Rules, got.Rules); d != "" {
		t.Errorf("rules of the old layout (-want +got):\n%s", d)
	}

	// Replace: rule 1 is unchanged and keeps its id; the group moves.
	w2 := *w
	w2.Rules = []cp.FilterRuleWrite{w.Rules[0], {Direction: "outbound", Order: 3, Protocol: 17, Port: "53", Address: "10.0.0.0/8"}}
	r, err := replaceGroup(ctx, s, "org_a", g.ID, &w2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rules[0].ID != g.Rules[0].ID || r.Rules[1].ID == g.Rules[1].ID {
		t.Errorf("replace of the old layout: rule ids %s %s, want %s kept and a new one", r.Rules[0].ID, r.Rules[1].ID, g.Rules[0].ID)
	}
	if l := layout(t, s, "org_a", g.ID); l != "bucket" {
		t.Errorf("replaced group stored as %q", l)
	}
	got, err = s.GetSecurityGroup(ctx, "org_a", g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r.Rules, got.Rules); d != "" {
		t.Errorf("rules after the move (-want +got):\n%s", d)
	}

	// Delete, in both layouts.
	toOldLayout(t, s, "org_a", other.ID)
	for _, id := range []string{g.ID, other.ID} {
		if err := s.DeleteSecurityGroup(ctx, "org_a", id); err != nil {
			t.Fatal(err)
		}
		if l := layout(t, s, "org_a", id); l != "" {
			t.Errorf("deleted group %s still stored (%q)", id, l)
		}
		if _, err := s.GetJSON(ctx, "org_a", cp.KindSecurityGroup, id); cp.ErrorCode(err) != cp.CodeNotFound {
			t.Errorf("GetJSON of deleted group: %v", err)
		}
	}
}

// TestGroupWithoutIndex: a group stored before groups had an index (the
// value groups/<id> alone) keeps its rule ids through a replace, read from
// its JSON.
func TestGroupWithoutIndex(t *testing.T) {
	ctx := context.Background()
	s, w := layoutStore(t)
	g, err := createGroup(ctx, s, "org_a", w)
	if err != nil {
		t.Fatal(err)
	}
	toOldLayout(t, s, "org_a", g.ID)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrgs).Bucket([]byte("org_a")).Bucket(bucketGIndex).Delete([]byte(g.ID))
	}); err != nil {
		t.Fatal(err)
	}
	w2 := *w
	w2.Rules = []cp.FilterRuleWrite{w.Rules[1], {Direction: "outbound", Order: 3, Protocol: 17, Port: "53", Address: "10.0.0.0/8"}}
	w2.Rules[0].Order = 1
	r, err := replaceGroup(ctx, s, "org_a", g.ID, &w2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rules[0].ID != g.Rules[1].ID || r.Rules[1].ID == g.Rules[0].ID || r.Rules[1].ID == g.Rules[1].ID {
		t.Errorf("rule ids %s %s; want %s kept and a new one", r.Rules[0].ID, r.Rules[1].ID, g.Rules[1].ID)
	}
	if l := layout(t, s, "org_a", g.ID); l != "bucket" {
		t.Errorf("replaced group stored as %q", l)
	}
}

// layoutStore opens a store in a temporary directory and gives a two-rule
// group to write to it.
func layoutStore(t *testing.T) (*Store, *cp.SecurityGroupWrite) {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, &cp.SecurityGroupWrite{Name: "web", Sites: []string{}, Rules: []cp.FilterRuleWrite{
		{Direction: "inbound", Order: 1, Protocol: 6, Port: "443", Address: "0.0.0.0/0"},
		{Direction: "inbound", Order: 2, Protocol: 6, Port: "22", Address: "10.0.0.0/8"},
	}}
}

func createGroup(ctx context.Context, s *Store, org string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	id, _, err := s.CreateSecurityGroup(ctx, org, w)
	if err != nil {
		return cp.SecurityGroup{}, err
	}
	return s.GetSecurityGroup(ctx, org, id)
}

func replaceGroup(ctx context.Context, s *Store, org, id string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	if _, err := s.ReplaceSecurityGroup(ctx, org, id, w); err != nil {
		return cp.SecurityGroup{}, err
	}
	return s.GetSecurityGroup(ctx, org, id)
}
