package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/protocol"
)

// toSchema0 rewrites a closed store file as files of schema 0 were: the
// group id as the value groups/<id> with its index at gindex/<id> (or,
// without index, no gindex entry), no schema in meta, and no reports
// or members bucket in the organisation.
func toSchema0(t *testing.T, path, org string, withIndex map[string]bool) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOrgs).Bucket([]byte(org))
		groups := ob.Bucket(bucketGroups)
		gindex, err := ob.CreateBucketIfNotExists(bucketGIndex)
		if err != nil {
			return err
		}
		for id, index := range withIndex {
			g := groups.Bucket([]byte(id))
			raw, idx := slices.Clone(g.Get(keyGroupJSON)), slices.Clone(g.Get(keyGroupIndex))
			if err := groups.DeleteBucket([]byte(id)); err != nil {
				return err
			}
			if err := groups.Put([]byte(id), raw); err != nil {
				return err
			}
			if index {
				if err := gindex.Put([]byte(id), idx); err != nil {
					return err
				}
			}
		}
		if err := ob.DeleteBucket(bucketReports); err != nil {
			return err
		}
		if err := ob.DeleteBucket(bucketMembers); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keySchema)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// layout reports how a group is stored: "bucket", "old" (a value) or ""
// (nowhere), and whether any gindex bucket is left.
func layout(t *testing.T, s *Store, org, id string) string {
	t.Helper()
	var got string
	s.db.View(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOrgs).Bucket([]byte(org))
		switch {
		case ob.Bucket(bucketGIndex) != nil:
			got = "gindex left"
		case ob.Bucket(bucketGroups).Bucket([]byte(id)) != nil:
			got = "bucket"
		case ob.Bucket(bucketGroups).Get([]byte(id)) != nil:
			got = "old"
		}
		return nil
	})
	return got
}

// TestMigrateSchema0: a file of schema 0, groups stored as values with and
// without an index, opens migrated once: every group in its bucket, the
// same answers, rule ids kept by the next replace, reports taken, and the
// schema recorded. Opening again finds nothing to migrate.
func TestMigrateSchema0(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s, w := layoutStore(t, path)
	g, err := createGroup(ctx, s, "org_a", w)
	if err != nil {
		t.Fatal(err)
	}
	other, err := createGroup(ctx, s, "org_a", w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePrefixList(ctx, "org_a", &cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}, Sites: []string{"site_b"}}); err != nil {
		t.Fatal(err)
	}
	want, _ := s.GetJSON(ctx, "org_a", cp.KindSecurityGroup, g.ID)
	wantJSON := slices.Clone(want.Body)
	wantList, _, _, _ := s.ListJSONPage(ctx, "org_a", cp.KindSecurityGroup, "", 100)
	s.Close()
	toSchema0(t, path, "org_a", map[string]bool{g.ID: true, other.ID: false})

	for range 2 { // the second open finds the current schema
		s, _ = layoutStore(t, path)
		for _, id := range []string{g.ID, other.ID} {
			if l := layout(t, s, "org_a", id); l != "bucket" {
				t.Fatalf("group %s after open: %q, want its bucket", id, l)
			}
		}
		if got, err := s.GetJSON(ctx, "org_a", cp.KindSecurityGroup, g.ID); err != nil || string(got.Body) != string(wantJSON) {
			t.Errorf("GetJSON after migration = %s, %v; want %s", got.Body, err, wantJSON)
		}
		if got, _, _, err := s.ListJSONPage(ctx, "org_a", cp.KindSecurityGroup, "", 100); err != nil || string(got) != string(wantList) {
			t.Errorf("ListJSONPage after migration = %s, %v; want %s", got, err, wantList)
		}
		var lists []cp.PrefixList
		if err := s.ViewPolicy(ctx, "org_a", func(tx cp.PolicyTx) error {
			_, lists, err = tx.Policy([]string{"site_b"})
			return err
		}); err != nil || len(lists) != 1 || lists[0].Name != "Office" {
			t.Errorf("members index after migration: site_b holds %v, %v; want the list Office", lists, err)
		}
		var schema string
		s.db.View(func(tx *bolt.Tx) error { schema = string(tx.Bucket(bucketMeta).Get(keySchema)); return nil })
		if schema != strconv.Itoa(schemaVersion) {
			t.Errorf("schema %q after open, want %d", schema, schemaVersion)
		}
		s.Close()
	}
	s, _ = layoutStore(t, path)

	// Both groups keep the id of their unchanged rule through a replace:
	// one's index was moved, the other's computed from its JSON.
	w2 := *w
	w2.Rules = []cp.FilterRuleWrite{w.Rules[0], {Direction: "outbound", Order: 3, Protocol: 17, Port: "53", Address: "10.0.0.0/8"}}
	for _, prev := range []cp.SecurityGroup{g, other} {
		r, err := replaceGroup(ctx, s, "org_a", prev.ID, &w2)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rules[0].ID != prev.Rules[0].ID || r.Rules[1].ID == prev.Rules[1].ID {
			t.Errorf("replace after migration: rule ids %s %s, want %s kept and a new one", r.Rules[0].ID, r.Rules[1].ID, prev.Rules[0].ID)
		}
		got, _ := readGroup(ctx, s, "org_a", prev.ID)
		if d := cmp.Diff(r.Rules, got.Rules); d != "" {
			t.Errorf("rules after replace (-want +got):\n%s", d)
		}
	}
	// The organisation got its reports bucket back: a report is taken.
	if _, err := s.Ingest(ctx, []cp.Report{{OrgID: "org_a", SiteID: "site_a", Presence: &protocol.Presence{State: protocol.PresenceOnline}}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{g.ID, other.ID} {
		if err := s.DeleteSecurityGroup(ctx, "org_a", id); err != nil {
			t.Fatal(err)
		}
		if l := layout(t, s, "org_a", id); l != "" {
			t.Errorf("deleted group %s still stored (%q)", id, l)
		}
	}
}

// TestNewerSchemaRefused: a file written by a newer build is not opened.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s, _ := layoutStore(t, path)
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(schemaVersion+1)))
	})
	s.Close()
	_, err := Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("version %d, newer than this build's %d", schemaVersion+1, schemaVersion)) {
		t.Fatalf("Open of a newer file: %v", err)
	}
}

