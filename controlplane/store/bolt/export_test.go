package bolt_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/store"
	"github.com/rampart-fw/rampart/protocol"
)

// TestExport: what Export gives is what the store's reads say, record by
// record: resources as stored with their versions and sync states, sites
// with their revisions, the Revisioner's data and the newest report, and
// the audit trail oldest first.
func TestExport(t *testing.T) {
	ctx := context.Background()
	s, _ := openClocked(t)
	l, err := s.CreatePrefixList(ctx, org, &cp.PrefixListWrite{Name: "L", Prefixes: []cp.PrefixWrite{{CIDR: "192.0.2.0/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	w := webGroup("443", "", "site_a", "site_b")
	w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: 11, Protocol: 6, Port: "22", Address: l.ID})
	g, err := s.CreateSecurityGroup(ctx, org, w)
	if err != nil {
		t.Fatal(err)
	}
	st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: "site_a", Epoch: s.Epoch(), Revision: 1, State: protocol.StateApplied, AgentVersion: "v1"}
	if _, err := s.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: "site_a", Status: &st}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSecurityGroup(ctx, "org_b", webGroup("80", "")); err != nil {
		t.Fatal(err)
	}
	var dumps []*store.Dump
	epoch, err := s.Export(ctx, func(d *store.Dump) error { dumps = append(dumps, d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if epoch != s.Epoch() || len(dumps) != 2 || dumps[0].Org != org || dumps[1].Org != "org_b" {
		t.Fatalf("epoch %q (store %q), %d organisations", epoch, s.Epoch(), len(dumps))
	}
	d := dumps[0]
	if len(d.Groups) != 1 || len(d.Lists) != 1 || d.Groups[0].ID != g.ID || d.Lists[0].ID != l.ID {
		t.Fatalf("resources: %+v %+v", d.Groups, d.Lists)
	}
	if d.Groups[0].Sync.Version != 1 || d.Groups[0].Sync.Awaiting["site_b"] != 1 || d.Groups[0].Sync.Deadline.IsZero() {
		t.Errorf("group sync: %+v", d.Groups[0].Sync)
	}
	var got, want cp.SecurityGroup
	json.Unmarshal(d.Groups[0].JSON, &got)
	json.Unmarshal(g.Body, &want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("group as exported (-written +exported):\n%s", diff)
	}
	var sites []string
	for _, site := range d.Sites {
		sites = append(sites, site.Site.ID)
		read, err := s.GetSite(ctx, org, site.Site.ID)
		if err != nil {
			t.Fatal(err)
		}
		read.SyncDeadline = site.Site.SyncDeadline // reads keep it internal
		if diff := cmp.Diff(read, site.Site); diff != "" {
			t.Errorf("site %s (-read +exported):\n%s", site.Site.ID, diff)
		}
		if len(site.RevisionerData) == 0 {
			t.Errorf("site %s: no Revisioner data", site.Site.ID)
		}
	}
	if diff := cmp.Diff([]string{"site_a", "site_b"}, sites); diff != "" {
		t.Errorf("sites (-want +got):\n%s", diff)
	}
	if d.Sites[0].LastReport != (cp.LastReport{Epoch: s.Epoch(), Revision: 1, State: protocol.StateApplied}) || d.Sites[0].Site.AppliedRevision != 1 {
		t.Errorf("site_a's last report %+v, record %+v", d.Sites[0].LastReport, d.Sites[0].Site)
	}
	events, _, err := s.AuditEvents(ctx, org, cp.AuditQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || len(d.Audit) != 2 || string(d.Audit[0].JSON) != string(events[1]) || string(d.Audit[1].JSON) != string(events[0]) {
		t.Errorf("audit: exported %d events, read %d, or not the same oldest first", len(d.Audit), len(events))
	}
	var e cp.AuditEvent
	json.Unmarshal(d.Audit[1].JSON, &e)
	if e.ID != d.Audit[1].Key.ID() || e.ResourceID != g.ID {
		t.Errorf("audit event %s (%s) under key %s", e.ID, e.ResourceID, d.Audit[1].Key.ID())
	}
}
