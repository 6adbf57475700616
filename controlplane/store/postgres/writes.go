package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	segjson "github.com/segmentio/encoding/json"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// This file writes groups and prefix lists. Each write is one transaction
// that takes, in this order: the organisation's lock (lockOrg), the rows
// of the sites it affects (lockSites), and its own sync state's row;
// status ingestion takes sites, then sync states; the sweeper sync states.
// One order, so no two transactions wait for each other in a circle.
// Inside: the stored resource is read and checked (existence, version,
// lock, quota, references), the new one built by the domain (keeping ids)
// and stored, the Revisioner compiles the affected sites with their locked
// rows, and the sync starts; the Change is announced after commit.

// resourceWrite is one create or replace of a group or prefix list, as
// the one write path (put) drives it. Its methods may run more than once
// for one write (the transaction may start over), so each depends only on
// its inputs and the transaction.
type resourceWrite interface {
	kind() string
	id() string
	// sites are the sites the write attaches the resource to (quota).
	sites() []string
	// read decodes what the write needs of the stored resource.
	read(raw []byte) error
	// store builds the new resource (keeping ids of what read found),
	// checks its references and stores it with its sites and references;
	// it returns the sites the write affects and those that must confirm
	// it.
	store(ctx context.Context, tx pgx.Tx, org string) (affected, await []string, err error)
	// stored is the resource as stored, its status the write's.
	stored() []byte
}

func opName(verb, kind string) string { return verb + " " + strings.ReplaceAll(kind, "_", " ") }

// put runs a create (when w's resource is new) or replace, announces its
// change after commit and answers with the resource as stored.
func (s *Store) put(ctx context.Context, org string, create bool, w resourceWrite) (cp.Stored, error) {
	var sts []cp.SyncState
	var changes []cp.Change
	err := s.write(ctx, opName("store", w.kind()), func(tx pgx.Tx) error {
		seq, err := lockOrgAndNumber(ctx, tx, org)
		if err != nil {
			return err
		}
		sts, changes, err = s.putAllTx(ctx, tx, org, create, []resourceWrite{w}, s.opts.Now(), []int64{seq})
		return err
	})
	if err != nil {
		return cp.Stored{}, err
	}
	s.changes.Notify(changes[0])
	return cp.Stored{ID: w.id(), Body: cp.SpliceStatus(w.stored(), sts[0].Status), Version: sts[0].Version}, nil
}

