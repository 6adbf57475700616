package rossim

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// This file models the menus the onboarding script touches besides the
// firewall: /ip/address, /ip/firewall/nat, /user/group, /user, /ip/service,
// /container (and envs, mounts, config), /system/device-mode, /ip/dns and
// /file. Property names that changed across 7.x are per version (verProp);
// the package doc's behaviour table lists each with its source.

// verProp is a writable property that exists from 7.since up to, not
// including, 7.until (0: no bound).
type verProp struct {
	name         string
	kind         propKind
	since, until int
}

func (p verProp) in(minor int) bool {
	return (p.since == 0 || minor >= p.since) && (p.until == 0 || minor < p.until)
}

// menuProps are the writable properties of the new menus, in print order.
var menuProps = map[tableID][]verProp{
	tIPAddr: {{name: "address", kind: kIfAddr}, {name: "network", kind: kText}, {name: "interface", kind: kIface},
		{name: "disabled", kind: kBool}, {name: "comment", kind: kText}},
	tNAT: {{name: "chain", kind: kName}, {name: "action", kind: kText}, {name: "protocol", kind: kProto},
		{name: "src-address", kind: kAddr}, {name: "dst-address", kind: kAddr},
		{name: "src-address-list", kind: kListRef}, {name: "dst-address-list", kind: kListRef},
		{name: "src-port", kind: kPorts}, {name: "dst-port", kind: kPorts},
		{name: "in-interface", kind: kIface}, {name: "out-interface", kind: kIface},
		{name: "in-interface-list", kind: kIfList}, {name: "out-interface-list", kind: kIfList},
		{name: "to-addresses", kind: kText}, {name: "to-ports", kind: kText},
		{name: "log", kind: kBool}, {name: "log-prefix", kind: kText}, {name: "disabled", kind: kBool}, {name: "comment", kind: kText}},
	tUserGroup: {{name: "name", kind: kName}, {name: "policy", kind: kText}, {name: "skin", kind: kText}, {name: "comment", kind: kText}},
	tUser: {{name: "name", kind: kName}, {name: "group", kind: kName}, {name: "address", kind: kText},
		{name: "password", kind: kText}, {name: "inactivity-timeout", kind: kText}, {name: "inactivity-policy", kind: kText},
		{name: "disabled", kind: kBool}, {name: "comment", kind: kText}},
	// /ip/service: `address` renamed `available-from` in 7.24 [3P: 7.24
	// changelog "console - renamed "address" to "available-from"", quoted
	// in nasnet-community/nasnet-panel PR #794].
	tService: {{name: "port", kind: kText}, {name: "address", kind: kText, until: 24}, {name: "available-from", kind: kText, since: 24},
		{name: "certificate", kind: kText}, {name: "tls-version", kind: kText}, {name: "vrf", kind: kText},
		{name: "max-sessions", kind: kSessions}, {name: "disabled", kind: kBool}},
	// /container [C: manual cli-reference/container.md for the names];
	// envlist -> envlists in 7.20 [3P: tikoci, checked with
	// /console/inspect]; mounts -> mountlists and inline env=/mount= in
	// 7.21 [3P: 7.21 changelog quoted by SecOps-7/MikroDash, an Ansible
	// playbook run on CHR 7.21.4]; healthcheck-* from 7.23 [C: manual].
	tContainer: {{name: "name", kind: kText}, {name: "file", kind: kText}, {name: "remote-image", kind: kText},
		{name: "interface", kind: kText}, {name: "root-dir", kind: kText},
		{name: "envlist", kind: kText, until: 20}, {name: "envlists", kind: kText, since: 20},
		{name: "mounts", kind: kText, until: 21}, {name: "mountlists", kind: kText, since: 21},
		{name: "env", kind: kText, since: 21}, {name: "mount", kind: kText, since: 21},
		{name: "cmd", kind: kText}, {name: "entrypoint", kind: kText}, {name: "workdir", kind: kText},
		{name: "hostname", kind: kText}, {name: "domain-name", kind: kText}, {name: "dns", kind: kText},
		{name: "user", kind: kText}, {name: "hosts", kind: kText}, {name: "tmpfs", kind: kText}, {name: "shm-size", kind: kText},
		{name: "stop-signal", kind: kText}, {name: "stop-time", kind: kText},
		{name: "restart-policy", kind: kText}, {name: "restart-interval", kind: kText},
		{name: "healthcheck-cmd", kind: kText, since: 23}, {name: "healthcheck-interval", kind: kText, since: 23},
		{name: "start-on-boot", kind: kBool}, {name: "logging", kind: kBool}, {name: "comment", kind: kText}},
	// /container/envs: list= from 7.20, name= before [3P: tikoci].
	tEnvs: {{name: "name", kind: kName, until: 20}, {name: "list", kind: kName, since: 20},
		{name: "key", kind: kName}, {name: "value", kind: kText}, {name: "comment", kind: kText}},
	// /container/mounts: name= up to 7.20, list= from 7.21 [3P, as for
	// mountlists]. Whether 7.21+ keeps name= as an alias is unknown [I]:
	// not modelled.
	tMounts: {{name: "name", kind: kName, until: 21}, {name: "list", kind: kName, since: 21},
		{name: "src", kind: kText}, {name: "dst", kind: kText}, {name: "read-only", kind: kBool}, {name: "comment", kind: kText}},
}