// layoutStore opens the store at path and gives a two-rule group to write
// to it.
func layoutStore(t *testing.T, path string) (*Store, *cp.SecurityGroupWrite) {
	t.Helper()
	s, err := Open(path, Options{})
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
	created, err := s.CreateSecurityGroup(ctx, org, w)
	id := created.ID
	if err != nil {
		return cp.SecurityGroup{}, err
	}
	return readGroup(ctx, s, org, id)
}

func replaceGroup(ctx context.Context, s *Store, org, id string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	if _, err := s.ReplaceSecurityGroup(ctx, org, id, w); err != nil {
		return cp.SecurityGroup{}, err
	}
	return readGroup(ctx, s, org, id)
}

// readGroup reads a group as the API does, and decodes it.
func readGroup(ctx context.Context, s *Store, org, id string) (cp.SecurityGroup, error) {
	st, err := s.GetJSON(ctx, org, cp.KindSecurityGroup, id)
	if err != nil {
		return cp.SecurityGroup{}, err
	}
	var g cp.SecurityGroup
	err = json.Unmarshal(st.Body, &g)
	return g, err
}

// TestMigrateUnforges: a file of schema 2 holding what a forged status left
// (issue #13 item 3: applied revision 2^64-1, the same as the newest
// report) opens with both undone, and the agent's real report is then
// taken instead of discarded as stale.
func TestMigrateUnforges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{Revisioner: compile.Revisioner{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSecurityGroup(ctx, "org_a", &cp.SecurityGroupWrite{Name: "web", Sites: []string{"site_a"}, Rules: []cp.FilterRuleWrite{}}); err != nil {
		t.Fatal(err)
	}
	epoch := s.Epoch()
	forged := uint64(math.MaxUint64)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOrgs).Bucket([]byte("org_a"))
		rec, _, err := readSite(ob, "site_a")
		if err != nil {
			return err
		}
		rec.AppliedRevision, rec.State = forged, cp.SiteInSync
		if err := putSite(ob.Bucket(bucketSites), "site_a", &rec); err != nil {
			return err
		}
		if err := putJSON(ob.Bucket(bucketReports), "site_a", cp.LastReport{Epoch: epoch, Revision: forged, State: protocol.StateApplied}); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("2"))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(path, Options{Revisioner: compile.Revisioner{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	site, err := s.GetSite(ctx, "org_a", "site_a")
	if err != nil {
		t.Fatal(err)
	}
	if site.AppliedRevision != 0 || site.State == cp.SiteInSync || site.DesiredRevision != 1 {
		t.Errorf("site after the migration: %+v, want applied 0, not in sync, desired 1", site)
	}
	st := protocol.SiteStatus{Schema: 1, OrgID: "org_a", SiteID: "site_a", Epoch: epoch, Revision: 1, State: protocol.StateApplied}
	res, err := s.Ingest(ctx, []cp.Report{{OrgID: "org_a", SiteID: "site_a", Status: &st}})
	if err != nil || res[0] != cp.ReportTaken {
		t.Fatalf("the real report after the migration: %v, %v; want taken", res, err)
	}
	if site, _ := s.GetSite(ctx, "org_a", "site_a"); site.AppliedRevision != 1 || site.State != cp.SiteInSync {
		t.Errorf("site after the real report: %+v", site)
	}
}
