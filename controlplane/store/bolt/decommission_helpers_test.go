package bolt_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/protocol"
)

// Helpers of the decommission tests (which came from main after the
// conformance suite took the other status tests, and their helpers, out
// of this package): writes and reads through the store's production
// methods only (GetJSON, Ingest), since the typed reads are gone.

// fakeClock is the tests' clock.
type fakeClock = clock

func (c *clock) Advance(d time.Duration) { c.add(d) }

// compiled is a store with the Revisioner, on a clock of its own.
func compiled(t *testing.T) (*bolt.Store, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s, err := bolt.Open(filepath.Join(t.TempDir(), "rampart.db"), bolt.Options{Now: clk.Now, SyncTimeout: time.Minute, Revisioner: compile.Revisioner{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk
}

func createGroup(ctx context.Context, s *bolt.Store, org string, w *cp.SecurityGroupWrite) (cp.SecurityGroup, error) {
	st, err := s.CreateSecurityGroup(ctx, org, w)
	if err != nil {
		return cp.SecurityGroup{}, err
	}
	return getGroup(ctx, s, org, st.ID)
}

func createList(ctx context.Context, s *bolt.Store, org string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	st, err := s.CreatePrefixList(ctx, org, w)
	if err != nil {
		return cp.PrefixList{}, err
	}
	return getList(ctx, s, org, st.ID)
}

// getGroup and getList read a resource as the API answers it, decoded.
func getGroup(ctx context.Context, s *bolt.Store, org, id string) (cp.SecurityGroup, error) {
	var g cp.SecurityGroup
	st, err := s.GetJSON(ctx, org, cp.KindSecurityGroup, id)
	if err == nil {
		err = json.Unmarshal(st.Body, &g)
	}
	return g, err
}

func getList(ctx context.Context, s *bolt.Store, org, id string) (cp.PrefixList, error) {
	var l cp.PrefixList
	st, err := s.GetJSON(ctx, org, cp.KindPrefixList, id)
	if err == nil {
		err = json.Unmarshal(st.Body, &l)
	}
	return l, err
}

// confirm reports, through Ingest as the MQTT side does, that site applied
// (or failed to apply) revision.
func confirm(ctx context.Context, s *bolt.Store, org, site string, revision uint64, applied bool, errMsg string) error {
	st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: s.Epoch(), Revision: revision, State: protocol.StateApplied}
	if !applied {
		st.State, st.Error = protocol.StateFailed, errMsg
	}
	_, err := reportStatus(ctx, s, org, site, st)
	return err
}

// reportStatus folds one status report into the store through Ingest.
func reportStatus(ctx context.Context, s *bolt.Store, org, site string, st protocol.SiteStatus) (cp.ReportResult, error) {
	res, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Status: &st}})
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

// setPresence folds one presence into the store through Ingest.
func setPresence(ctx context.Context, s *bolt.Store, org, site string, p protocol.Presence) error {
	_, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Presence: &p}})
	return err
}

func replaceList(ctx context.Context, s *bolt.Store, org, id string, w *cp.PrefixListWrite) (cp.PrefixList, error) {
	if _, err := s.ReplacePrefixList(ctx, org, id, w); err != nil {
		return cp.PrefixList{}, err
	}
	return getList(ctx, s, org, id)
}
