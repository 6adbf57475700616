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
)

// This file writes groups and prefix lists: optimistic preparation outside
// bbolt's single writer, then one transaction that checks, stores, asks
// the Revisioner for revisions and starts the resource's sync.

// snapshot reads a resource's stored bytes (a copy) outside the write
// transaction, for an optimistic write; nil when it does not exist.
func (s *Store) snapshot(org string, bucket []byte, id string) ([]byte, error) {
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		raw = slices.Clone(get(ob, bucket, id))
		return nil
	})
	return raw, err
}

// groupSnapshot is what an optimistic replace needs of the stored group,
// read outside the write transaction: its previous sites and rules
// (decoded, so they outlive the read transaction) and a fingerprint of its
// stored bytes, which the write transaction compares with what it finds
// instead of the bytes themselves, so the 44 KB of a 250-rule group are
// neither copied nor kept.
type groupSnapshot struct {
	found   bool
	prev    cp.SecurityGroup // Sites and Rules (ids and matches) only
	rawLen  int
	rawHash uint64
}

// rawSeed keys the fingerprints of stored groups (random per process).
var rawSeed = maphash.MakeSeed()

func fingerprint(raw []byte) uint64 { return maphash.Bytes(rawSeed, raw) }

// sameRaw reports whether cur is the stored group snap was taken of. A
// 64-bit keyed hash of the same length: two different values agree with
// probability 2^-64, and then the cost is rule ids kept from a version one
// write older.
func (snap *groupSnapshot) sameRaw(cur []byte) bool {
	return len(cur) == snap.rawLen && fingerprint(cur) == snap.rawHash
}

// snapshotGroup reads a group's previous sites and rules and the
// fingerprint of its stored JSON outside the write transaction.
func (s *Store) snapshotGroup(org, id string) (snap groupSnapshot, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		raw, idx := getGroup(ob, id)
		if raw == nil {
			return nil
		}
		snap.found, snap.rawLen, snap.rawHash = true, len(raw), fingerprint(raw)
		return decodePrev(&snap.prev, idx)
	})
	return snap, err
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

// CreateSecurityGroup stores a new group built from a validated write and
// answers with its id and its JSON as the API shows it (the bytes just
// stored, so the API need not encode the group again).
func (s *Store) CreateSecurityGroup(ctx context.Context, org string, w *cp.SecurityGroupWrite) (string, []byte, error) {
	g, data, err := s.putSecurityGroup(ctx, org, "", w)
	return g.ID, data, err
}

// ReplaceSecurityGroup replaces a group whole (PUT) and answers with its
// JSON. Rules that match the same traffic as before keep their ids.
func (s *Store) ReplaceSecurityGroup(ctx context.Context, org, id string, w *cp.SecurityGroupWrite) ([]byte, error) {
	_, data, err := s.putSecurityGroup(ctx, org, id, w)
	return data, err
}

func (s *Store) putSecurityGroup(ctx context.Context, org, id string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, []byte, error) {
	create := id == ""
	if create {
		id = cp.NewID(cp.SecurityGroupIDPrefix)
	}
	// Optimistic first; if another write to the same group committed in
	// between, prepare inside the transaction instead, which cannot
	// conflict (batched writers then see each other's results in turn).
	p, change, err := s.tryPutSecurityGroup(ctx, org, id, create, w, false)
	if errors.Is(err, errConflict) {
		p, change, err = s.tryPutSecurityGroup(ctx, org, id, create, w, true)
	}
	if err != nil {
		return cp.SecurityGroup{}, nil, wrap("store security group", err)
	}
	s.notify(change)
	if p.g.Sync.Status != p.g.Status {
		// Every site had already applied what it is given (confirmApplied):
		// the answer says what a read now says. The stored copy's status is
		// never read; reads splice in the sync state's.
		p.g.Status = p.g.Sync.Status
		p.data = spliceStatus(p.data, p.g.Status)
	}
	return p.g, p.data, nil
}

// preparedGroup is a group write ready to store: the previous version's
// sites and rules, the new one with kept rule ids and its encoding.
type preparedGroup struct {
	prev, g          cp.SecurityGroup
	data, index      []byte
	oldRefs, newRefs []string
}

