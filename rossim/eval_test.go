package rossim

import (
	"net/netip"
	"testing"
)

func pkt(chain, in, out, src, dst string, proto, dport int, state string) Packet {
	return Packet{Chain: chain, InInterface: in, OutInterface: out, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Protocol: proto, SrcPort: 40000, DstPort: dport, ConnState: state}
}

func TestEvaluateDefconf(t *testing.T) {
	f := New(Options{}).Snapshot()
	tests := []struct {
		name   string
		p      Packet
		action string
		rule   string
	}{
		{"new ssh from WAN to router", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 6, 22, "new"), "drop", "*5"},
		{"established from WAN to router", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 6, 22, "established"), "accept", "*1"},
		{"invalid from LAN", pkt("input", "bridge", "", "192.168.88.2", "192.168.88.1", 6, 22, "invalid"), "drop", "*2"},
		{"icmp from WAN", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 1, 0, "new"), "accept", "*3"},
		{"new from LAN to router: implicit accept", pkt("input", "bridge", "", "192.168.88.2", "192.168.88.1", 6, 8728, "new"), "accept", ""},
		{"new forward from WAN not dstnatted", pkt("forward", "ether1", "bridge", "198.51.100.7", "192.168.88.2", 6, 443, "new"), "drop", "*B"},
		{"new forward from LAN to WAN", pkt("forward", "bridge", "ether1", "192.168.88.2", "198.51.100.7", 6, 443, "new"), "accept", ""},
		{"established forward", pkt("forward", "ether1", "bridge", "198.51.100.7", "192.168.88.2", 6, 443, "established"), "accept", "*9"},
		{"output: implicit accept", pkt("output", "", "ether1", "192.0.2.1", "198.51.100.7", 17, 53, "new"), "accept", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := f.Evaluate(tt.p)
			if v.Action != tt.action || v.RuleID != tt.rule {
				t.Fatalf("verdict = %s by %q, want %s by %q; trace %q", v.Action, v.RuleID, tt.action, tt.rule, v.Trace)
			}
			if len(v.Trace) == 0 {
				t.Fatal("empty trace")
			}
		})
	}
}

