package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lease is a duty held by one replica until Expires: the sync deadline
// sweeper runs only on the replica holding the lease "sweeper".
//
// Expiry is decided on the database's clock. The holder itself goes by
// ValidUntil instead, which is its own clock when it sent the request plus
// the TTL: the database's expiry is later than that (the request reached
// it afterwards), so a holder that stops by ValidUntil has stopped before
// any other replica can acquire the lease, whatever the replicas' clocks
// say, as long as they tick at the same rate. A holder renews well before
// ValidUntil (at a third of the TTL, say) and stops its duty when a renewal
// fails or ValidUntil passes.
type Lease struct {
	Name   string
	Holder string
	// Token grows by one at every change of holder (and at every
	// re-acquisition after an expiry): writes made under the lease can be
	// fenced by it.
	Token int64
	// Expires is the expiry on the database's clock.
	Expires time.Time
	// ValidUntil is how long the holder may act, on its own clock.
	ValidUntil time.Time
}

// ErrLeaseHeld is returned by AcquireLease while another holder's lease is
// unexpired; errors.As with *LeaseHeldError says whose.
var ErrLeaseHeld = errors.New("lease held by another replica")

// ErrLeaseLost is returned by RenewLease and ReleaseLease when the lease is
// no longer the caller's: it expired (and perhaps another replica took it).
// The caller must stop the duty at once.
var ErrLeaseLost = errors.New("lease lost")

// LeaseHeldError says who holds a lease and until when.
type LeaseHeldError struct {
	Name, Holder string
	Expires      time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("lease %q is held by %q until %s", e.Name, e.Holder, e.Expires.UTC().Format(time.RFC3339Nano))
}

func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

func checkLease(name, holder string, ttl time.Duration) error {
	switch {
	case name == "":
		return errors.New("lease name is empty")
	case holder == "":
		return errors.New("lease holder is empty: give each replica a unique, non-empty id")
	case ttl < time.Millisecond:
		return fmt.Errorf("lease TTL %s is too short: it must be at least 1ms", ttl)
	}
	return nil
}

// AcquireLease takes the lease name for holder for ttl if it is free,
// expired, or already holder's (then it is extended, keeping its token).
// Otherwise it returns a *LeaseHeldError (errors.Is ErrLeaseHeld).
//
// One statement does it: concurrent acquirers of a free lease conflict on
// the row, PostgreSQL re-checks the WHERE on the winner's row for the
// others, and they see it held.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if err := checkLease(name, holder, ttl); err != nil {
		return Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	sent := time.Now()
	l := Lease{Name: name, Holder: holder, ValidUntil: sent.Add(ttl)}
	err := db.pool.QueryRow(ctx, `
		INSERT INTO leases AS l (name, holder, token, acquired_at, expires_at)
		VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET
			token = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
				THEN l.token ELSE l.token + 1 END,
			acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
				THEN l.acquired_at ELSE excluded.acquired_at END,
			holder = excluded.holder,
			expires_at = excluded.expires_at
		WHERE l.expires_at <= clock_timestamp() OR l.holder = excluded.holder
		RETURNING token, expires_at`, name, holder, ttl.Microseconds()).Scan(&l.Token, &l.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		held := &LeaseHeldError{Name: name}
		err := db.pool.QueryRow(ctx, `SELECT holder, expires_at FROM leases WHERE name = $1`, name).Scan(&held.Holder, &held.Expires)
		if err != nil {
			// Released or expired between the two statements: say so
			// rather than name a holder we do not know.
			return Lease{}, fmt.Errorf("acquire lease %q: %w (and then: %v)", name, ErrLeaseHeld, err)
		}
		return Lease{}, fmt.Errorf("acquire lease: %w", held)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	return l, nil
}