// prepareGroup builds the group w writes over prev (keeping rule ids, see
// cp.SecurityGroupWrite.NewSecurityGroup) and encodes it. It may run more
// than once for one write (optimistically, then in the transaction).
func prepareGroup(w *cp.SecurityGroupWrite, org, id string, prev cp.SecurityGroup) preparedGroup {
	p := preparedGroup{prev: prev, g: w.NewSecurityGroup(org, id, prev.Rules)}
	// The status the write will have is known now: syncing when it has
	// sites (they must confirm), active otherwise.
	p.g.Status = cp.StatusActive
	if len(p.g.Sites) > 0 {
		p.g.Status = cp.StatusSyncing
	}
	p.data = withNewline(appendGroupJSON(make([]byte, 0, groupJSONSize(&p.g)), &p.g))
	p.newRefs, p.oldRefs = p.g.ReferencedPrefixLists(), p.prev.ReferencedPrefixLists()
	p.index = encodeGroupIndex(&p.g)
	return p
}

func (s *Store) tryPutSecurityGroup(ctx context.Context, org, id string, create bool, w *cp.SecurityGroupWrite, inTx bool) (preparedGroup, cp.Change, error) {
	var p preparedGroup
	var snap groupSnapshot
	if !inTx {
		// Outside the write transaction: read what is stored, keep rule
		// ids, encode the new group.
		if !create {
			var err error
			if snap, err = s.snapshotGroup(org, id); err != nil {
				return p, cp.Change{}, err
			}
			if !snap.found {
				return p, cp.Change{}, cp.NotFound(cp.KindSecurityGroup, id)
			}
		}
		p = prepareGroup(w, org, id, snap.prev)
	}
	var change cp.Change
	err := s.write(ctx, func(tx *bolt.Tx) error {
		now := s.opts.Now()
		ob, err := orgBucket(tx, org, true)
		if err != nil {
			return err
		}
		var prevSync *cp.SyncState
		if !create {
			cur, curIdx := getGroup(ob, id)
			if cur == nil {
				return cp.NotFound(cp.KindSecurityGroup, id)
			}
			if inTx {
				var prev cp.SecurityGroup
				if err := decodePrev(&prev, curIdx); err != nil {
					return err
				}
				p = prepareGroup(w, org, id, prev)
			} else if !snap.sameRaw(cur) {
				return errConflict
			}
			st, err := writableSync(ob, cp.KindSecurityGroup, id, now)
			if err != nil {
				return err
			}
			prevSync = &st
		} else if inTx {
			p = prepareGroup(w, org, id, cp.SecurityGroup{})
		}
		g, prev, data, oldRefs, newRefs := p.g, p.prev, p.data, p.oldRefs, p.newRefs
		lists := ob.Bucket(bucketLists)
		// newRefs lists every address that names a prefix list: without
		// one, the rules need no look (250 of them in bbolt's single
		// writer cost more than the lookups).
		for i := 0; len(newRefs) > 0 && i < len(g.Rules); i++ {
			if a := g.Rules[i].Address; strings.HasPrefix(a, cp.PrefixListIDPrefix) && lists.Get([]byte(a)) == nil {
				return cp.Errorf(cp.CodePrefixListNotFound, fmt.Sprintf("rules[%d].address", i),
					"rules[%d].address %q names no prefix list of this organisation; create it first (POST /vpc/prefix-lists) or use a CIDR.", i, a)
			}
		}
		if err := setRefs(ob, id, oldRefs, newRefs); err != nil {
			return err
		}
		affected := map[string]bool{}
		for _, site := range g.Sites {
			affected[site] = true
		}
		for _, site := range prev.Sites {
			affected[site] = true
		}
		// Store the group before revising, so the Revisioner sees it.
		if err := putGroup(ob, id, data, p.index); err != nil {
			return err
		}
		revs, err := s.revise(tx, ob, org, affected)
		if err != nil {
			return err
		}
		p.g.Sync, change, err = s.startSync(tx, ob, org, cp.KindSecurityGroup, id, prevSync, pick(revs, g.Sites), affected, revs, now)
		return err
	})
	return p, change, err
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
		st, err := writableSync(ob, cp.KindSecurityGroup, id, now)
		if err != nil {
			return err
		}
		prev, err := decodeGroup(raw, org, st, now)
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
		return err
	})
	if err != nil {
		return wrap("delete security group", err)
	}
	s.notify(change)
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
func (s *Store) CreatePrefixList(ctx context.Context, org string, w *cp.PrefixListWrite) (string, []byte, error) {
	l, data, err := s.putPrefixList(ctx, org, "", w)
	return l.ID, data, err
}

