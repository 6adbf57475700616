package rossim

import (
	"slices"
	"sort"
	"strings"
	"time"
)

type tableID int

const (
	tFilter tableID = iota
	tAddr
	tIfList
	tIfMember
	tInterface
	tVeth
	tIPAddr    // /ip/address
	tNAT       // /ip/firewall/nat
	tUserGroup // /user/group
	tUser      // /user
	tService   // /ip/service (static rows; per-connection rows are synthesised)
	tContainer // /container
	tEnvs      // /container/envs
	tMounts    // /container/mounts
	tFile      // /file: no stored rows, listed from the router's files
	tLog       // /log: no stored rows, listed from the router's log
	tFilter6   // /ipv6/firewall/filter
	tAddr6     // /ipv6/firewall/address-list
	nTables
)

// isFilter: the table is a firewall filter (either family).
func isFilter(t tableID) bool { return t == tFilter || t == tFilter6 }

// isAddrList: the table is a firewall address list (either family).
func isAddrList(t tableID) bool { return t == tAddr || t == tAddr6 }

// familyOf is the IP family of a firewall table.
func familyOf(t tableID) family {
	if t == tFilter6 || t == tAddr6 {
		return fam6
	}
	return fam4
}

// row is one item. Rows are immutable once stored: a change stores a new row,
// so history snapshots can share them (copy on write).
type row struct {
	id      uint64
	props   map[string]string
	dynamic bool
	builtin bool
	created string // address-list creation-time
}

func (r *row) clone() *row {
	c := *r
	c.props = make(map[string]string, len(r.props)+2)
	for k, v := range r.props {
		c.props[k] = v
	}
	return &c
}

type table struct {
	rows []*row
	byID map[uint64]*row
	next uint64
}

type changeOp uint8

const (
	opInsert changeOp = iota
	opDelete
	opReplace
)

// change is one step of a write, recorded so History can replay states
// without storing a full copy per write.
type change struct {
	tab tableID
	op  changeOp
	idx int
	row *row
}

type db struct {
	t       [nTables]*table
	rec     []change
	addrKey map[string]uint64 // table \x00 list \x00 address -> id: duplicate check
}

func newDB() *db {
	d := &db{addrKey: map[string]uint64{}}
	for i := range d.t {
		d.t[i] = &table{byID: map[uint64]*row{}, next: 1}
	}
	return d
}

// addrKeyOf keys an address-list entry for the duplicate check; the IPv4
// and IPv6 tables are separate, so the same list name may hold entries in
// both [C: manual, separate menus].
func addrKeyOf(t tableID, r *row) string {
	return string(rune('0'+t)) + "\x00" + r.props["list"] + "\x00" + r.props["address"]
}

func (d *db) pos(t tableID, id uint64) int {
	for i, r := range d.t[t].rows {
		if r.id == id {
			return i
		}
	}
	return -1
}

func (d *db) insert(t tableID, idx int, r *row) {
	tb := d.t[t]
	tb.rows = append(tb.rows, nil)
	copy(tb.rows[idx+1:], tb.rows[idx:])
	tb.rows[idx] = r
	tb.byID[r.id] = r
	if isAddrList(t) {
		d.addrKey[addrKeyOf(t, r)] = r.id
	}
	d.rec = append(d.rec, change{t, opInsert, idx, r})
}

func (d *db) delete(t tableID, idx int) *row {
	tb := d.t[t]
	r := tb.rows[idx]
	tb.rows = append(tb.rows[:idx], tb.rows[idx+1:]...)
	delete(tb.byID, r.id)
	if isAddrList(t) && d.addrKey[addrKeyOf(t, r)] == r.id {
		delete(d.addrKey, addrKeyOf(t, r))
	}
	d.rec = append(d.rec, change{t, opDelete, idx, r})
	return r
}

func (d *db) replace(t tableID, idx int, r *row) {
	tb := d.t[t]
	old := tb.rows[idx]
	if isAddrList(t) && d.addrKey[addrKeyOf(t, old)] == old.id {
		delete(d.addrKey, addrKeyOf(t, old))
	}
	tb.rows[idx] = r
	tb.byID[r.id] = r
	if isAddrList(t) {
		d.addrKey[addrKeyOf(t, r)] = r.id
	}
	d.rec = append(d.rec, change{t, opReplace, idx, r})
}

