package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file persists the site state machine (controlplane.FoldStatus,
// FoldPresence, AssignRevision, Settle): a site's record, its newest report
// taken and the Revisioner's bytes are one row of sites, locked FOR UPDATE
// by every transaction that changes it.

// siteKey names a site of an organisation.
type siteKey struct{ org, id string }

// siteRow is a site's row as a transaction holds it.
type siteRow struct {
	org  string
	rec  cp.Site
	last cp.LastReport
	data []byte // the Revisioner's
	// exists says the row is stored (else it is inserted); dirty that it
	// is to be written.
	exists, dirty bool
	// transitions are the changes set made to the record, in order, for
	// the site's history (history.go).
	transitions []cp.SiteTransition
}

// set makes next the row's record, to be written, and keeps the change
// from the record it replaces if it is a transition
// (controlplane.TransitionOf), as store/bolt's storeSite does for each
// write of a record.
func (r *siteRow) set(next cp.Site, now time.Time) {
	if tr, ok := cp.TransitionOf(r.rec, next, now); ok {
		r.transitions = append(r.transitions, tr)
	}
	r.rec, r.dirty = next, true
}

const siteCols = `org_id, id, online, last_seen, desired_revision, applied_revision, state, last_error,
	agent_version, routeros_version, board, sync_deadline, revisioner_data,
	coalesce(report_epoch, ''), coalesce(report_revision, 0), coalesce(report_state, ''), decommission_revision`

func scanSite(row pgx.Row) (*siteRow, error) {
	r := &siteRow{exists: true}
	var lastSeen, deadline *time.Time
	var desired, applied, reportRev, decomRev int64
	var state string
	err := row.Scan(&r.org, &r.rec.ID, &r.rec.Online, &lastSeen, &desired, &applied, &state, &r.rec.LastError,
		&r.rec.AgentVersion, &r.rec.RouterOSVersion, &r.rec.Board, &deadline, &r.data,
		&r.last.Epoch, &reportRev, &r.last.State, &decomRev)
	if err != nil {
		return nil, err
	}
	if lastSeen != nil {
		t := lastSeen.UTC()
		r.rec.LastSeen = &t
	}
	r.rec.DesiredRevision, r.rec.AppliedRevision = uint64(desired), uint64(applied)
	r.rec.State = cp.SiteState(state)
	r.rec.SyncDeadline = timeOf(deadline)
	r.last.Revision = uint64(reportRev)
	r.rec.DecommissionRevision = uint64(decomRev)
	return r, nil
}

// lockSites locks the rows of sites (sorted by organisation and id, the
// order every transaction locks them in) and reads them; a site without a
// row gets a new record (controlplane.NewSite), stored only if marked
// dirty.
func lockSites(ctx context.Context, tx pgx.Tx, keys []siteKey) (map[siteKey]*siteRow, error) {
	slices.SortFunc(keys, func(a, b siteKey) int {
		return cmp.Or(cmp.Compare(a.org, b.org), cmp.Compare(a.id, b.id))
	})
	keys = slices.Compact(keys)
	out := make(map[siteKey]*siteRow, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	orgs, ids := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		orgs[i], ids[i] = k.org, k.id
	}
	rows, err := tx.Query(ctx, `SELECT `+siteCols+` FROM sites
		WHERE (org_id, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
		ORDER BY org_id, id FOR UPDATE`, orgs, ids)
	if err != nil {
		return nil, fmt.Errorf("lock sites: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanSite(rows)
		if err != nil {
			return nil, fmt.Errorf("read site: %w", err)
		}
		r.rec.OrgID = ""
		out[siteKey{r.org, r.rec.ID}] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock sites: %w", err)
	}
	var missingOrgs, missingIDs []string
	for _, k := range keys {
		if out[k] == nil {
			out[k] = &siteRow{org: k.org, rec: cp.NewSite(k.id)}
			missingOrgs, missingIDs = append(missingOrgs, k.org), append(missingIDs, k.id)
		}
	}
	if len(missingIDs) == 0 {
		return out, nil
	}
	// A forgotten site named again goes on with the revisions it had.
	rows, err = tx.Query(ctx, `SELECT org_id, site_id, revisioner_data FROM denied_sites
		WHERE (org_id, site_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, missingOrgs, missingIDs)
	if err != nil {
		return nil, fmt.Errorf("read forgotten sites: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k siteKey
		var data []byte
		if err := rows.Scan(&k.org, &k.id, &data); err != nil {
			return nil, fmt.Errorf("read forgotten sites: %w", err)
		}
		out[k].data = data
	}
	return out, rows.Err()
}

// orgSites is lockSites for sites of one organisation, by id.
func orgSites(ctx context.Context, tx pgx.Tx, org string, ids []string) (map[string]*siteRow, error) {
	keys := make([]siteKey, len(ids))
	for i, id := range ids {
		keys[i] = siteKey{org, id}
	}
	locked, err := lockSites(ctx, tx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*siteRow, len(locked))
	for k, r := range locked {
		out[k.id] = r
	}
	return out, nil
}

// storeSites writes the dirty rows of rows (queueSites).
func storeSites(ctx context.Context, tx pgx.Tx, rows []*siteRow) error {
	b := &pgx.Batch{}
	queueSites(b, rows)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store sites: %w", err)
	}
	return nil
}

// queueSites queues on b the writes of the dirty rows of rows: an UPDATE
// of the stored ones and an INSERT of the new ones, one statement each.
// revised_at moves when a site's desired revision grows (Unpublished). A
// new site that another transaction inserted meanwhile makes the
// transaction start over (errRetry), with that row locked.
func queueSites(b *pgx.Batch, rows []*siteRow) {
	var upd, ins siteColumns
	for _, r := range rows {
		if !r.dirty {
			continue
		}
		if r.exists {
			upd.add(r)
		} else {
			ins.add(r)
		}
	}
	if len(upd.ids) > 0 {
		b.Queue(`UPDATE sites SET online = u.online, last_seen = u.last_seen,
			revised_at = CASE WHEN u.desired > sites.desired_revision THEN now() ELSE sites.revised_at END,
			desired_revision = u.desired, applied_revision = u.applied, state = u.state, last_error = u.last_error,
			agent_version = u.agent, routeros_version = u.routeros, board = u.board, sync_deadline = u.deadline,
			revisioner_data = u.data, report_epoch = u.repoch, report_revision = u.rrev, report_state = u.rstate,
			decommission_revision = u.decom
			FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[], $5::bigint[], $6::bigint[], $7::text[], $8::text[],
				$9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::bytea[], $14::text[], $15::bigint[], $16::text[], $17::bigint[])
				AS u(org, id, online, last_seen, desired, applied, state, last_error, agent, routeros, board, deadline, data, repoch, rrev, rstate, decom)
			WHERE sites.org_id = u.org AND sites.id = u.id`, upd.args()...)
	}
	if len(ins.ids) > 0 {
		n := int64(len(ins.ids))
		b.Queue(`INSERT INTO sites (org_id, id, online, last_seen, desired_revision, applied_revision, state, last_error,
				agent_version, routeros_version, board, sync_deadline, revisioner_data, report_epoch, report_revision, report_state,
				decommission_revision, revised_at)
			SELECT u.*, CASE WHEN u.desired > 0 THEN now() END
			FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[], $5::bigint[], $6::bigint[], $7::text[], $8::text[],
				$9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::bytea[], $14::text[], $15::bigint[], $16::text[], $17::bigint[])
				AS u(org, id, online, last_seen, desired, applied, state, last_error, agent, routeros, board, deadline, data, repoch, rrev, rstate, decom)
			ORDER BY u.org, u.id
			ON CONFLICT DO NOTHING`, ins.args()...).Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != n {
				return errRetry
			}
			return nil
		})
	}
	queueHistory(b, rows)
}

// siteColumns are site rows as column arrays, for unnest.
type siteColumns struct {
	orgs, ids                           []string
	online                              []bool
	lastSeen, deadline                  []*time.Time
	desired, applied, rrev              []int64
	state, lastError, agent, ros, board []string
	data                                [][]byte
	repoch, rstate                      []string
	decom                               []int64
}

func (c *siteColumns) add(r *siteRow) {
	c.orgs, c.ids = append(c.orgs, r.org), append(c.ids, r.rec.ID)
	c.online = append(c.online, r.rec.Online)
	c.lastSeen = append(c.lastSeen, r.rec.LastSeen)
	c.desired, c.applied = append(c.desired, int64(r.rec.DesiredRevision)), append(c.applied, int64(r.rec.AppliedRevision))
	c.state, c.lastError = append(c.state, string(r.rec.State)), append(c.lastError, r.rec.LastError)
	c.agent, c.ros, c.board = append(c.agent, r.rec.AgentVersion), append(c.ros, r.rec.RouterOSVersion), append(c.board, r.rec.Board)
	c.deadline = append(c.deadline, timePtr(r.rec.SyncDeadline))
	c.data = append(c.data, r.data)
	c.repoch, c.rrev, c.rstate = append(c.repoch, r.last.Epoch), append(c.rrev, int64(r.last.Revision)), append(c.rstate, r.last.State)
	c.decom = append(c.decom, int64(r.rec.DecommissionRevision))
}

func (c *siteColumns) args() []any {
	return []any{c.orgs, c.ids, c.online, c.lastSeen, c.desired, c.applied, c.state, c.lastError,
		c.agent, c.ros, c.board, c.deadline, c.data, c.repoch, c.rrev, c.rstate, c.decom}
}

// Ingest folds reports, in order, into the store in one transaction, and
// returns what it did with each (presence is always taken). The rules are
// controlplane.FoldStatus and FoldPresence, and SyncState.Confirm for every
// group and prefix list a taken report confirms; see store/bolt's Ingest
// for what they decide.
//
// Every replica may ingest every report: the sites' rows are locked, so
// the second copy of a report finds the first taken and is stale. The
// sites are locked first, then the sync states their reports confirm,
// each read and written once per call however many of its sites report.
func (s *Store) Ingest(ctx context.Context, reports []cp.Report) ([]cp.ReportResult, error) {
	results := make([]cp.ReportResult, len(reports))
	// Organisations with a site the batch would create: their site count
	// must not change between counting and inserting, so their rows are
	// locked, first, as a policy write locks them (the lock order). Found
	// only once the sites are locked: the transaction then starts over
	// with them, which costs nothing to the batches of known sites.
	lockFirst := map[string]bool{}
	err := s.write(ctx, "ingest site reports", func(tx pgx.Tx) error {
		keys := make([]siteKey, 0, len(reports))
		orgs := map[string]bool{}
		for _, r := range reports {
			keys = append(keys, siteKey{r.OrgID, r.SiteID})
			orgs[r.OrgID] = true
		}
		if err := knowOrgs(ctx, tx, sortedKeys(orgs)); err != nil {
			return err
		}
		for _, org := range sortedKeys(lockFirst) {
			if err := lockOrg(ctx, tx, org); err != nil {
				return err
			}
		}
		denied, err := deniedOf(ctx, tx, keys)
		if err != nil {
			return err
		}
		sites, err := lockSites(ctx, tx, keys)
		if err != nil {
			return err
		}
		again := false
		for k, row := range sites {
			if !row.exists && !denied[k] && !lockFirst[k.org] {
				lockFirst[k.org], again = true, true
			}
		}
		if again {
			return errRetry
		}
		counts, err := siteCounts(ctx, tx, sortedKeys(lockFirst))
		if err != nil {
			return err
		}
		q := s.opts.Quotas.WithDefaults()
		now := s.opts.Now()
		var confirms []confirmation
		for i, r := range reports {
			k := siteKey{r.OrgID, r.SiteID}
			if denied[k] {
				results[i] = cp.ReportDecommissioned // forgotten: nothing it says is taken
				continue
			}
			row := sites[k]
			isNew := !row.exists && !row.dirty
			if isNew && q.CheckSites(counts[k.org], 1) != nil {
				results[i] = cp.ReportOverQuota
				continue
			}
			switch {
			case r.Status != nil:
				out := cp.FoldStatus(row.rec, row.last, *r.Status, s.siteRules(), now)
				results[i] = out.Result
				if out.Result == cp.ReportRefused {
					continue
				}
				row.last = out.Last
				row.set(out.Site, now)
				if out.Confirm {
					confirms = append(confirms, confirmation{site: siteKey{r.OrgID, r.SiteID}, revision: out.Revision, applied: out.Applied, errMsg: out.Error})
				}
			case r.Presence != nil:
				results[i] = cp.ReportTaken
				row.set(cp.FoldPresence(row.rec, row.last, *r.Presence, s.epoch, now), now)
			}
			if isNew && row.dirty {
				counts[k.org]++
			}
		}
		if err := confirm(ctx, tx, confirms); err != nil {
			return err
		}
		return storeSites(ctx, tx, rowsOf(sites))
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// siteCounts counts the sites of orgs.
func siteCounts(ctx context.Context, tx pgx.Tx, orgs []string) (map[string]int, error) {
	out := map[string]int{}
	if len(orgs) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT org_id, count(*) FROM sites WHERE org_id = ANY($1) GROUP BY org_id`, orgs)
	if err != nil {
		return nil, fmt.Errorf("count sites: %w", err)
	}
	var org string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&org, &n}, func() error {
		out[org] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count sites: %w", err)
	}
	return out, nil
}

