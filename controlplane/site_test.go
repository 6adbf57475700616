package controlplane_test

import (
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

const epoch = "0123456789abcdef"

var rules = cp.SiteRules{Epoch: epoch, Revisioned: true, SyncTimeout: time.Minute}

func status(rev uint64, state, errMsg string) protocol.SiteStatus {
	return protocol.SiteStatus{Schema: 1, OrgID: "org_a", SiteID: "site_a", Epoch: epoch, Revision: rev, State: state, Error: errMsg,
		AgentVersion: "v1", RouterOSVersion: "7.20.4", Board: "RB5009UG+S+"}
}

// TestFoldStatus is the site state machine's table: a site's record and
// newest report, one status report, and what the machine decides.
func TestFoldStatus(t *testing.T) {
	seen := t0.Add(-time.Hour)
	versions := func(s cp.Site) cp.Site {
		s.AgentVersion, s.RouterOSVersion, s.Board = "v1", "7.20.4", "RB5009UG+S+"
		return s
	}
	syncing2 := cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 1}
	cases := []struct {
		name  string
		rec   cp.Site
		last  cp.LastReport
		st    protocol.SiteStatus
		rules *cp.SiteRules // nil: rules
		want  cp.StatusOutcome
	}{
		{name: "applied the desired revision: in sync, confirms",
			rec: syncing2, st: status(2, protocol.StateApplied, ""),
			want: cp.StatusOutcome{Result: cp.ReportTaken, Confirm: true, Revision: 2, Applied: true,
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteInSync, DesiredRevision: 2, AppliedRevision: 2}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplied}}},
		{name: "applied an older revision than desired: still syncing, behind (republish)",
			rec: cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 3, AppliedRevision: 1}, st: status(2, protocol.StateApplied, ""),
			want: cp.StatusOutcome{Result: cp.ReportBehind, Confirm: true, Revision: 2, Applied: true,
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 3, AppliedRevision: 2}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplied}}},
		{name: "the same older revision applied again (a reconnected agent): behind",
			rec:  cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 3, AppliedRevision: 2},
			last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplied}, st: status(2, protocol.StateApplied, ""),
			want: cp.StatusOutcome{Result: cp.ReportBehind, Confirm: true, Revision: 2, Applied: true,
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 3, AppliedRevision: 2}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplied}}},
		{name: "failed an older revision than desired: behind",
			rec: cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 3, AppliedRevision: 1}, st: status(2, protocol.StateFailed, "no such item"),
			want: cp.StatusOutcome{Result: cp.ReportBehind, Confirm: true, Revision: 2, Error: "no such item",
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteFailed, DesiredRevision: 3, AppliedRevision: 1, LastError: "no such item"}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateFailed}}},
		{name: "applying an older revision than desired: taken, not behind (it reports again when done)",
			rec: cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 3, AppliedRevision: 1, SyncDeadline: t0.Add(time.Hour)}, st: status(2, protocol.StateApplying, ""),
			want: cp.StatusOutcome{Result: cp.ReportTaken,
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 3, AppliedRevision: 1, SyncDeadline: t0.Add(time.Hour)}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplying}}},
		{name: "failed: failed with its error, fails",
			rec: syncing2, st: status(2, protocol.StateFailed, "no such item"),
			want: cp.StatusOutcome{Result: cp.ReportTaken, Confirm: true, Revision: 2, Error: "no such item",
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteFailed, DesiredRevision: 2, AppliedRevision: 1, LastError: "no such item"}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateFailed}}},
		{name: "applying: syncing until the deadline",
			rec: cp.Site{ID: "site_a", State: cp.SiteUnknown, DesiredRevision: 2, AppliedRevision: 1}, st: status(2, protocol.StateApplying, ""),
			want: cp.StatusOutcome{Result: cp.ReportTaken,
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 1, SyncDeadline: t0.Add(time.Minute)}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplying}}},
		{name: "applying a revision already failed stays failed",
			rec:  cp.Site{ID: "site_a", State: cp.SiteFailed, DesiredRevision: 2, AppliedRevision: 2},
			last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplying}, st: status(2, protocol.StateApplying, ""),
			want: cp.StatusOutcome{Result: cp.ReportTaken,
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteFailed, DesiredRevision: 2, AppliedRevision: 2}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplying}}},
		{name: "older than the last taken: stale, versions kept",
			rec: syncing2, last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplying}, st: status(1, protocol.StateApplied, ""),
			want: cp.StatusOutcome{Result: cp.ReportStale, Site: versions(syncing2),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplying}}},
		{name: "applying after that revision's outcome: stale",
			rec: syncing2, last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateFailed}, st: status(2, protocol.StateApplying, ""),
			want: cp.StatusOutcome{Result: cp.ReportStale, Site: versions(syncing2),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateFailed}}},
		{name: "another epoch: confirms nothing",
			rec: syncing2, st: func() protocol.SiteStatus {
				s := status(9, protocol.StateApplied, "")
				s.Epoch = "fedcba9876543210"
				return s
			}(),
			want: cp.StatusOutcome{Result: cp.ReportOtherEpoch, Site: versions(syncing2)}},
		{name: "forged: applied for revision 2^64-1 is refused and changes nothing",
			rec: syncing2, last: cp.LastReport{Epoch: epoch, Revision: 1, State: protocol.StateApplied}, st: status(math.MaxUint64, protocol.StateApplied, ""),
			want: cp.StatusOutcome{Result: cp.ReportRefused, Site: syncing2, Last: cp.LastReport{Epoch: epoch, Revision: 1, State: protocol.StateApplied}}},
		{name: "forged: one past the desired revision is refused",
			rec: syncing2, st: status(3, protocol.StateFailed, "boom"),
			want: cp.StatusOutcome{Result: cp.ReportRefused, Site: syncing2}},
		{name: "forged: a site given no revision yet refuses any",
			rec: cp.NewSite("site_a"), st: status(1, protocol.StateApplying, ""),
			want: cp.StatusOutcome{Result: cp.ReportRefused, Site: cp.NewSite("site_a")}},
		{name: "without a Revisioner any revision is believed",
			rec: cp.NewSite("site_a"), st: status(1, protocol.StateApplied, ""), rules: &cp.SiteRules{Epoch: epoch, SyncTimeout: time.Minute},
			want: cp.StatusOutcome{Result: cp.ReportTaken, Confirm: true, Revision: 1, Applied: true,
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteInSync, AppliedRevision: 1}),
				Last: cp.LastReport{Epoch: epoch, Revision: 1, State: protocol.StateApplied}}},
		{name: "an offline site stays offline",
			rec: cp.Site{ID: "site_a", State: cp.SiteOffline, DesiredRevision: 2, AppliedRevision: 1, LastSeen: &seen}, st: status(2, protocol.StateApplied, ""),
			want: cp.StatusOutcome{Result: cp.ReportTaken, Confirm: true, Revision: 2, Applied: true,
				Site: versions(cp.Site{ID: "site_a", State: cp.SiteOffline, DesiredRevision: 2, AppliedRevision: 2, LastSeen: &seen}),
				Last: cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplied}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rules
			if c.rules != nil {
				r = *c.rules
			}
			got := cp.FoldStatus(c.rec, c.last, c.st, r, t0)
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("FoldStatus (-want +got):\n%s", d)
			}
		})
	}
}