func (d *db) newID(t tableID) uint64 {
	tb := d.t[t]
	id := tb.next
	tb.next++
	return id
}

const dummyComment = "special dummy rule to show fasttrack counters"

// syncDummy keeps the dynamic dummy rule present exactly while a
// fasttrack-connection rule exists, at the top of the list [3P: several real
// 7.x routers, reference 2.2; the manual's statistics sample, C]. It takes
// the next id of the filter counter, like any rule (`*D` after defconf's
// `*1`...`*C` on a factory hAP) [3P: public test code built from a real
// router, reference section 8].
//
// The IPv6 filter (t = tFilter6) has fasttrack from 7.18; that it shows the
// same dummy rule then is an inference [I].
func (d *db) syncDummy(t tableID) {
	want := false
	for _, r := range d.t[t].rows {
		if r.props["action"] == "fasttrack-connection" {
			want = true
			break
		}
	}
	i := -1
	for j, r := range d.t[t].rows {
		if r.builtin {
			i = j
			break
		}
	}
	switch {
	case want && i < 0:
		d.insert(t, 0, &row{id: d.newID(t), dynamic: true, builtin: true, props: map[string]string{
			"chain": "forward", "action": "passthrough", "comment": dummyComment}})
	case !want && i >= 0:
		d.delete(t, i)
	}
}

// kv is one printed property.
type kv struct{ k, v string }

// printer formats rows as the API prints them. It caches what a whole-table
// property needs (which chains have rules, for `invalid`).
type printer struct {
	filter [2][]*row          // IPv4, IPv6 filter rows
	chains [2]map[string]bool // chains with rules, per family
	// reuse: a printed filter row is used before the next is printed, so
	// its slice is reused (a print of the whole table allocates it once).
	reuse bool
	buf   []kv
}

func newPrinter(d *db) *printer {
	return &printer{filter: [2][]*row{d.t[tFilter].rows, d.t[tFilter6].rows}}
}

// fi indexes per-family arrays: 0 IPv4, 1 IPv6.
func fi(f family) int {
	if f == fam6 {
		return 1
	}
	return 0
}

var builtinChains = map[string]bool{"input": true, "forward": true, "output": true}

// jumpInvalid: a jump to a chain that has no rule is accepted but flagged
// invalid (I), as a real router prints `0 I chain=forward action=jump
// jump-target=probe-chain` [3P: jeff-nasseri/mikrotik-mcp#137, live router].
// A chain exists as long as one rule names it [same source: "RouterOS accepts
// them freely and creates them implicitly"; C: v2.9 manual, "If the input does
// not match the name of an already defined chain, a new chain will be
// created"].
func (p *printer) jumpInvalid(f family, r *row) bool {
	if r.props["action"] != "jump" {
		return false
	}
	i := fi(f)
	if p.chains[i] == nil {
		p.chains[i] = map[string]bool{}
		for _, x := range p.filter[i] {
			p.chains[i][x.props["chain"]] = true
		}
	}
	t := r.props["jump-target"]
	return !p.chains[i][t] && !builtinChains[t]
}

