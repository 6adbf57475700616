package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/protocol"
)

// testDocumentTooLarge: with the compiler as Revisioner, groups of 250
// rules whose descriptions JSON escapes to six bytes a character (about
// 450 KB each) are attached to one site until its document would exceed
// what an agent takes (protocol.MaxDesiredStateBytes). That create is
// refused with document_too_large naming the site, and so is a replace
// that would attach one more such group to it; each leaves nothing: no
// group, no change to the site records, no change event, no audit event.
// Every document a committed write handed over fits once stamped with the
// store's epoch, as the broker checks.
func testDocumentTooLarge(t *testing.T, open Opener) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, Options{Revisioner: compile.Revisioner{}, Now: clk.Now, SyncTimeout: time.Minute})
	changes := record(s)
	big := func(name string, sites ...string) *cp.SecurityGroupWrite {
		rules := make([]cp.FilterRuleWrite, cp.MaxRules)
		for i := range rules {
			rules[i] = cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + i),
				Address: "10.0.0.0/8", Description: strings.Repeat("<", 255)}
		}
		return &cp.SecurityGroupWrite{Name: name, Rules: rules, Sites: sites}
	}
	type state struct {
		Groups  []string
		Sites   []cp.Site
		Audit   int
		Changes int
	}
	snapshot := func() state {
		t.Helper()
		var st state
		for _, g := range listGroups(t, s) {
			st.Groups = append(st.Groups, g.ID+" "+g.Name+" "+strings.Join(g.Sites, ","))
		}
		var err error
		if st.Sites, err = s.ListSites(ctx, org); err != nil {
			t.Fatal(err)
		}
		events, _, err := s.AuditEvents(ctx, org, cp.AuditQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		st.Audit, st.Changes = len(events), len(changes.list())
		return st
	}
	small, err := createGroup(ctx, s, org, group("Small", []string{"site_b"}))
	if err != nil {
		t.Fatal(err)
	}
	var refused error
	var before state
	created := 0
	for i := range 12 {
		before = snapshot()
		if _, refused = createGroup(ctx, s, org, big(fmt.Sprintf("Big %02d", i), "site_a")); refused != nil {
			break
		}
		created++
	}
	if cp.ErrorCode(refused) != cp.CodeDocumentTooLarge {
		t.Fatalf("after %d groups on one site: %v; want document_too_large", created, refused)
	}
	if created < 5 {
		t.Fatalf("refused after %d groups of about 450 KB; a document takes 4 MiB", created)
	}
	for _, want := range []string{`site "site_a"`, "4194304 bytes", "nothing was changed", "detach"} {
		if !strings.Contains(refused.Error(), want) {
			t.Errorf("refusal %q does not say %q", refused, want)
		}
	}
	if d := cmp.Diff(before, snapshot()); d != "" {
		t.Errorf("the refused create changed the store (-before +after):\n%s", d)
	}

	// The same through a replace: the small group, no longer syncing,
	// becomes one more big group of site_a.
	clk.add(2 * time.Minute)
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	before = snapshot()
	_, err = s.ReplaceSecurityGroup(ctx, org, small.ID, big("Small 00", "site_b", "site_a"))
	if cp.ErrorCode(err) != cp.CodeDocumentTooLarge || !strings.Contains(err.Error(), `site "site_a"`) {
		t.Fatalf("replace that makes site_a's document too large: %v; want document_too_large naming site_a", err)
	}
	if d := cmp.Diff(before, snapshot()); d != "" {
		t.Errorf("the refused replace changed the store (-before +after):\n%s", d)
	}

	// What was committed can be published.
	largest := 0
	for _, ch := range changes.list() {
		for site, d := range ch.Documents {
			d.Epoch = s.Epoch()
			b, err := json.Marshal(&d)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > protocol.MaxDesiredStateBytes {
				t.Errorf("committed document of %s is %d bytes, more than %d", site, len(b), protocol.MaxDesiredStateBytes)
			}
			largest = max(largest, len(b))
		}
	}
	if largest < protocol.MaxDesiredStateBytes*3/4 {
		t.Errorf("the largest committed document is %d bytes; the test meant to come near %d", largest, protocol.MaxDesiredStateBytes)
	}
}
