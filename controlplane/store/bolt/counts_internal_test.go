package bolt

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// TestReadSiteKeyAgreesWithDecode: the scan of a stored site record reads
// the same state and deadline as decoding it, whatever the free-text
// fields hold (including what looks like the fields themselves).
func TestReadSiteKeyAgreesWithDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	texts := []string{"", "boom", `"state":"in_sync"`, `x","state":"failed`, `"sync_deadline":"2030-01-01T00:00:00Z"`, "\\\"state\\\":\\\"", "é\u2028\x00"}
	states := []cp.SiteState{cp.SiteInSync, cp.SiteSyncing, cp.SiteFailed, cp.SiteOffline, cp.SiteUnknown}
	for i := range 2000 {
		rec := siteRecord{Site: cp.Site{ID: "site_a", State: states[rng.IntN(len(states))], LastError: texts[rng.IntN(len(texts))],
			AgentVersion: texts[rng.IntN(len(texts))], Board: texts[rng.IntN(len(texts))]}}
		if rng.IntN(2) == 0 {
			rec.SyncDeadline = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(time.FixedZone("x", rng.IntN(20)*1800))
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		var want siteKey
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		got := readSiteKey(raw)
		if got.State != want.State || !got.SyncDeadline.Equal(want.SyncDeadline) {
			t.Fatalf("record %d %s: got %+v, want %+v", i, raw, got, want)
		}
	}
	for raw, want := range map[string]siteKey{
		`{"id":"site_a","last_error":"a \"quoted\" one","state":"failed"}`:              {State: cp.SiteFailed},
		`{"id":"site_a","state":"sync\u0069ng","sync_deadline":"2030-01-01T00:00:00Z"}`: {State: cp.SiteSyncing, SyncDeadline: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		`{"id":"site_a","state":"syncing","sync_deadline":"not a time"}`:                {State: cp.SiteUnknown}, // damaged
		`not json`: {State: cp.SiteUnknown},
	} {
		if d := cmp.Diff(want, readSiteKey([]byte(raw))); d != "" {
			t.Errorf("%s (-want +got):\n%s", raw, d)
		}
	}
}