// putAllTx runs writes of groups and prefix lists (creates, or replaces)
// in tx, which holds the organisation's lock; seqs number their audit
// events. Each is checked and stored, then the Revisioner compiles every
// site they affect once, from the policy as all of them leave it, and
// each starts its sync: as store/bolt's putAllTx, so a decommission
// (several writes) reads the same in both stores. It returns each
// resource's new sync state and the change to announce after commit.
func (s *Store) putAllTx(ctx context.Context, tx pgx.Tx, org string, create bool, ws []resourceWrite, now time.Time, seqs []int64) ([]cp.SyncState, []cp.Change, error) {
	wr := cp.WriteRequestFrom(ctx)
	type stored struct {
		prev            *cp.SyncState
		affected, await []string
	}
	done := make([]stored, len(ws))
	var all []string
	for i, w := range ws {
		k := resKey{org, w.kind(), w.id()}
		if !create {
			raw, p, err := readStored(ctx, tx, k)
			if err != nil {
				return nil, nil, err
			}
			if err := writable(k, p, now, wr.IfMatch); err != nil {
				return nil, nil, err
			}
			if err := w.read(raw); err != nil {
				return nil, nil, err
			}
			done[i].prev = &p
		}
		// After existence and lock: a missing or syncing resource answers
		// 404 or 409 first.
		if err := s.checkQuota(ctx, tx, org, w.kind(), create, w.sites()); err != nil {
			return nil, nil, err
		}
		affected, await, err := w.store(ctx, tx, org)
		if err != nil {
			return nil, nil, err
		}
		done[i].affected, done[i].await = affected, await
		all = append(all, affected...)
	}
	sites, err := orgSites(ctx, tx, org, all)
	if err != nil {
		return nil, nil, err
	}
	// Revised once everything is stored: the Revisioner sees the policy as
	// the transaction will commit it.
	docs, err := s.revise(ctx, tx, org, sites, now)
	if err != nil {
		return nil, nil, err
	}
	revs := cp.Revisions(docs)
	sts, changes := make([]cp.SyncState, len(ws)), make([]cp.Change, len(ws))
	awaited := map[string]bool{}
	b := &pgx.Batch{}
	for i, w := range ws {
		st := cp.NewSyncState(cp.Awaited(revs, done[i].await), now, s.opts.SyncTimeout)
		st.Version = cp.NextVersion(done[i].prev)
		for _, site := range sortedKeys(st.Awaiting) {
			if r := sites[site]; r.exists {
				st.ConfirmStanding(site, r.rec, r.last)
			}
		}
		for site := range st.Awaiting {
			awaited[site] = true
		}
		queueSync(b, resKey{org, w.kind(), w.id()}, st)
		if err := queueAudit(b, cp.NewAuditEvent(wr, org, w.kind(), w.id(), st.Version, w.stored(), now), seqs[i]); err != nil {
			return nil, nil, err
		}
		change := cp.Change{OrgID: org, Sites: slices.Sorted(maps.Keys(sites)), Kind: w.kind(), ID: w.id(), Revisions: revs, Documents: docs}
		if len(ws) > 1 {
			change.Sites = done[i].affected
			if docs != nil {
				change.Documents = make(map[string]protocol.DesiredState, len(done[i].affected))
				for _, site := range done[i].affected {
					change.Documents[site] = docs[site]
				}
				change.Revisions = cp.Awaited(revs, done[i].affected)
			}
		}
		sts[i], changes[i] = st, change
	}
	// Every site once, however many of the writes touch it: awaited (so
	// syncing until the deadline) when any of them awaits it.
	touchSites(sites, revs, awaited, now.Add(s.opts.SyncTimeout), now)
	queueSites(b, rowsOf(sites))
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", ws[0].kind(), err)
	}
	return sts, changes, nil
}

// touchSites records on each site the revision the writes gave it; sites
// awaited read syncing until deadline (AssignRevision). now is when, for
// the sites' histories.
func touchSites(sites map[string]*siteRow, revs map[string]uint64, awaited map[string]bool, deadline, now time.Time) {
	for id, r := range sites {
		r.set(cp.AssignRevision(r.rec, revs[id], awaited[id], deadline), now)
	}
}

// checkQuota applies the quotas to a write of a resource of kind naming
// sites, under the organisation's lock: a new resource must fit the
// kind's quota, and sites not known yet must fit the site quota.
func (s *Store) checkQuota(ctx context.Context, tx pgx.Tx, org, kind string, create bool, sites []string) error {
	q := s.opts.Quotas.WithDefaults()
	if create {
		var have int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+table(kind)+` WHERE org_id = $1`, org).Scan(&have); err != nil {
			return fmt.Errorf("count %ss: %w", kind, err)
		}
		if err := q.CheckCreate(kind, have); err != nil {
			return err
		}
	}
	if len(sites) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT id, state FROM sites WHERE org_id = $1 AND id = ANY($2)`, org, sites)
	if err != nil {
		return fmt.Errorf("read sites: %w", err)
	}
	states := map[string]cp.SiteState{}
	var id, state string
	if _, err := pgx.ForEachRow(rows, []any{&id, &state}, func() error {
		states[id] = cp.SiteState(state)
		return nil
	}); err != nil {
		return fmt.Errorf("read sites: %w", err)
	}
	adding := 0
	for _, site := range sites {
		st, ok := states[site]
		if !ok {
			adding++
		} else if err := cp.CheckAttach(site, st); err != nil {
			return err
		}
	}
	if adding == 0 {
		return nil
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM sites WHERE org_id = $1`, org).Scan(&have); err != nil {
		return fmt.Errorf("count sites: %w", err)
	}
	return q.CheckSites(have, adding)
}

