package rossim

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	f6 = "/ipv6/firewall/filter/"
	a6 = "/ipv6/firewall/address-list/"
)

// TestIPv6DefconfOverAPI prints the IPv6 defconf through go-routeros: the
// bad_ipv6 list and the 22 rules, with the traceroute rule's port
// property per version.
func TestIPv6DefconfOverAPI(t *testing.T) {
	for _, tt := range []struct {
		version, traceroute string
	}{
		{"7.13.5", "port"},
		{"7.14", "dst-port"},
		{"", "dst-port"}, // DefaultROSVersion
	} {
		t.Run(tt.version, func(t *testing.T) {
			r := start(t, Options{ROSVersion: tt.version})
			c := dial(t, r, "admin", "")
			got := column(run(t, c, a6+"print"), "address")
			want := []string{"::/128", "::1/128", "fec0::/10", "::ffff:0.0.0.0/96", "::/96", "100::/64", "2001:db8::/32", "2001:10::/28", "3ffe::/16"}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("bad_ipv6 (-want +got):\n%s", d)
			}
			rules := rows(run(t, c, f6+"print"))
			if len(rules) != 22 {
				t.Fatalf("%d rules, want 22", len(rules))
			}
			var chains []string
			for _, r := range rules {
				chains = append(chains, r["chain"])
			}
			if d := cmp.Diff(append(repeat("input", 10), repeat("forward", 12)...), chains); d != "" {
				t.Errorf("chains (-want +got):\n%s", d)
			}
			tr := rules[3]
			if tr[tt.traceroute] != "33434-33534" || tr["protocol"] != "udp" {
				t.Errorf("traceroute rule %v, want %s=33434-33534", tr, tt.traceroute)
			}
			dhcp := rules[4]
			wantDHCP := map[string]string{".id": "*5", "chain": "input", "action": "accept", "protocol": "udp", "dst-port": "546",
				"src-address": "fe80::/10", "log": "false", "log-prefix": "", "bytes": "0", "packets": "0", "invalid": "false",
				"dynamic": "false", "disabled": "false", "comment": "defconf: accept DHCPv6-Client prefix delegation."}
			if d := cmp.Diff(wantDHCP, dhcp); d != "" {
				t.Errorf("DHCPv6 rule (-want +got):\n%s", d)
			}
			// The IPv4 table is untouched by the IPv6 defconf.
			if n := len(rows(run(t, c, "/ip/firewall/filter/print"))); n != 12 {
				t.Errorf("/ip/firewall/filter has %d rows, want defconf's 11 and the dummy", n)
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestIPv6FilterWrites: add (place-before), set, unset, move, disable,
// remove on /ipv6/firewall/filter with the IPv4 menu's semantics, and
// values printed in RouterOS's form.
func TestIPv6FilterWrites(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	before4 := r.Snapshot().Filter
	a := run(t, c, f6+"add", "=chain=rampart-in", "=action=accept", "=protocol=58", "=icmp-options=135:0", "=comment=ns").Done.Map["ret"]
	b := run(t, c, f6+"add", "=chain=rampart-in", "=action=accept", "=protocol=udp", "=dst-port=546",
		"=src-address=FE80:0000::1/10", "=comment=dhcp").Done.Map["ret"]
	// place-before puts the new rule before a: first in the chain.
	x := run(t, c, f6+"add", "=chain=rampart-in", "=action=drop", "=src-address=2001:DB8::7", "=place-before="+a).Done.Map["ret"]
	j := run(t, c, f6+"add", "=chain=input", "=action=jump", "=jump-target=rampart-in", "=place-before=*1").Done.Map["ret"]
	if a != "*17" || b != "*18" || x != "*19" || j != "*1A" {
		t.Fatalf("ids %s %s %s %s, want *17 *18 *19 *1A after defconf's *1..*16", a, b, x, j)
	}
	chain := func() []map[string]string {
		return rows(run(t, c, f6+"print", "?chain=rampart-in", "=.proplist=.id,protocol,icmp-options,src-address,dst-port,comment"))
	}
	want := []map[string]string{
		{".id": x, "src-address": "2001:db8::7/128"},
		{".id": a, "protocol": "icmpv6", "icmp-options": "135:0", "comment": "ns"},
		{".id": b, "protocol": "udp", "dst-port": "546", "src-address": "fe80::/10", "comment": "dhcp"},
	}
	if d := cmp.Diff(want, chain()); d != "" {
		t.Fatalf("rampart-in after add (-want +got):\n%s", d)
	}
	if got := column(run(t, c, f6+"print", "?chain=input"), ".id")[0]; got != j {
		t.Fatalf("first input rule %s, want the jump %s placed before *1", got, j)
	}
	run(t, c, f6+"set", "=.id="+x, "=src-address=!2001:DB8:0:1:0:0:0:0/64", "=comment=not doc")
	run(t, c, f6+"move", "=numbers="+x, "=destination="+b)
	run(t, c, f6+"unset", "=numbers="+a, "=value-name=comment")
	run(t, c, f6+"disable", "=numbers="+b)
	want = []map[string]string{
		{".id": a, "protocol": "icmpv6", "icmp-options": "135:0"},
		{".id": x, "src-address": "!2001:db8:0:1::/64", "comment": "not doc"},
		{".id": b, "protocol": "udp", "dst-port": "546", "src-address": "fe80::/10", "comment": "dhcp"},
	}
	if d := cmp.Diff(want, chain()); d != "" {
		t.Fatalf("rampart-in after set/move/unset (-want +got):\n%s", d)
	}
	if got := rows(run(t, c, f6+"print", "?.id="+b))[0]["disabled"]; got != "true" {
		t.Fatalf("disabled = %q", got)
	}
	run(t, c, f6+"remove", "=.id="+a+","+x+","+b+","+j)
	if n := len(rows(run(t, c, f6+"print"))); n != 22 {
		t.Fatalf("%d rules after remove, want defconf's 22", n)
	}
	if d := cmp.Diff(before4, r.Snapshot().Filter); d != "" {
		t.Fatalf("IPv6 writes changed /ip/firewall/filter:\n%s", d)
	}
}

// TestIPv6ErrorTexts: the IPv6 menus refuse what the IPv4 ones refuse,
// with the same texts, plus IPv4 addresses, tarpit and icmp-options
// without icmpv6; nothing a failing command does stays.
func TestIPv6ErrorTexts(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	id := run(t, c, f6+"add", "=chain=x", "=action=accept").Done.Map["ret"]
	run(t, c, a6+"add", "=list=l", "=address=2001:db8::/48")
	tests := []trapCase{
		{[]string{f6 + "add", "=chain=input", "=dst-port=546"}, "failure: ports can be specified if proto is tcp,udp,udp-lite,dccp,sctp"},
		{[]string{f6 + "add", "=chain=input", "=protocol=icmpv6", "=dst-port=546"}, "failure: ports can be specified if proto is tcp,udp,udp-lite,dccp,sctp"},
		{[]string{f6 + "add", "=chain=input", "=colour=red"}, "unknown parameter colour"},
		{[]string{f6 + "add", "=chain=input", "=ttl=equal:1"}, "unknown parameter ttl"},
		{[]string{f6 + "add", "=chain=input", "=bytes=5"}, "unknown parameter bytes"},
		{[]string{f6 + "add", "=chain=input", "=action=tarpit"}, "input does not match any value of action"},
		{[]string{f6 + "add", "=chain=input", "=action=reject", "=reject-with=icmp-network-unreachable"}, "input does not match any value of reject-with"},
		{[]string{f6 + "add", "=chain=input", "=protocol=icmp6"}, "input does not match any value of protocol"},
		{[]string{f6 + "add", "=chain=input", "=in-interface-list=DMZ"}, "input does not match any value of in-interface-list"},
		{[]string{f6 + "add", "=chain=input", "=src-address=192.0.2.1"}, "invalid value for argument src-address"},
		{[]string{f6 + "add", "=chain=input", "=dst-address=2001:db8::/129"}, "invalid value for argument dst-address"},
		{[]string{f6 + "add", "=chain=input", "=dst-address=2001:db8::1-2001:db8::9"}, "invalid value for argument dst-address"},
		{[]string{f6 + "add", "=chain=input", "=icmp-options=135:0"}, "failure: icmp-options can be specified if proto is icmpv6"},
		{[]string{f6 + "add", "=chain=input", "=protocol=icmp", "=icmp-options=8:0"}, "failure: icmp-options can be specified if proto is icmpv6"},
		{[]string{f6 + "add", "=chain=input", "=protocol=icmpv6", "=icmp-options=300"}, "invalid value for argument icmp-options"},
		{[]string{f6 + "add", "=chain=input", "=action=jump"}, "failure: no target chain specified"},
		{[]string{f6 + "add", "=action=accept"}, "missing value(s) of argument(s) chain"},
		{[]string{f6 + "add", "=chain=input", "=place-before=*999"}, "no such item (4)"},
		{[]string{f6 + "set", "=.id=" + id, "=place-before=*1"}, "unknown parameter place-before"},
		{[]string{f6 + "set", "=.id=*999", "=comment=x"}, "no such item (4)"},
		{[]string{f6 + "remove", "=.id=" + id + ",*999"}, "no such item (4)"},
		{[]string{"/ip/firewall/filter/add", "=chain=input", "=src-address=2001:db8::1"}, "invalid value for argument src-address"},
		{[]string{a6 + "add", "=list=l", "=address=2001:db8:0:0:1::1/48"}, "failure: already have such entry"},
		{[]string{a6 + "add", "=list=l", "=address=192.0.2.0/24"}, "invalid value for argument address"},
		{[]string{a6 + "add", "=list=l", "=address=2001:db8::1-2001:db8::9"}, "invalid value for argument address"},
		{[]string{a6 + "add", "=list=l", "=address=2001:db8::g"}, "invalid value for argument address"},
		{[]string{a6 + "add", "=list=l"}, "missing value(s) of argument(s) address"},
		{[]string{"/ip/firewall/address-list/add", "=list=l", "=address=2001:db8::/32"}, "invalid value for argument address"},
		{[]string{"/ipv6/firewal/filter/print"}, "no such command prefix"},
	}
	checkTraps(t, r, c, tests)
}

// TestIPv6AddressListNormalisation: entries are stored canonical (lower
// case, compressed, host bits cleared, single addresses as /128);
// duplicates are per table and list; a name is kept as a DNS name.
func TestIPv6AddressListNormalisation(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	tests := []struct{ in, want string }{
		{"2001:DB8:0:0:0:0:0:1", "2001:db8::1/128"},
		{"2001:db8:0:1:0:0:0:0/64", "2001:db8:0:1::/64"}, {"2001:db8:0:2:1::/64", "2001:db8:0:2::/64"},
		{"2001:db8:abcd:12:3456::1/48", "2001:db8:abcd::/48"},
		{"FE80::/10", "fe80::/10"},
		{"::ffff:192.0.2.0/120", "::ffff:192.0.2.0/120"},
		{"::/0", "::/0"},
		{"ipv6.example.net", "ipv6.example.net"},
	}
	var want []string
	for _, tt := range tests {
		run(t, c, a6+"add", "=list=office", "=address="+tt.in)
		want = append(want, tt.want)
	}
	if d := cmp.Diff(want, column(run(t, c, a6+"print", "?list=office"), "address")); d != "" {
		t.Fatalf("normalised (-want +got):\n%s", d)
	}
	// The same list name exists independently in each table.
	run(t, c, "/ip/firewall/address-list/add", "=list=office", "=address=192.0.2.0/24")
	if n := len(r.Snapshot().AddressList); n != 1 {
		t.Fatalf("/ip/firewall/address-list has %d entries, want 1", n)
	}
	row := rows(run(t, c, a6+"print", "?address=fe80::/10"))[0]
	if row["list"] != "office" || row["dynamic"] != "false" || row["creation-time"] == "" {
		t.Fatalf("row %v", row)
	}
	id := row[".id"]
	if m := runErr(t, c, a6+"set", "=.id="+id, "=address=2001:db8::1"); m != "failure: already have such entry" {
		t.Fatalf("set to a duplicate: %q", m)
	}
	run(t, c, a6+"set", "=.id="+id, "=address=fe80::1/64")
	if got := rows(run(t, c, a6+"print", "?.id="+id))[0]["address"]; got != "fe80::/64" {
		t.Fatalf("after set: %q", got)
	}
}

// TestIPv6Import: a script writes the IPv6 menus like the API does.
func TestIPv6Import(t *testing.T) {
	r := New(Options{})
	defer r.Close()
	script := strings.Join([]string{
		`/ipv6 firewall address-list add list=rampart-x address=2001:DB8:1::/48`,
		`/ipv6/firewall/filter add chain=rampart-in action=accept src-address-list=rampart-x protocol=tcp dst-port=22`,
		`/ipv6 firewall filter remove [find where comment="defconf: accept UDP traceroute"]`,
	}, "\n")
	if err := r.Import(t.Context(), script, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	f := r.Snapshot()
	if got := f.AddressList6[len(f.AddressList6)-1]["address"]; got != "2001:db8:1::/48" {
		t.Fatalf("imported entry %q", got)
	}
	last := f.Filter6[len(f.Filter6)-1]
	if last["chain"] != "rampart-in" || last["src-address-list"] != "rampart-x" {
		t.Fatalf("imported rule %v", last)
	}
	if len(f.Filter6) != 22 {
		t.Fatalf("%d rules, want 22 (one removed, one added)", len(f.Filter6))
	}
}

func pkt6(chain, in, out, src, dst string, proto, dport, icmpType int, state string) Packet {
	p := pkt(chain, in, out, src, dst, proto, dport, state)
	p.ICMPType = icmpType
	if proto == 17 && dport == 546 {
		p.SrcPort = 547
	}
	return p
}

// TestEvaluateIPv6Defconf: the IPv6 defconf passes neighbour discovery
// and DHCPv6 replies from link-local addresses on the WAN, and drops
// other new WAN traffic to the router; an IPv4 packet walks the IPv4
// table.
func TestEvaluateIPv6Defconf(t *testing.T) {
	const (
		wanLL  = "fe80::1"
		mineLL = "fe80::2:1"
		wanG   = "2001:470:1::7"
		mine   = "2001:470:2::1"
		lanG   = "2001:470:2:88::2"
	)
	f := New(Options{}).Snapshot()
	tests := []struct {
		name   string
		p      Packet
		action string
		rule   string
	}{
		{"neighbour solicitation from WAN", pkt6("input", "ether1", "", wanLL, "ff02::1:ff02:1", 58, 0, 135, "new"), "accept", "*3"},
		{"untracked neighbour advertisement from WAN", pkt6("input", "ether1", "", wanLL, mineLL, 58, 0, 136, "untracked"), "accept", "*1"},
		{"router advertisement from WAN", pkt6("input", "ether1", "", wanLL, "ff02::1", 58, 0, 134, "new"), "accept", "*3"},
		{"DHCPv6 reply from link-local on WAN", pkt6("input", "ether1", "", wanLL, mineLL, 17, 546, 0, "new"), "accept", "*5"},
		{"DHCPv6 to 546 from a global address", pkt6("input", "ether1", "", wanG, mine, 17, 546, 0, "new"), "drop", "*A"},
		{"UDP traceroute", pkt6("input", "ether1", "", wanG, mine, 17, 33434, 0, "new"), "accept", "*4"},
		{"IKE", pkt6("input", "ether1", "", wanG, mine, 17, 500, 0, "new"), "accept", "*6"},
		{"new ssh from WAN", pkt6("input", "ether1", "", wanG, mine, 6, 22, 0, "new"), "drop", "*A"},
		{"new API from WAN", pkt6("input", "ether1", "", wanG, mine, 6, 8728, 0, "new"), "drop", "*A"},
		{"established from WAN", pkt6("input", "ether1", "", wanG, mine, 6, 22, 0, "established"), "accept", "*1"},
		{"invalid from LAN", pkt6("input", "bridge", "", lanG, mine, 6, 22, 0, "invalid"), "drop", "*2"},
		{"new from LAN to router: implicit accept", pkt6("input", "bridge", "", lanG, mine, 6, 8728, 0, "new"), "accept", ""},
		{"forward new from WAN", pkt6("forward", "ether1", "bridge", wanG, lanG, 6, 443, 0, "new"), "drop", "*16"},
		{"forward from a documentation source", pkt6("forward", "bridge", "ether1", "2001:db8::9", wanG, 6, 443, 0, "new"), "drop", "*D"},
		{"forward to an IPv4-mapped destination", pkt6("forward", "bridge", "ether1", lanG, "::ffff:198.51.100.1", 6, 443, 0, "new"), "drop", "*E"},
		{"forward echo from WAN", pkt6("forward", "ether1", "bridge", wanG, lanG, 58, 0, 128, "new"), "accept", "*10"},
		{"forward established", pkt6("forward", "ether1", "bridge", wanG, lanG, 6, 443, 0, "established"), "accept", "*B"},
		{"forward new from LAN: implicit accept", pkt6("forward", "bridge", "ether1", lanG, wanG, 6, 443, 0, "new"), "accept", ""},
		{"IPv4 ssh from WAN walks /ip", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 6, 22, "new"), "drop", "*5"},
		{"IPv4 udp 546 from WAN walks /ip", pkt("input", "ether1", "", "198.51.100.7", "192.0.2.1", 17, 546, "new"), "drop", "*5"},
	}
	e := f.Evaluator()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := e.Evaluate(tt.p)
			if v.Action != tt.action || v.RuleID != tt.rule {
				t.Fatalf("verdict = %s by %q, want %s by %q; trace %q", v.Action, v.RuleID, tt.action, tt.rule, v.Trace)
			}
			if a := e.Action(tt.p); a != tt.action {
				t.Fatalf("Action = %s, Evaluate = %s", a, tt.action)
			}
		})
	}
}

// TestEvaluateIPv6Chains builds a restrictive managed chain through the
// API surface (Exec) and probes ICMPv6 types and codes, address lists,
// jump and return: without guards it cuts neighbour discovery and DHCPv6
// off; with the guards first they pass and the rest is still dropped.
func TestEvaluateIPv6Chains(t *testing.T) {
	r := New(Options{})
	defer r.Close()
	mustExec(t, r, a6+"add", "=list=ops", "=address=2001:db8:77::/48")
	mustExec(t, r, "/ip/firewall/address-list/add", "=list=ops", "=address=203.0.113.0/24")
	jump := mustExec(t, r, f6+"add", "=chain=input", "=action=jump", "=jump-target=rampart-in", "=place-before=*1")
	mustExec(t, r, f6+"add", "=chain=rampart-in", "=action=accept", "=protocol=tcp", "=dst-port=22", "=src-address-list=ops")
	mustExec(t, r, f6+"add", "=chain=rampart-in", "=action=return", "=protocol=icmpv6", "=icmp-options=128:0")
	mustExec(t, r, f6+"add", "=chain=rampart-in", "=action=drop")
	const (
		wanLL = "fe80::1"
		mine  = "2001:470:2::1"
	)
	probes := []struct {
		name string
		p    Packet
	}{
		{"NS", pkt6("input", "ether1", "", wanLL, "ff02::1:ff02:1", 58, 0, 135, "new")},
		{"NA", pkt6("input", "ether1", "", wanLL, mine, 58, 0, 136, "new")},
		{"RA", pkt6("input", "ether1", "", wanLL, "ff02::1", 58, 0, 134, "new")},
		{"MLDv2 report", pkt6("input", "ether1", "", wanLL, "ff02::16", 58, 0, 143, "new")},
		{"packet too big", pkt6("input", "ether1", "", "2001:470:9::1", mine, 58, 0, 2, "related")},
		{"DHCPv6 reply", pkt6("input", "ether1", "", wanLL, "fe80::2:1", 17, 546, 0, "new")},
		{"echo request", pkt6("input", "ether1", "", "2001:470:9::1", mine, 58, 0, 128, "new")},
		{"ssh from ops", pkt6("input", "ether1", "", "2001:db8:77:1::5", mine, 6, 22, 0, "new")},
		{"ssh from elsewhere", pkt6("input", "ether1", "", "2001:db8:78::5", mine, 6, 22, 0, "new")},
		{"IPv4 ssh from ops", pkt("input", "ether1", "", "203.0.113.5", "192.0.2.1", 6, 22, "new")},
	}
	verdicts := func() map[string]string {
		e := r.Snapshot().Evaluator()
		m := map[string]string{}
		for _, pr := range probes {
			v := e.Evaluate(pr.p)
			m[pr.name] = v.Action + " " + v.RuleID
		}
		return m
	}
	// Without guards: rampart-in drops everything but ssh from ops and
	// echo requests (returned to input, where defconf accepts ICMPv6).
	rin := func(n int) string { return idString(0x17 + uint64(n)) } // rampart-in's rules: *18, *19, *1A
	want := map[string]string{
		"NS": "drop " + rin(3), "NA": "drop " + rin(3), "RA": "drop " + rin(3), "MLDv2 report": "drop " + rin(3),
		"packet too big": "drop " + rin(3), "DHCPv6 reply": "drop " + rin(3),
		"echo request": "accept *3", "ssh from ops": "accept " + rin(1), "ssh from elsewhere": "drop " + rin(3),
		"IPv4 ssh from ops": "drop *5", // the IPv4 table has no rampart-in
	}
	if d := cmp.Diff(want, verdicts()); d != "" {
		t.Fatalf("without guards (-want +got):\n%s", d)
	}
	// The guards of the wire contract, before the jump.
	g1 := mustExec(t, r, f6+"add", "=chain=input", "=action=accept", "=protocol=icmpv6", "=place-before="+jump)
	g2 := mustExec(t, r, f6+"add", "=chain=input", "=action=accept", "=protocol=udp", "=dst-port=546", "=src-address=fe80::/10", "=place-before="+jump)
	want = map[string]string{
		"NS": "accept " + g1, "NA": "accept " + g1, "RA": "accept " + g1, "MLDv2 report": "accept " + g1,
		"packet too big": "accept " + g1, "DHCPv6 reply": "accept " + g2,
		"echo request": "accept " + g1, "ssh from ops": "accept " + rin(1), "ssh from elsewhere": "drop " + rin(3),
		"IPv4 ssh from ops": "drop *5",
	}
	if d := cmp.Diff(want, verdicts()); d != "" {
		t.Fatalf("with guards (-want +got):\n%s", d)
	}
}

// TestICMPOptionsMatch: type and code ranges, a missing code matching any.
func TestICMPOptionsMatch(t *testing.T) {
	r := New(Options{})
	defer r.Close()
	for _, o := range []string{"1:3-4", "133-137", "2:0"} {
		if _, err := r.Exec(f6+"add", "=chain=probe", "=action=accept", "=protocol=icmpv6", "=icmp-options="+o, "=comment="+o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Exec(f6+"add", "=chain=probe", "=action=drop"); err != nil {
		t.Fatal(err)
	}
	e := r.Snapshot().Evaluator()
	tests := []struct {
		typ, code int
		want      string
	}{
		{1, 3, "1:3-4"}, {1, 4, "1:3-4"}, {1, 0, ""}, {133, 0, "133-137"}, {137, 9, "133-137"}, {138, 0, ""},
		{2, 0, "2:0"}, {2, 1, ""}, {128, 0, ""},
	}
	for _, tt := range tests {
		p := pkt6("probe", "ether1", "", "fe80::1", "fe80::2", 58, 0, tt.typ, "new")
		p.ICMPCode = tt.code
		v := e.Evaluate(p)
		got := ""
		if v.Action == "accept" {
			got = e.f.Filter6[idx(e.f.Filter6, v.RuleID)]["comment"]
		}
		if got != tt.want {
			t.Errorf("type %d code %d: accepted by %q, want %q; trace %q", tt.typ, tt.code, got, tt.want, v.Trace)
		}
	}
}

func idx(items []Item, id string) int {
	for i, it := range items {
		if it[".id"] == id {
			return i
		}
	}
	return -1
}

// TestIPv6FastTrackByVersion: fasttrack-connection is an IPv6 action from
// 7.18; while an IPv6 fasttrack rule exists the IPv6 table shows its own
// dynamic dummy rule, builtin like the IPv4 one.
func TestIPv6FastTrackByVersion(t *testing.T) {
	old := start(t, Options{ROSVersion: "7.17.2"})
	if m := runErr(t, dial(t, old, "admin", ""), f6+"add", "=chain=forward", "=action=fasttrack-connection"); m != "input does not match any value of action" {
		t.Fatalf("7.17 fasttrack: %q", m)
	}
	r := start(t, Options{ROSVersion: "7.18"})
	c := dial(t, r, "admin", "")
	run(t, c, f6+"add", "=chain=forward", "=action=reject", "=reject-with=tcp-reset", "=protocol=tcp")
	ft := run(t, c, f6+"add", "=chain=forward", "=action=fasttrack-connection", "=connection-state=established,related", "=place-before=*B").Done.Map["ret"]
	first := rows(run(t, c, f6+"print"))[0]
	want := map[string]string{".id": "*19", "chain": "forward", "action": "passthrough", "bytes": "0", "packets": "0",
		"invalid": "false", "dynamic": "true", "disabled": "false", "comment": dummyComment}
	if d := cmp.Diff(want, first); d != "" {
		t.Fatalf("IPv6 dummy rule (-want +got):\n%s", d)
	}
	if m := runErr(t, c, f6+"remove", "=.id=*19"); m != "failure: cannot remove builtin" {
		t.Fatalf("remove dummy: %q", m)
	}
	v4 := r.Snapshot().Filter
	run(t, c, f6+"remove", "=.id="+ft)
	if n := len(rows(run(t, c, f6+"print", "?dynamic=true"))); n != 0 {
		t.Fatalf("%d dynamic rules after the fasttrack rule went", n)
	}
	if d := cmp.Diff(v4, r.Snapshot().Filter); d != "" {
		t.Fatalf("the IPv4 table changed:\n%s", d)
	}
}

// TestIPv6Listen: a listener on the IPv6 address list sees its changes
// and none of the IPv4 table's.
func TestIPv6Listen(t *testing.T) {
	r := start(t, Options{})
	r.SetLatency(20 * time.Millisecond) // see TestListenAndCancel
	c := dial(t, r, "admin", "")
	c.Async()
	l, err := c.Listen(a6 + "listen")
	if err != nil {
		t.Fatal(err)
	}
	w := dial(t, r, "admin", "")
	run(t, w, "/ip/firewall/address-list/add", "=list=x", "=address=192.0.2.7") // the other table: not followed
	id := run(t, w, a6+"add", "=list=x", "=address=2001:DB8::7").Done.Map["ret"]
	select {
	case s := <-l.Chan():
		if s.Map[".id"] != id || s.Map["address"] != "2001:db8::7/128" {
			t.Fatalf("listen event %v, want %s 2001:db8::7/128", s.Map, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no listen event")
	}
	if _, err := l.Cancel(); err != nil {
		t.Fatal(err)
	}
}

// TestIPv6JumpInvalidPerTable: a chain exists per table; a jump to a
// chain that only the IPv4 table has is invalid in the IPv6 table, and
// Evaluate skips it.
func TestIPv6JumpInvalidPerTable(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	run(t, c, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=drop")
	j := run(t, c, f6+"add", "=chain=input", "=action=jump", "=jump-target=rampart-in", "=place-before=*1").Done.Map["ret"]
	if got := rows(run(t, c, f6+"print", "?.id="+j))[0]["invalid"]; got != "true" {
		t.Fatalf("jump to a chain only /ip has: invalid=%s", got)
	}
	p := pkt6("input", "ether1", "", "2001:470:9::1", "2001:470:2::1", 6, 22, 0, "new")
	if v := r.Snapshot().Evaluate(p); v.Action != "drop" || v.RuleID != "*A" {
		t.Fatalf("verdict %s by %s, want defconf's drop by *A; trace %q", v.Action, v.RuleID, v.Trace)
	}
	run(t, c, f6+"add", "=chain=rampart-in", "=action=reject", "=reject-with=icmp-admin-prohibited")
	if got := rows(run(t, c, f6+"print", "?.id="+j))[0]["invalid"]; got != "false" {
		t.Fatalf("jump once the IPv6 chain has a rule: invalid=%s", got)
	}
	if v := r.Snapshot().Evaluate(p); v.Action != "reject" {
		t.Fatalf("verdict %s by %s, want reject by rampart-in; trace %q", v.Action, v.RuleID, v.Trace)
	}
}

// TestICMPOptionsUnreadSkipped: /ip keeps icmp-options as free text, so a
// value the evaluator cannot read (a type name) skips its rule, as any
// matcher it does not model does, instead of matching type 0 code 0.
func TestICMPOptionsUnreadSkipped(t *testing.T) {
	r := New(Options{})
	defer r.Close()
	if _, err := r.Exec("/ip/firewall/filter/add", "=chain=probe", "=action=accept", "=protocol=icmp", "=icmp-options=echo-request", "=comment=named"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Exec("/ip/firewall/filter/add", "=chain=probe", "=action=drop"); err != nil {
		t.Fatal(err)
	}
	e := r.Snapshot().Evaluator()
	for _, typ := range []int{0, 8} {
		p := pkt("probe", "ether1", "", "192.0.2.1", "192.0.2.2", 1, 0, "new")
		p.ICMPType = typ
		if v := e.Evaluate(p); v.Action != "drop" {
			t.Errorf("icmp type %d: %s by %s; want the rule with icmp-options=echo-request skipped and the drop; trace %q", typ, v.Action, v.RuleID, v.Trace)
		}
	}
}
