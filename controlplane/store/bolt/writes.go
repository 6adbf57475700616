package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// This file writes groups and prefix lists: optimistic preparation outside
// bbolt's single writer, then one transaction that checks, stores, asks
// the Revisioner for revisions and starts the resource's sync.

// resourceWrite is one create or replace of a group or prefix list, as
// the one write path (put) drives it. Writes are optimistic: read and
// prepare run outside bbolt's single writer, and the write transaction
// only checks that the stored resource is still the one read (same), else
// the write starts over with read and prepare inside the transaction,
// where nothing can change under it. Each method may run more than once
// for one write, so each depends only on its inputs and the transaction.
type resourceWrite interface {
	kind() string
	id() string
	// read reads what the write needs of the stored resource (ob may be
	// nil); false when there is none.
	read(ob *bolt.Bucket) (bool, error)
	// same reports whether the stored resource is still the one read.
	same(ob *bolt.Bucket) bool
	// prepare builds (keeping ids of what read found) and encodes the new
	// resource.
	prepare()
	// store checks references and stores the resource in the write
	// transaction, and returns the sites the write affects and those that
	// must confirm it.
	store(tx *bolt.Tx, ob *bolt.Bucket) (affected map[string]bool, await []string, err error)
	// answer is the stored resource as the API shows it, with status st.
	answer(st cp.Status) []byte
	// stored is the resource as stored (the audit trail's body).
	stored() []byte
	// sites are the sites the write attaches the resource to.
	sites() []string
}

// put runs a create (when w's resource is new) or replace, announces its
// change after commit and answers with the resource as stored.
func (s *Store) put(ctx context.Context, org string, create bool, w resourceWrite) (cp.Stored, error) {
	st, change, err := s.tryPut(ctx, org, create, w, false)
	if errors.Is(err, errConflict) {
		// Another write to the same resource committed in between:
		// prepare inside the transaction, which cannot conflict (batched
		// writers then see each other's results in turn).
		st, change, err = s.tryPut(ctx, org, create, w, true)
	}
	if err != nil {
		return cp.Stored{}, wrap("store "+strings.ReplaceAll(w.kind(), "_", " "), err)
	}
	s.changes.Notify(change)
	return cp.Stored{ID: w.id(), Body: w.answer(st.Status), Version: st.Version}, nil
}

func (s *Store) tryPut(ctx context.Context, org string, create bool, w resourceWrite, inTx bool) (cp.SyncState, cp.Change, error) {
	var st cp.SyncState
	if !inTx {
		if !create {
			var found bool
			err := s.db.View(func(tx *bolt.Tx) error {
				ob, _ := orgBucket(tx, org, false)
				var err error
				found, err = w.read(ob)
				return err
			})
			if err != nil {
				return st, cp.Change{}, err
			}
			if !found {
				return st, cp.Change{}, cp.NotFound(w.kind(), w.id())
			}
		}
		w.prepare()
	}
	var change cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		var err error
		st, change, err = s.putTx(ctx, tx, org, create, w, inTx)
		return err
	})
	return st, change, err
}

// putTx is the transaction of one create or replace: with inTx, read and
// prepare run in it; without, they ran before and it only checks that the
// stored resource is still the one read.
func (s *Store) putTx(ctx context.Context, tx *bolt.Tx, org string, create bool, w resourceWrite, inTx bool) (cp.SyncState, cp.Change, error) {
	sts, changes, err := s.putAllTx(ctx, tx, org, create, []resourceWrite{w}, inTx)
	if err != nil {
		return cp.SyncState{}, cp.Change{}, err
	}
	return sts[0], changes[0], nil
}