func table(kind string) string {
	if kind == cp.KindSecurityGroup {
		return "security_groups"
	}
	return "prefix_lists"
}

// readStored reads the stored document of a group or prefix list and its
// sync state (without the sites it awaits): a *cp.Error not found when
// there is none.
func readStored(ctx context.Context, tx pgx.Tx, k resKey) ([]byte, cp.SyncState, error) {
	_, raw, st, err := scanDoc(tx.QueryRow(ctx, docQuery(k.kind)+` WHERE r.org_id = $1 AND r.id = $2`, k.org, k.id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, st, cp.NotFound(k.kind, k.id)
	}
	if err != nil {
		return nil, st, fmt.Errorf("read %s %s: %w", k.kind, k.id, err)
	}
	return raw, st, nil
}

// CreateSecurityGroup stores a new group built from a validated write and
// answers with its id and its JSON as the API shows it.
func (s *Store) CreateSecurityGroup(ctx context.Context, org string, w *cp.SecurityGroupWrite) (cp.Stored, error) {
	return s.put(ctx, org, true, &groupWrite{w: w, gid: cp.NewID(cp.SecurityGroupIDPrefix)})
}

// ReplaceSecurityGroup replaces a group whole (PUT) and answers with its
// JSON. Rules that match the same traffic as before keep their ids. The
// context's WriteRequest may carry an If-Match precondition.
func (s *Store) ReplaceSecurityGroup(ctx context.Context, org, id string, w *cp.SecurityGroupWrite) (cp.Stored, error) {
	return s.put(ctx, org, false, &groupWrite{w: w, gid: id})
}

// groupWrite is the resourceWrite of a group.
type groupWrite struct {
	w    *cp.SecurityGroupWrite
	gid  string
	prev cp.SecurityGroup // the stored group's sites and rules' matches
	data []byte
}

func (gw *groupWrite) kind() string    { return cp.KindSecurityGroup }
func (gw *groupWrite) id() string      { return gw.gid }
func (gw *groupWrite) sites() []string { return gw.w.Sites }
func (gw *groupWrite) stored() []byte  { return gw.data }

// prevGroup is what a replace needs of the stored group: its sites, and
// its rules' ids and matches (KeepRuleIDs), without the names and
// descriptions. segmentio/encoding/json decodes it, as the API decodes
// bodies (BENCHMARKS.md "One decoder, faster"): decoding the stored group
// was the largest CPU cost of a replace.
type prevGroup struct {
	Sites []string `json:"sites"`
	Rules []struct {
		ID        string `json:"id"`
		Direction string `json:"direction"`
		Protocol  int    `json:"protocol"`
		Port      string `json:"port"`
		Address   string `json:"address"`
	} `json:"rules"`
}

func (gw *groupWrite) read(raw []byte) error {
	var p prevGroup
	if err := segjson.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("decode security group %s: %w", gw.gid, err)
	}
	gw.prev = cp.SecurityGroup{Sites: p.Sites, Rules: make([]cp.FilterRule, len(p.Rules))}
	for i, r := range p.Rules {
		gw.prev.Rules[i] = cp.FilterRule{ID: r.ID, Direction: r.Direction, Protocol: r.Protocol, Port: r.Port, Address: r.Address}
	}
	return nil
}

