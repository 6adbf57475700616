package bolt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file is the controlplane.PolicyTx of an organisation, inside a
// write (for the Revisioner) and outside one (ViewPolicy).

// policyTx is the Revisioner's view of one organisation inside a write.
type policyTx struct {
	s        *Store
	readOnly bool
	ob       *bolt.Bucket
	org      string
	now      time.Time
}

func (p policyTx) SecurityGroups() ([]cp.SecurityGroup, error) {
	var out []cp.SecurityGroup
	err := each(p.ob, cp.KindSecurityGroup, func(id string, raw []byte, st cp.SyncState) error {
		g, err := p.s.decodeGroup(raw, p.org, id, st, p.now)
		out = append(out, g)
		return err
	})
	return out, err
}

func (p policyTx) PrefixLists() ([]cp.PrefixList, error) {
	var out []cp.PrefixList
	err := each(p.ob, cp.KindPrefixList, func(_ string, raw []byte, st cp.SyncState) error {
		l, err := decodeList(raw, p.org, st, p.now)
		out = append(out, l)
		return err
	})
	return out, err
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
		return fn(policyTx{s: s, readOnly: true, ob: ob, org: org, now: s.opts.Now()})
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

func (emptyPolicy) SecurityGroups() ([]cp.SecurityGroup, error) { return nil, nil }

func (emptyPolicy) PrefixLists() ([]cp.PrefixList, error) { return nil, nil }

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
