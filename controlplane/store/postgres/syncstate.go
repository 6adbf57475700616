package postgres

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file keeps each resource's controlplane.SyncState: a row of
// sync_states and, for each site it awaits, a row of sync_awaiting.

// resKey names a resource of an organisation.
type resKey struct{ org, kind, id string }

// syncCols are a sync_states row's columns as readSyncRow scans them.
const syncCols = `status, started, deadline, error, version`

// scanSync scans syncCols into st; a missing row (NULL status, from a
// LEFT JOIN) reads active, as a resource without a stored sync does.
func scanSync(status *string, started, deadline *time.Time, errMsg *string, version *int64) cp.SyncState {
	if status == nil {
		return cp.SyncState{Status: cp.StatusActive}
	}
	st := cp.SyncState{Status: cp.Status(*status), Started: timeOf(started), Deadline: timeOf(deadline), Version: uint64(*version)}
	if errMsg != nil {
		st.Error = *errMsg
	}
	return st
}

// writable refuses a write to a resource whose stored sync state is st
// when the stored version is not one pre allows (precondition_failed) or
// while the resource is syncing (resource_locked). The organisation's lock
// is held, so the version checked is the one the write replaces.
func writable(k resKey, st cp.SyncState, now time.Time, pre cp.Precondition) error {
	if err := pre.Check(k.kind, k.id, st.Version); err != nil {
		return err
	}
	if locked, retry := st.Locked(now); locked {
		return cp.Locked(k.kind, k.id, retry)
	}
	return nil
}

// queueSync queues on b the replacement of a resource's sync state and
// the sites it awaits.
func queueSync(b *pgx.Batch, k resKey, st cp.SyncState) {
	sites := sortedKeys(st.Awaiting)
	revs := make([]int64, len(sites))
	for i, site := range sites {
		revs[i] = int64(st.Awaiting[site])
	}
	b.Queue(`INSERT INTO sync_states (org_id, kind, resource_id, status, started, deadline, error, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (org_id, kind, resource_id) DO UPDATE SET status = excluded.status, started = excluded.started,
			deadline = excluded.deadline, error = excluded.error, version = excluded.version`,
		k.org, k.kind, k.id, string(st.Status), timePtr(st.Started), timePtr(st.Deadline), st.Error, int64(st.Version))
	b.Queue(`DELETE FROM sync_awaiting WHERE org_id = $1 AND kind = $2 AND resource_id = $3`, k.org, k.kind, k.id)
	if len(sites) > 0 {
		b.Queue(`INSERT INTO sync_awaiting (org_id, kind, resource_id, site_id, revision)
			SELECT $1, $2, $3, u.site, u.rev FROM unnest($4::text[], $5::bigint[]) AS u(site, rev)`, k.org, k.kind, k.id, sites, revs)
	}
}

// lockedSync is a sync state read under its row's lock, to be updated.
type lockedSync struct {
	k         resKey
	prev, cur cp.SyncState
}