// singleProps are the settable properties of singleton menus [C: manual
// cli-reference container/config; I for device-mode and dns beyond the
// names the script uses].
var singleProps = map[string][]verProp{
	"/container/config":   {{name: "registry-url", kind: kText}, {name: "tmpdir", kind: kText}, {name: "ram-high", kind: kText}, {name: "username", kind: kText}, {name: "password", kind: kText}, {name: "layer-dir", kind: kText}},
	"/system/device-mode": {{name: "mode", kind: kText}, {name: "container", kind: kBool}, {name: "scheduler", kind: kBool}, {name: "fetch", kind: kBool}},
	"/ip/dns":             {{name: "servers", kind: kText}, {name: "allow-remote-requests", kind: kBool}, {name: "cache-size", kind: kText}},
}

// scriptMenus are the menus added for the onboarding script; exec.go's
// init merges them into menus.
var scriptMenus = map[string]menu{
	"/ip/address":         {tIPAddr, verbs("print getall listen add set unset remove enable disable")},
	"/ip/firewall/nat":    {tNAT, verbs("print getall listen add set unset remove enable disable move")},
	"/user/group":         {tUserGroup, verbs("print getall add set remove")},
	"/user":               {tUser, verbs("print getall add set remove enable disable")},
	"/ip/service":         {tService, verbs("print getall set enable disable")},
	"/container":          {tContainer, verbs("print getall add set remove start stop")},
	"/container/envs":     {tEnvs, verbs("print getall add set remove")},
	"/container/mounts":   {tMounts, verbs("print getall add set remove")},
	"/container/config":   {-1, verbs("print getall set")},
	"/system/device-mode": {-1, verbs("print getall update")},
	"/ip/dns":             {-1, verbs("print getall set")},
	"/file":               {tFile, verbs("print getall")},
	"/log":                {tLog, verbs("print getall")},
}

// nameKey is the property that names an item, for menus where a name can
// stand for an id [C: cmd-notes "Addressing entries"].
var nameKey = map[tableID]string{tInterface: "name", tIfList: "name", tVeth: "name", tUserGroup: "name", tUser: "name",
	tService: "name", tContainer: "name", tFile: "name"}

var schemaCache sync.Map // minor version -> *[nTables]map[string]propKind

// schemaFor returns the writable properties of the version-dependent
// menus for RouterOS 7.minor.
func schemaFor(minor int) *[nTables]map[string]propKind {
	if s, ok := schemaCache.Load(minor); ok {
		return s.(*[nTables]map[string]propKind)
	}
	var s [nTables]map[string]propKind
	for t, ps := range menuProps {
		s[t] = propsIn(ps, minor)
	}
	v, _ := schemaCache.LoadOrStore(minor, &s)
	return v.(*[nTables]map[string]propKind)
}

func propsIn(ps []verProp, minor int) map[string]propKind {
	m := map[string]propKind{}
	for _, p := range ps {
		if p.in(minor) {
			m[p.name] = p.kind
		}
	}
	return m
}

