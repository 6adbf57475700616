package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// This file persists decommissions (controlplane/decommission.go, whose
// rules these are; store/bolt's decommission.go does the same over its
// buckets): site_decommissions holds a decommission under way and then,
// once the site is forgotten, until the MQTT side cleared its topics;
// denied_sites the forgotten sites whose credentials and reports are
// refused.

// Decommissioned reports whether site of org was decommissioned and
// forgotten: the embedded broker refuses its credentials. It asks the
// database (another replica may have forgotten the site); when the
// database does not answer within 5 s, it refuses: a control plane that
// cannot read its store has nothing to give an agent anyway.
func (s *Store) Decommissioned(org, site string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var denied bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM denied_sites WHERE org_id = $1 AND site_id = $2)`, org, site).Scan(&denied)
	return denied || err != nil
}

// DecommissionSite starts the decommission of a site, in one transaction:
// the site leaves every group and prefix list of the organisation, each a
// write of its own (new version, new sync, audit event with the caller's
// subject, as a PUT), its empty document gets a revision, and its record
// reads decommissioning (controlplane.StartDecommission); an audit event
// of kind "site" records the DELETE. One locked resource, or the quota of
// decommissioned sites, refuses the whole of it. A site already
// decommissioning is answered as it is.
func (s *Store) DecommissionSite(ctx context.Context, org, site string) (cp.Site, error) {
	wr := cp.WriteRequestFrom(ctx)
	put, del := cp.DecommissionRequests(wr)
	putCtx := cp.WithWriteRequest(ctx, put)
	var out cp.Site
	var changes []cp.Change
	err := s.write(ctx, "decommission site", func(tx pgx.Tx) error {
		changes = changes[:0]
		now := s.opts.Now()
		seq, err := lockOrgAndNumber(ctx, tx, org)
		if err != nil {
			return err
		}
		// Every site of the organisation, in the lock order: the writes
		// below lock theirs one resource at a time, which would not be.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM sites WHERE org_id = $1 ORDER BY id FOR UPDATE`, org); err != nil {
			return fmt.Errorf("lock sites: %w", err)
		}
		rows, err := orgSites(ctx, tx, org, []string{site})
		if err != nil {
			return err
		}
		if !rows[site].exists {
			return cp.NotFound(cp.KindSite, site)
		}
		if rows[site].rec.State == cp.SiteDecommissioning {
			out = siteView(rows[site], now)
			return nil
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM denied_sites WHERE org_id = $1)
			+ (SELECT count(*) FROM site_decommissions WHERE org_id = $1 AND phase = 'decommissioning')`, org).Scan(&have); err != nil {
			return fmt.Errorf("count decommissioned sites: %w", err)
		}
		if err := s.opts.Quotas.WithDefaults().CheckDecommission(have); err != nil {
			return err
		}
		ws, err := withoutSite(ctx, tx, org, site, now)
		if err != nil {
			return err
		}
		var docs map[string]protocol.DesiredState
		if len(ws) > 0 {
			// One audit number per write, and one for the DELETE below.
			seqs := []int64{seq}
			rows, err := tx.Query(ctx, `SELECT nextval('audit_event_seq') FROM generate_series(1, $1)`, len(ws))
			if err != nil {
				return fmt.Errorf("number audit events: %w", err)
			}
			more, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return fmt.Errorf("number audit events: %w", err)
			}
			seqs, seq = append(seqs, more[:len(ws)-1]...), more[len(ws)-1]
			_, written, err := s.putAllTx(putCtx, tx, org, false, ws, now, seqs)
			if err != nil {
				return err
			}
			changes = append(changes, written...)
			docs = written[0].Documents // the site is in every one
		} else {
			// Nothing to leave: the site's own document, empty, may still
			// be new (a site only enrolled, or one whose agent still holds
			// an older one).
			if docs, err = s.revise(ctx, tx, org, rows, now); err != nil {
				return err
			}
			touchSites(rows, cp.Revisions(docs), nil, time.Time{}, now)
			if err := storeSites(ctx, tx, rowsOf(rows)); err != nil {
				return err
			}
		}
		change := cp.DecommissionChange(org, site, docs)
		// Read again: the writes changed its revision and state.
		if rows, err = orgSites(ctx, tx, org, []string{site}); err != nil {
			return err
		}
		r := rows[site]
		next, _ := cp.StartDecommission(r.rec, change.Revisions[site], now.Add(s.opts.SyncTimeout))
		r.set(next, now)
		out = siteView(r, now)
		body, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode site: %w", err)
		}
		b := &pgx.Batch{}
		queueSites(b, []*siteRow{r})
		b.Queue(`INSERT INTO site_decommissions (org_id, site_id, phase) VALUES ($1, $2, 'decommissioning')
			ON CONFLICT (org_id, site_id) DO UPDATE SET phase = 'decommissioning'`, org, site)
		if err := queueAudit(b, cp.NewAuditEvent(del, org, cp.KindSite, site, 0, body, now), seq); err != nil {
			return err
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("store decommission: %w", err)
		}
		changes = append(changes, change)
		return nil
	})
	if err != nil {
		return cp.Site{}, err
	}
	for _, c := range changes {
		s.changes.Notify(c)
	}
	return out, nil
}

// withoutSite is the write of every group and prefix list attached to
// site without it (controlplane's WithoutSite), ordered by kind and id.
func withoutSite(ctx context.Context, tx pgx.Tx, org, site string, now time.Time) ([]resourceWrite, error) {
	var out []resourceWrite
	for _, kind := range []string{cp.KindPrefixList, cp.KindSecurityGroup} {
		members := `SELECT group_id FROM group_sites WHERE org_id = $1 AND site_id = $2`
		if kind == cp.KindPrefixList {
			members = `SELECT list_id FROM list_sites WHERE org_id = $1 AND site_id = $2`
		}
		rows, err := tx.Query(ctx, docQuery(kind)+` WHERE r.org_id = $1 AND r.id IN (`+members+`) ORDER BY r.id`, org, site)
		if err != nil {
			return nil, fmt.Errorf("read resources of site %s: %w", site, err)
		}
		writes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (resourceWrite, error) {
			id, raw, st, err := scanDoc(r)
			if err != nil {
				return nil, err
			}
			if kind == cp.KindSecurityGroup {
				g, err := cp.DecodeSecurityGroup(raw, org, st, now)
				w := g.WithoutSite(site)
				return &groupWrite{w: &w, gid: id}, err
			}
			l, err := cp.DecodePrefixList(raw, org, st, now)
			w := l.WithoutSite(site)
			return &listWrite{w: &w, lid: id}, err
		})
		if err != nil {
			return nil, fmt.Errorf("read resources of site %s: %w", site, err)
		}
		out = append(out, writes...)
	}
	return out, nil
}

// ForgetDecommissioned forgets, in one transaction, every decommissioning
// site that is done (controlplane.DecommissionDone), at most
// controlplane.ForgetBatch: its record and newest report go, resources
// waiting for it stop waiting (SyncState.Forget), and its credentials and
// reports are refused from then on; its Revisioner bytes are kept with
// the refusal, so a site named or enrolled again never goes back in
// revisions. It returns every forgotten site whose topics the MQTT side
// has not cleared yet (SiteCleared), those of earlier calls included.
// Every replica's syncer calls it: the decommissions' rows are locked, so
// a site is forgotten once.
func (s *Store) ForgetDecommissioned(ctx context.Context) ([]cp.SiteRef, error) {
	var pending bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM site_decommissions)`).Scan(&pending); err != nil || !pending {
		return nil, classify("forget decommissioned sites", err)
	}
	var out []cp.SiteRef
	err := s.write(ctx, "forget decommissioned sites", func(tx pgx.Tx) error {
		out = out[:0]
		now := s.opts.Now()
		rows, err := tx.Query(ctx, `SELECT org_id, site_id, phase FROM site_decommissions ORDER BY org_id, site_id FOR UPDATE`)
		if err != nil {
			return fmt.Errorf("read decommissions: %w", err)
		}
		var keys []siteKey
		var org, site, phase string
		if _, err := pgx.ForEachRow(rows, []any{&org, &site, &phase}, func() error {
			if phase == "forgotten" {
				if len(out) < cp.ForgetBatch {
					out = append(out, cp.SiteRef{OrgID: org, SiteID: site})
				}
			} else if len(keys) < cp.ForgetBatch {
				keys = append(keys, siteKey{org, site})
			}
			return nil
		}); err != nil {
			return fmt.Errorf("read decommissions: %w", err)
		}
		sites, err := lockSites(ctx, tx, keys)
		if err != nil {
			return err
		}
		var done []siteKey
		var forgotten []*siteRow
		var confirms []confirmation
		for _, k := range keys {
			r := sites[k]
			if r.exists {
				if !cp.DecommissionDone(r.rec, r.last, now) {
					continue
				}
				forgotten = append(forgotten, r)
				confirms = append(confirms, confirmation{site: k, forget: true})
			}
			done = append(done, k)
			if len(out) < cp.ForgetBatch {
				out = append(out, cp.SiteRef{OrgID: k.org, SiteID: k.id})
			}
		}
		if len(done) == 0 {
			return nil
		}
		if err := confirm(ctx, tx, confirms); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, r := range forgotten {
			record, err := json.Marshal(cp.Forgotten(r.rec, r.org, now))
			if err != nil {
				return fmt.Errorf("encode decommissioned site: %w", err)
			}
			b.Queue(`DELETE FROM sites WHERE org_id = $1 AND id = $2`, r.org, r.rec.ID)
			b.Queue(`DELETE FROM site_history WHERE org_id = $1 AND site_id = $2`, r.org, r.rec.ID)
			b.Queue(`INSERT INTO denied_sites (org_id, site_id, record, revisioner_data) VALUES ($1, $2, $3, $4)
				ON CONFLICT (org_id, site_id) DO UPDATE SET record = excluded.record, revisioner_data = excluded.revisioner_data`,
				r.org, r.rec.ID, string(record), r.data)
		}
		for _, k := range done {
			b.Queue(`UPDATE site_decommissions SET phase = 'forgotten' WHERE org_id = $1 AND site_id = $2`, k.org, k.id)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("forget sites: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SiteCleared records that the MQTT side cleared a forgotten site's
// retained topics: ForgetDecommissioned no longer returns it.
func (s *Store) SiteCleared(ctx context.Context, org, site string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM site_decommissions WHERE org_id = $1 AND site_id = $2 AND phase = 'forgotten'`, org, site)
	return classify("record cleared site", err)
}

// undeny lifts a forgotten site's refusal (enrollment), in tx, and
// returns what was kept of it (nil when it was not refused) with its
// Revisioner bytes. A clearing of its topics still pending is dropped
// too: it would kick the enrolled agent off and clear what it publishes
// now.
func undeny(ctx context.Context, tx pgx.Tx, org, site string) (*cp.Decommissioned, []byte, error) {
	var record string
	var data []byte
	err := tx.QueryRow(ctx, `DELETE FROM denied_sites WHERE org_id = $1 AND site_id = $2 RETURNING record, revisioner_data`, org, site).Scan(&record, &data)
	if err == pgx.ErrNoRows {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lift refusal of site %s: %w", site, err)
	}
	var d cp.Decommissioned
	if err := json.Unmarshal([]byte(record), &d); err != nil {
		return nil, nil, fmt.Errorf("decode decommissioned site %s: %w", site, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM site_decommissions WHERE org_id = $1 AND site_id = $2`, org, site); err != nil {
		return nil, nil, fmt.Errorf("lift refusal of site %s: %w", site, err)
	}
	return &d, data, nil
}
