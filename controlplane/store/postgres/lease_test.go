package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/rampart-fw/rampart/internal/pgtest"
	"github.com/rampart-fw/rampart/internal/wait"
)

// TestLeaseSequence walks the lease through its states on one database,
// two replicas (each its own pool, as two processes would be).
func TestLeaseSequence(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := context.Background()
	const name, hour = "sweeper", time.Hour

	la, err := a.AcquireLease(ctx, name, "replica-a", hour)
	if err != nil || la.Token != 1 {
		t.Fatalf("a acquires a free lease: %+v, %v; want token 1", la, err)
	}
	_, err = b.AcquireLease(ctx, name, "replica-b", hour)
	var held *LeaseHeldError
	if !errors.Is(err, ErrLeaseHeld) || !errors.As(err, &held) || held.Holder != "replica-a" || !held.Expires.Equal(la.Expires) {
		t.Fatalf("b acquires a's lease: %v; want ErrLeaseHeld naming replica-a until %s", err, la.Expires)
	}
	again, err := a.AcquireLease(ctx, name, "replica-a", hour)
	if err != nil || again.Token != la.Token || again.Expires.Before(la.Expires) {
		t.Fatalf("a acquires its own lease again: %+v, %v; want it extended under token %d", again, err, la.Token)
	}
	renewed, err := a.RenewLease(ctx, again, hour)
	if err != nil || renewed.Token != la.Token || renewed.Expires.Before(again.Expires) || renewed.ValidUntil.Before(again.ValidUntil) {
		t.Fatalf("a renews: %+v, %v", renewed, err)
	}
	if _, err := b.RenewLease(ctx, Lease{Name: name, Holder: "replica-b", Token: la.Token}, hour); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("b renews a lease it never held: %v; want ErrLeaseLost", err)
	}
	if err := b.ReleaseLease(ctx, Lease{Name: name, Holder: "replica-b", Token: la.Token}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("b releases a's lease: %v; want ErrLeaseLost", err)
	}
	if err := a.ReleaseLease(ctx, renewed); err != nil {
		t.Fatalf("a releases: %v", err)
	}
	if _, err := a.RenewLease(ctx, renewed, hour); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a renews after releasing: %v; want ErrLeaseLost", err)
	}
	lb, err := b.AcquireLease(ctx, name, "replica-b", hour)
	if err != nil || lb.Token != 2 {
		t.Fatalf("b acquires the released lease: %+v, %v; want token 2", lb, err)
	}
	if err := a.ReleaseLease(ctx, renewed); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a releases again, now b's: %v; want ErrLeaseLost", err)
	}

	// Expiry, without release: b lets a short lease lapse; a takes it when
	// the database's clock passes the expiry, and b's renewal then fails.
	other, err := b.AcquireLease(ctx, "other", "replica-b", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var la2 Lease
	wait.Until(t, 10*time.Second, "a acquires b's expired lease", func() string {
		la2, err = a.AcquireLease(ctx, "other", "replica-a", hour)
		if err != nil {
			return err.Error()
		}
		return ""
	})
	if la2.Token != other.Token+1 {
		t.Errorf("token after expiry %d; want %d", la2.Token, other.Token+1)
	}
	if _, err := b.RenewLease(ctx, other, hour); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("b renews its expired lease: %v; want ErrLeaseLost", err)
	}
	// Leases are independent of each other: "sweeper" is still b's.
	if _, err := a.AcquireLease(ctx, name, "replica-a", hour); !errors.Is(err, ErrLeaseHeld) {
		t.Errorf("a acquires sweeper while b holds it: %v; want ErrLeaseHeld", err)
	}
}

