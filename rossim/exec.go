package rossim

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// command is one parsed client sentence.
type command struct {
	path    string
	attrs   []kv
	queries []string
	tag     string
	// wire: the reply goes to an API session, so a print may encode its
	// rows straight into result.raw instead of result.sents.
	wire bool
}

func parseCommand(words []string) *command {
	c := &command{path: words[0]}
	for _, w := range words[1:] {
		switch {
		case strings.HasPrefix(w, "="):
			// =name=value; the value may be empty or contain "=" [C: API-doc].
			k, v, _ := strings.Cut(w[1:], "=")
			c.attrs = append(c.attrs, kv{k, v})
		case strings.HasPrefix(w, ".tag="):
			c.tag = w[len(".tag="):]
		case strings.HasPrefix(w, "."):
			// API attributes other than .tag, e.g. .proplist=, are
			// treated like =.proplist= [C: API-doc, reference 1.2].
			k, v, _ := strings.Cut(w, "=")
			c.attrs = append(c.attrs, kv{k, v})
		case strings.HasPrefix(w, "?"):
			c.queries = append(c.queries, w)
		}
	}
	return c
}

func (c *command) get(k string) (string, bool) {
	for _, a := range c.attrs {
		if a.k == k {
			return a.v, true
		}
	}
	return "", false
}

// ids returns the item list of a command: .id and numbers are interchangeable
// and take comma lists [C: REST-doc; terraform uses numbers=].
func (c *command) ids() (string, bool) {
	if v, ok := c.get(".id"); ok {
		return v, true
	}
	return c.get("numbers")
}

type menu struct {
	tab   tableID // -1: a singleton menu
	verbs map[string]bool
}

// verbs is the set of the space-separated words of s: a menu's verbs, or
// the argument names a script command accepts.
func verbs(s string) map[string]bool {
	m := map[string]bool{}
	for _, v := range strings.Fields(s) {
		m[v] = true
	}
	return m
}

var menus = map[string]menu{
	"/ip/firewall/filter":       {tFilter, verbs("print getall listen add set unset remove enable disable move reset-counters reset-counters-all")},
	"/ip/firewall/address-list": {tAddr, verbs("print getall listen add set unset remove enable disable")},
	// The IPv6 firewall menus, built in since 7.0, with the verbs of
	// their IPv4 twins [C: manual cli-reference ipv6/firewall].
	"/ipv6/firewall/filter":       {tFilter6, verbs("print getall listen add set unset remove enable disable move reset-counters reset-counters-all")},
	"/ipv6/firewall/address-list": {tAddr6, verbs("print getall listen add set unset remove enable disable")},
	"/interface":                  {tInterface, verbs("print getall listen")},
	"/interface/list":             {tIfList, verbs("print getall listen add remove set")},
	"/interface/veth":             {tVeth, verbs("print getall listen add set remove enable disable")},
	"/interface/list/member":      {tIfMember, verbs("print getall listen add set unset remove enable disable")},
	"/system/resource":            {-1, verbs("print getall")},
	"/system/identity":            {-1, verbs("print getall set")},
}

var dirs = map[string]bool{"/ip": true, "/ip/firewall": true, "/ipv6": true, "/ipv6/firewall": true, "/system": true}

func init() {
	for p, m := range scriptMenus {
		menus[p] = m
	}
	dirs["/user"] = true
	dirs["/container"] = true
}

var writeVerbs = map[string]bool{"add": true, "set": true, "unset": true, "remove": true, "enable": true, "disable": true, "move": true}

// resolve splits a command path into menu and verb, or returns the pair of
// traps RouterOS sends for an unknown path: "no such command or directory
// (<word>)" with category 0, then "no such command prefix" [3P: townet capture;
// home-assistant/core#68115 on v7; reference 1.4].
func resolve(path string) (string, string, []*Trap) {
	if r, ok := resolved.Load(path); ok {
		mv := r.([2]string)
		return mv[0], mv[1], nil
	}
	m, v, traps := resolvePath(path)
	if traps == nil {
		// Only known paths are cached: they are finite (menus x verbs),
		// whatever clients send.
		resolved.Store(path, [2]string{m, v})
	}
	return m, v, traps
}