// putAllTx runs several writes of one organisation in tx as putTx runs
// one, with one Revisioner call for the sites of them all, so a site that
// several of them touch (a decommissioned one: decommission.go) is
// compiled once, not once per write. Each write still checks, stores,
// starts its own sync and records its own audit event.
func (s *Store) putAllTx(ctx context.Context, tx *bolt.Tx, org string, create bool, ws []resourceWrite, inTx bool) ([]cp.SyncState, []cp.Change, error) {
	pre := cp.WriteRequestFrom(ctx).IfMatch
	now := s.opts.Now()
	ob, err := orgBucket(tx, org, true)
	if err != nil {
		return nil, nil, err
	}
	type stored struct {
		prevSync *cp.SyncState
		affected map[string]bool
		await    []string
	}
	done := make([]stored, len(ws))
	all := map[string]bool{}
	for i, w := range ws {
		if !create {
			if inTx {
				found, err := w.read(ob)
				if err != nil {
					return nil, nil, err
				}
				if !found {
					return nil, nil, cp.NotFound(w.kind(), w.id())
				}
				w.prepare()
			} else if !w.same(ob) {
				return nil, nil, errConflict
			}
			prev, err := writableSync(ob, w.kind(), w.id(), now, pre)
			if err != nil {
				return nil, nil, err
			}
			done[i].prevSync = &prev
		} else if inTx {
			w.prepare()
		}
		// After existence and lock: a missing or syncing resource answers
		// 404 or 409 first.
		if err := s.checkQuota(ob, w.kind(), create, w.sites()); err != nil { // apisec #13.2: quota.go
			return nil, nil, err
		}
		affected, await, err := w.store(tx, ob)
		if err != nil {
			return nil, nil, err
		}
		done[i].affected, done[i].await = affected, await
		for site := range affected {
			all[site] = true
		}
	}
	// Revised once everything is stored: the Revisioner sees the policy
	// as the transaction will commit it.
	docs, err := s.revise(tx, ob, org, all)
	if err != nil {
		return nil, nil, err
	}
	revs := cp.Revisions(docs)
	sts, changes := make([]cp.SyncState, len(ws)), make([]cp.Change, len(ws))
	standing := standingCache{}
	awaited := map[string]bool{}
	for i, w := range ws {
		st, change, err := s.startSync(tx, ob, org, w.kind(), w.id(), done[i].prevSync, cp.Awaited(revs, done[i].await), done[i].affected, revs, now, standing)
		if err != nil {
			return nil, nil, err
		}
		for site := range st.Awaiting {
			awaited[site] = true
		}
		if len(ws) == 1 {
			change.Documents = docs
		} else if docs != nil {
			change.Documents = make(map[string]protocol.DesiredState, len(done[i].affected))
			for site := range done[i].affected {
				change.Documents[site] = docs[site]
			}
			change.Revisions = cp.Awaited(revs, sortedKeys(done[i].affected))
		}
		if err := s.audit(ctx, ob, org, w.kind(), w.id(), st.Version, w.stored(), now); err != nil {
			return nil, nil, err
		}
		sts[i], changes[i] = st, change
	}
	// Every site once, however many of the writes touch it: awaited (so
	// syncing until the deadline) when any of them awaits it.
	if err := touchSites(ob, all, revs, awaited, now.Add(s.opts.SyncTimeout), now); err != nil {
		return nil, nil, err
	}
	return sts, changes, nil
}

// CreateSecurityGroup stores a new group built from a validated write and
// answers with its id and its JSON as the API shows it (the bytes just
// stored, so the API need not encode the group again).
func (s *Store) CreateSecurityGroup(ctx context.Context, org string, w *cp.SecurityGroupWrite) (cp.Stored, error) {
	return s.put(ctx, org, true, &groupWrite{w: w, org: org, gid: cp.NewID(cp.SecurityGroupIDPrefix)})
}

// ReplaceSecurityGroup replaces a group whole (PUT) and answers with its
// JSON. Rules that match the same traffic as before keep their ids. The
// context's WriteRequest may carry an If-Match precondition.
func (s *Store) ReplaceSecurityGroup(ctx context.Context, org, id string, w *cp.SecurityGroupWrite) (cp.Stored, error) {
	return s.put(ctx, org, false, &groupWrite{w: w, org: org, gid: id})
}

// groupWrite is the resourceWrite of a group. What it reads of the stored
// group is its index (sites, rule ids and matches) and a fingerprint of its
// JSON, which same compares instead of the bytes themselves, so the 44 KB
// of a 250-rule group are neither copied nor kept.
type groupWrite struct {
	w        *cp.SecurityGroupWrite
	org, gid string

	prev    cp.SecurityGroup // Sites and Rules (ids and matches) only
	rawLen  int
	rawHash uint64

	g                cp.SecurityGroup // the new group, status as stored
	data, index      []byte
	oldRefs, newRefs []string
}

// rawSeed keys the fingerprints of stored groups (random per process).
var rawSeed = maphash.MakeSeed()