// TestLeaseSameHolderAfterExpiry: a holder that lets its lease expire and
// acquires it again gets a new token (its continuity broke).
func TestLeaseSameHolderAfterExpiry(t *testing.T) {
	db := open(t, pgtest.DSN(t))
	ctx := context.Background()
	l, err := db.AcquireLease(ctx, "sweeper", "replica-a", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the lease expires on the database's clock", func() bool {
		var expired bool
		err := db.pool.QueryRow(ctx, `SELECT expires_at <= clock_timestamp() FROM leases WHERE name = 'sweeper'`).Scan(&expired)
		return err == nil && expired
	})
	if _, err := db.RenewLease(ctx, l, time.Hour); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew after expiry: %v; want ErrLeaseLost", err)
	}
	l2, err := db.AcquireLease(ctx, "sweeper", "replica-a", time.Hour)
	if err != nil || l2.Token != l.Token+1 {
		t.Errorf("re-acquire after expiry: %+v, %v; want token %d", l2, err, l.Token+1)
	}
}

func TestLeaseBadArguments(t *testing.T) {
	db := open(t, pgtest.DSN(t))
	ctx := context.Background()
	for _, tc := range []struct {
		name, lease, holder string
		ttl                 time.Duration
	}{
		{"no name", "", "a", time.Second},
		{"no holder", "sweeper", "", time.Second},
		{"ttl too short", "sweeper", "a", time.Microsecond},
	} {
		if _, err := db.AcquireLease(ctx, tc.lease, tc.holder, tc.ttl); err == nil || errors.Is(err, ErrLeaseHeld) {
			t.Errorf("%s: acquire: %v; want an argument error", tc.name, err)
		}
	}
}

