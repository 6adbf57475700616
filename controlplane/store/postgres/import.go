package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/store"
)

// NotEmptyError is Import's refusal of a database that already holds
// Rampart data: copying into it would mix two stores.
type NotEmptyError struct {
	Orgs int
}

func (e *NotEmptyError) Error() string {
	return fmt.Sprintf("the database is not empty: it holds %d organisations' data already; copy into an empty database (setup.sql creates one)", e.Orgs)
}

// Import copies another store's records into this database, which must
// hold none yet, in one transaction: each takes put and calls it with
// every organisation's records (bolt.Store.Export does); if each or any
// put fails, nothing is stored. The database takes epoch as its own, so
// agents see the same store.
//
// What a write derives from a record is derived here the same way (a
// group's sites and prefix-list references from its document, the sites
// a resource awaits from its sync state), so the copy reads and writes as
// if this store had made it. Sites are stored as newly revised: the
// republisher publishes each once more (RunRepublisher), which restores
// any document the old store committed and had not published.
//
// Control planes must not run on the database meanwhile: the one that
// opened it before Import keeps the database's first epoch in memory.
// Import locks the organisations table, so their writes wait and then
// fail nothing, but they would publish under the wrong epoch.
func (db *DB) Import(ctx context.Context, epoch string, each func(put func(*store.Dump) error) error) error {
	if epoch == "" {
		return fmt.Errorf("import store: the epoch is empty")
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("import store: begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	// Others' writes (which add their organisation first) wait for the
	// copy, and the emptiness checked below holds until commit.
	if _, err := tx.Exec(ctx, `LOCK TABLE orgs IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("import store: lock: %w", err)
	}
	var orgs int
	var other bool
	err = tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM orgs),
		EXISTS (SELECT 1 FROM sites) OR EXISTS (SELECT 1 FROM security_groups) OR EXISTS (SELECT 1 FROM prefix_lists)
		OR EXISTS (SELECT 1 FROM audit_events) OR EXISTS (SELECT 1 FROM site_decommissions) OR EXISTS (SELECT 1 FROM denied_sites)`).Scan(&orgs, &other)
	if err != nil {
		return fmt.Errorf("import store: check the database is empty: %w", err)
	}
	if orgs > 0 || other {
		return fmt.Errorf("import store: %w", &NotEmptyError{Orgs: orgs})
	}
	if _, err := tx.Exec(ctx, `UPDATE rampart_meta SET epoch = $1`, epoch); err != nil {
		return fmt.Errorf("import store: set epoch: %w", err)
	}
	var maxSeq uint64
	err = each(func(d *store.Dump) error {
		seq, err := importOrg(ctx, tx, d)
		if err != nil {
			return fmt.Errorf("import organisation %s: %w", d.Org, err)
		}
		maxSeq = max(maxSeq, seq)
		return nil
	})
	if err != nil {
		return fmt.Errorf("import store: %w", err)
	}
	if maxSeq > 0 {
		// New events number after the copied ones.
		if _, err := tx.Exec(ctx, `SELECT setval('audit_event_seq', $1)`, int64(maxSeq)); err != nil {
			return fmt.Errorf("import store: audit sequence: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("import store: commit: %w", err)
	}
	db.epoch = epoch
	return nil
}

// importOrg stores one organisation's records and returns the highest
// audit sequence number among them.
func importOrg(ctx context.Context, tx pgx.Tx, d *store.Dump) (uint64, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO orgs (org_id) VALUES ($1)`, d.Org); err != nil {
		return 0, fmt.Errorf("store organisation: %w", err)
	}
	// Lists first: groups' references point at them.
	for _, r := range d.Lists {
		var l cp.PrefixList
		if err := json.Unmarshal(r.JSON, &l); err != nil {
			return 0, fmt.Errorf("decode prefix list %s: %w", r.ID, err)
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO prefix_lists (org_id, id, doc) VALUES ($1, $2, $3)`, d.Org, r.ID, []byte(r.JSON))
		b.Queue(`INSERT INTO list_sites (org_id, list_id, site_id) SELECT $1, $2, unnest($3::text[])`, d.Org, r.ID, l.Sites)
		queueSync(b, resKey{d.Org, cp.KindPrefixList, r.ID}, r.Sync)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return 0, fmt.Errorf("store prefix list %s: %w", r.ID, err)
		}
	}
	for _, r := range d.Groups {
		var g cp.SecurityGroup
		if err := json.Unmarshal(r.JSON, &g); err != nil {
			return 0, fmt.Errorf("decode security group %s: %w", r.ID, err)
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO security_groups (org_id, id, doc) VALUES ($1, $2, $3)`, d.Org, r.ID, []byte(r.JSON))
		b.Queue(`INSERT INTO group_sites (org_id, group_id, site_id) SELECT $1, $2, unnest($3::text[])`, d.Org, r.ID, g.Sites)
		b.Queue(`INSERT INTO list_refs (org_id, list_id, group_id) SELECT $1, unnest($3::text[]), $2`, d.Org, r.ID, g.ReferencedPrefixLists())
		queueSync(b, resKey{d.Org, cp.KindSecurityGroup, r.ID}, r.Sync)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return 0, fmt.Errorf("store security group %s: %w", r.ID, err)
		}
	}
	rows := make([]*siteRow, 0, len(d.Sites))
	for _, s := range d.Sites {
		rows = append(rows, &siteRow{org: d.Org, rec: s.Site, last: s.LastReport, data: s.RevisionerData, dirty: true})
	}
	if err := storeSites(ctx, tx, rows); err != nil {
		return 0, err
	}
	b := &pgx.Batch{}
	for _, s := range d.Sites {
		// Their numbers as they were: pages continue across the copy.
		for _, tr := range s.History {
			b.Queue(`INSERT INTO site_history (org_id, site_id, seq, at, from_state, to_state, desired_revision, applied_revision, error, online)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, d.Org, s.Site.ID, int64(tr.Seq), tr.At,
				string(tr.From), string(tr.To), int64(tr.DesiredRevision), int64(tr.AppliedRevision), tr.Error, tr.Online)
		}
	}
	for _, dec := range d.Decommissions {
		phase := "decommissioning"
		if dec.Forgotten {
			phase = "forgotten"
		}
		b.Queue(`INSERT INTO site_decommissions (org_id, site_id, phase) VALUES ($1, $2, $3)`, d.Org, dec.SiteID, phase)
	}
	for _, den := range d.Denied {
		rec, err := json.Marshal(den.Record)
		if err != nil {
			return 0, fmt.Errorf("encode decommissioned site %s: %w", den.Record.SiteID, err)
		}
		b.Queue(`INSERT INTO denied_sites (org_id, site_id, record, revisioner_data) VALUES ($1, $2, $3, $4)`,
			d.Org, den.Record.SiteID, string(rec), den.RevisionerData)
	}
	var maxSeq uint64
	for _, e := range d.Audit {
		var ev cp.AuditEvent
		if err := json.Unmarshal(e.JSON, &ev); err != nil {
			return 0, fmt.Errorf("decode audit event %s: %w", e.Key.ID(), err)
		}
		b.Queue(`INSERT INTO audit_events (org_id, key, resource_id, event) VALUES ($1, $2, $3, $4)`,
			d.Org, e.Key[:], ev.ResourceID, []byte(e.JSON))
		maxSeq = max(maxSeq, binary.BigEndian.Uint64(e.Key[8:]))
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("store decommissions and audit events: %w", err)
	}
	return maxSeq, nil
}