// TestEvaluateChains builds a managed chain through the API surface (Exec)
// and checks jump, return, fall-through, address lists, disabled and invalid
// rules, reject and ports.
func TestEvaluateChains(t *testing.T) {
	r := New(Options{})
	mustExec(t, r, "/ip/firewall/address-list/add", "=list=office", "=address=203.0.113.0/24")
	// rampart-in: est/rel accept, drop invalid, https from anywhere,
	// ssh from office, a disabled accept-all, a sub-chain with return, drop.
	mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=accept", "=connection-state=established,related,untracked")
	mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=drop", "=connection-state=invalid")
	https := mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=accept", "=protocol=tcp", "=dst-port=443")
	ssh := mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=accept", "=protocol=6", "=dst-port=22", "=src-address-list=office")
	mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=accept", "=disabled=yes")
	sub := mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=jump", "=jump-target=sub")
	mustExec(t, r, "/ip/firewall/filter/add", "=chain=sub", "=action=return", "=protocol=udp")
	rej := mustExec(t, r, "/ip/firewall/filter/add", "=chain=sub", "=action=reject", "=protocol=tcp", "=dst-port=8080-8090")
	ghost := mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=jump", "=jump-target=nowhere")
	last := mustExec(t, r, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=drop")
	jump := mustExec(t, r, "/ip/firewall/filter/add", "=chain=input", "=action=jump", "=jump-target=rampart-in", "=in-interface-list=WAN", "=place-before=*1")

	f := r.Snapshot()
	if f.Filter[1][".id"] != jump {
		t.Fatalf("jump rule not placed before *1: %v", f.Filter[1])
	}
	for _, it := range f.Filter {
		if it[".id"] == ghost && it["invalid"] != "true" {
			t.Fatalf("jump to a chain without rules not flagged invalid: %v", it)
		}
		if it[".id"] == sub && it["invalid"] != "false" {
			t.Fatalf("jump to an existing chain flagged invalid: %v", it)
		}
	}
	tests := []struct {
		name   string
		p      Packet
		action string
		rule   string
	}{
		{"https from WAN", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 6, 443, "new"), "accept", https},
		{"ssh from office", pkt("input", "ether1", "", "203.0.113.9", "192.0.2.1", 6, 22, "new"), "accept", ssh},
		{"ssh from elsewhere", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 6, 22, "new"), "drop", last},
		{"udp returns from sub then drop", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 17, 53, "new"), "drop", last},
		{"tcp 8085 rejected in sub", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 6, 8085, "new"), "reject", rej},
		{"LAN not jumped", pkt("input", "bridge", "", "192.168.88.5", "192.168.88.1", 6, 22, "new"), "accept", ""},
	}
	for _, tt := range tests {
		v := f.Evaluate(tt.p)
		if v.Action != tt.action || v.RuleID != tt.rule {
			t.Errorf("%s: verdict %s by %q, want %s by %q; trace %q", tt.name, v.Action, v.RuleID, tt.action, tt.rule, v.Trace)
		}
	}

	// Interface-list membership is part of the state: put ether1 in LAN
	// and WAN traffic is no longer dropped by defconf's !LAN rule.
	mustExec(t, r, "/interface/list/member/add", "=list=LAN", "=interface=ether2")
	v := r.Snapshot().Evaluate(pkt("input", "ether2", "", "198.51.100.7", "192.0.2.1", 6, 22, "new"))
	if v.Action != "accept" || v.RuleID != "" {
		t.Fatalf("ether2 in LAN: %+v", v)
	}
	h := r.History()
	if v := h[len(h)-2].Evaluate(pkt("input", "ether2", "", "198.51.100.7", "192.0.2.1", 6, 22, "new")); v.Action != "drop" {
		t.Fatalf("before the member was added ether2 should be dropped: %+v", v)
	}
}

// TestEvaluatorAddressLists: lookups in sorted, merged lists (overlapping
// entries, a disabled one, a dynamic one) and Action agreeing with Evaluate.
func TestEvaluatorAddressLists(t *testing.T) {
	r := New(Options{})
	for _, words := range [][]string{
		{"/ip/firewall/address-list/add", "=list=l", "=address=10.0.0.0/24"},
		{"/ip/firewall/address-list/add", "=list=l", "=address=10.0.0.128/25"},
		{"/ip/firewall/address-list/add", "=list=l", "=address=10.0.2.0/24", "=disabled=yes"},
		{"/ip/firewall/address-list/add", "=list=l", "=address=10.0.3.5", "=timeout=1h"},
		{"/ip/firewall/address-list/add", "=list=l", "=address=10.0.4.0-10.0.4.9"},
		{"/ip/firewall/filter/add", "=chain=forward", "=action=accept", "=src-address-list=l", "=place-before=*1"},
		{"/ip/firewall/filter/add", "=chain=forward", "=action=drop", "=place-before=*1"},
	} {
		if _, err := r.Exec(words...); err != nil {
			t.Fatalf("%v: %v", words, err)
		}
	}
	ev := r.Snapshot().Evaluator()
	for src, want := range map[string]string{
		"10.0.0.1": "accept", "10.0.0.200": "accept", "10.0.0.255": "accept", "10.0.1.0": "drop",
		"10.0.2.1": "drop", "10.0.3.5": "accept", "10.0.3.6": "drop", "10.0.4.9": "accept", "10.0.4.10": "drop", "9.255.255.255": "drop",
	} {
		p := pkt("forward", "ether1", "bridge", src, "192.168.88.2", 6, 80, "new")
		if got := ev.Action(p); got != want {
			t.Errorf("%s: Action %s, want %s", src, got, want)
		}
		if v := ev.Evaluate(p); v.Action != ev.Action(p) || len(v.Trace) == 0 {
			t.Errorf("%s: Evaluate %+v disagrees with Action", src, v)
		}
	}
}
