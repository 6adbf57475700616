package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// This file is the controlplane.PolicyTx of an organisation, inside a
// write (for the Revisioner) and outside one (ViewPolicy).

// policyTx reads one organisation's policy in tx. Inside a write, sites
// holds the locked rows of the write's sites, whose Revisioner bytes it
// reads and sets in memory (stored with the rows); in a view, site data is
// read from the database, the sites Policy was asked for at once.
type policyTx struct {
	ctx      context.Context
	tx       pgx.Tx
	org      string
	now      time.Time
	readOnly bool
	sites    map[string]*siteRow
}

// Policy reads the groups and lists attached to sites, then the lists
// those groups use.
func (p *policyTx) Policy(sites []string) ([]cp.SecurityGroup, []cp.PrefixList, error) {
	if p.readOnly {
		if err := p.prefetch(sites); err != nil {
			return nil, nil, err
		}
	}
	rows, err := p.tx.Query(p.ctx, docQuery(cp.KindSecurityGroup)+`
		WHERE r.org_id = $1 AND r.id IN (SELECT group_id FROM group_sites WHERE org_id = $1 AND site_id = ANY($2))
		ORDER BY r.id`, p.org, sites)
	if err != nil {
		return nil, nil, fmt.Errorf("read security groups of sites: %w", err)
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cp.SecurityGroup, error) {
		_, raw, st, err := scanDoc(r)
		if err != nil {
			return cp.SecurityGroup{}, err
		}
		return cp.DecodeSecurityGroup(raw, p.org, st, p.now)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read security groups of sites: %w", err)
	}
	var used []string
	for _, g := range groups {
		used = append(used, g.ReferencedPrefixLists()...)
	}
	// A rule's reference to a list that is gone is left out: the compiler
	// leaves it out too.
	rows, err = p.tx.Query(p.ctx, docQuery(cp.KindPrefixList)+`
		WHERE r.org_id = $1 AND (r.id = ANY($2) OR r.id IN (SELECT list_id FROM list_sites WHERE org_id = $1 AND site_id = ANY($3)))
		ORDER BY r.id`, p.org, used, sites)
	if err != nil {
		return nil, nil, fmt.Errorf("read prefix lists of sites: %w", err)
	}
	lists, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cp.PrefixList, error) {
		_, raw, st, err := scanDoc(r)
		if err != nil {
			return cp.PrefixList{}, err
		}
		return cp.DecodePrefixList(raw, p.org, st, p.now)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read prefix lists of sites: %w", err)
	}
	return groups, lists, nil
}

// scanDoc scans an id, a document and its sync state's columns.
func scanDoc(r pgx.Row) (string, []byte, cp.SyncState, error) {
	var id string
	var raw []byte
	var status, errMsg *string
	var started, deadline *time.Time
	var version *int64
	if err := r.Scan(&id, &raw, &status, &started, &deadline, &errMsg, &version); err != nil {
		return "", nil, cp.SyncState{}, err
	}
	return id, raw, scanSync(status, started, deadline, errMsg, version), nil
}

// prefetch reads the Revisioner bytes of sites not read yet, in one query.
func (p *policyTx) prefetch(sites []string) error {
	var missing []string
	for _, site := range sites {
		if _, ok := p.sites[site]; !ok {
			missing = append(missing, site)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if p.sites == nil {
		p.sites = map[string]*siteRow{}
	}
	rows, err := p.tx.Query(p.ctx, `SELECT id, revisioner_data FROM sites WHERE org_id = $1 AND id = ANY($2)`, p.org, missing)
	if err != nil {
		return fmt.Errorf("read site data: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &siteRow{}
		if err := rows.Scan(&r.rec.ID, &r.data); err != nil {
			return fmt.Errorf("read site data: %w", err)
		}
		p.sites[r.rec.ID] = r
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read site data: %w", err)
	}
	for _, site := range missing {
		if p.sites[site] == nil {
			p.sites[site] = &siteRow{} // no row: no data
		}
	}
	return nil
}

func (p *policyTx) SiteData(site string) ([]byte, error) {
	if p.readOnly {
		if err := p.prefetch([]string{site}); err != nil {
			return nil, err
		}
	}
	r := p.sites[site]
	if r == nil {
		return nil, fmt.Errorf("read site data of %s: not a site of this write", site)
	}
	return slices.Clone(r.data), nil
}

func (p *policyTx) SetSiteData(site string, data []byte) error {
	if p.readOnly {
		return errors.New("set site data: read-only view")
	}
	r := p.sites[site]
	if r == nil {
		return fmt.Errorf("set site data of %s: not a site of this write", site)
	}
	r.data, r.dirty = slices.Clone(data), true
	return nil
}

// ViewPolicy calls fn with a read-only PolicyTx of one organisation: the
// committed groups, prefix lists and per-site data in one snapshot
// (REPEATABLE READ), as store/bolt's ViewPolicy.
func (s *Store) ViewPolicy(ctx context.Context, org string, fn func(cp.PolicyTx) error) error {
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return fn(&policyTx{ctx: ctx, tx: tx, org: org, now: s.opts.Now(), readOnly: true})
	})
	if _, ok := errors.AsType[*cp.Error](err); ok || err == nil {
		return err
	}
	if storageFault(err) {
		return &cp.StorageError{Op: "read policy", Err: err}
	}
	return err
}

// revise asks the Revisioner for the documents and revisions of the
// affected sites, whose rows the write holds; nil without one.
func (s *Store) revise(ctx context.Context, tx pgx.Tx, org string, sites map[string]*siteRow, now time.Time) (map[string]protocol.DesiredState, error) {
	if s.opts.Revisioner == nil || len(sites) == 0 {
		return nil, nil
	}
	docs, err := cp.Revise(s.opts.Revisioner, &policyTx{ctx: ctx, tx: tx, org: org, now: now, sites: sites}, org, slices.Sorted(maps.Keys(sites)))
	if err != nil {
		return nil, fmt.Errorf("assign site revisions: %w", err)
	}
	return docs, nil
}
