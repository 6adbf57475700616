package controlplane_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// TestTransitionOf is the table of what a site's history records: a
// change of state or presence, or a new error of a failed site; not a
// revision moving within one state.
func TestTransitionOf(t *testing.T) {
	at := time.Date(2026, 12, 4, 23, 0, 0, 0, time.FixedZone("CET", 3600))
	inSync := cp.Site{ID: "site_a", State: cp.SiteInSync, Online: true, DesiredRevision: 3, AppliedRevision: 3}
	with := func(s cp.Site, f func(*cp.Site)) cp.Site { f(&s); return s }
	cases := []struct {
		name       string
		prev, next cp.Site
		want       *cp.SiteTransition
	}{
		{name: "a write gives a new revision: in_sync → syncing",
			prev: inSync, next: with(inSync, func(s *cp.Site) { s.State, s.DesiredRevision = cp.SiteSyncing, 4 }),
			want: &cp.SiteTransition{At: at.UTC(), From: cp.SiteInSync, To: cp.SiteSyncing, DesiredRevision: 4, AppliedRevision: 3, Online: true}},
		{name: "applied: syncing → in_sync",
			prev: with(inSync, func(s *cp.Site) { s.State, s.DesiredRevision = cp.SiteSyncing, 4 }),
			next: with(inSync, func(s *cp.Site) { s.DesiredRevision, s.AppliedRevision = 4, 4 }),
			want: &cp.SiteTransition{At: at.UTC(), From: cp.SiteSyncing, To: cp.SiteInSync, DesiredRevision: 4, AppliedRevision: 4, Online: true}},
		{name: "failed with its error",
			prev: with(inSync, func(s *cp.Site) { s.State, s.DesiredRevision = cp.SiteSyncing, 4 }),
			next: with(inSync, func(s *cp.Site) { s.State, s.DesiredRevision, s.LastError = cp.SiteFailed, 4, "no such item" }),
			want: &cp.SiteTransition{At: at.UTC(), From: cp.SiteSyncing, To: cp.SiteFailed, DesiredRevision: 4, AppliedRevision: 3, Error: "no such item", Online: true}},
		{name: "failed again with another error",
			prev: with(inSync, func(s *cp.Site) { s.State, s.LastError = cp.SiteFailed, "no such item" }),
			next: with(inSync, func(s *cp.Site) { s.State, s.DesiredRevision, s.LastError = cp.SiteFailed, 5, "timeout" }),
			want: &cp.SiteTransition{At: at.UTC(), From: cp.SiteFailed, To: cp.SiteFailed, DesiredRevision: 5, AppliedRevision: 3, Error: "timeout", Online: true}},
		{name: "failed again with the same error: nothing new",
			prev: with(inSync, func(s *cp.Site) { s.State, s.LastError = cp.SiteFailed, "no such item" }),
			next: with(inSync, func(s *cp.Site) { s.State, s.DesiredRevision, s.LastError = cp.SiteFailed, 5, "no such item" })},
		{name: "the agent comes online, state unknown as before",
			prev: cp.Site{ID: "site_a", State: cp.SiteUnknown}, next: cp.Site{ID: "site_a", State: cp.SiteUnknown, Online: true},
			want: &cp.SiteTransition{At: at.UTC(), From: cp.SiteUnknown, To: cp.SiteUnknown, Online: true}},
		{name: "offline",
			prev: inSync, next: with(inSync, func(s *cp.Site) { s.State, s.Online = cp.SiteOffline, false }),
			want: &cp.SiteTransition{At: at.UTC(), From: cp.SiteInSync, To: cp.SiteOffline, DesiredRevision: 3, AppliedRevision: 3}},
		{name: "a revision moving within syncing",
			prev: with(inSync, func(s *cp.Site) { s.State, s.DesiredRevision = cp.SiteSyncing, 4 }),
			next: with(inSync, func(s *cp.Site) { s.State, s.DesiredRevision = cp.SiteSyncing, 5 })},
		{name: "last seen and versions change nothing",
			prev: inSync, next: with(inSync, func(s *cp.Site) { s.AgentVersion, s.LastSeen = "v2", &at })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := cp.TransitionOf(c.prev, c.next, at)
			var gotp *cp.SiteTransition
			if ok {
				gotp = &got
			}
			if diff := cmp.Diff(c.want, gotp); diff != "" {
				t.Errorf("TransitionOf (-want +got):\n%s", diff)
			}
		})
	}
}
