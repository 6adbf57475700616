package bolt

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/protocol"
)

// TestMigrateHistory: a file of schema 5 (no history bucket) is given
// one at Open, before any write (Settle opens an organisation without
// creating buckets), and the next transition of a site it already knew is
// recorded.
func TestMigrateHistory(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s, w := layoutStore(t, path)
	w.Sites = []string{"site_a"}
	if _, err := createGroup(ctx, s, "org_a", w); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketOrgs).Bucket([]byte("org_a")).DeleteBucket(bucketHistory); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("5"))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketOrgs).Bucket([]byte("org_a")).Bucket(bucketHistory) == nil {
			t.Error("no history bucket after Open migrated schema 5")
		}
		return nil
	})
	if got, _, err := s.SiteHistory(ctx, "org_a", "site_a", cp.SiteHistoryQuery{Limit: 10}); err != nil || len(got) != 0 {
		t.Fatalf("history after migration: %v, %v; want empty", got, err)
	}
	if _, err := s.Ingest(ctx, []cp.Report{{OrgID: "org_a", SiteID: "site_a", Presence: &protocol.Presence{State: protocol.PresenceOffline}}}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.SiteHistory(ctx, "org_a", "site_a", cp.SiteHistoryQuery{Limit: 10})
	if err != nil || len(got) != 1 || got[0].Seq != 1 || got[0].To != cp.SiteOffline {
		t.Errorf("history after a presence: %+v, %v; want one transition to offline", got, err)
	}
}

// TestSiteHistoryDecommission: a decommission is a transition of the
// site, and forgetting the site deletes its history with its record,
// every key of it; another site's stays.
func TestSiteHistoryDecommission(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{Revisioner: compile.Revisioner{}, SyncTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, w := layoutStore(t, filepath.Join(t.TempDir(), "unused"))
	w.Sites = []string{"site_a", "site_b"}
	if _, err := createGroup(ctx, s, "org_a", w); err != nil {
		t.Fatal(err)
	}
	applied := func(site string, rev uint64) {
		t.Helper()
		st := protocol.SiteStatus{Schema: 1, OrgID: "org_a", SiteID: site, Epoch: s.Epoch(), Revision: rev, State: protocol.StateApplied}
		if _, err := s.Ingest(ctx, []cp.Report{{OrgID: "org_a", SiteID: site, Status: &st}}); err != nil {
			t.Fatal(err)
		}
	}
	applied("site_a", 1)
	applied("site_b", 1)
	dec, err := s.DecommissionSite(ctx, "org_a", "site_a")
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := s.SiteHistory(ctx, "org_a", "site_a", cp.SiteHistoryQuery{Limit: 10})
	if err != nil || len(got) == 0 || got[0].From != cp.SiteInSync || got[0].To != cp.SiteDecommissioning || got[0].DesiredRevision != dec.DesiredRevision {
		t.Fatalf("history after the decommission: %+v, %v; want in_sync → decommissioning at revision %d first", got, err, dec.DesiredRevision)
	}
	applied("site_a", dec.DesiredRevision)
	if refs, err := s.ForgetDecommissioned(ctx); err != nil || len(refs) != 1 {
		t.Fatalf("forget: %v, %v", refs, err)
	}
	if _, _, err := s.SiteHistory(ctx, "org_a", "site_a", cp.SiteHistoryQuery{Limit: 10}); cp.ErrorCode(err) != cp.CodeNotFound {
		t.Errorf("history of a forgotten site: %v, want not found", err)
	}
	keys := map[string]int{}
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrgs).Bucket([]byte("org_a")).Bucket(bucketHistory).ForEach(func(k, _ []byte) error {
			site, _, _ := bytes.Cut(k, []byte{0})
			keys[string(site)]++
			return nil
		})
	})
	if keys["site_a"] != 0 || keys["site_b"] != 2 {
		t.Errorf("history keys per site after forgetting site_a: %v; want none of site_a, site_b's 2", keys)
	}
}