// TestFoldStatusBoundsText: an agent's text of any size is stored within
// the bounds, cut on a character boundary, and the cut is marked.
func TestFoldStatusBoundsText(t *testing.T) {
	huge := strings.Repeat("é", 4<<20) // 8 MB, as in issue #13
	st := status(2, protocol.StateFailed, huge)
	st.AgentVersion, st.RouterOSVersion, st.Board = huge, huge, huge
	got := cp.FoldStatus(cp.Site{ID: "site_a", DesiredRevision: 2}, cp.LastReport{}, st, rules, t0)
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{
		{"site error", got.Site.LastError, cp.MaxSiteError},
		{"error to confirm", got.Error, cp.MaxSiteError},
		{"agent version", got.Site.AgentVersion, cp.MaxSiteText},
		{"routeros version", got.Site.RouterOSVersion, cp.MaxSiteText},
		{"board", got.Site.Board, cp.MaxSiteText},
	} {
		if len(f.v) > f.max || !utf8.ValidString(f.v) || !strings.HasSuffix(f.v, "…") || len(f.v) < f.max-4 {
			t.Errorf("%s: %d bytes, valid UTF-8 %v, ends %q; want at most %d, cut marked", f.name, len(f.v), utf8.ValidString(f.v), f.v[max(len(f.v)-8, 0):], f.max)
		}
	}
	if got := protocol.Truncate("short", 10); got != "short" {
		t.Errorf("Truncate kept %q of a short string", got)
	}
}

