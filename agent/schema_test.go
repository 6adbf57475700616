package agent

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/protocol"
)

// TestOldAgentRefusesNewerSchema: an agent limited to schema 1
// (Options.MaxSchema, the version switch) refuses a dual-stack document
// whole: not one write reaches the router, and it reports failed for the
// refused revision with the upgrade sentence. The held policy stays
// enforced and its drift repaired, without hiding the refusal behind an
// applied status; a stale document does not clear it; a newer IPv4-only
// document (schema 1) applies and is reported applied.
func TestOldAgentRefusesNewerSchema(t *testing.T) {
	b := startBroker(t)
	r, cfg := simSite(t, b)
	cfg.ResyncInterval = 100 * time.Millisecond
	opts := testOptions()
	opts.MaxSchema = protocol.SchemaIPv4
	b.publish(t, marshal(t, sampleDoc(1)), true)
	a, _ := runAgentWith(t, cfg, opts)
	eventually(t, "applied revision 1", func() bool { st := b.status(); return st.State == protocol.StateApplied && st.Revision == 1 })
	rows := managedRows(r)

	dual := sampleDoc(2)
	dual.PrefixLists[0].CIDRs = append(dual.PrefixLists[0].CIDRs, "2001:db8:1::/48")
	dual.SecurityGroups[0].Rules[0].Port = "8443" // an IPv4 change too: it must not be applied alone
	dual.Seal()
	if dual.Schema != protocol.SchemaDualStack {
		t.Fatalf("test document is schema %d", dual.Schema)
	}
	r.ResetStats()
	b.publish(t, marshal(t, dual), true)
	want := protocol.SiteStatus{Schema: protocol.StatusSchema, OrgID: "org_demo", SiteID: "site_hq", Epoch: "e1", Revision: 2,
		State: protocol.StateFailed, Error: "the desired state has schema 2, newer than this agent reads (schemas 1 to 1): the document needs a newer agent (schema 2 adds IPv6), so nothing of it was applied; upgrade the agent"}
	got := func() protocol.SiteStatus {
		st := b.status()
		return protocol.SiteStatus{Schema: st.Schema, OrgID: st.OrgID, SiteID: st.SiteID, Epoch: st.Epoch, Revision: st.Revision, State: st.State, Error: st.Error}
	}
	eventually(t, "failed for revision 2", func() bool { return got().State == protocol.StateFailed })
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if n := testutil.ToFloat64(a.m.documents.WithLabelValues("too_new")); n < 1 {
		t.Errorf("too_new documents %v", n)
	}

	// Drift of the held policy is still repaired, and the refusal is still
	// what the agent reports.
	ids := managedIDs(r.Snapshot())
	mustExec(t, r, "/ip/firewall/filter/remove", "=.id="+ids["in/drop"])
	eventually(t, "the drop to come back", func() bool { return managedRows(r) == rows })
	time.Sleep(300 * time.Millisecond) // a few resyncs more
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Errorf("status after a drift repair (-want +got):\n%s", diff)
	}
	for _, row := range r.Snapshot().Filter {
		if row["dst-port"] == "8443" {
			t.Errorf("half of the refused document reached the router: %v", row)
		}
	}
	if w := r.Stats().Writes; w["add"] != 1 || w["set"]+w["remove"] != 0 {
		t.Errorf("writes after the refusal %v; want only the drift repair's one add", w)
	}

	// A stale document (revision 1 again) leaves the refusal standing.
	b.publish(t, marshal(t, sampleDoc(1)), false)
	eventually(t, "the stale document looked at", func() bool { return testutil.ToFloat64(a.m.documents.WithLabelValues("stale")) >= 1 })
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Errorf("status after a stale document (-want +got):\n%s", diff)
	}

	// A newer IPv4-only document applies.
	v4 := sampleDoc(3)
	v4.SecurityGroups[0].Rules[0].Port = "9443"
	v4.Seal()
	b.publish(t, marshal(t, v4), true)
	eventually(t, "applied revision 3", func() bool {
		st := b.status()
		return st.State == protocol.StateApplied && st.Revision == 3 && st.Error == ""
	})
}