var resolved sync.Map // command path -> [menu, verb]

func resolvePath(path string) (string, string, []*Trap) {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	bad := func(w string) (string, string, []*Trap) {
		return "", "", []*Trap{
			{Message: "no such command or directory (" + w + ")", Category: "0"},
			{Message: "no such command prefix"},
		}
	}
	if !strings.HasPrefix(path, "/") || len(segs) < 2 {
		return bad(segs[len(segs)-1])
	}
	p := ""
	for _, s := range segs[:len(segs)-1] {
		p += "/" + s
		if _, ok := menus[p]; !ok && !dirs[p] {
			return bad(s)
		}
	}
	m, ok := menus[p]
	verb := segs[len(segs)-1]
	if !ok || !m.verbs[verb] {
		return bad(verb)
	}
	return p, verb, nil
}

// result is the reply to one command.
type result struct {
	sents [][]string
	// raw, when set, is the encoded reply (tags included) that precedes
	// sents: a print's rows, encoded as they are printed.
	raw    []byte
	fatal  bool
	listen *listenSpec
	write  string // the verb of a successful write
	events []event
}

type listenSpec struct {
	tab       tableID
	printTail bool // follow: print first
}

func trapResult(ts ...*Trap) result {
	var s [][]string
	for _, t := range ts {
		w := []string{"!trap"}
		if t.Category != "" {
			w = append(w, "=category="+t.Category)
		}
		w = append(w, "=message="+t.Message)
		s = append(s, w)
	}
	// A !done always follows !trap [C: API-doc; go-routeros PR #16].
	return result{sents: append(s, []string{"!done"})}
}

func doneResult(ret string) result {
	if ret == "" {
		return result{sents: [][]string{{"!done"}}}
	}
	return result{sents: [][]string{{"!done", "=ret=" + ret}}}
}

func reSentence(kvs []kv) []string {
	s := make([]string, 1, len(kvs)+1)
	s[0] = "!re"
	for _, p := range kvs {
		s = append(s, "="+p.k+"="+p.v)
	}
	return s
}

