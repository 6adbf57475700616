package bolt

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
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