func (gw *groupWrite) kind() string    { return cp.KindSecurityGroup }
func (gw *groupWrite) sites() []string { return gw.w.Sites }
func (gw *groupWrite) id() string      { return gw.gid }

func (gw *groupWrite) read(ob *bolt.Bucket) (bool, error) {
	raw, idx := getGroup(ob, gw.gid)
	if raw == nil {
		return false, nil
	}
	gw.prev = cp.SecurityGroup{}
	gw.rawLen, gw.rawHash = len(raw), maphash.Bytes(rawSeed, raw)
	return true, decodePrev(&gw.prev, idx)
}

// same compares a 64-bit keyed hash and the length: two different values
// agree with probability 2^-64, and then the cost is rule ids kept from a
// version one write older.
func (gw *groupWrite) same(ob *bolt.Bucket) bool {
	raw, _ := getGroup(ob, gw.gid)
	return raw != nil && len(raw) == gw.rawLen && maphash.Bytes(rawSeed, raw) == gw.rawHash
}

// decodePrev reads a stored group's sites and rules from its index. What
// it keeps is copied out of idx, which may be bbolt's memory.
func decodePrev(prev *cp.SecurityGroup, idx []byte) error {
	var err error
	if prev.Sites, prev.Rules, err = decodeGroupIndex(idx); err != nil {
		return fmt.Errorf("decode security group index: %w", err)
	}
	return nil
}

func (gw *groupWrite) prepare() {
	gw.g = gw.w.NewSecurityGroup(gw.org, gw.gid, gw.prev.Rules)
	// The status the write will have is known now.
	gw.g.Status = cp.WriteStatus(gw.g.Sites)
	gw.data = withNewline(appendGroupJSON(make([]byte, 0, groupJSONSize(&gw.g)), &gw.g))
	gw.newRefs, gw.oldRefs = gw.g.ReferencedPrefixLists(), gw.prev.ReferencedPrefixLists()
	gw.index = encodeGroupIndex(&gw.g)
}

func (gw *groupWrite) store(tx *bolt.Tx, ob *bolt.Bucket) (map[string]bool, []string, error) {
	lists := ob.Bucket(bucketLists)
	// newRefs lists every address that names a prefix list: without one,
	// the rules need no look (250 of them in bbolt's single writer cost
	// more than the lookups).
	if len(gw.newRefs) > 0 {
		if err := gw.g.CheckPrefixLists(func(id string) bool { return lists.Get([]byte(id)) != nil }); err != nil {
			return nil, nil, err
		}
	}
	if err := setRefs(ob, gw.gid, gw.oldRefs, gw.newRefs); err != nil {
		return nil, nil, err
	}
	if err := setMembers(ob, cp.KindSecurityGroup, gw.gid, gw.prev.Sites, gw.g.Sites); err != nil {
		return nil, nil, err
	}
	affected := map[string]bool{}
	for _, site := range gw.g.Sites {
		affected[site] = true
	}
	for _, site := range gw.prev.Sites {
		affected[site] = true
	}
	// Stored before revising, so the Revisioner sees it.
	return affected, gw.g.Sites, putGroup(ob, gw.gid, gw.data, gw.index)
}

func (gw *groupWrite) stored() []byte { return gw.data }

// answer is the stored bytes, with the status of the new sync when every
// site had already applied what it is given (confirmApplied). The stored
// copy's status is never read; reads splice in the sync state's.
func (gw *groupWrite) answer(st cp.Status) []byte {
	if st == gw.g.Status {
		return gw.data
	}
	return withNewline(cp.SpliceStatus(gw.data, st))
}

// DeleteSecurityGroup deletes a group; its rules leave its sites
// asynchronously (the Change names them).
func (s *Store) DeleteSecurityGroup(ctx context.Context, org, id string) error {
	var change cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		now := s.opts.Now()
		ob, _ := orgBucket(tx, org, false)
		raw := get(ob, bucketGroups, id)
		if raw == nil {
			return cp.NotFound(cp.KindSecurityGroup, id)
		}
		st, err := writableSync(ob, cp.KindSecurityGroup, id, now, cp.WriteRequestFrom(ctx).IfMatch)
		if err != nil {
			return err
		}
		prev, err := cp.DecodeSecurityGroup(raw, org, st, now)
		if err != nil {
			return err
		}
		if err := deleteGroup(ob, id); err != nil {
			return err
		}
		if err := setRefs(ob, id, prev.ReferencedPrefixLists(), nil); err != nil {
			return err
		}
		change, err = s.deleted(tx, ob, org, cp.KindSecurityGroup, id, &st, prev.Sites)
		if err != nil {
			return err
		}
		return s.audit(ctx, ob, org, cp.KindSecurityGroup, id, st.Version+1, nil, now)
	})
	if err != nil {
		return wrap("delete security group", err)
	}
	s.changes.Notify(change)
	return nil
}