// ReplacePrefixList replaces a prefix list whole (PUT) and answers with its
// JSON. Prefixes with an unchanged CIDR keep their ids.
func (s *Store) ReplacePrefixList(ctx context.Context, org, id string, w *cp.PrefixListWrite) ([]byte, error) {
	_, data, err := s.putPrefixList(ctx, org, id, w)
	return data, err
}

func (s *Store) putPrefixList(ctx context.Context, org, id string, w *cp.PrefixListWrite) (cp.PrefixList, []byte, error) {
	create := id == ""
	if create {
		id = cp.NewID(cp.PrefixListIDPrefix)
	}
	l, data, change, err := s.tryPutPrefixList(ctx, org, id, create, w, false)
	if errors.Is(err, errConflict) { // see putSecurityGroup
		l, data, change, err = s.tryPutPrefixList(ctx, org, id, create, w, true)
	}
	if err != nil {
		return cp.PrefixList{}, nil, wrap("store prefix list", err)
	}
	s.notify(change)
	return l, withNewline(spliceStatus(data, l.Status)), nil
}

func (s *Store) tryPutPrefixList(ctx context.Context, org, id string, create bool, w *cp.PrefixListWrite, inTx bool) (cp.PrefixList, []byte, cp.Change, error) {
	var prevRaw []byte
	var prev cp.PrefixList
	l := w.NewPrefixList(org, id, nil)
	if !create && !inTx {
		var err error
		if prevRaw, err = s.snapshot(org, bucketLists, id); err != nil {
			return l, nil, cp.Change{}, err
		}
		if prevRaw == nil {
			return l, nil, cp.Change{}, cp.NotFound(cp.KindPrefixList, id)
		}
		if err := json.Unmarshal(prevRaw, &prev); err != nil {
			return l, nil, cp.Change{}, fmt.Errorf("decode prefix list: %w", err)
		}
		l = w.NewPrefixList(org, id, prev.Prefixes)
	}
	var change cp.Change
	var data []byte
	err := s.write(ctx, func(tx *bolt.Tx) error {
		now := s.opts.Now()
		ob, err := orgBucket(tx, org, true)
		if err != nil {
			return err
		}
		lists := ob.Bucket(bucketLists)
		var prevSync *cp.SyncState
		affected := map[string]bool{}
		if !create {
			cur := lists.Get([]byte(id))
			if cur == nil {
				return cp.NotFound(cp.KindPrefixList, id)
			}
			if inTx {
				prev = cp.PrefixList{}
				if err := json.Unmarshal(cur, &prev); err != nil {
					return fmt.Errorf("decode prefix list: %w", err)
				}
				l = w.NewPrefixList(org, id, prev.Prefixes)
			} else if !bytes.Equal(cur, prevRaw) {
				return errConflict
			}
			st, err := writableSync(ob, cp.KindPrefixList, id, now)
			if err != nil {
				return err
			}
			prevSync = &st
			for _, site := range prev.Sites {
				affected[site] = true
			}
		}
		// The list must be confirmed by its own sites and by the sites of
		// every group that refers to it: all of them get new content.
		pending := slices.Clone(l.Sites)
		for _, gid := range referencingGroups(ob, id) {
			var g struct {
				Sites []string `json:"sites"`
			}
			if raw := get(ob, bucketGroups, gid); raw != nil {
				if err := json.Unmarshal(raw, &g); err != nil {
					return fmt.Errorf("decode security group %s: %w", gid, err)
				}
				pending = append(pending, g.Sites...)
			}
		}
		slices.Sort(pending)
		pending = slices.Compact(pending)
		for _, site := range pending {
			affected[site] = true
		}
		l.Status = cp.StatusActive
		if len(pending) > 0 {
			l.Status = cp.StatusSyncing
		}
		if data, err = json.Marshal(&l); err != nil {
			return fmt.Errorf("encode prefix list: %w", err)
		}
		if err := lists.Put([]byte(id), data); err != nil {
			return err
		}
		revs, err := s.revise(tx, ob, org, affected)
		if err != nil {
			return err
		}
		l.Sync, change, err = s.startSync(tx, ob, org, cp.KindPrefixList, id, prevSync, pick(revs, pending), affected, revs, now)
		l.Status = l.Sync.Status // active when every site had already applied it (confirmApplied)
		return err
	})
	return l, data, change, err
}

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
		st, err := writableSync(ob, cp.KindPrefixList, id, now)
		if err != nil {
			return err
		}
		if users := referencingGroups(ob, id); len(users) > 0 {
			return cp.Errorf(cp.CodePrefixListInUse, "", "The prefix list %q is used by the rules of security group %s; change those rules first.",
				id, joinQuoted(users))
		}
		prev, err := decodeList(raw, org, st, now)
		if err != nil {
			return err
		}
		if err := ob.Bucket(bucketLists).Delete([]byte(id)); err != nil {
			return err
		}
		change, err = s.deleted(tx, ob, org, cp.KindPrefixList, id, &st, prev.Sites)
		return err
	})
	if err != nil {
		return wrap("delete prefix list", err)
	}
	s.notify(change)
	return nil
}