func (gw *groupWrite) store(ctx context.Context, tx pgx.Tx, org string) ([]string, []string, error) {
	g := gw.w.NewSecurityGroup(org, gw.gid, gw.prev.Rules)
	// Reads splice in the sync state's status.
	g.Status = cp.WriteStatus(g.Sites)
	refs := g.ReferencedPrefixLists()
	if len(refs) > 0 {
		rows, err := tx.Query(ctx, `SELECT id FROM prefix_lists WHERE org_id = $1 AND id = ANY($2)`, org, refs)
		if err != nil {
			return nil, nil, fmt.Errorf("read referenced prefix lists: %w", err)
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, nil, fmt.Errorf("read referenced prefix lists: %w", err)
		}
		if err := g.CheckPrefixLists(func(id string) bool { return slices.Contains(found, id) }); err != nil {
			return nil, nil, err
		}
	}
	var err error
	if gw.data, err = json.Marshal(&g); err != nil {
		return nil, nil, fmt.Errorf("encode security group: %w", err)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO security_groups (org_id, id, doc) VALUES ($1, $2, $3)
		ON CONFLICT (org_id, id) DO UPDATE SET doc = excluded.doc, updated_at = now()`, org, gw.gid, gw.data)
	b.Queue(`DELETE FROM group_sites WHERE org_id = $1 AND group_id = $2`, org, gw.gid)
	b.Queue(`INSERT INTO group_sites (org_id, group_id, site_id) SELECT $1, $2, unnest($3::text[])`, org, gw.gid, g.Sites)
	b.Queue(`DELETE FROM list_refs WHERE org_id = $1 AND group_id = $2`, org, gw.gid)
	b.Queue(`INSERT INTO list_refs (org_id, list_id, group_id) SELECT $1, unnest($3::text[]), $2`, org, gw.gid, refs)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("store security group: %w", err)
	}
	return union(g.Sites, gw.prev.Sites), g.Sites, nil
}

// union is the sorted, unique sites of a and b.
func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// CreatePrefixList stores a new prefix list built from a validated write
// and answers with its id and its JSON as the API shows it.
func (s *Store) CreatePrefixList(ctx context.Context, org string, w *cp.PrefixListWrite) (cp.Stored, error) {
	return s.put(ctx, org, true, &listWrite{w: w, lid: cp.NewID(cp.PrefixListIDPrefix)})
}

// ReplacePrefixList replaces a prefix list whole (PUT) and answers with
// its JSON. Prefixes with an unchanged CIDR keep their ids.
func (s *Store) ReplacePrefixList(ctx context.Context, org, id string, w *cp.PrefixListWrite) (cp.Stored, error) {
	return s.put(ctx, org, false, &listWrite{w: w, lid: id})
}

// listWrite is the resourceWrite of a prefix list.
type listWrite struct {
	w    *cp.PrefixListWrite
	lid  string
	prev cp.PrefixList
	data []byte
}

func (lw *listWrite) kind() string    { return cp.KindPrefixList }
func (lw *listWrite) id() string      { return lw.lid }
func (lw *listWrite) sites() []string { return lw.w.Sites }
func (lw *listWrite) stored() []byte  { return lw.data }

func (lw *listWrite) read(raw []byte) error {
	lw.prev = cp.PrefixList{}
	if err := segjson.Unmarshal(raw, &lw.prev); err != nil {
		return fmt.Errorf("decode prefix list %s: %w", lw.lid, err)
	}
	return nil
}

// store: the list must be confirmed by its own sites and by the sites of
// every group that refers to it: all of them get new content.
func (lw *listWrite) store(ctx context.Context, tx pgx.Tx, org string) ([]string, []string, error) {
	l := lw.w.NewPrefixList(org, lw.lid, lw.prev.Prefixes)
	rows, err := tx.Query(ctx, `SELECT DISTINCT gs.site_id FROM list_refs r
		JOIN group_sites gs ON gs.org_id = r.org_id AND gs.group_id = r.group_id
		WHERE r.org_id = $1 AND r.list_id = $2`, org, lw.lid)
	if err != nil {
		return nil, nil, fmt.Errorf("read sites of referring groups: %w", err)
	}
	viaGroups, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("read sites of referring groups: %w", err)
	}
	pending := union(l.Sites, viaGroups)
	l.Status = cp.WriteStatus(pending)
	if lw.data, err = json.Marshal(&l); err != nil {
		return nil, nil, fmt.Errorf("encode prefix list: %w", err)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO prefix_lists (org_id, id, doc) VALUES ($1, $2, $3)
		ON CONFLICT (org_id, id) DO UPDATE SET doc = excluded.doc, updated_at = now()`, org, lw.lid, lw.data)
	b.Queue(`DELETE FROM list_sites WHERE org_id = $1 AND list_id = $2`, org, lw.lid)
	b.Queue(`INSERT INTO list_sites (org_id, list_id, site_id) SELECT $1, $2, unnest($3::text[])`, org, lw.lid, l.Sites)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("store prefix list: %w", err)
	}
	return union(pending, lw.prev.Sites), pending, nil
}