func setRefs(ob *bolt.Bucket, group string, remove, add []string) error {
	refs := ob.Bucket(bucketRefs)
	for _, l := range remove {
		if err := refs.Delete(key(l, group)); err != nil {
			return err
		}
	}
	for _, l := range add {
		if err := refs.Put(key(l, group), nil); err != nil {
			return err
		}
	}
	return nil
}

// referencingGroups returns the ids of the groups whose rules use list.
func referencingGroups(ob *bolt.Bucket, list string) []string {
	var ids []string
	prefix := append([]byte(list), 0)
	c := ob.Bucket(bucketRefs).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	return ids
}

// CreatePrefixList stores a new prefix list built from a validated write
// and answers with its id and its JSON as the API shows it.
func (s *Store) CreatePrefixList(ctx context.Context, org string, w *cp.PrefixListWrite) (cp.Stored, error) {
	return s.put(ctx, org, true, &listWrite{w: w, org: org, lid: cp.NewID(cp.PrefixListIDPrefix)})
}

// ReplacePrefixList replaces a prefix list whole (PUT) and answers with its
// JSON. Prefixes with an unchanged CIDR keep their ids.
func (s *Store) ReplacePrefixList(ctx context.Context, org, id string, w *cp.PrefixListWrite) (cp.Stored, error) {
	return s.put(ctx, org, false, &listWrite{w: w, org: org, lid: id})
}

// listWrite is the resourceWrite of a prefix list.
type listWrite struct {
	w        *cp.PrefixListWrite
	org, lid string

	prevRaw []byte
	prev    cp.PrefixList

	l    cp.PrefixList
	data []byte
}

func (lw *listWrite) kind() string    { return cp.KindPrefixList }
func (lw *listWrite) sites() []string { return lw.w.Sites }
func (lw *listWrite) id() string      { return lw.lid }

func (lw *listWrite) read(ob *bolt.Bucket) (bool, error) {
	raw := get(ob, bucketLists, lw.lid)
	if raw == nil {
		return false, nil
	}
	lw.prevRaw, lw.prev = slices.Clone(raw), cp.PrefixList{}
	if err := json.Unmarshal(raw, &lw.prev); err != nil {
		return false, fmt.Errorf("decode prefix list: %w", err)
	}
	return true, nil
}

func (lw *listWrite) same(ob *bolt.Bucket) bool {
	raw := get(ob, bucketLists, lw.lid)
	return raw != nil && bytes.Equal(raw, lw.prevRaw)
}

func (lw *listWrite) prepare() { lw.l = lw.w.NewPrefixList(lw.org, lw.lid, lw.prev.Prefixes) }

// store: the list must be confirmed by its own sites and by the sites of
// every group that refers to it: all of them get new content.
func (lw *listWrite) store(tx *bolt.Tx, ob *bolt.Bucket) (map[string]bool, []string, error) {
	pending := slices.Clone(lw.l.Sites)
	for _, gid := range referencingGroups(ob, lw.lid) {
		if _, idx := getGroup(ob, gid); idx != nil {
			var g cp.SecurityGroup
			if err := decodePrev(&g, idx); err != nil {
				return nil, nil, fmt.Errorf("security group %s: %w", gid, err)
			}
			pending = append(pending, g.Sites...)
		}
	}
	slices.Sort(pending)
	pending = slices.Compact(pending)
	affected := map[string]bool{}
	for _, site := range lw.prev.Sites {
		affected[site] = true
	}
	for _, site := range pending {
		affected[site] = true
	}
	lw.l.Status = cp.WriteStatus(pending)
	if err := setMembers(ob, cp.KindPrefixList, lw.lid, lw.prev.Sites, lw.l.Sites); err != nil {
		return nil, nil, err
	}
	var err error
	if lw.data, err = json.Marshal(&lw.l); err != nil {
		return nil, nil, fmt.Errorf("encode prefix list: %w", err)
	}
	return affected, pending, ob.Bucket(bucketLists).Put([]byte(lw.lid), lw.data)
}

