package bolt

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// The file's layout has a version, meta/schema (decimal). Open migrates an
// older file once, in one transaction, and refuses a newer one; the rest of
// the package reads and writes only the current layout.
//
//	0  (no meta/schema) groups stored as the value groups/<id>, their
//	   index at gindex/<id> or none at all, beside groups in a bucket of
//	   their own; no reports bucket in older organisations.
//	1  every group in its own bucket, json and index; each organisation
//	   has every bucket of orgBucket but members.
//	2  the members index: which groups and lists each site holds.
//	3  no site record or newest report carries a revision above the site's
//	   desired one: what forged reports left before they were refused.
//	4  every organisation has the audit and auditres buckets (audit.go),
//	   and sync records carry the resource's version (its ETag): a build
//	   before it would drop versions as it rewrote them.
//	5  the decommissioning and denied buckets (decommission.go), which Open
//	   creates: a build before it would let a decommissioned site's
//	   credentials and reports in again.
//	6  every organisation has the history bucket (history.go): a build
//	   before it would write sites without recording their transitions.
const schemaVersion = 6

var keySchema = []byte("schema")

// migrations[v] takes a file from version v to v+1.
var migrations = []func(tx *bolt.Tx) error{
	migrateGroupBuckets,
	migrateMembers,
	migrateUnforge,
	migrateAudit,
	migrateDecommission,
	migrateHistory,
}

// migrateDecommission (4 → 5): the buckets exist already (Open creates
// them); the version keeps older builds away.
func migrateDecommission(*bolt.Tx) error { return nil }

// migrateAudit (3 → 4) gives every organisation the audit buckets
// (orgBucket creates what is missing); versions start at 0 and the next
// write makes them 1.
func migrateAudit(tx *bolt.Tx) error {
	return eachOrg(tx, func(string, *bolt.Bucket) error { return nil })
}

// migrateHistory (5 → 6) gives every organisation the history bucket
// (orgBucket creates what is missing); histories start empty.
func migrateHistory(tx *bolt.Tx) error {
	return eachOrg(tx, func(string, *bolt.Bucket) error { return nil })
}

// migrate brings the file to schemaVersion, or refuses a file written by a
// newer build. It runs in Open's transaction.
func migrate(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	v := 0
	if raw := meta.Get(keySchema); raw != nil {
		var err error
		if v, err = strconv.Atoi(string(raw)); err != nil || v < 0 {
			return fmt.Errorf("read schema version %q: not a version", raw)
		}
	}
	if v > schemaVersion {
		return fmt.Errorf("check schema version: the file has version %d, newer than this build's %d; run the build that wrote it or a newer one", v, schemaVersion)
	}
	for ; v < schemaVersion; v++ {
		if err := migrations[v](tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
		}
	}
	return meta.Put(keySchema, []byte(strconv.Itoa(schemaVersion)))
}

// migrateGroupBuckets (0 → 1) moves every group stored as a value into a
// bucket of its own with its index (computed from its JSON when it has
// none), drops the gindex buckets, and gives every organisation every
// bucket.
func migrateGroupBuckets(tx *bolt.Tx) error {
	return eachOrg(tx, func(org string, ob *bolt.Bucket) error {
		groups, gindex := ob.Bucket(bucketGroups), ob.Bucket(bucketGIndex)
		type old struct{ id, raw, idx []byte }
		var moves []old
		if err := groups.ForEach(func(k, v []byte) error {
			if v != nil { // a value, not a bucket
				var idx []byte
				if gindex != nil {
					idx = slices.Clone(gindex.Get(k))
				}
				moves = append(moves, old{slices.Clone(k), slices.Clone(v), idx})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, m := range moves {
			if m.idx == nil {
				var g cp.SecurityGroup
				if err := json.Unmarshal(m.raw, &g); err != nil {
					return fmt.Errorf("decode security group %s of %s: %w", m.id, org, err)
				}
				m.idx = encodeGroupIndex(&g)
			}
			if err := groups.Delete(m.id); err != nil {
				return err
			}
			if err := putGroup(ob, string(m.id), m.raw, m.idx); err != nil {
				return err
			}
		}
		if gindex != nil {
			return ob.DeleteBucket(bucketGIndex)
		}
		return nil
	})
}

// migrateMembers (1 → 2) builds the members index from every group's index
// and every list's JSON.
func migrateMembers(tx *bolt.Tx) error {
	return eachOrg(tx, func(org string, ob *bolt.Bucket) error {
		if err := ob.Bucket(bucketGroups).ForEach(func(id, _ []byte) error {
			var g cp.SecurityGroup
			if err := decodePrev(&g, ob.Bucket(bucketGroups).Bucket(id).Get(keyGroupIndex)); err != nil {
				return fmt.Errorf("security group %s of %s: %w", id, org, err)
			}
			return setMembers(ob, cp.KindSecurityGroup, string(id), nil, g.Sites)
		}); err != nil {
			return err
		}
		return ob.Bucket(bucketLists).ForEach(func(id, raw []byte) error {
			var l cp.PrefixList
			if err := json.Unmarshal(raw, &l); err != nil {
				return fmt.Errorf("decode prefix list %s of %s: %w", id, org, err)
			}
			return setMembers(ob, cp.KindPrefixList, string(id), nil, l.Sites)
		})
	})
}

// eachOrg calls fn with every organisation's bucket, every bucket of
// orgBucket in it. The names are copied out first, so fn may change the
// buckets.
func eachOrg(tx *bolt.Tx, fn func(org string, ob *bolt.Bucket) error) error {
	var orgs []string
	if err := tx.Bucket(bucketOrgs).ForEach(func(k, _ []byte) error {
		orgs = append(orgs, string(k))
		return nil
	}); err != nil {
		return err
	}
	for _, org := range orgs {
		ob, err := orgBucket(tx, org, true)
		if err != nil {
			return err
		}
		if err := fn(org, ob); err != nil {
			return err
		}
	}
	return nil
}

// migrateUnforge (2 → 3) undoes what forged status reports left in site
// records before they were refused (controlplane.Unforged).
func migrateUnforge(tx *bolt.Tx) error {
	epoch := string(tx.Bucket(bucketMeta).Get(keyEpoch))
	return eachOrg(tx, func(org string, ob *bolt.Bucket) error {
		var ids []string
		if err := ob.Bucket(bucketSites).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		}); err != nil {
			return err
		}
		for _, id := range ids {
			rec, last, err := readSite(ob, id)
			if err != nil {
				return fmt.Errorf("site %s of %s: %w", id, org, err)
			}
			rec, last, changed := cp.Unforged(rec, last, epoch)
			if !changed {
				continue
			}
			// A repair of the file, not a transition of the site: no
			// history (putSite, not storeSite).
			if err := putSite(ob.Bucket(bucketSites), id, &rec); err != nil {
				return err
			}
			if last == (cp.LastReport{}) {
				err = ob.Bucket(bucketReports).Delete([]byte(id))
			} else {
				err = putJSON(ob.Bucket(bucketReports), id, last)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