// TestFoldPresence: offline wins; back online resumes what the revisions
// and the newest report say; the agent's clock is believed only up to now.
func TestFoldPresence(t *testing.T) {
	later, earlier := t0.Add(time.Hour), t0.Add(-time.Hour)
	on := func(at time.Time) protocol.Presence { return protocol.Presence{State: protocol.PresenceOnline, At: at} }
	cases := []struct {
		name string
		rec  cp.Site
		last cp.LastReport
		p    protocol.Presence
		want cp.Site
	}{
		{name: "offline", rec: cp.Site{ID: "s", State: cp.SiteInSync, Online: true},
			p: protocol.Presence{State: protocol.PresenceOffline, At: earlier}, want: cp.Site{ID: "s", State: cp.SiteOffline, LastSeen: &earlier}},
		{name: "online in sync", rec: cp.Site{ID: "s", State: cp.SiteOffline, DesiredRevision: 2, AppliedRevision: 2},
			p: on(earlier), want: cp.Site{ID: "s", State: cp.SiteInSync, Online: true, DesiredRevision: 2, AppliedRevision: 2, LastSeen: &earlier}},
		{name: "online behind", rec: cp.Site{ID: "s", State: cp.SiteOffline, DesiredRevision: 3, AppliedRevision: 2},
			p: on(earlier), want: cp.Site{ID: "s", State: cp.SiteSyncing, Online: true, DesiredRevision: 3, AppliedRevision: 2, LastSeen: &earlier}},
		{name: "online after a failure", rec: cp.Site{ID: "s", State: cp.SiteOffline, DesiredRevision: 3, AppliedRevision: 2},
			last: cp.LastReport{Epoch: epoch, Revision: 3, State: protocol.StateFailed},
			p:    on(earlier), want: cp.Site{ID: "s", State: cp.SiteFailed, Online: true, DesiredRevision: 3, AppliedRevision: 2, LastSeen: &earlier}},
		{name: "a clock in the future reads now", rec: cp.NewSite("s"),
			p: on(later), want: cp.Site{ID: "s", State: cp.SiteUnknown, Online: true, LastSeen: &t0}},
		{name: "online keeps a known state", rec: cp.Site{ID: "s", State: cp.SiteFailed, DesiredRevision: 1},
			p: on(time.Time{}), want: cp.Site{ID: "s", State: cp.SiteFailed, Online: true, DesiredRevision: 1, LastSeen: &t0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if d := cmp.Diff(c.want, cp.FoldPresence(c.rec, c.last, c.p, epoch, t0)); d != "" {
				t.Errorf("FoldPresence (-want +got):\n%s", d)
			}
		})
	}
}