func joinQuoted(ids []string) string {
	var b bytes.Buffer
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", id)
	}
	return b.String()
}

// deleted finishes a delete inside its transaction: the resource's sync
// record and status indexes go, and every site it applied to gets the
// revision without it. It returns the change to announce after commit.
func (s *Store) deleted(tx *bolt.Tx, ob *bolt.Bucket, org, kind, id string, st *cp.SyncState, sites []string) (cp.Change, error) {
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
	revs, err := s.revise(tx, ob, org, affected)
	if err != nil {
		return cp.Change{}, err
	}
	if err := touchSites(ob, affected, revs, nil); err != nil {
		return cp.Change{}, err
	}
	return cp.Change{OrgID: org, Sites: sortedKeys(affected), Kind: kind, ID: id, Deleted: true, Revisions: revsOrNil(s, revs)}, nil
}

// revise asks the Revisioner for the revisions of the affected sites.
func (s *Store) revise(tx *bolt.Tx, ob *bolt.Bucket, org string, affected map[string]bool) (map[string]uint64, error) {
	if s.opts.Revisioner == nil || len(affected) == 0 {
		return nil, nil
	}
	revs, err := s.opts.Revisioner.Revise(policyTx{s: s, ob: ob, org: org, now: s.opts.Now()}, org, sortedKeys(affected))
	if err != nil {
		return nil, fmt.Errorf("assign site revisions: %w", err)
	}
	return revs, nil
}

func revsOrNil(s *Store, revs map[string]uint64) map[string]uint64 {
	if s.opts.Revisioner == nil {
		return nil
	}
	return revs
}

// pick returns the revision each of sites must confirm.
func pick(revs map[string]uint64, sites []string) map[string]uint64 {
	out := make(map[string]uint64, len(sites))
	for _, site := range sites {
		out[site] = revs[site] // UnknownRevision when absent
	}
	return out
}

// touchSites creates missing site records and records new desired
// revisions; sites awaited by sync are marked syncing until its deadline.
func touchSites(ob *bolt.Bucket, affected map[string]bool, revs map[string]uint64, sync *cp.SyncState) error {
	for _, id := range sortedKeys(affected) {
		site, err := getSite(ob.Bucket(bucketSites), id)
		if err != nil {
			return err
		}
		if site == nil {
			site = &cp.Site{}
			*site = cp.NewSite(id)
		}
		var awaited bool
		var deadline time.Time
		if sync != nil {
			_, awaited = sync.Awaiting[id]
			deadline = sync.Deadline
		}
		if err := putSite(ob, cp.AssignRevision(*site, revs[id], awaited, deadline)); err != nil {
			return err
		}
	}
	return nil
}