func (p *printer) print(t tableID, r *row) []kv {
	switch t {
	case tFilter, tFilter6:
		return p.printFilter(familyOf(t), r)
	case tAddr, tAddr6:
		return printAddr(r)
	case tIfList:
		return printGeneric(r, []string{"name"}, []kv{{"builtin", boolStr(r.builtin)}, {"dynamic", boolStr(r.dynamic)}}, "include", "exclude")
	case tIfMember:
		return printGeneric(r, []string{"list", "interface"}, []kv{{"dynamic", boolStr(r.dynamic)}, {"disabled", or(r.props["disabled"], "false")}})
	case tInterface:
		return printGeneric(r, interfaceOrder, nil)
	case tVeth:
		return printGeneric(r, []string{"name", "address", "gateway", "gateway6", "mac-address", "container-mac-address"}, []kv{{"running", "true"}, {"disabled", or(r.props["disabled"], "false")}})
	}
	return printMenuRow(t, r)
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func printGeneric(r *row, order []string, tail []kv, optional ...string) []kv {
	out := []kv{{".id", idString(r.id)}}
	for _, k := range order {
		if v, ok := r.props[k]; ok {
			out = append(out, kv{k, v})
		}
	}
	for _, k := range optional {
		if v, ok := r.props[k]; ok {
			out = append(out, kv{k, v})
		}
	}
	out = append(out, tail...)
	if c, ok := r.props["comment"]; ok {
		out = append(out, kv{"comment", c})
	}
	return out
}

var interfaceOrder = []string{"name", "default-name", "type", "mtu", "actual-mtu", "l2mtu", "max-l2mtu", "mac-address", "last-link-up-time", "link-downs", "running", "slave", "disabled"}

// printFilter: the printed row carries .id, chain, action, the matchers that
// are set, log, log-prefix, bytes, packets, invalid, dynamic, disabled and the
// comment if set; unset properties are absent [I: reference 2.1, consistent
// with the librouteros and REST captures].
func (p *printer) printFilter(f family, r *row) []kv {
	var out []kv
	if p.reuse {
		out = p.buf[:0]
		defer func() { p.buf = out[:0] }()
	} else {
		out = make([]kv, 0, len(r.props)+8)
	}
	out = append(out, kv{".id", idString(r.id)})
	for k, v := range r.props {
		switch k {
		case "disabled", "log", "log-prefix", "comment":
			continue
		}
		out = append(out, kv{k, v})
	}
	m := out[1:]
	slices.SortFunc(m, func(a, b kv) int { return filterOrder[a.k] - filterOrder[b.k] })
	if !r.builtin {
		out = append(out, kv{"log", or(r.props["log"], "false")}, kv{"log-prefix", r.props["log-prefix"]})
	}
	out = append(out,
		kv{"bytes", "0"}, kv{"packets", "0"},
		kv{"invalid", boolStr(p.jumpInvalid(f, r))},
		kv{"dynamic", boolStr(r.dynamic)},
		kv{"disabled", or(r.props["disabled"], "false")})
	if c, ok := r.props["comment"]; ok {
		out = append(out, kv{"comment", c})
	}
	return out
}

func printAddr(r *row) []kv {
	out := []kv{{".id", idString(r.id)}, {"list", r.props["list"]}, {"address", r.props["address"]}, {"creation-time", r.created}}
	if v, ok := r.props["timeout"]; ok {
		out = append(out, kv{"timeout", v})
	}
	out = append(out, kv{"dynamic", or(r.props["dynamic"], "false")}, kv{"disabled", or(r.props["disabled"], "false")})
	if c, ok := r.props["comment"]; ok {
		out = append(out, kv{"comment", c})
	}
	return out
}

func toItem(kvs []kv) Item {
	it := make(Item, len(kvs))
	for _, p := range kvs {
		it[p.k] = p.v
	}
	return it
}

// creationTime uses the v7.10+ format "YYYY-MM-DD HH:MM:SS" [3P:
// socialwifi/RouterOS-api#62; C: REST-doc sample].
func creationTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// defconf loads RouterOS 7's default configuration for a router with one WAN
// port (ether1) and a LAN bridge [3P: many mutually consistent defconf
// exports, reference 2.5; pastebin 4r5VMWTC shows the same rule set].
func (d *db) defconf(board string) {
	ports := []string{"ether1", "ether2", "ether3", "ether4", "ether5", "ether6", "ether7", "ether8", "sfp-sfp-plus1"}
	if !strings.HasPrefix(board, "RB5009") {
		ports = ports[:5]
	}
	for i, name := range ports {
		d.insert(tInterface, len(d.t[tInterface].rows), &row{id: d.newID(tInterface), props: map[string]string{
			"name": name, "default-name": name, "type": "ether", "mtu": "1500", "actual-mtu": "1500",
			"l2mtu": "1514", "max-l2mtu": "9796", "mac-address": macFor(i),
			"link-downs": "0", "running": boolStr(i < 2), "slave": boolStr(i > 0), "disabled": "false",
		}})
	}
	d.insert(tInterface, len(d.t[tInterface].rows), &row{id: d.newID(tInterface), props: map[string]string{
		"name": "bridge", "type": "bridge", "mtu": "auto", "actual-mtu": "1500", "l2mtu": "1514",
		"mac-address": macFor(1), "link-downs": "0", "running": "true", "slave": "false", "disabled": "false",
		"comment": "defconf",
	}})
	// Builtin lists all, none, dynamic, static; their ids are not documented
	// [I] and only need to be stable and distinct.
	for i, name := range []string{"all", "none", "dynamic", "static"} {
		d.insert(tIfList, len(d.t[tIfList].rows), &row{id: 0x2000000 + uint64(i), builtin: true, props: map[string]string{"name": name}})
	}
	for _, name := range []string{"WAN", "LAN"} {
		d.insert(tIfList, len(d.t[tIfList].rows), &row{id: d.newID(tIfList), props: map[string]string{"name": name, "comment": "defconf"}})
	}
	for _, m := range [][2]string{{"LAN", "bridge"}, {"WAN", "ether1"}} {
		d.insert(tIfMember, len(d.t[tIfMember].rows), &row{id: d.newID(tIfMember), props: map[string]string{"list": m[0], "interface": m[1], "comment": "defconf"}})
	}
	rules := []map[string]string{
		{"chain": "input", "action": "accept", "connection-state": "established,related,untracked", "comment": "defconf: accept established,related,untracked"},
		{"chain": "input", "action": "drop", "connection-state": "invalid", "comment": "defconf: drop invalid"},
		{"chain": "input", "action": "accept", "protocol": "icmp", "comment": "defconf: accept ICMP"},
		{"chain": "input", "action": "accept", "dst-address": "127.0.0.1", "comment": "defconf: accept to local loopback (for CAPsMAN)"},
		{"chain": "input", "action": "drop", "in-interface-list": "!LAN", "comment": "defconf: drop all not coming from LAN"},
		{"chain": "forward", "action": "accept", "ipsec-policy": "in,ipsec", "comment": "defconf: accept in ipsec policy"},
		{"chain": "forward", "action": "accept", "ipsec-policy": "out,ipsec", "comment": "defconf: accept out ipsec policy"},
		{"chain": "forward", "action": "fasttrack-connection", "connection-state": "established,related", "hw-offload": "true", "comment": "defconf: fasttrack"},
		{"chain": "forward", "action": "accept", "connection-state": "established,related,untracked", "comment": "defconf: accept established,related, untracked"},
		{"chain": "forward", "action": "drop", "connection-state": "invalid", "comment": "defconf: drop invalid"},
		{"chain": "forward", "action": "drop", "connection-state": "new", "connection-nat-state": "!dstnat", "in-interface-list": "WAN", "comment": "defconf: drop all from WAN not DSTNATed"},
	}
	for _, p := range rules {
		d.insert(tFilter, len(d.t[tFilter].rows), &row{id: d.newID(tFilter), props: p})
	}
	d.syncDummy(tFilter)
}

func macFor(i int) string {
	const hex = "0123456789ABCDEF"
	return "48:A9:8A:0B:1C:" + string([]byte{hex[(i+0x20)>>4], hex[(i+0x20)&15]})
}

// membership maps interface list name to its enabled member interfaces.
func membership(rows []*row) map[string][]string {
	m := map[string][]string{}
	for _, r := range rows {
		if r.props["disabled"] == "true" {
			continue
		}
		m[r.props["list"]] = append(m[r.props["list"]], r.props["interface"])
	}
	for k := range m {
		sort.Strings(m[k])
	}
	return m
}

// defconf6 loads RouterOS 7's IPv6 default firewall: the bad_ipv6 address
// list and 22 filter rules, as `/system default-configuration print` dumps
// them (the `/ipv6 firewall { ... }` block) [3P: public defconf dumps and
// exports of 7.x routers, found by the rules' comments; mepley.net
// "MikroTik RouterOS IPv6 firewall rules"; reference section 9]. The UDP
// traceroute rule matches port= before 7.14 and dst-port= from 7.14 [3P:
// mepley.net, updated for the 7.14 change]. Neither the manual nor the
// dumps say whether boards without a LAN bridge get it [I: every board
// here does].
func (d *db) defconf6(minor int) {
	bad := [][2]string{
		{"::/128", "defconf: unspecified address"}, {"::1", "defconf: lo"}, {"fec0::/10", "defconf: site-local"},
		{"::ffff:0:0/96", "defconf: ipv4-mapped"}, {"::/96", "defconf: ipv4 compat"}, {"100::/64", "defconf: discard only "},
		{"2001:db8::/32", "defconf: documentation"}, {"2001:10::/28", "defconf: ORCHID"}, {"3ffe::/16", "defconf: 6bone"},
	}
	now := creationTime(time.Now())
	for _, b := range bad {
		a, _, _ := normalizeAddr6(b[0])
		d.insert(tAddr6, len(d.t[tAddr6].rows), &row{id: d.newID(tAddr6), created: now,
			props: map[string]string{"list": "bad_ipv6", "address": a, "comment": b[1]}})
	}
	traceroute := "dst-port"
	if minor < 14 {
		traceroute = "port"
	}
	const (
		est  = "established,related,untracked"
		ipin = "in,ipsec"
	)
	rules := []map[string]string{
		{"chain": "input", "action": "accept", "connection-state": est, "comment": "defconf: accept established,related,untracked"},
		{"chain": "input", "action": "drop", "connection-state": "invalid", "comment": "defconf: drop invalid"},
		{"chain": "input", "action": "accept", "protocol": "icmpv6", "comment": "defconf: accept ICMPv6"},
		{"chain": "input", "action": "accept", "protocol": "udp", traceroute: "33434-33534", "comment": "defconf: accept UDP traceroute"},
		{"chain": "input", "action": "accept", "protocol": "udp", "dst-port": "546", "src-address": "fe80::/10", "comment": "defconf: accept DHCPv6-Client prefix delegation."},
		{"chain": "input", "action": "accept", "protocol": "udp", "dst-port": "500,4500", "comment": "defconf: accept IKE"},
		{"chain": "input", "action": "accept", "protocol": "ipsec-ah", "comment": "defconf: accept ipsec AH"},
		{"chain": "input", "action": "accept", "protocol": "ipsec-esp", "comment": "defconf: accept ipsec ESP"},
		{"chain": "input", "action": "accept", "ipsec-policy": ipin, "comment": "defconf: accept all that matches ipsec policy"},
		{"chain": "input", "action": "drop", "in-interface-list": "!LAN", "comment": "defconf: drop everything else not coming from LAN"},
		{"chain": "forward", "action": "accept", "connection-state": est, "comment": "defconf: accept established,related,untracked"},
		{"chain": "forward", "action": "drop", "connection-state": "invalid", "comment": "defconf: drop invalid"},
		{"chain": "forward", "action": "drop", "src-address-list": "bad_ipv6", "comment": "defconf: drop packets with bad src ipv6"},
		{"chain": "forward", "action": "drop", "dst-address-list": "bad_ipv6", "comment": "defconf: drop packets with bad dst ipv6"},
		{"chain": "forward", "action": "drop", "protocol": "icmpv6", "hop-limit": "equal:1", "comment": "defconf: rfc4890 drop hop-limit=1"},
		{"chain": "forward", "action": "accept", "protocol": "icmpv6", "comment": "defconf: accept ICMPv6"},
		{"chain": "forward", "action": "accept", "protocol": "139", "comment": "defconf: accept HIP"},
		{"chain": "forward", "action": "accept", "protocol": "udp", "dst-port": "500,4500", "comment": "defconf: accept IKE"},
		{"chain": "forward", "action": "accept", "protocol": "ipsec-ah", "comment": "defconf: accept ipsec AH"},
		{"chain": "forward", "action": "accept", "protocol": "ipsec-esp", "comment": "defconf: accept ipsec ESP"},
		{"chain": "forward", "action": "accept", "ipsec-policy": ipin, "comment": "defconf: accept all that matches ipsec policy"},
		{"chain": "forward", "action": "drop", "in-interface-list": "!LAN", "comment": "defconf: drop everything else not coming from LAN"},
	}
	for _, p := range rules {
		d.insert(tFilter6, len(d.t[tFilter6].rows), &row{id: d.newID(tFilter6), props: p})
	}
}
