package bolt_test

import (
	"context"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
)

// The store's writes answer with JSON, as the API needs them; these read
// the written resource back decoded, for tests that check its fields.

func createGroup(ctx context.Context, s *bolt.Store, org string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	created, err := s.CreateSecurityGroup(ctx, org, w)
	id := created.ID
	if err != nil {
		return cp.SecurityGroup{}, err
	}
	return s.GetSecurityGroup(ctx, org, id)
}

func replaceGroup(ctx context.Context, s *bolt.Store, org, id string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	if _, err := s.ReplaceSecurityGroup(ctx, org, id, w); err != nil {
		return cp.SecurityGroup{}, err
	}
	return s.GetSecurityGroup(ctx, org, id)
}

func createList(ctx context.Context, s *bolt.Store, org string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	created, err := s.CreatePrefixList(ctx, org, w)
	id := created.ID
	if err != nil {
		return cp.PrefixList{}, err
	}
	return s.GetPrefixList(ctx, org, id)
}

func replaceList(ctx context.Context, s *bolt.Store, org, id string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	if _, err := s.ReplacePrefixList(ctx, org, id, w); err != nil {
		return cp.PrefixList{}, err
	}
	return s.GetPrefixList(ctx, org, id)
}