// DeleteSecurityGroup deletes a group; its rules leave its sites
// asynchronously (the Change names them).
func (s *Store) DeleteSecurityGroup(ctx context.Context, org, id string) error {
	return s.del(ctx, org, cp.KindSecurityGroup, id, func(tx pgx.Tx, raw []byte, st cp.SyncState, now time.Time) ([]string, error) {
		g, err := cp.DecodeSecurityGroup(raw, org, st, now)
		return g.Sites, err
	})
}

// DeletePrefixList deletes a prefix list no group refers to.
func (s *Store) DeletePrefixList(ctx context.Context, org, id string) error {
	return s.del(ctx, org, cp.KindPrefixList, id, func(tx pgx.Tx, raw []byte, st cp.SyncState, now time.Time) ([]string, error) {
		rows, err := tx.Query(ctx, `SELECT group_id FROM list_refs WHERE org_id = $1 AND list_id = $2 ORDER BY group_id`, org, id)
		if err != nil {
			return nil, fmt.Errorf("read groups referring to prefix list: %w", err)
		}
		users, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("read groups referring to prefix list: %w", err)
		}
		if len(users) > 0 {
			return nil, cp.PrefixListInUse(id, users)
		}
		l, err := cp.DecodePrefixList(raw, org, st, now)
		return l.Sites, err
	})
}

// del deletes a group or prefix list: check returns its sites, or why it
// may not go. Its sync state goes with it, and every site it applied to
// gets the revision without it.
func (s *Store) del(ctx context.Context, org, kind, id string, check func(tx pgx.Tx, raw []byte, st cp.SyncState, now time.Time) ([]string, error)) error {
	var change cp.Change
	wr := cp.WriteRequestFrom(ctx)
	err := s.write(ctx, opName("delete", kind), func(tx pgx.Tx) error {
		now := s.opts.Now()
		seq, err := lockOrgAndNumber(ctx, tx, org)
		if err != nil {
			return err
		}
		k := resKey{org, kind, id}
		raw, st, err := readStored(ctx, tx, k)
		if err != nil {
			return err
		}
		if err := writable(k, st, now, wr.IfMatch); err != nil {
			return err
		}
		prevSites, err := check(tx, raw, st, now)
		if err != nil {
			return err
		}
		// The group's sites and references and the list's sites go with
		// it (ON DELETE CASCADE); the sync state goes after the sites are
		// locked, in the lock order.
		if _, err := tx.Exec(ctx, `DELETE FROM `+table(kind)+` WHERE org_id = $1 AND id = $2`, org, id); err != nil {
			return fmt.Errorf("delete %s: %w", kind, err)
		}
		sites, err := orgSites(ctx, tx, org, prevSites)
		if err != nil {
			return err
		}
		docs, err := s.revise(ctx, tx, org, sites, now)
		if err != nil {
			return err
		}
		revs := cp.Revisions(docs)
		touchSites(sites, revs, nil, time.Time{}, now)
		b := &pgx.Batch{}
		// Its awaited sites go with it (ON DELETE CASCADE).
		b.Queue(`DELETE FROM sync_states WHERE org_id = $1 AND kind = $2 AND resource_id = $3`, org, kind, id)
		queueSites(b, rowsOf(sites))
		if err := queueAudit(b, cp.NewAuditEvent(wr, org, kind, id, st.Version+1, nil, now), seq); err != nil {
			return err
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("delete %s: %w", kind, err)
		}
		change = cp.Change{OrgID: org, Sites: slices.Sorted(maps.Keys(sites)), Kind: kind, ID: id, Deleted: true, Revisions: revs, Documents: docs}
		return nil
	})
	if err != nil {
		return err
	}
	s.changes.Notify(change)
	return nil
}
