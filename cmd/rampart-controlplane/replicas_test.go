package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/store/postgres"
	"github.com/rampart-fw/rampart/internal/pgtest"
)

// TestReplicasShareOneDatabase starts two control planes on one real
// PostgreSQL database (--store-url), each with its own data directory
// holding the same rampart.key: a write through one is read, with the same
// ETag, through the other; the deadline sweeper runs on exactly one of
// them (the holder of the "sweeper" lease) and fails what passed its
// deadline for both; when that replica stops, the other takes the lease
// over and sweeps.
func TestReplicasShareOneDatabase(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	start := func(id, dir string) *Main {
		t.Helper()
		m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, StoreURL: dsn, ReplicaID: id, SyncTimeout: time.Second,
			JWTOrgClaim: "org_id", MQTTListen: "127.0.0.1:0", MQTTSListen: "127.0.0.1:0", LogLevel: "info"},
			Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), SweepInterval: 50 * time.Millisecond}
		if err := m.Start(ctx); err != nil {
			t.Fatalf("start replica %s: %v", id, err)
		}
		return m
	}
	a := start("replica-a", dirA)
	defer func() { a.Close() }()
	// Every replica needs the same key: copied, as an operator would.
	copyKey(t, dirA, dirB)
	b := start("replica-b", dirB)
	defer func() { b.Close() }()
	if a.Store.Epoch() != b.Store.Epoch() {
		t.Fatalf("two replicas, two epochs: %s and %s", a.Store.Epoch(), b.Store.Epoch())
	}

	tok, err := auth.Mint(auth.MintOptions{Key: a.Key.JWTSigningKey(), Org: "org_a", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	call := func(m *Main, method, path, body string) (int, http.Header, string) {
		t.Helper()
		st, h, out := apiRequest(t, http.DefaultClient, "http://"+m.Addr.String()+path, tok, method, body)
		return st, h, string(out)
	}
	group := `{"name":"Web","rules":[{"direction":"inbound","order":1,"protocol":6,"port":"443","address":"0.0.0.0/0","description":"web"}],"sites":["site_a"]}`
	st, h, created := call(a, "POST", "/vpc/security-groups", group)
	if st != http.StatusCreated {
		t.Fatalf("create through replica a: %d %s", st, created)
	}
	loc := h.Get("Location")
	st, hb, read := call(b, "GET", loc, "")
	if st != http.StatusOK || hb.Get("ETag") != h.Get("ETag") || !strings.Contains(read, `"status":"syncing"`) {
		t.Fatalf("read through replica b: %d ETag %q (a said %q) %s", st, hb.Get("ETag"), h.Get("ETag"), read)
	}

	// No agent answers: the group fails at its deadline, and one replica's
	// sweeper stores it (the status counts, unlike reads, say only what
	// is stored).
	holder := func() string {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var h string
		err = conn.QueryRow(ctx, `SELECT holder FROM leases WHERE name = 'sweeper' AND expires_at > clock_timestamp()`).Scan(&h)
		if err == pgx.ErrNoRows {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	swept := func(m *Main, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			counts, err := m.Store.CountByStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if counts[cp.KindSecurityGroup][cp.StatusFailed] == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d groups failed after 30 s, want %d: %v", counts[cp.KindSecurityGroup][cp.StatusFailed], n, counts)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	swept(b, 1)
	first := holder()
	if first != "replica-a" && first != "replica-b" {
		t.Fatalf("sweeper lease held by %q, want one of the replicas", first)
	}

	// The holder stops; the other takes the lease over and sweeps the next
	// write's group.
	rest := b
	if first == "replica-a" {
		a.Close()
	} else {
		b.Close()
		rest = a
	}
	if st, _, body := call(rest, "POST", "/vpc/security-groups", strings.Replace(group, "Web", "Web 2", 1)); st != http.StatusCreated {
		t.Fatalf("create through the remaining replica: %d %s", st, body)
	}
	swept(rest, 2)
	if got := holder(); got == first || got == "" {
		t.Errorf("after %s stopped the sweeper lease is held by %q", first, got)
	}
}

// TestStoreURLChecked: a --store-url that is not PostgreSQL's is refused
// at start with what would be valid, and no error or log line shows its
// password.
func TestStoreURLChecked(t *testing.T) {
	for _, u := range []string{"mysql://rampart:s3cret@db/rampart", "postgres://rampart:s3cret@/rampart", "db.example:5432"} {
		m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), StoreURL: u, MQTTListen: "127.0.0.1:0", JWTOrgClaim: "org_id"},
			Logger: slog.New(slog.DiscardHandler)}
		err := m.Start(context.Background())
		if err == nil {
			m.Close()
			t.Errorf("--store-url %s accepted", u)
			continue
		}
		if !strings.Contains(err.Error(), "want a PostgreSQL URL such as postgres://") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("--store-url %s: %v", u, err)
		}
	}
	if got := storeName(Config{StoreURL: "postgres://rampart:s3cret@db:5432/rampart"}); strings.Contains(got, "s3cret") || !strings.Contains(got, "db:5432") {
		t.Errorf("store name %q", got)
	}
}

// TestReplicasRefuseAnotherKey: the first control plane on a database
// records its key's fingerprint; a second with the same rampart.key
// starts; one with another key is refused at start with an error naming
// its key file and saying what to do, and serves nothing.
func TestReplicasRefuseAnotherKey(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	cfg := func(id, dir string) *Main {
		return &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, StoreURL: dsn, ReplicaID: id,
			JWTOrgClaim: "org_id", MQTTListen: "127.0.0.1:0", MQTTSListen: "127.0.0.1:0", LogLevel: "info"},
			Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), SweepInterval: 50 * time.Millisecond}
	}
	dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
	a := cfg("replica-a", dirA)
	if err := a.Start(ctx); err != nil {
		t.Fatalf("start replica a: %v", err)
	}
	defer a.Close()
	copyKey(t, dirA, dirB)
	b := cfg("replica-b", dirB)
	if err := b.Start(ctx); err != nil {
		t.Fatalf("start replica b with a's key: %v", err)
	}
	defer b.Close()

	// c has no key file: it creates its own, which the database refuses.
	c := cfg("replica-c", dirC)
	err := c.Start(ctx)
	if err == nil {
		c.Close()
		t.Fatal("replica c with another key started")
	}
	var mismatch *postgres.KeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("replica c: %v; want a *postgres.KeyMismatchError", err)
	}
	for _, want := range []string{filepath.Join(dirC, keys.KeyFile), "needs the same rampart.key", "copy rampart.key from a running control plane's --data-dir into " + dirC} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("replica c's error %q does not say %q", err, want)
		}
	}
	if c.Addr != nil {
		t.Errorf("replica c listens on %s", c.Addr)
	}
	// With a's key copied in, c starts.
	copyKey(t, dirA, dirC)
	c = cfg("replica-c", dirC)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start replica c with a's key: %v", err)
	}
	c.Close()
}

// copyKey copies the control plane's key from one data directory into
// another, as an operator starting a replica does.
func copyKey(tb testing.TB, fromDir, toDir string) {
	tb.Helper()
	key, err := os.ReadFile(filepath.Join(fromDir, keys.KeyFile))
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(toDir, keys.KeyFile), key, 0o600); err != nil {
		tb.Fatal(err)
	}
}
