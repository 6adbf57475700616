package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/controlplane/store/postgres"
	"github.com/rampart-fw/rampart/controlplane/syncer"
)

// Store is what the serve path uses of a store: the API's and the
// syncer's interfaces, the change feed, the deadline sweeper and Close.
// store/bolt (the default: one control plane, one file) and store/postgres
// (--store-url: several control planes on one database) implement it.
type Store interface {
	api.Store
	syncer.Store
	OnChange(cp.ChangeFunc)
	// Decommissioned says whether a site was decommissioned and
	// forgotten: the embedded broker refuses its credentials.
	Decommissioned(org, site string) bool
	// RunSweeper fails what passed its sync deadline, every interval,
	// until ctx ends. bbolt's runs in this process; PostgreSQL's on one
	// replica at a time, the holder of a lease in the database, so
	// several control planes do not sweep at once.
	RunSweeper(ctx context.Context, interval time.Duration, onErr func(error))
	Close() error
}

// openStore opens the store Config names: PostgreSQL with --store-url,
// else the bbolt file in --data-dir.
func (m *Main) openStore(ctx context.Context) (Store, error) {
	c := m.Config
	onPrune := func(err error) { m.Logger.Error("prune audit events", "error", err) }
	if c.StoreURL != "" {
		if err := checkStoreURL(c.StoreURL); err != nil {
			return nil, err
		}
		pg, err := postgres.OpenStore(ctx, c.StoreURL, postgres.Options{
			SyncTimeout: c.SyncTimeout, Now: m.Now, Revisioner: compile.Revisioner{}, Quotas: c.Quotas,
			AuditRetention: c.AuditRetention, OnPruneError: onPrune, ReplicaID: replicaID(c),
		})
		if err != nil {
			return nil, fmt.Errorf("open --store-url %s: %w", redactURL(c.StoreURL), err)
		}
		if err := checkKey(ctx, pg.DB, m.Key, c.DataDir); err != nil {
			pg.Close()
			return nil, err
		}
		m.Replicas = pg
		return pg, nil
	}
	return bolt.Open(filepath.Join(c.DataDir, DBFile), bolt.Options{
		SyncTimeout: c.SyncTimeout, Now: m.Now, Revisioner: compile.Revisioner{}, Quotas: c.Quotas,
		AuditRetention: c.AuditRetention, OnPruneError: onPrune,
	})
}

// checkKey refuses to serve with a key other than the one the database's
// control planes hold (the first to start, or migrate, recorded its
// fingerprint): site MQTT passwords and API tokens are derived from the
// key, so a replica with another would issue credentials the others
// reject, and its own would be refused by them.
func checkKey(ctx context.Context, db *postgres.DB, key keys.Key, dataDir string) error {
	err := db.CheckKey(ctx, key.Fingerprint())
	if mismatch := (*postgres.KeyMismatchError)(nil); errors.As(err, &mismatch) {
		return fmt.Errorf("check %s against the database: %w: every control plane on one database needs the same %s (site passwords and API tokens are derived from it); copy %s from a running control plane's --data-dir into %s, then start again",
			filepath.Join(dataDir, keys.KeyFile), err, keys.KeyFile, keys.KeyFile, dataDir)
	}
	if err != nil {
		return fmt.Errorf("check %s against the database: %w", filepath.Join(dataDir, keys.KeyFile), err)
	}
	return nil
}

// republishAfter is how long a revision committed by a replica may stay
// unpublished before another publishes it: longer than a publish takes on
// a live replica (so its own is not doubled), short enough that a dead
// replica's writes reach their sites within seconds. A doubled publish is
// harmless (documents are whole, with per-site revisions).
const republishAfter = 10 * time.Second

// runReplicaDuties starts what only several control planes on one
// database need, each on one replica at a time (a lease in the database):
// republishing what a replica committed and died before publishing,
// through the syncer. With bbolt there is nothing to start.
func (m *Main) runReplicaDuties(ctx context.Context, republish cp.ChangeFunc) {
	if m.Replicas == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.Replicas.RunRepublisher(ctx, m.SweepInterval, republishAfter, republish,
			func(err error) { m.Logger.Error("republish unpublished revisions", "error", err) })
	}()
}

// replicaID is --replica-id, or this host's name and process id: unique
// among replicas, and readable in the leases table and the logs.
func replicaID(c Config) string {
	if c.ReplicaID != "" {
		return c.ReplicaID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// readyChecks are /readyz's checks beyond the store's Ping: the data
// directory's disk, where bbolt writes, and the broker.
func (m *Main) readyChecks() []api.ReadyCheck {
	var checks []api.ReadyCheck
	if m.Config.StoreURL == "" {
		dir := m.Config.DataDir
		checks = append(checks, api.ReadyCheck{Name: "disk", Check: func(context.Context) error { return probeDisk(dir) }})
	}
	return append(checks, api.ReadyCheck{Name: "broker", Check: m.brokerReady})
}

// storeName says which store serves, for the start-up log line (without
// the URL's password).
func storeName(c Config) string {
	if c.StoreURL != "" {
		return "postgres " + redactURL(c.StoreURL)
	}
	return "bbolt " + filepath.Join(c.DataDir, DBFile)
}

// checkStoreURL refuses a --store-url that is not a PostgreSQL URL, with
// what would be valid.
func checkStoreURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return fmt.Errorf("--store-url %q: want a PostgreSQL URL such as postgres://rampart@db.example:5432/rampart?sslmode=verify-full (the password is best given in PGPASSWORD or ~/.pgpass); leave it empty for the bbolt file in --data-dir", redactURL(raw))
	}
	return nil
}

// redactURL hides a URL's password, for logs and errors.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			return "…" + raw[i:]
		}
		return raw
	}
	return u.Redacted()
}
