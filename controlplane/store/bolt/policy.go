package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file is the controlplane.PolicyTx of an organisation, inside a
// write (for the Revisioner) and outside one (ViewPolicy).

// policyTx is the Revisioner's view of one organisation inside a write.
type policyTx struct {
	readOnly bool
	ob       *bolt.Bucket
	org      string
	now      time.Time
}

// Policy reads the groups and lists attached to sites from the members
// index, then the lists those groups use.
func (p policyTx) Policy(sites []string) ([]cp.SecurityGroup, []cp.PrefixList, error) {
	groupIDs, listIDs := map[string]bool{}, map[string]bool{}
	c := p.ob.Bucket(bucketMembers).Cursor()
	for _, site := range sites {
		prefix := append([]byte(site), 0)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			kind, id, _ := bytes.Cut(k[len(prefix):], []byte{0})
			if string(kind) == cp.KindSecurityGroup {
				groupIDs[string(id)] = true
			} else {
				listIDs[string(id)] = true
			}
		}
	}
	groups := make([]cp.SecurityGroup, 0, len(groupIDs))
	for _, id := range slices.Sorted(maps.Keys(groupIDs)) {
		raw := get(p.ob, bucketGroups, id)
		if raw == nil {
			return nil, nil, fmt.Errorf("members index names security group %s, which is not stored", id)
		}
		st, err := readSync(p.ob, cp.KindSecurityGroup, id)
		if err != nil {
			return nil, nil, err
		}
		g, err := cp.DecodeSecurityGroup(raw, p.org, st, p.now)
		if err != nil {
			return nil, nil, err
		}
		for _, l := range g.ReferencedPrefixLists() {
			listIDs[l] = true
		}
		groups = append(groups, g)
	}
	lists := make([]cp.PrefixList, 0, len(listIDs))
	for _, id := range slices.Sorted(maps.Keys(listIDs)) {
		raw := get(p.ob, bucketLists, id)
		if raw == nil {
			continue // a rule's reference to a deleted list: the compiler leaves it out
		}
		st, err := readSync(p.ob, cp.KindPrefixList, id)
		if err != nil {
			return nil, nil, err
		}
		l, err := cp.DecodePrefixList(raw, p.org, st, p.now)
		if err != nil {
			return nil, nil, err
		}
		lists = append(lists, l)
	}
	return groups, lists, nil
}

// ViewPolicy calls fn with a read-only PolicyTx of one organisation: the
// committed groups, prefix lists and per-site data in one consistent
// snapshot (SetSiteData fails). The MQTT side uses it to compile and stamp
// documents outside a write, e.g. to republish every site after connecting,
// with the revisions stored beside the policy they were computed from.
func (s *Store) ViewPolicy(ctx context.Context, org string, fn func(cp.PolicyTx) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		if ob == nil {
			return fn(emptyPolicy{})
		}
		return fn(policyTx{readOnly: true, ob: ob, org: org, now: s.opts.Now()})
	})
}

// Orgs returns every organisation that has stored anything, sorted.
func (s *Store) Orgs(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrgs).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list organisations: %w", err)
	}
	return out, nil
}

// emptyPolicy is the view of an organisation that never stored anything.
type emptyPolicy struct{}

func (emptyPolicy) Policy([]string) ([]cp.SecurityGroup, []cp.PrefixList, error) {
	return nil, nil, nil
}

func (emptyPolicy) SiteData(string) ([]byte, error) { return nil, nil }

func (emptyPolicy) SetSiteData(string, []byte) error {
	return errors.New("set site data: read-only view")
}

func (p policyTx) SiteData(site string) ([]byte, error) {
	return slices.Clone(p.ob.Bucket(bucketSiteData).Get([]byte(site))), nil
}

func (p policyTx) SetSiteData(site string, data []byte) error {
	if p.readOnly {
		return errors.New("set site data: read-only view")
	}
	return p.ob.Bucket(bucketSiteData).Put([]byte(site), slices.Clone(data))
}