// execute runs one command other than /login, /cancel and /quit.
func (r *Router) execute(c *command) result {
	if c.path == "/import" {
		return r.importCmd(context.Background(), c, &logWriter{r: r, prefix: "script: "})
	}
	mpath, verb, traps := resolve(c.path)
	if traps != nil {
		return trapResult(traps...)
	}
	m := menus[mpath]
	if !writeVerbs[verb] && !(m.tab < 0 && (verb == "set" || verb == "update")) && verb != "start" && verb != "stop" {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.read(c, m, mpath, verb)
	}
	// Writes are serialised router-wide, like RouterOS's configuration
	// database, and each takes the configured service time.
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if d := time.Duration(r.serviceTime.Load()); d > 0 {
		time.Sleep(d)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.db
	d.rec = d.rec[:0]
	var res result
	var trap *Trap
	var after func()
	switch {
	case mpath == "/container" && (verb == "start" || verb == "stop"):
		after, trap = r.containerVerb(c, verb)
		if trap == nil {
			res = doneResult("")
		}
	case m.tab < 0 && mpath == "/system/identity":
		trap = r.setIdentity(c)
		if trap == nil {
			res = doneResult("")
		}
	case m.tab < 0:
		trap = r.setSingle(c, mpath, verb)
		if trap == nil {
			res = doneResult("")
		}
	default:
		var ret string
		ret, trap = r.write(d, c, m.tab, verb)
		if trap == nil {
			if m.tab == tFilter || m.tab == tFilter6 && r.minor >= 18 {
				d.syncDummy(m.tab)
			}
			res = doneResult(ret)
		}
	}
	if trap != nil {
		return trapResult(trap)
	}
	res.write = verb
	res.events = r.commit()
	if after != nil {
		// In a goroutine: it takes the locks this call holds.
		go after()
	}
	return res
}

// setSingle sets properties of a singleton menu; /system/device-mode
// update only records the request: a real router applies it after a
// button press or cold reboot [C: manual device-mode], which the
// simulator does not emulate (Options.ContainersDisabled picks the mode).
func (r *Router) setSingle(c *command, mpath, verb string) *Trap {
	spec := propsIn(singleProps[mpath], r.minor)
	vals := map[string]string{}
	for _, a := range c.attrs {
		kind, ok := spec[a.k]
		if !ok {
			return errUnknownParam(a.k)
		}
		v, trap := r.db.normalize(a.k, kind, a.v)
		if trap != nil {
			return trap
		}
		vals[a.k] = v
	}
	if verb == "update" {
		r.appendLog("device-mode update requested; it needs a button press or cold reboot to apply")
		return nil
	}
	cur := map[string]string{}
	for k, v := range r.singles[mpath] {
		cur[k] = v
	}
	for k, v := range vals {
		cur[k] = v
	}
	r.singles[mpath] = cur
	return nil
}

func (r *Router) setIdentity(c *command) *Trap {
	for _, a := range c.attrs {
		if a.k != "name" {
			return errUnknownParam(a.k)
		}
		if a.v == "" {
			return errBadValue("name")
		}
		r.identity = a.v
	}
	return nil
}

var printArgs = map[string]bool{".proplist": true, "count-only": true, "detail": true, "without-paging": true,
	"terse": true, "brief": true, "stats": true, "follow": true, "follow-only": true, "from": true, "interval": true,
	"value-list": true, "show-ids": true, "where": true}

func (r *Router) read(c *command, m menu, mpath, verb string) result {
	if verb == "reset-counters" || verb == "reset-counters-all" {
		return doneResult("") // counters are always zero here
	}
	for _, a := range c.attrs {
		if !printArgs[a.k] {
			return trapResult(errUnknownParam(a.k))
		}
	}
	if m.tab < 0 {
		kvs := r.singleton(mpath)
		return result{sents: [][]string{reSentence(proplist(c, kvs)), {"!done"}}}
	}
	if verb == "listen" {
		return result{listen: &listenSpec{tab: m.tab}}
	}
	_, follow := c.get("follow")
	_, followOnly := c.get("follow-only")
	if followOnly {
		return result{listen: &listenSpec{tab: m.tab}}
	}
	var from map[uint64]bool
	if v, ok := c.get("from"); ok && v != "" {
		from = map[uint64]bool{}
		for _, s := range strings.Split(v, ",") {
			id, ok := r.lookupID(m.tab, s)
			if !ok {
				return trapResult(errNoSuchItem)
			}
			from[id] = true
		}
	}
	isBool := func(k string) bool { return boolProps[k] }
	p := newPrinter(r.db)
	var sents [][]string
	var raw []byte
	n := 0
	_, countOnly := c.get("count-only")
	encode := c.wire && !follow && !countOnly
	p.reuse = encode // each row is encoded before the next is printed
	if encode {
		// About what a row takes (a filter row ~300 bytes, an entry
		// ~120), so the reply is rarely copied while it grows.
		per := 160
		if isFilter(m.tab) {
			per = 400
		}
		raw = make([]byte, 0, 64+per*len(r.db.t[m.tab].rows))
	}
	for _, row := range r.rowsOf(m.tab) {
		if from != nil && !from[row.id] {
			continue
		}
		kvs := p.print(m.tab, row)
		if len(c.queries) > 0 && !queryMatch(c.queries, kvs, isBool) {
			continue
		}
		n++
		switch {
		case encode:
			raw = appendRe(raw, proplist(c, kvs), c.tag)
		case !countOnly:
			sents = append(sents, reSentence(proplist(c, kvs)))
		}
	}
	if follow {
		return result{sents: sents, listen: &listenSpec{tab: m.tab, printTail: true}}
	}
	if countOnly {
		// count-only returns the number in =ret= [C: REST-doc].
		return doneResult(strconv.Itoa(n))
	}
	if n == 0 && r.emitEmpty {
		// RouterOS 7.18+ sends !empty before the !done of a print that
		// returns nothing [C: API-doc, 7.18 changelog; 3P capture
		// pear2/Net_RouterOS#80].
		sents = append(sents, []string{"!empty"})
	}
	return result{raw: raw, sents: append(sents, []string{"!done"})}
}

var boolProps = map[string]bool{"disabled": true, "dynamic": true, "invalid": true, "log": true, "builtin": true,
	"running": true, "slave": true, "hw-offload": true}

// proplist keeps only the listed properties, in the listed order; a row with
// none of them is a bare !re [C: API-doc; librouteros-analysis].
func proplist(c *command, kvs []kv) []kv {
	pl, ok := c.get(".proplist")
	if !ok {
		return kvs
	}
	var out []kv
	for _, k := range strings.Split(pl, ",") {
		if v, ok := lookup(kvs, k); ok {
			out = append(out, kv{k, v})
		}
	}
	return out
}

func (r *Router) singleton(mpath string) []kv {
	if mpath == "/system/identity" {
		return []kv{{"name", r.identity}}
	}
	if vals, ok := r.singles[mpath]; ok {
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([]kv, 0, len(keys))
		for _, k := range keys {
			out = append(out, kv{k, vals[k]})
		}
		return out
	}
	return []kv{
		{"uptime", formatUptime(time.Since(r.started))},
		{"version", r.version + " (stable)"},
		{"build-time", "2025-10-01 10:00:00"},
		{"factory-software", "7.10"},
		{"free-memory", "873332736"},
		{"total-memory", "1073741824"},
		{"cpu", cpuName(r.opts.Architecture)},
		{"cpu-count", "4"},
		{"cpu-frequency", "1400"},
		{"cpu-load", "1"},
		{"free-hdd-space", "891846656"},
		{"total-hdd-space", "1073741824"},
		{"write-sect-since-reboot", "112"},
		{"write-sect-total", "22460"},
		{"bad-blocks", "0"},
		{"architecture-name", r.opts.Architecture},
		{"board-name", r.opts.Board},
		{"platform", "MikroTik"},
	}
}

func cpuName(arch string) string {
	switch arch {
	case "arm64":
		return "ARM64"
	case "arm":
		return "ARMv7"
	case "x86_64":
		return "Intel(R)"
	}
	return strings.ToUpper(arch)
}

// formatUptime prints a duration the way RouterOS does: 1w2d3h4m5s, with zero
// units left out [C: /system/resource print samples].
func formatUptime(d time.Duration) string {
	s := int64(d / time.Second)
	units := []struct {
		n   int64
		suf string
	}{{7 * 86400, "w"}, {86400, "d"}, {3600, "h"}, {60, "m"}}
	var b strings.Builder
	for _, u := range units {
		if s >= u.n {
			fmt.Fprintf(&b, "%d%s", s/u.n, u.suf)
			s %= u.n
		}
	}
	if s > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

// lookupID resolves one item reference: "*HEX", or a name in menus whose
// items have names [C: cmd-notes "Addressing entries"]. Bare numbers are not
// ids.
func (r *Router) lookupID(t tableID, s string) (uint64, bool) {
	if id, ok := parseID(s); ok {
		_, found := r.db.t[t].byID[id]
		return id, found
	}
	if key, ok := nameKey[t]; ok && t != tFile {
		for _, row := range r.db.t[t].rows {
			if row.props[key] == s {
				return row.id, true
			}
		}
	}
	return 0, false
}

func (r *Router) targets(c *command, t tableID) ([]uint64, *Trap) {
	v, ok := c.ids()
	if !ok || v == "" {
		return nil, errNoSuchItem
	}
	var out []uint64
	for _, s := range strings.Split(v, ",") {
		id, ok := r.lookupID(t, s)
		if !ok {
			return nil, errNoSuchItem
		}
		out = append(out, id)
	}
	return out, nil
}

func (r *Router) specFor(t tableID) map[string]propKind {
	if s := r.schema[t]; s != nil {
		return s
	}
	switch t {
	case tFilter:
		return filterSpec
	case tFilter6:
		return filterSpec6
	case tAddr, tAddr6:
		return addrSpec
	case tIfMember:
		return memberSpec
	case tIfList:
		return ifListSpec
	case tVeth:
		return vethSpec
	}
	return nil
}

// apply merges attribute words into props. On set, =!name= unsets a property
// [3P: community.routeros api_modify, tested against real routers].
func (r *Router) apply(t tableID, props map[string]string, attrs []kv, isAdd bool) *Trap {
	spec := r.specFor(t)
	for _, a := range attrs {
		k := a.k
		switch {
		case !isAdd && (k == ".id" || k == "numbers"):
			continue
		case isAdd && isFilter(t) && k == "place-before":
			// write-only, add only [3P: terraform-provider-routeros#223]
			continue
		case !isAdd && strings.HasPrefix(k, "!"):
			if _, ok := spec[k[1:]]; !ok {
				return errUnknownParam(k[1:])
			}
			delete(props, k[1:])
			continue
		}
		kind, ok := spec[k]
		if !ok {
			// Read-only properties (bytes, packets, dynamic, invalid on
			// filter rules) are not parameters of add/set either [I].
			return errUnknownParam(k)
		}
		if a.v == "" && kind != kName {
			delete(props, k) // =comment= clears [3P: api_modify]
			continue
		}
		v := a.v
		if isAddrList(t) && k == "address" {
			var trap *Trap
			if v, trap = normalizeListAddress(familyOf(t), v); trap != nil {
				return trap
			}
		} else {
			var trap *Trap
			if v, trap = r.db.normalize(k, kind, v); trap != nil {
				return trap
			}
		}
		props[k] = v
	}
	return nil
}

// normalizeListAddress: address-list entries normalise like filter addresses,
// but text that is no address is kept as a DNS name without error [C:
// address-list doc]. The simulator does not resolve names. An address of
// the other family (an IPv4 address in /ipv6/firewall/address-list or an
// IPv6 one in /ip/...) is refused, "invalid value for argument address"
// [I: text as for other badly typed values; that it is refused rather
// than kept as a name is unverified].
func normalizeListAddress(f family, v string) (string, *Trap) {
	if a, _, ok := normalizeAddrFam(f, v); ok {
		return a, nil
	}
	other := fam6
	if f == fam6 {
		other = fam4
	}
	if _, _, ok := normalizeAddrFam(other, v); ok || strings.Contains(v, ":") {
		// A colon is in no DNS name: text with one that is no
		// address of this family (an IPv6 range, a bad IPv6
		// address) is a bad value, not a name [I].
		return "", errBadValue("address")
	}
	return v, nil
}

func (r *Router) check(t tableID, props map[string]string, self uint64) *Trap {
	switch t {
	case tIPAddr, tNAT, tUserGroup, tUser, tService, tContainer, tEnvs, tMounts:
		return r.checkMenuRow(t, props, self)
	case tFilter:
		return checkFilter(fam4, props)
	case tFilter6:
		if props["action"] == "fasttrack-connection" && r.minor < 18 {
			// IPv6 FastTrack came with 7.18 [3P: 7.18 changelog "ipv6 -
			// added FastTrack support", quoted in community.routeros
			// PR #380; terraform-provider-routeros PR #711 adds the
			// action to its IPv6 filter in 2025].
			return errNoMatch("action")
		}
		return checkFilter(fam6, props)
	case tAddr, tAddr6:
		if props["list"] == "" {
			return &Trap{Message: "missing value(s) of argument(s) list"} // [3P CLI text, as for chain]
		}
		if props["address"] == "" {
			return &Trap{Message: "missing value(s) of argument(s) address"}
		}
		if id, ok := r.db.addrKey[addrKeyOf(t, &row{props: props})]; ok && id != self {
			// [C: REST-doc; reference section 3]
			return &Trap{Message: "failure: already have such entry"}
		}
	case tIfMember:
		if strings.HasPrefix(props["list"], "!") {
			return errNoMatch("list")
		}
		if strings.HasPrefix(props["interface"], "!") {
			return errNoMatch("interface")
		}
		if props["list"] == "" || props["interface"] == "" {
			return &Trap{Message: "missing value(s) of argument(s) list, interface"}
		}
		for _, m := range r.db.t[tIfMember].rows {
			if m.id != self && m.props["list"] == props["list"] && m.props["interface"] == props["interface"] {
				return &Trap{Message: "failure: already have such entry"} // [I] same text as address lists
			}
		}
	case tVeth:
		if props["name"] == "" {
			return &Trap{Message: "missing value(s) of argument(s) name"}
		}
		for _, i := range r.db.t[tInterface].rows {
			if i.props["name"] == props["name"] && (self == 0 || i.props["veth"] != idString(self)) {
				// [3P: community.routeros fake_api.py]
				return &Trap{Message: "failure: already have interface with such name"}
			}
		}
	case tIfList:
		if props["name"] == "" {
			return &Trap{Message: "missing value(s) of argument(s) name"}
		}
		for _, l := range r.db.t[tIfList].rows {
			if l.id != self && l.props["name"] == props["name"] {
				return &Trap{Message: "failure: already have interface list with such name"} // [I]
			}
		}
	}
	return nil
}

// write performs a write verb on a table; nothing changes unless it succeeds.
func (r *Router) write(d *db, c *command, t tableID, verb string) (string, *Trap) {
	switch verb {
	case "add":
		props := map[string]string{}
		if trap := r.apply(t, props, c.attrs, true); trap != nil {
			return "", trap
		}
		if trap := r.check(t, props, 0); trap != nil {
			return "", trap
		}
		idx := len(d.t[t].rows)
		if pb, ok := c.get("place-before"); ok && isFilter(t) {
			id, ok := r.lookupID(t, pb)
			if !ok {
				return "", errNoSuchItem // needs an existing id [3P, reference 2.3]
			}
			if d.t[t].byID[id].builtin {
				return "", &Trap{Message: "failure: cannot move builtin"} // [3P, 7.24.2]
			}
			idx = d.pos(t, id)
		}
		nr := &row{id: d.newID(t), props: props}
		if isAddrList(t) {
			nr.created = creationTime(time.Now())
			if props["timeout"] != "" {
				// An entry with a timeout is dynamic [C: address-list doc].
				props["dynamic"] = "true"
			}
		}
		if t == tContainer {
			props["status"] = "extracting"
			r.extractLater(nr.id)
		}
		d.insert(t, idx, nr)
		if t == tVeth {
			// A veth is also an interface, usable in lists and rules
			// [C: manual containers/veth].
			d.insert(tInterface, len(d.t[tInterface].rows), &row{id: d.newID(tInterface), props: map[string]string{
				"name": props["name"], "type": "veth", "mtu": "1500", "actual-mtu": "1500", "link-downs": "0",
				"running": "true", "slave": "false", "disabled": "false", "veth": idString(nr.id)}})
		}
		// add returns the new id in =ret= [C: REST-doc; librouteros-analysis].
		return idString(nr.id), nil
	case "set", "unset", "enable", "disable":
		ids, trap := r.targets(c, t)
		if trap != nil {
			return "", trap
		}
		attrs := c.attrs
		switch verb {
		case "enable":
			attrs = []kv{{"disabled", "false"}}
		case "disable":
			attrs = []kv{{"disabled", "true"}}
		case "unset":
			// /unset numbers=*N value-name=prop [I, reference 2.3].
			vn, _ := c.get("value-name")
			attrs = nil
			for _, n := range strings.Split(vn, ",") {
				attrs = append(attrs, kv{"!" + n, ""})
			}
		case "set":
			if _, ok := c.get("place-before"); ok {
				return "", errUnknownParam("place-before") // [3P: terraform #223]
			}
		}
		rows := make([]*row, len(ids))
		for i, id := range ids {
			old := d.t[t].byID[id]
			if old.builtin || (isFilter(t) && old.dynamic) {
				return "", &Trap{Message: "failure: cannot change builtin"} // [3P: tik4net fake router]
			}
			nr := old.clone()
			if trap := r.apply(t, nr.props, attrs, false); trap != nil {
				return "", trap
			}
			if trap := r.check(t, nr.props, id); trap != nil {
				return "", trap
			}
			rows[i] = nr
		}
		for _, nr := range rows {
			d.replace(t, d.pos(t, nr.id), nr)
			if t == tVeth {
				r.syncVethInterface(d, nr)
			}
		}
		return "", nil
	case "remove":
		ids, trap := r.targets(c, t)
		if trap != nil {
			return "", trap
		}
		for _, id := range ids {
			if d.t[t].byID[id].builtin {
				return "", &Trap{Message: "failure: cannot remove builtin"} // [3P: tik4net fake router]
			}
			if st := d.t[t].byID[id].props["status"]; t == tContainer && st != "stopped" && st != "error" {
				return "", &Trap{Message: "failure: container should be stopped first"} // [I]
			}
		}
		for _, id := range ids {
			if i := d.pos(t, id); i >= 0 {
				d.delete(t, i)
			}
			if t == tVeth {
				if i := r.vethInterface(d, id); i >= 0 {
					d.delete(tInterface, i)
				}
			}
		}
		return "", nil
	case "move":
		return "", r.move(d, c, t)
	}
	return "", errUnknownParam(verb)
}

// move puts the listed items, in the order given, just before destination;
// without destination they go to the end [3P: terraform resource_move.go,
// ansible; I for the missing destination].
func (r *Router) move(d *db, c *command, t tableID) *Trap {
	for _, a := range c.attrs {
		if a.k != ".id" && a.k != "numbers" && a.k != "destination" {
			return errUnknownParam(a.k)
		}
	}
	ids, trap := r.targets(c, t)
	if trap != nil {
		return trap
	}
	moving := map[uint64]bool{}
	for _, id := range ids {
		if d.t[t].byID[id].builtin {
			return &Trap{Message: "failure: cannot move builtin"} // [3P, 7.24.2]
		}
		moving[id] = true
	}
	var dest uint64
	hasDest := false
	if v, ok := c.get("destination"); ok && v != "" {
		id, ok := r.lookupID(t, v)
		if !ok {
			return errNoSuchItem
		}
		if d.t[t].byID[id].builtin {
			return &Trap{Message: "failure: cannot move builtin"}
		}
		dest, hasDest = id, true
	}
	// The anchor is the first row at or after destination that does not
	// move itself.
	var anchor uint64
	hasAnchor := false
	if hasDest {
		rows := d.t[t].rows
		for i := d.pos(t, dest); i < len(rows); i++ {
			if !moving[rows[i].id] {
				anchor, hasAnchor = rows[i].id, true
				break
			}
		}
	}
	var moved []*row
	seen := map[uint64]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		moved = append(moved, d.delete(t, d.pos(t, id)))
	}
	idx := len(d.t[t].rows)
	if hasAnchor {
		idx = d.pos(t, anchor)
	}
	for i, mr := range moved {
		d.insert(t, idx+i, mr)
	}
	return nil
}

func (r *Router) vethInterface(d *db, veth uint64) int {
	for i, x := range d.t[tInterface].rows {
		if x.props["veth"] == idString(veth) {
			return i
		}
	}
	return -1
}

// syncVethInterface mirrors a veth's name and disabled flag on its interface.
func (r *Router) syncVethInterface(d *db, v *row) {
	i := r.vethInterface(d, v.id)
	if i < 0 {
		return
	}
	nr := d.t[tInterface].rows[i].clone()
	nr.props["name"] = v.props["name"]
	nr.props["disabled"] = or(v.props["disabled"], "false")
	d.replace(tInterface, i, nr)
}