// deniedOf are the sites of keys that were decommissioned and forgotten.
func deniedOf(ctx context.Context, tx pgx.Tx, keys []siteKey) (map[siteKey]bool, error) {
	orgs, ids := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		orgs[i], ids[i] = k.org, k.id
	}
	rows, err := tx.Query(ctx, `SELECT org_id, site_id FROM denied_sites
		WHERE (org_id, site_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, orgs, ids)
	if err != nil {
		return nil, fmt.Errorf("read decommissioned sites: %w", err)
	}
	out := map[siteKey]bool{}
	var k siteKey
	_, err = pgx.ForEachRow(rows, []any{&k.org, &k.id}, func() error {
		out[k] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read decommissioned sites: %w", err)
	}
	return out, nil
}

func rowsOf[K comparable](m map[K]*siteRow) []*siteRow {
	out := make([]*siteRow, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	return out
}

// confirmation is a site's report that every resource awaiting the site
// folds in (SyncState.Confirm), or, with forget, the site forgotten
// (SyncState.Forget).
type confirmation struct {
	site     siteKey
	revision uint64
	applied  bool
	errMsg   string
	forget   bool
}

// confirm folds confirmations, in order, into the sync states that await
// their sites. The sites' rows are locked by the caller, so no write can
// start a sync awaiting them meanwhile; the sync states are locked here,
// after the sites.
func confirm(ctx context.Context, tx pgx.Tx, cs []confirmation) error {
	if len(cs) == 0 {
		return nil
	}
	var orgs, ids []string
	for _, c := range cs {
		orgs, ids = append(orgs, c.site.org), append(ids, c.site.id)
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT org_id, kind, resource_id FROM sync_awaiting
		WHERE (org_id, site_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, orgs, ids)
	if err != nil {
		return fmt.Errorf("find resources awaiting sites: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (resKey, error) {
		var k resKey
		return k, r.Scan(&k.org, &k.kind, &k.id)
	})
	if err != nil {
		return fmt.Errorf("find resources awaiting sites: %w", err)
	}
	locked, err := lockSyncs(ctx, tx, keys)
	if err != nil {
		return err
	}
	byOrg := map[string][]*lockedSync{}
	for _, e := range locked {
		byOrg[e.k.org] = append(byOrg[e.k.org], e)
	}
	for _, c := range cs {
		for _, e := range byOrg[c.site.org] {
			if c.forget {
				e.cur.Forget(c.site.id)
			} else {
				e.cur.Confirm(c.site.id, c.revision, c.applied, c.errMsg)
			}
		}
	}
	return flushSyncs(ctx, tx, locked)
}

// Settle confirms, for each of sites, every group and prefix list waiting
// for a revision the site has already applied, and sets each site's state
// from its revisions (controlplane.StandingRevision, Settle; store/bolt's
// Settle says why). Sites without a record are skipped.
func (s *Store) Settle(ctx context.Context, org string, sites []string) error {
	return s.write(ctx, "settle confirmed sites", func(tx pgx.Tx) error {
		rows, err := orgSites(ctx, tx, org, sites)
		if err != nil {
			return err
		}
		now := s.opts.Now()
		deadline := now.Add(s.opts.SyncTimeout)
		var confirms []confirmation
		for _, id := range sites {
			row := rows[id]
			if row == nil || !row.exists {
				continue
			}
			rev, ok := cp.StandingRevision(row.rec, row.last)
			if !ok && row.rec.AppliedRevision != cp.UnknownRevision {
				continue
			}
			if ok {
				confirms = append(confirms, confirmation{site: siteKey{org, id}, revision: rev, applied: true})
			}
			if next, changed := cp.Settle(row.rec, deadline); changed {
				row.set(next, now)
			}
		}
		if err := confirm(ctx, tx, confirms); err != nil {
			return err
		}
		return storeSites(ctx, tx, rowsOf(rows))
	})
}

// ReserveSite makes site known to the organisation (state unknown) if it
// is not yet, within the site quota, under the organisation's lock. A
// site being decommissioned is refused (controlplane.CheckAttach); a
// decommissioned one is enrolled again: its credentials are no longer
// refused, and it goes on with the revisions it had (Reenrolled).
func (s *Store) ReserveSite(ctx context.Context, org, site string) error {
	var state *string
	var denied bool
	if err := s.pool.QueryRow(ctx, `SELECT (SELECT state FROM sites WHERE org_id = $1 AND id = $2),
		EXISTS (SELECT 1 FROM denied_sites WHERE org_id = $1 AND site_id = $2)`, org, site).Scan(&state, &denied); err != nil {
		return classify("reserve site", err)
	}
	if state != nil && !denied {
		return cp.CheckAttach(site, cp.SiteState(*state))
	}
	return s.write(ctx, "reserve site", func(tx pgx.Tx) error {
		if err := lockOrg(ctx, tx, org); err != nil {
			return err
		}
		was, data, err := undeny(ctx, tx, org, site)
		if err != nil {
			return err
		}
		rows, err := orgSites(ctx, tx, org, []string{site})
		if err != nil {
			return err
		}
		r := rows[site]
		if r.exists {
			return cp.CheckAttach(site, r.rec.State)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM sites WHERE org_id = $1`, org).Scan(&have); err != nil {
			return fmt.Errorf("count sites: %w", err)
		}
		if err := s.opts.Quotas.WithDefaults().CheckSites(have, 1); err != nil {
			return err
		}
		if was != nil {
			r.rec, r.data = cp.Reenrolled(*was), data
		}
		r.dirty = true
		return storeSites(ctx, tx, []*siteRow{r})
	})
}