// minorOf returns the 7.x minor of a version string, e.g. 21 for "7.21.5".
func minorOf(v string) int {
	v, _, _ = strings.Cut(v, " ")
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if parts[0] != "7" {
		if a, _ := strconv.Atoi(parts[0]); a > 7 {
			return 1000
		}
		return 0
	}
	return n
}

// policies RouterOS knows [C: manual "User" page, group policies].
var knownPolicies = map[string]bool{"local": true, "telnet": true, "ssh": true, "ftp": true, "reboot": true, "read": true,
	"write": true, "policy": true, "test": true, "winbox": true, "password": true, "web": true, "sniff": true,
	"sensitive": true, "api": true, "romon": true, "rest-api": true, "dude": true, "tikapp": true}

// defaultServices are /ip/service's rows on a factory router [C: manual
// ip/service for names and ports; I for which are enabled].
var defaultServices = [][2]string{{"telnet", "23"}, {"ftp", "21"}, {"www", "80"}, {"ssh", "22"}, {"www-ssl", "443"},
	{"api", "8728"}, {"winbox", "8291"}, {"api-ssl", "8729"}}

// defconfMenus loads the factory rows of the new menus.
func (d *db) defconfMenus(user, password string, maxSessions int) {
	all := make([]string, 0, len(knownPolicies))
	for p := range knownPolicies {
		all = append(all, p)
	}
	slices.Sort(all)
	readPol := "local,telnet,ssh,reboot,read,test,winbox,password,web,sniff,sensitive,api,romon,rest-api,tikapp"
	for _, g := range [][2]string{{"read", readPol}, {"write", readPol + ",write"}, {"full", strings.Join(all, ",")}} {
		d.insert(tUserGroup, len(d.t[tUserGroup].rows), &row{id: d.newID(tUserGroup), builtin: true,
			props: map[string]string{"name": g[0], "policy": g[1]}})
	}
	d.insert(tUser, 0, &row{id: d.newID(tUser), props: map[string]string{"name": user, "group": "full", "password": password,
		"comment": "system default user"}})
	for _, s := range defaultServices {
		p := map[string]string{"name": s[0], "port": s[1], "max-sessions": "20", "vrf": "main"}
		if s[0] == "api" {
			p["max-sessions"] = strconv.Itoa(maxSessions)
		}
		if s[0] == "www-ssl" || s[0] == "api-ssl" {
			p["certificate"] = "none"
		}
		if s[0] == "www-ssl" {
			p["disabled"] = "true"
		}
		d.insert(tService, len(d.t[tService].rows), &row{id: d.newID(tService), props: p})
	}
}

// printOrder is each new menu's print order: its writable properties
// (password is write-only [I]).
func printOrder(t tableID) []string {
	var out []string
	if t == tService {
		out = append(out, "name")
	}
	for _, p := range menuProps[t] {
		if p.name != "password" && p.name != "disabled" && p.name != "comment" {
			out = append(out, p.name)
		}
	}
	return out
}

// printMenuRow prints a row of the new menus: .id, its properties in
// order, read-only state, flags, comment.
func printMenuRow(t tableID, r *row) []kv {
	var tail []kv
	switch t {
	case tIPAddr:
		tail = []kv{{"actual-interface", r.props["interface"]}, {"invalid", "false"}, {"dynamic", "false"}}
	case tService:
		tail = []kv{{"dynamic", boolStr(r.dynamic)}, {"invalid", "false"}}
		if r.dynamic {
			tail = append(tail, kv{"connection", "true"}, kv{"local", r.props["local"]}, kv{"remote", r.props["remote"]})
		}
	case tContainer:
		st := r.props["status"]
		tail = []kv{{"status", st}, {"running", boolStr(st == "running")}, {"stopped", boolStr(st == "stopped")}}
	case tFile:
		return []kv{{".id", idString(r.id)}, {"name", r.props["name"]}, {"type", r.props["type"]}, {"size", r.props["size"]}}
	case tLog:
		return []kv{{".id", idString(r.id)}, {"time", r.props["time"]}, {"topics", r.props["topics"]}, {"message", r.props["message"]}}
	case tUserGroup, tNAT:
		tail = []kv{{"dynamic", "false"}}
	}
	out := printGeneric(r, printOrder(t), tail)
	// printGeneric puts comment last; disabled goes before it.
	if t != tFile {
		dis := kv{"disabled", or(r.props["disabled"], "false")}
		if n := len(out); n > 0 && out[n-1].k == "comment" {
			out = append(out[:n-1], dis, out[n-1])
		} else {
			out = append(out, dis)
		}
	}
	return out
}