// TestSettleAndAssign: a write's revisions and the settling after it.
func TestSettleAndAssign(t *testing.T) {
	deadline := t0.Add(time.Minute)
	type settleCase struct {
		name    string
		got     cp.Site
		changed bool
		want    cp.Site
	}
	cases := []settleCase{
		{name: "assign an awaited revision: syncing until the deadline",
			got:  cp.AssignRevision(cp.Site{ID: "s", State: cp.SiteInSync, DesiredRevision: 1, AppliedRevision: 1}, 2, true, deadline),
			want: cp.Site{ID: "s", State: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 1, SyncDeadline: deadline}},
		{name: "assign never lowers the revision",
			got:  cp.AssignRevision(cp.Site{ID: "s", State: cp.SiteInSync, DesiredRevision: 5}, 2, false, deadline),
			want: cp.Site{ID: "s", State: cp.SiteInSync, DesiredRevision: 5}},
	}
	settled, changed := cp.Settle(cp.Site{ID: "s", State: cp.SiteInSync, DesiredRevision: 2, AppliedRevision: 1}, deadline)
	cases = append(cases, settleCase{name: "settle a site behind: syncing", got: settled, changed: changed, want: cp.Site{ID: "s", State: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 1, SyncDeadline: deadline}})
	settled, changed = cp.Settle(cp.Site{ID: "s", State: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 2}, deadline)
	cases = append(cases, settleCase{name: "settle a site caught up: in sync", got: settled, changed: changed, want: cp.Site{ID: "s", State: cp.SiteInSync, DesiredRevision: 2, AppliedRevision: 2}})
	for _, c := range cases {
		if d := cmp.Diff(c.want, c.got); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, d)
		}
		if strings.HasPrefix(c.name, "settle") && !c.changed {
			t.Errorf("%s: reported unchanged", c.name)
		}
	}
	if _, changed := cp.Settle(cp.Site{ID: "s", State: cp.SiteFailed, DesiredRevision: 2, AppliedRevision: 1}, deadline); changed {
		t.Error("Settle changed a failed site")
	}
	if rev, ok := cp.StandingRevision(cp.Site{AppliedRevision: 3}, cp.LastReport{Revision: 3, State: protocol.StateFailed}); ok {
		t.Errorf("a failed repair of revision 3 stands by %d", rev)
	}
	if rev, ok := cp.StandingRevision(cp.Site{AppliedRevision: 3}, cp.LastReport{Revision: 3, State: protocol.StateApplied}); !ok || rev != 3 {
		t.Errorf("StandingRevision = %d, %v; want 3", rev, ok)
	}
}

// TestUnforged: what a forged report left is undone, and nothing else.
func TestUnforged(t *testing.T) {
	forged := cp.LastReport{Epoch: epoch, Revision: math.MaxUint64, State: protocol.StateApplied}
	honest := cp.LastReport{Epoch: epoch, Revision: 2, State: protocol.StateApplied}
	other := cp.LastReport{Epoch: "fedcba9876543210", Revision: 9, State: protocol.StateApplied}
	cases := []struct {
		name     string
		rec      cp.Site
		last     cp.LastReport
		wantRec  cp.Site
		wantLast cp.LastReport
		changed  bool
	}{
		{"forged applied revision and report", cp.Site{ID: "s", State: cp.SiteInSync, DesiredRevision: 2, AppliedRevision: math.MaxUint64}, forged,
			cp.Site{ID: "s", State: cp.SiteUnknown, DesiredRevision: 2}, cp.LastReport{}, true},
		{"a forged applying left only the report", cp.Site{ID: "s", State: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 1},
			cp.LastReport{Epoch: epoch, Revision: 7, State: protocol.StateApplying},
			cp.Site{ID: "s", State: cp.SiteSyncing, DesiredRevision: 2, AppliedRevision: 1}, cp.LastReport{}, true},
		{"honest", cp.Site{ID: "s", State: cp.SiteInSync, DesiredRevision: 2, AppliedRevision: 2}, honest,
			cp.Site{ID: "s", State: cp.SiteInSync, DesiredRevision: 2, AppliedRevision: 2}, honest, false},
		{"another epoch's report is another store's numbers", cp.Site{ID: "s", State: cp.SiteSyncing, DesiredRevision: 2}, other,
			cp.Site{ID: "s", State: cp.SiteSyncing, DesiredRevision: 2}, other, false},
	}
	for _, c := range cases {
		rec, last, changed := cp.Unforged(c.rec, c.last, epoch)
		if d := cmp.Diff(c.wantRec, rec); d != "" {
			t.Errorf("%s: record (-want +got):\n%s", c.name, d)
		}
		if d := cmp.Diff(c.wantLast, last); d != "" || changed != c.changed {
			t.Errorf("%s: report (-want +got), changed %v:\n%s", c.name, changed, d)
		}
	}
}