// RenewLease extends l for ttl from now. It fails with ErrLeaseLost if l
// expired or changed hands (then the duty must stop), even if no one else
// took it meanwhile: continuity broke, so the holder acquires it anew and
// gets a new token.
func (db *DB) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if err := checkLease(l.Name, l.Holder, ttl); err != nil {
		return Lease{}, fmt.Errorf("renew lease: %w", err)
	}
	sent := time.Now()
	err := db.pool.QueryRow(ctx, `
		UPDATE leases SET expires_at = clock_timestamp() + $4 * interval '1 microsecond'
		WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()
		RETURNING expires_at`, l.Name, l.Holder, l.Token, ttl.Microseconds()).Scan(&l.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, fmt.Errorf("renew lease %q of %q (token %d): %w", l.Name, l.Holder, l.Token, ErrLeaseLost)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("renew lease %q: %w", l.Name, err)
	}
	l.ValidUntil = sent.Add(ttl)
	return l, nil
}

// ReleaseLease gives l up at once, so another replica need not wait for it
// to expire. The row stays (expired) so tokens keep growing. Releasing a
// lease already lost returns ErrLeaseLost and changes nothing.
func (db *DB) ReleaseLease(ctx context.Context, l Lease) error {
	tag, err := db.pool.Exec(ctx, `
		UPDATE leases SET expires_at = clock_timestamp()
		WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()`,
		l.Name, l.Holder, l.Token)
	if err != nil {
		return fmt.Errorf("release lease %q: %w", l.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("release lease %q of %q (token %d): %w", l.Name, l.Holder, l.Token, ErrLeaseLost)
	}
	return nil
}

// WithLease runs fn in a transaction that holds l: it starts by checking,
// on the database's clock, that l is still the holder's and unexpired, and
// locks the lease's row FOR SHARE until the transaction ends. Another
// replica's AcquireLease must update that row, so it waits for the
// transaction and only then sees the lease (by now perhaps expired) and
// takes it: everything fn writes is ordered before any other holder's
// writes, even when fn runs past the expiry, however slow the holder or
// its clock. The sweeper's writes go through here; a lost lease returns
// ErrLeaseLost without calling fn.
func (db *DB) WithLease(ctx context.Context, l Lease, fn func(ctx context.Context, tx pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction under lease %q: %w", l.Name, err)
	}
	defer tx.Rollback(context.Background())
	var one int
	err = tx.QueryRow(ctx, `
		SELECT 1 FROM leases
		WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()
		FOR SHARE`, l.Name, l.Holder, l.Token).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("write under lease %q of %q (token %d): %w", l.Name, l.Holder, l.Token, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("check lease %q: %w", l.Name, err)
	}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit under lease %q: %w", l.Name, err)
	}
	return nil
}

// Lead runs duty on one replica at a time until ctx ends: it keeps trying
// to acquire the lease name for holder and, while it holds it, renews it
// at every tick (the shorter of interval and a third of ttl) and calls duty
// every interval with the current lease
// (duty writes through WithLease, and gets a ctx that ends at the lease's
// ValidUntil). When ctx ends it releases the lease, so another replica
// takes over at once; a replica that dies instead is replaced once its
// lease expires, within ttl plus a third of it. Errors other than the lease
// being held elsewhere go to onErr (nil: dropped), and Lead carries on.
func (db *DB) Lead(ctx context.Context, name, holder string, ttl, interval time.Duration, duty func(ctx context.Context, l Lease) error, onErr func(error)) {
	if onErr == nil {
		onErr = func(error) {}
	}
	tick := min(interval, ttl/3)
	var l Lease
	held := false
	var lastDuty time.Time
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		var err error
		if held {
			l, err = db.RenewLease(ctx, l, ttl)
		} else {
			l, err = db.AcquireLease(ctx, name, holder, ttl)
			lastDuty = time.Time{}
		}
		held = err == nil
		if err != nil && !errors.Is(err, ErrLeaseHeld) && ctx.Err() == nil {
			onErr(err)
		}
		if held && time.Since(lastDuty) >= interval {
			lastDuty = time.Now()
			dctx, cancel := context.WithDeadline(ctx, l.ValidUntil)
			if err := duty(dctx, l); err != nil && ctx.Err() == nil {
				onErr(fmt.Errorf("%s under lease %q: %w", holder, name, err))
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			if held {
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := db.ReleaseLease(rctx, l); err != nil && !errors.Is(err, ErrLeaseLost) {
					onErr(err)
				}
				cancel()
			}
			return
		case <-t.C:
		}
	}
}
