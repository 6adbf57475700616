package bolt_test

import (
	"path/filepath"
	"testing"

	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/controlplane/store/storetest"
)

// TestConformance runs the stores' conformance suite against bbolt, with
// concurrent writes sharing transactions (the default) and without.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noBatch bool
	}{{"Batch", false}, {"NoBatch", true}} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store {
				s, err := bolt.Open(filepath.Join(t.TempDir(), "rampart.db"), bolt.Options{
					Now: o.Now, Revisioner: o.Revisioner, SyncTimeout: o.SyncTimeout, Quotas: o.Quotas, NoBatch: tc.noBatch,
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}