// checkMenuRow validates a whole row of the new menus after add or set.
// Texts marked [I] are plausible RouterOS wording, unverified.
func (r *Router) checkMenuRow(t tableID, p map[string]string, self uint64) *Trap {
	d := r.db
	missing := func(names ...string) *Trap {
		var m []string
		for _, n := range names {
			if p[n] == "" {
				m = append(m, n)
			}
		}
		if len(m) == 0 {
			return nil
		}
		return &Trap{Message: "missing value(s) of argument(s) " + strings.Join(m, ", ")} // [3P CLI text]
	}
	dup := func(key, msg string) *Trap {
		for _, x := range d.t[t].rows {
			if x.id != self && x.props[key] == p[key] {
				return &Trap{Message: msg}
			}
		}
		return nil
	}
	switch t {
	case tIPAddr:
		if tr := missing("address", "interface"); tr != nil {
			return tr
		}
		pf, _ := netip.ParsePrefix(p["address"])
		p["network"] = pf.Masked().Addr().String()
	case tNAT:
		return missing("chain")
	case tUserGroup:
		if tr := missing("name"); tr != nil {
			return tr
		}
		for _, pol := range strings.Split(p["policy"], ",") {
			if pol = strings.TrimPrefix(pol, "!"); pol != "" && !knownPolicies[pol] {
				return errNoMatch("policy") // [I] same family as other enums
			}
		}
		return dup("name", "failure: group with the same name already exists") // [I]
	case tUser:
		if tr := missing("name", "group"); tr != nil {
			return tr
		}
		if !d.hasName(tUserGroup, p["group"]) {
			return errNoMatch("group") // [I]
		}
		if _, ok := parsePrefixes(p["address"]); !ok {
			return errBadValue("address")
		}
		return dup("name", "failure: user with the same name already exists") // [I]
	case tService:
		for _, k := range []string{"address", "available-from"} {
			if _, ok := parsePrefixes(p[k]); !ok {
				return errBadValue(k)
			}
		}
	case tContainer:
		if p["file"] == "" && p["remote-image"] == "" {
			return &Trap{Message: "failure: file or remote-image must be specified"} // [I]
		}
		if f := p["file"]; f != "" && self == 0 && !r.fileExists(f) {
			return &Trap{Message: "failure: file does not exist"} // [I]
		}
		if v := p["interface"]; v != "" && !d.hasName(tVeth, v) {
			return errNoMatch("interface") // a container's interface is a veth [C: manual containers/veth]
		}
	case tEnvs:
		return missing(r.listKey(t), "key")
	case tMounts:
		return missing(r.listKey(t), "src", "dst")
	}
	return nil
}

// listKey is the name of the property that groups envs or mounts into a
// list on this version: list (envs from 7.20, mounts from 7.21), else name.
func (r *Router) listKey(t tableID) string {
	if _, ok := r.specFor(t)["list"]; ok {
		return "list"
	}
	return "name"
}

// parsePrefixes parses a comma list of IPv4 addresses or prefixes (empty:
// none, meaning any).
func parsePrefixes(s string) ([]netip.Prefix, bool) {
	if s == "" {
		return nil, true
	}
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		if a, err := netip.ParseAddr(part); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, false
		}
		out = append(out, p.Masked())
	}
	return out, true
}

// allowed reports whether addr is in the prefix list s (empty: any).
func allowed(s string, addr netip.Addr) bool {
	ps, ok := parsePrefixes(s)
	if !ok {
		return false
	}
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

// serviceAddressKey is /ip/service's allowed-addresses property on this
// version.
func (r *Router) serviceAddressKey() string {
	if r.minor >= 24 {
		return "available-from"
	}
	return "address"
}