func (lw *listWrite) answer(st cp.Status) []byte { return withNewline(cp.SpliceStatus(lw.data, st)) }

func (lw *listWrite) stored() []byte { return lw.data }

// DeletePrefixList deletes a prefix list no group refers to.
func (s *Store) DeletePrefixList(ctx context.Context, org, id string) error {
	var change cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		now := s.opts.Now()
		ob, _ := orgBucket(tx, org, false)
		raw := get(ob, bucketLists, id)
		if raw == nil {
			return cp.NotFound(cp.KindPrefixList, id)
		}
		st, err := writableSync(ob, cp.KindPrefixList, id, now, cp.WriteRequestFrom(ctx).IfMatch)
		if err != nil {
			return err
		}
		if users := referencingGroups(ob, id); len(users) > 0 {
			return cp.PrefixListInUse(id, users)
		}
		prev, err := cp.DecodePrefixList(raw, org, st, now)
		if err != nil {
			return err
		}
		if err := ob.Bucket(bucketLists).Delete([]byte(id)); err != nil {
			return err
		}
		change, err = s.deleted(tx, ob, org, cp.KindPrefixList, id, &st, prev.Sites)
		if err != nil {
			return err
		}
		return s.audit(ctx, ob, org, cp.KindPrefixList, id, st.Version+1, nil, now)
	})
	if err != nil {
		return wrap("delete prefix list", err)
	}
	s.changes.Notify(change)
	return nil
}

// deleted finishes a delete inside its transaction: the resource's sync
// record and status indexes go, and every site it applied to gets the
// revision without it. It returns the change to announce after commit.
func (s *Store) deleted(tx *bolt.Tx, ob *bolt.Bucket, org, kind, id string, st *cp.SyncState, sites []string) (cp.Change, error) {
	if err := setMembers(ob, kind, id, sites, nil); err != nil {
		return cp.Change{}, err
	}
	if err := writeSync(ob, kind, id, nil); err != nil {
		return cp.Change{}, err
	}
	if err := setIndexes(tx, org, kind, id, st, nil); err != nil {
		return cp.Change{}, err
	}
	affected := make(map[string]bool, len(sites))
	for _, site := range sites {
		affected[site] = true
	}
	docs, err := s.revise(tx, ob, org, affected)
	if err != nil {
		return cp.Change{}, err
	}
	revs := cp.Revisions(docs)
	if err := touchSites(ob, affected, revs, nil, time.Time{}, s.opts.Now()); err != nil {
		return cp.Change{}, err
	}
	return cp.Change{OrgID: org, Sites: sortedKeys(affected), Kind: kind, ID: id, Deleted: true, Revisions: revs, Documents: docs}, nil
}

// revise asks the Revisioner for the documents and revisions of the
// affected sites; nil without one.
func (s *Store) revise(tx *bolt.Tx, ob *bolt.Bucket, org string, affected map[string]bool) (map[string]protocol.DesiredState, error) {
	if s.opts.Revisioner == nil || len(affected) == 0 {
		return nil, nil
	}
	docs, err := cp.Revise(s.opts.Revisioner, policyTx{ob: ob, org: org, now: s.opts.Now()}, org, sortedKeys(affected))
	if err != nil {
		return nil, fmt.Errorf("assign site revisions: %w", err)
	}
	return docs, nil
}

// touchSites creates missing site records and records new desired
// revisions; sites in awaited are marked syncing until deadline. now is
// when, for the sites' histories.
func touchSites(ob *bolt.Bucket, affected map[string]bool, revs map[string]uint64, awaited map[string]bool, deadline, now time.Time) error {
	for _, id := range sortedKeys(affected) {
		site, err := getSite(ob.Bucket(bucketSites), id)
		if err != nil {
			return err
		}
		if site == nil {
			site = &cp.Site{}
			*site = cp.NewSite(id)
		}
		if err := storeSite(ob, *site, cp.AssignRevision(*site, revs[id], awaited[id], deadline), now); err != nil {
			return err
		}
	}
	return nil
}