// GetSite returns one site as a client sees it now.
func (s *Store) GetSite(ctx context.Context, org, id string) (cp.Site, error) {
	r, err := scanSite(s.pool.QueryRow(ctx, `SELECT `+siteCols+` FROM sites WHERE org_id = $1 AND id = $2`, org, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return cp.Site{}, cp.NotFound("site", id)
	}
	if err != nil {
		return cp.Site{}, classify("get site", err)
	}
	return siteView(r, s.opts.Now()), nil
}

func siteView(r *siteRow, now time.Time) cp.Site {
	site := r.rec
	site.OrgID = r.org
	return site.At(now)
}

// ListSites returns every site of the organisation, ordered by id.
func (s *Store) ListSites(ctx context.Context, org string) ([]cp.Site, error) {
	sites, _, err := s.ListSitesPage(ctx, org, "", math.MaxInt)
	return sites, err
}

// ListSitesPage returns at most limit sites of the organisation ordered by
// id, starting after the site id after ("" for the first page), and
// whether more follow.
func (s *Store) ListSitesPage(ctx context.Context, org, after string, limit int) ([]cp.Site, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+siteCols+` FROM sites WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
		org, after, queryLimit(limit))
	if err != nil {
		return nil, false, classify("list sites", err)
	}
	defer rows.Close()
	now := s.opts.Now()
	out := []cp.Site{}
	more := false
	for rows.Next() {
		if len(out) == limit {
			more = true
			break
		}
		r, err := scanSite(rows)
		if err != nil {
			return nil, false, classify("list sites", err)
		}
		out = append(out, siteView(r, now))
	}
	if err := rows.Err(); err != nil {
		return nil, false, classify("list sites", err)
	}
	return out, more, nil
}

// queryLimit is a page's LIMIT: one more row than limit, to tell whether
// more follow.
func queryLimit(limit int) int64 {
	return int64(min(limit, math.MaxInt64-1)) + 1
}

// CountSites returns how many sites are in each state as GET /vpc/sites
// shows them now. Sites are grouped by stored state and sync deadline (a
// write gives all its sites one deadline, so groups are few) and each group
// is read through controlplane.Site.At.
func (s *Store) CountSites(ctx context.Context) (map[cp.SiteState]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT state, CASE WHEN state = 'syncing' THEN sync_deadline END AS d, count(*)
		FROM sites GROUP BY 1, 2`)
	if err != nil {
		return nil, classify("count sites", err)
	}
	defer rows.Close()
	now := s.opts.Now()
	out := map[cp.SiteState]int{}
	for rows.Next() {
		var state string
		var deadline *time.Time
		var n int
		if err := rows.Scan(&state, &deadline, &n); err != nil {
			return nil, classify("count sites", err)
		}
		site := cp.Site{State: cp.SiteState(state), SyncDeadline: timeOf(deadline)}
		out[site.At(now).State] += n
	}
	return out, classify("count sites", rows.Err())
}
