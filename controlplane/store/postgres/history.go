package postgres

import (
	"context"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file persists each site's state history (controlplane.TransitionOf,
// site_history in migrations/0003): siteRow.set keeps the transitions a
// transaction makes, and queueSites, which writes the rows, records them
// and drops what falls out of the newest controlplane.SiteHistoryLimit, in
// the same transaction.

// queueHistory queues on b the transitions of rows and the pruning of
// their sites' histories: one INSERT and one DELETE for all of them. A
// site's transitions are numbered on from its newest stored one; the
// INSERT's snapshot does not see its own rows, so the n-th of one call is
// max + n.
func queueHistory(b *pgx.Batch, rows []*siteRow) {
	var orgs, sites, from, to, errs []string
	var n, desired, applied []int64
	var at []time.Time
	var online []bool
	for _, r := range rows {
		for i, tr := range r.transitions {
			orgs, sites = append(orgs, r.org), append(sites, r.rec.ID)
			n, at = append(n, int64(i+1)), append(at, tr.At)
			from, to = append(from, string(tr.From)), append(to, string(tr.To))
			desired, applied = append(desired, int64(tr.DesiredRevision)), append(applied, int64(tr.AppliedRevision))
			errs, online = append(errs, tr.Error), append(online, tr.Online)
		}
	}
	if len(orgs) == 0 {
		return
	}
	b.Queue(`INSERT INTO site_history (org_id, site_id, seq, at, from_state, to_state, desired_revision, applied_revision, error, online)
		SELECT u.org, u.site,
			coalesce((SELECT max(h.seq) FROM site_history h WHERE h.org_id = u.org AND h.site_id = u.site), 0) + u.n,
			u.at, u.from_state, u.to_state, u.desired, u.applied, u.error, u.online
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bool[])
			AS u(org, site, n, at, from_state, to_state, desired, applied, error, online)`,
		orgs, sites, n, at, from, to, desired, applied, errs, online)
	b.Queue(`DELETE FROM site_history h
		USING (SELECT u.org, u.site, max(m.seq) AS top
			FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) AS x(org, site)) u
			JOIN site_history m ON m.org_id = u.org AND m.site_id = u.site
			GROUP BY u.org, u.site) t
		WHERE h.org_id = t.org AND h.site_id = t.site AND h.seq <= t.top - $3`,
		orgs, sites, int64(cp.SiteHistoryLimit))
}

// SiteHistory answers a page of a site's transitions q selects, newest
// first, and whether more follow; NotFound when the organisation has no
// such site.
func (s *Store) SiteHistory(ctx context.Context, org, site string, q cp.SiteHistoryQuery) ([]cp.SiteTransition, bool, error) {
	before := int64(math.MaxInt64)
	if q.Before != 0 && q.Before <= math.MaxInt64 {
		before = int64(q.Before)
	}
	// One statement, one snapshot: the site's existence and its history.
	rows, err := s.pool.Query(ctx, `SELECT h.seq, h.at, h.from_state, h.to_state, h.desired_revision, h.applied_revision, h.error, h.online
		FROM sites s LEFT JOIN LATERAL (
			SELECT * FROM site_history h WHERE h.org_id = s.org_id AND h.site_id = s.id AND h.seq < $3
			ORDER BY h.seq DESC LIMIT $4) h ON true
		WHERE s.org_id = $1 AND s.id = $2
		ORDER BY h.seq DESC`, org, site, before, queryLimit(q.Limit))
	if err != nil {
		return nil, false, classify("list site history", err)
	}
	defer rows.Close()
	out := []cp.SiteTransition{}
	found, more := false, false
	for rows.Next() {
		found = true
		var seq, desired, applied *int64
		var at *time.Time
		var from, to, errMsg *string
		var online *bool
		if err := rows.Scan(&seq, &at, &from, &to, &desired, &applied, &errMsg, &online); err != nil {
			return nil, false, classify("list site history", err)
		}
		if seq == nil {
			continue // the site, without a transition (LEFT JOIN)
		}
		if len(out) == q.Limit {
			more = true
			break
		}
		out = append(out, cp.SiteTransition{Seq: uint64(*seq), At: at.UTC(), From: cp.SiteState(*from), To: cp.SiteState(*to),
			DesiredRevision: uint64(*desired), AppliedRevision: uint64(*applied), Error: *errMsg, Online: *online})
	}
	if err := rows.Err(); err != nil {
		return nil, false, classify("list site history", err)
	}
	if !found {
		return nil, false, cp.NotFound("site", site)
	}
	return out, more, nil
}