// lockSyncs locks the sync states of keys, in (org, kind, id) order, and
// reads them whole. Resources without one (deleted meanwhile) are left
// out.
func lockSyncs(ctx context.Context, tx pgx.Tx, keys []resKey) (map[resKey]*lockedSync, error) {
	slices.SortFunc(keys, func(a, b resKey) int {
		return cmp.Or(cmp.Compare(a.org, b.org), cmp.Compare(a.kind, b.kind), cmp.Compare(a.id, b.id))
	})
	keys = slices.Compact(keys)
	out := make(map[resKey]*lockedSync, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	orgs, kinds, ids := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		orgs[i], kinds[i], ids[i] = k.org, k.kind, k.id
	}
	rows, err := tx.Query(ctx, `SELECT org_id, kind, resource_id, `+syncCols+` FROM sync_states
		WHERE (org_id, kind, resource_id) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
		ORDER BY org_id, kind, resource_id FOR UPDATE`, orgs, kinds, ids)
	if err != nil {
		return nil, fmt.Errorf("lock sync states: %w", err)
	}
	for rows.Next() {
		var k resKey
		var status, errMsg *string
		var started, deadline *time.Time
		var version *int64
		if err := rows.Scan(&k.org, &k.kind, &k.id, &status, &started, &deadline, &errMsg, &version); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read sync state: %w", err)
		}
		out[k] = &lockedSync{k: k, cur: scanSync(status, started, deadline, errMsg, version)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock sync states: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT org_id, kind, resource_id, site_id, revision FROM sync_awaiting
		WHERE (org_id, kind, resource_id) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`, orgs, kinds, ids)
	if err != nil {
		return nil, fmt.Errorf("read awaited sites: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k resKey
		var site string
		var rev int64
		if err := rows.Scan(&k.org, &k.kind, &k.id, &site, &rev); err != nil {
			return nil, fmt.Errorf("read awaited sites: %w", err)
		}
		if e := out[k]; e != nil {
			if e.cur.Awaiting == nil {
				e.cur.Awaiting = map[string]uint64{}
			}
			e.cur.Awaiting[site] = uint64(rev)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read awaited sites: %w", err)
	}
	for _, e := range out {
		e.prev = e.cur
		e.prev.Awaiting = maps.Clone(e.cur.Awaiting)
	}
	return out, nil
}

// flushSyncs writes the sync states of locked that changed: the domain's
// Confirm and Expire only take sites out of Awaiting, so their rows go.
func flushSyncs(ctx context.Context, tx pgx.Tx, locked map[resKey]*lockedSync) error {
	b := &pgx.Batch{}
	for _, e := range locked {
		if syncEqual(e.prev, e.cur) {
			continue
		}
		k, st := e.k, e.cur
		b.Queue(`UPDATE sync_states SET status = $4, started = $5, deadline = $6, error = $7, version = $8
			WHERE org_id = $1 AND kind = $2 AND resource_id = $3`,
			k.org, k.kind, k.id, string(st.Status), timePtr(st.Started), timePtr(st.Deadline), st.Error, int64(st.Version))
		var gone []string
		for site := range e.prev.Awaiting {
			if _, ok := st.Awaiting[site]; !ok {
				gone = append(gone, site)
			}
		}
		if len(gone) > 0 {
			b.Queue(`DELETE FROM sync_awaiting WHERE org_id = $1 AND kind = $2 AND resource_id = $3 AND site_id = ANY($4)`,
				k.org, k.kind, k.id, gone)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store sync states: %w", err)
	}
	return nil
}

func syncEqual(a, b cp.SyncState) bool {
	return a.Status == b.Status && a.Error == b.Error && a.Started.Equal(b.Started) && a.Deadline.Equal(b.Deadline) &&
		a.Version == b.Version && maps.Equal(a.Awaiting, b.Awaiting)
}

// Sweep fails every sync whose deadline has passed (SyncState.Expire) and
// reports how many it failed. The partial index on syncing deadlines makes
// it cheap when nothing is due. Several replicas may sweep at once without
// harm (the rows are locked, and an expired sync is no longer due);
// RunSweeper runs it on one at a time.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	n := 0
	err := s.write(ctx, "sweep sync deadlines", func(tx pgx.Tx) error {
		var err error
		n, err = s.sweep(ctx, tx)
		return err
	})
	return n, err
}

func (s *Store) sweep(ctx context.Context, tx pgx.Tx) (int, error) {
	now := s.opts.Now()
	rows, err := tx.Query(ctx, `SELECT org_id, kind, resource_id FROM sync_states WHERE status = 'syncing' AND deadline <= $1`, now)
	if err != nil {
		return 0, fmt.Errorf("find due syncs: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (resKey, error) {
		var k resKey
		return k, r.Scan(&k.org, &k.kind, &k.id)
	})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	locked, err := lockSyncs(ctx, tx, keys)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range locked {
		if e.cur.Expire(now) {
			n++
		}
	}
	return n, flushSyncs(ctx, tx, locked)
}

// RunSweeper calls Sweep every interval until ctx ends, on one replica at
// a time: the one holding the lease "sweeper" (Lead), in a transaction
// that holds it (WithLease), so a replica that lost the lease cannot
// sweep after its successor started. Errors go to onErr (may be nil).
func (s *Store) RunSweeper(ctx context.Context, interval time.Duration, onErr func(error)) {
	s.Lead(ctx, "sweeper", s.opts.ReplicaID, s.opts.LeaseTTL, interval, func(ctx context.Context, l Lease) error {
		return classify("sweep sync deadlines", s.WithLease(ctx, l, func(ctx context.Context, tx pgx.Tx) error {
			_, err := s.sweep(ctx, tx)
			return err
		}))
	}, onErr)
}

// CountByStatus counts groups and prefix lists by kind and stored status,
// for metrics.
func (s *Store) CountByStatus(ctx context.Context) (map[string]map[cp.Status]int, error) {
	out := map[string]map[cp.Status]int{cp.KindSecurityGroup: {}, cp.KindPrefixList: {}}
	rows, err := s.pool.Query(ctx, `SELECT kind, status, count(*) FROM sync_states GROUP BY kind, status`)
	if err != nil {
		return nil, classify("count resources by status", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, status string
		var n int
		if err := rows.Scan(&kind, &status, &n); err != nil {
			return nil, classify("count resources by status", err)
		}
		if out[kind] != nil {
			out[kind][cp.Status(status)] = n
		}
	}
	return out, classify("count resources by status", rows.Err())
}
