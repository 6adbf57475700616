package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/controlplane/store/postgres"
	"github.com/rampart-fw/rampart/controlplane/store/storetest"
	"github.com/rampart-fw/rampart/internal/pgtest"
)

// TestConformance runs the stores' conformance suite against PostgreSQL,
// each test on a fresh database of a real server (internal/pgtest; the
// package's TestMain stops it).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := postgres.OpenStore(ctx, pgtest.DSN(t), postgres.Options{
			Now: o.Now, Revisioner: o.Revisioner, SyncTimeout: o.SyncTimeout, Quotas: o.Quotas,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
