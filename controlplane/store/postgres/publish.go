package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// This file orders publishing across replicas. Replica A may commit a
// site's revision 5 and replica B revision 6 just after; each publishes
// what it committed, and the broker keeps the last retained document it
// received. Publish makes that the newest: a site's publishes are
// serialised on its row of site_published, and a document older than the
// one published is skipped. A replica that dies between commit and publish
// leaves its revision unpublished; Unpublished finds it, and
// RunRepublisher has one replica publish it again.

// Publish calls publish with docs (documents of org's sites, stamped)
// less those whose site already has a newer revision published by any
// replica, while holding the sites' rows of site_published (FOR UPDATE, in
// site order) so no other replica publishes them meanwhile; once publish
// returns without error, their revisions are recorded as published. A
// document of the revision published goes out again (a republish after a
// broker connection restores what a broker lost). The syncer calls it
// through its PublishFence interface.
func (s *Store) Publish(ctx context.Context, org string, docs []protocol.DesiredState, publish func(context.Context, []protocol.DesiredState) error) error {
	if len(docs) == 0 {
		return nil
	}
	byID := make(map[string]protocol.DesiredState, len(docs))
	for _, d := range docs {
		if cur, ok := byID[d.SiteID]; !ok || d.Revision > cur.Revision {
			byID[d.SiteID] = d
		}
	}
	sites := sortedKeys(byID)
	return s.write(ctx, "publish desired state", func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO site_published (org_id, site_id) SELECT $1, unnest($2::text[]) ORDER BY 2 ON CONFLICT DO NOTHING`, org, sites)
		q := b.Queue(`SELECT site_id, revision FROM site_published WHERE org_id = $1 AND site_id = ANY($2) ORDER BY site_id FOR UPDATE`, org, sites)
		published := map[string]uint64{}
		q.Query(func(rows pgx.Rows) error {
			var site string
			var rev int64
			_, err := pgx.ForEachRow(rows, []any{&site, &rev}, func() error {
				published[site] = uint64(rev)
				return nil
			})
			return err
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("lock published revisions: %w", err)
		}
		var out []protocol.DesiredState
		var ids []string
		var revs []int64
		for _, site := range sites {
			d := byID[site]
			if d.Revision < published[site] {
				continue // a newer one is out
			}
			out = append(out, d)
			ids, revs = append(ids, site), append(revs, int64(d.Revision))
		}
		if len(out) == 0 {
			return nil
		}
		if err := publish(ctx, out); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE site_published p SET revision = u.rev, published_at = now()
			FROM unnest($2::text[], $3::bigint[]) AS u(site, rev) WHERE p.org_id = $1 AND p.site_id = u.site`, org, ids, revs)
		if err != nil {
			return fmt.Errorf("record published revisions: %w", err)
		}
		return nil
	})
}

// Unpublished returns, by organisation, the sites whose newest revision
// was committed more than olderThan ago (on the database's clock) and is
// still above the one published: a replica committed it and died before
// publishing it.
func (s *Store) Unpublished(ctx context.Context, olderThan time.Duration) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT s.org_id, s.id FROM sites s
		LEFT JOIN site_published p ON p.org_id = s.org_id AND p.site_id = s.id
		WHERE s.desired_revision > coalesce(p.revision, 0) AND s.revised_at < now() - $1 * interval '1 microsecond'
		ORDER BY s.org_id, s.id`, olderThan.Microseconds())
	if err != nil {
		return nil, classify("find unpublished revisions", err)
	}
	out := map[string][]string{}
	var org, site string
	_, err = pgx.ForEachRow(rows, []any{&org, &site}, func() error {
		out[org] = append(out[org], site)
		return nil
	})
	if err != nil {
		return nil, classify("find unpublished revisions", err)
	}
	return out, nil
}

// RunRepublisher calls Unpublished every interval until ctx ends, on one
// replica at a time (the holder of the lease "republisher"), and hands
// what it finds to republish (the syncer's Changed, with a Change naming
// the sites: it compiles and publishes them through Publish). olderThan
// should exceed a publish's usual delay, so a live replica's own publish
// is not doubled. Errors go to onErr (may be nil).
func (s *Store) RunRepublisher(ctx context.Context, interval, olderThan time.Duration, republish cp.ChangeFunc, onErr func(error)) {
	s.Lead(ctx, "republisher", s.opts.ReplicaID, s.opts.LeaseTTL, interval, func(ctx context.Context, _ Lease) error {
		found, err := s.Unpublished(ctx, olderThan)
		if err != nil {
			return err
		}
		for _, org := range sortedKeys(found) {
			republish(cp.Change{OrgID: org, Sites: slices.Clone(found[org])})
		}
		return nil
	}, onErr)
}
