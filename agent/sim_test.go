package agent

import (
	"context"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/agent/reconcile"
	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// simAgent is an agent wired to a simulated router, driven by calling sync
// directly (no broker): the reconciler's tests.
type simAgent struct {
	*Agent
	r *rossim.Router
}

func newSim(t testing.TB, opts rossim.Options) *rossim.Router {
	t.Helper()
	r, err := rossim.Listen("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func testConfig(t testing.TB, routerAddr string) Config {
	u, _ := url.Parse("tcp://127.0.0.1:1")
	return Config{
		MQTTURL: u, OrgID: "org_demo", SiteID: "site_hq", SiteSecret: "x", TopicRoot: protocol.DefaultTopicRoot,
		RouterOSAddr: routerAddr, RouterOSUser: "admin", StateDir: t.TempDir(),
		ResyncInterval: time.Hour, WANList: "WAN",
	}
}

func newSimAgent(t testing.TB, r *rossim.Router) *simAgent {
	t.Helper()
	a, err := New(testConfig(t, r.Addr()), Options{RouterTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.router.Close() })
	return &simAgent{a, r}
}

// apply makes d current and syncs once.
func (s *simAgent) apply(t testing.TB, d protocol.DesiredState) {
	t.Helper()
	s.desired = &d
	if err := s.sync(context.Background()); err != nil {
		t.Fatalf("sync revision %d: %v", d.Revision, err)
	}
}

// remaining is what the planner would still write against the router now.
func (s *simAgent) remaining(t testing.TB) []reconcile.Op {
	t.Helper()
	st, err := s.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w := render.Render(s.desired, render.Options{WANList: "WAN", Guard: s.guard(st)})
	return reconcile.Plan(st.filter, st.addrs, w)
}

func writes(st rossim.Stats) int {
	n := 0
	for _, v := range st.Writes {
		n += v
	}
	return n
}

// doc builds a sealed document.
func doc(rev uint64, groups []protocol.SecurityGroup, lists []protocol.PrefixList) protocol.DesiredState {
	d := protocol.DesiredState{OrgID: "org_demo", SiteID: "site_hq", Epoch: "e1", Revision: rev,
		SecurityGroups: groups, PrefixLists: lists}
	d.Seal()
	return d
}

func sampleDoc(rev uint64) protocol.DesiredState {
	return doc(rev, []protocol.SecurityGroup{{ID: "sec_grp_web", Name: "Web", Rules: []protocol.Rule{
		{ID: "fltr_https", Direction: "inbound", Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "Allow HTTPS"},
		{ID: "fltr_ssh", Direction: "inbound", Order: 30, Protocol: 6, Port: "22", Address: "prfx_lst_office", Description: "SSH from office"},
		{ID: "fltr_dns", Direction: "outbound", Order: 5, Protocol: 17, Port: "53", Address: "198.51.100.53/32", Description: "DNS"},
	}}}, []protocol.PrefixList{
		{ID: "prfx_lst_office", Name: "Office", CIDRs: []string{"203.0.113.0/24", "192.0.2.7/32"}},
		{ID: "prfx_lst_unused", Name: "Unused", CIDRs: []string{"10.9.0.0/16"}},
	})
}

var (
	wanHost = netip.MustParseAddr("203.0.113.9")
	lanHost = netip.MustParseAddr("192.168.88.10")
)

func inbound(port int) rossim.Packet {
	return rossim.Packet{Chain: "forward", InInterface: "ether1", OutInterface: "bridge", Src: wanHost, Dst: lanHost, Protocol: 6, SrcPort: 40000, DstPort: port, ConnState: "new"}
}

func TestApplySampleConverges(t *testing.T) {
	r := newSim(t, rossim.Options{})
	s := newSimAgent(t, r)
	s.apply(t, sampleDoc(1))
	if rest := s.remaining(t); len(rest) > 0 {
		t.Fatalf("not converged: %v", rest)
	}
	fw := r.Snapshot()
	for _, tc := range []struct {
		p    rossim.Packet
		want string
	}{
		{inbound(443), "accept"},
		{inbound(22), "accept"}, // 203.0.113.9 is in the office list
		{inbound(80), "drop"},
		{rossim.Packet{Chain: "input", InInterface: "ether1", Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), Protocol: 6, DstPort: 22, ConnState: "new"}, "drop"},
		{rossim.Packet{Chain: "input", InInterface: "ether1", Src: wanHost, Dst: netip.MustParseAddr("198.18.0.2"), Protocol: 6, DstPort: 22, ConnState: "new"}, "accept"},
		{rossim.Packet{Chain: "forward", InInterface: "bridge", OutInterface: "ether1", Src: lanHost, Dst: netip.MustParseAddr("198.51.100.53"), Protocol: 17, DstPort: 53, ConnState: "new"}, "accept"},
		{rossim.Packet{Chain: "forward", InInterface: "bridge", OutInterface: "ether1", Src: lanHost, Dst: netip.MustParseAddr("198.51.100.54"), Protocol: 17, DstPort: 53, ConnState: "new"}, "drop"},
	} {
		if v := fw.Evaluate(tc.p); v.Action != tc.want {
			t.Errorf("%+v: %s, want %s\n%v", tc.p, v.Action, tc.want, v.Trace)
		}
	}
	if s.status.State != protocol.StateApplied || s.status.Rules != 3+5+5 || s.status.AddressEntries != 3 {
		t.Errorf("status %+v", s.status)
	}
}