// TestLeaseExclusiveUnderContention: replicas (each its own pool) race for
// one lease with short TTLs, renewing, releasing and letting it lapse at
// random. Every time a replica believed it held the lease (from the
// answer to its acquire or renew until ValidUntil) is recorded; no two such
// intervals of different tokens may overlap, and tokens must follow the
// order of the intervals. This is the sweeper's guarantee: one replica at a
// time, whatever the interleaving.
func TestLeaseExclusiveUnderContention(t *testing.T) {
	dsn := pgtest.DSN(t)
	const replicas, ttl = 6, 150 * time.Millisecond
	run := 3 * time.Second
	if testing.Short() {
		run = time.Second
	}
	type held struct {
		holder     string
		token      int64
		from, till time.Time
	}
	var mu sync.Mutex
	var intervals []held
	record := func(l Lease, from, till time.Time) {
		mu.Lock()
		defer mu.Unlock()
		intervals = append(intervals, held{l.Holder, l.Token, from, till})
	}
	ctx := context.Background()
	end := time.Now().Add(run)
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for i := range replicas {
		db := open(t, dsn)
		holder := fmt.Sprintf("replica-%d", i)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for time.Now().Before(end) {
				l, err := db.AcquireLease(ctx, "sweeper", holder, ttl)
				if errors.Is(err, ErrLeaseHeld) {
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				record(l, time.Now(), l.ValidUntil)
				// Hold for a few renewals, then release or let it lapse.
				for range rng.IntN(4) {
					time.Sleep(ttl / 3)
					if l, err = db.RenewLease(ctx, l, ttl); err != nil {
						break
					}
					record(l, time.Now(), l.ValidUntil)
				}
				if err == nil && rng.IntN(2) == 0 {
					// The holder stops acting, then releases.
					stop := time.Now()
					record(l, stop, stop)
					if err := db.ReleaseLease(ctx, l); err != nil && !errors.Is(err, ErrLeaseLost) {
						errs <- err
						return
					}
				} else {
					time.Sleep(ttl + time.Duration(rng.IntN(50))*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Merge each token's intervals: one holding, from its first answer to
	// its last ValidUntil, or to its release if released before.
	byToken := map[int64]held{}
	for _, h := range intervals {
		cur, ok := byToken[h.token]
		switch {
		case !ok:
			byToken[h.token] = h
		case cur.holder != h.holder:
			t.Fatalf("token %d held by %s and %s", h.token, cur.holder, h.holder)
		case h.from.Equal(h.till): // released
			cur.till = h.till
			byToken[h.token] = cur
		default:
			cur.from = minTime(cur.from, h.from)
			cur.till = maxTime(cur.till, h.till)
			byToken[h.token] = cur
		}
	}
	var all []held
	for _, h := range byToken {
		all = append(all, h)
	}
	slices.SortFunc(all, func(a, b held) int { return a.from.Compare(b.from) })
	holders := map[string]bool{}
	for i, h := range all {
		holders[h.holder] = true
		if i == 0 {
			continue
		}
		prev := all[i-1]
		if h.token <= prev.token {
			t.Errorf("token %d (%s) held after token %d (%s): tokens must grow", h.token, h.holder, prev.token, prev.holder)
		}
		if h.from.Before(prev.till) {
			t.Errorf("%s held token %d from %s while %s held token %d until %s",
				h.holder, h.token, h.from.Format("15:04:05.000000"), prev.holder, prev.token, prev.till.Format("15:04:05.000000"))
		}
	}
	// The test proves something only if the lease changed hands often.
	if len(all) < 5 || len(holders) < 2 {
		t.Errorf("%d holdings by %d replicas; want several by several", len(all), len(holders))
	}
	t.Logf("%d holdings by %d replicas in %s", len(all), len(holders), run)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestWithLeaseFencesTakeover: a holder's transaction under the lease that
// runs past the expiry still commits before another replica can take the
// lease (the other's acquire waits for it), and a holder whose lease is
// gone cannot write under it.
func TestWithLeaseFencesTakeover(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := context.Background()
	if _, err := a.pool.Exec(ctx, `CREATE TABLE swept (token bigint, at timestamptz DEFAULT clock_timestamp())`); err != nil {
		t.Fatal(err)
	}
	const ttl = 300 * time.Millisecond
	la, err := a.AcquireLease(ctx, "sweeper", "replica-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	inTx := make(chan struct{})
	var acquired time.Time
	var lb Lease
	acquireErr := make(chan error, 1)
	go func() {
		<-inTx
		// Retry until the lease is free: it expires while a's transaction
		// still runs, and the acquire that sees that must wait for it.
		for {
			l, err := b.AcquireLease(ctx, "sweeper", "replica-b", time.Hour)
			if errors.Is(err, ErrLeaseHeld) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			lb, acquired = l, time.Now()
			acquireErr <- err
			return
		}
	}()
	var committedBy time.Time
	err = a.WithLease(ctx, la, func(ctx context.Context, tx pgx.Tx) error {
		close(inTx)
		// Outlive the lease inside the transaction, then write.
		if _, err := tx.Exec(ctx, `SELECT pg_sleep($1::float8)`, (2 * ttl).Seconds()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO swept (token) VALUES ($1)`, la.Token)
		committedBy = time.Now()
		return err
	})
	if err != nil {
		t.Fatalf("a writes under its lease: %v", err)
	}
	if err := <-acquireErr; err != nil {
		t.Fatalf("b acquires: %v", err)
	}
	if lb.Token != la.Token+1 {
		t.Errorf("b's token %d; want %d", lb.Token, la.Token+1)
	}
	if acquired.Before(committedBy) {
		t.Errorf("b acquired at %s, before a's write under the lease finished at %s", acquired.Format(time.StampMicro), committedBy.Format(time.StampMicro))
	}
	// a's lease is gone now: nothing it tries under it runs.
	called := false
	err = a.WithLease(ctx, la, func(context.Context, pgx.Tx) error { called = true; return nil })
	if !errors.Is(err, ErrLeaseLost) || called {
		t.Errorf("a writes under a lost lease: %v (fn called: %v); want ErrLeaseLost without a call", err, called)
	}
	// b's writes come after a's, in the database's own order.
	if err := b.WithLease(ctx, lb, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO swept (token) VALUES ($1)`, lb.Token)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rows, err := a.pool.Query(ctx, `SELECT token FROM swept ORDER BY at`)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]int64{la.Token, lb.Token}, tokens); d != "" {
		t.Errorf("writes in commit order (-want +got):\n%s", d)
	}
}

// TestLeadOneAtATimeAndTakeover: three replicas Lead the same duty, each
// run of which records its token through WithLease. The leader stops
// cleanly (another takes over without waiting for the expiry), then the
// next one dies without a word (its connections closed: another takes
// over once the lease expires). Throughout, the recorded tokens never go
// back (no run of an older holder after a newer one) and each token is
// one replica's.
func TestLeadOneAtATimeAndTakeover(t *testing.T) {
	dsn := pgtest.DSN(t)
	const ttl, interval = 600 * time.Millisecond, 50 * time.Millisecond
	setup := open(t, dsn)
	ctx := context.Background()
	if _, err := setup.pool.Exec(ctx, `CREATE TABLE runs (id bigserial PRIMARY KEY, holder text, token bigint)`); err != nil {
		t.Fatal(err)
	}
	type replica struct {
		db     *DB
		cancel context.CancelFunc
		done   chan struct{}
	}
	replicas := map[string]*replica{}
	var errsMu sync.Mutex
	errs := map[string][]error{}
	for i := range 3 {
		holder := fmt.Sprintf("replica-%d", i)
		db, err := Open(ctx, dsn) // closed by the test, as a death
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &replica{db: db, cancel: cancel, done: make(chan struct{})}
		replicas[holder] = r
		go func() {
			defer close(r.done)
			db.Lead(rctx, "sweeper", holder, ttl, interval, func(ctx context.Context, l Lease) error {
				return db.WithLease(ctx, l, func(ctx context.Context, tx pgx.Tx) error {
					_, err := tx.Exec(ctx, `INSERT INTO runs (holder, token) VALUES ($1, $2)`, l.Holder, l.Token)
					return err
				})
			}, func(err error) {
				if errors.Is(err, ErrLeaseLost) {
					return // the leader's own view ends at ValidUntil; not a failure
				}
				errsMu.Lock()
				errs[holder] = append(errs[holder], err)
				errsMu.Unlock()
			})
		}()
	}
	t.Cleanup(func() {
		for _, r := range replicas {
			r.cancel()
			<-r.done
			r.db.Close()
		}
	})
	// last returns the holder of the latest run and how many runs there are.
	last := func() (string, int) {
		var holder string
		var n int
		setup.pool.QueryRow(ctx, `SELECT coalesce((SELECT holder FROM runs ORDER BY id DESC LIMIT 1), ''), (SELECT count(*) FROM runs)`).Scan(&holder, &n)
		return holder, n
	}
	var first string
	wait.For(t, 20*time.Second, "a leader runs the duty a few times", func() bool {
		var n int
		first, n = last()
		return n >= 3
	})

	// Clean stop: release, and another replica takes over without the TTL.
	stopped := time.Now()
	replicas[first].cancel()
	<-replicas[first].done
	var second string
	wait.Until(t, 20*time.Second, "another replica takes over after a clean stop", func() string {
		second, _ = last()
		if second == first || second == "" {
			return "latest run by " + second
		}
		return ""
	})
	t.Logf("after %s stopped, %s ran the duty %s later (TTL %s)", first, second, time.Since(stopped).Round(time.Millisecond), ttl)

	// Death: the leader's connections close under it, so it cannot
	// release; only then is its loop stopped.
	died := time.Now()
	replicas[second].db.Close()
	replicas[second].cancel()
	<-replicas[second].done
	var third string
	wait.Until(t, 20*time.Second, "the last replica takes over after a death", func() string {
		third, _ = last()
		if third == second || third == first {
			return "latest run by " + third
		}
		return ""
	})
	t.Logf("after %s died, %s ran the duty %s later (TTL %s)", second, third, time.Since(died).Round(time.Millisecond), ttl)

	rows, err := setup.pool.Query(ctx, `SELECT holder, token FROM runs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type run struct {
		Holder string
		Token  int64
	}
	runs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[run])
	if err != nil {
		t.Fatal(err)
	}
	owner := map[int64]string{}
	for i, r := range runs {
		if o, ok := owner[r.Token]; ok && o != r.Holder {
			t.Errorf("token %d used by %s and %s", r.Token, o, r.Holder)
		}
		owner[r.Token] = r.Holder
		if i > 0 && r.Token < runs[i-1].Token {
			t.Errorf("run %d by %s under token %d after a run under token %d", i, r.Holder, r.Token, runs[i-1].Token)
		}
	}
	errsMu.Lock()
	defer errsMu.Unlock()
	for holder, es := range errs {
		// The dead replica's own errors (its pool closed) are expected.
		if holder != second {
			t.Errorf("Lead of %s reported: %v", holder, es)
		}
	}
}
