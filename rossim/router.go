package rossim

import (
	"bufio"
	"context"
	"crypto/md5" //nolint:gosec // the legacy RouterOS login is MD5 by definition
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultROSVersion is the RouterOS version emulated when Options.ROSVersion
// is empty: the newest 7.x whose behaviour the simulator models.
const DefaultROSVersion = "7.24.3"

// Options configure a Router. The zero value is a usable router.
type Options struct {
	User, Password                string // login credentials; zero value: "admin" and ""
	ROSVersion                    string // e.g. "7.21.5"; zero: DefaultROSVersion; names per version: see the package doc
	Board, Architecture, Identity string // zero: "RB5009UG+S+", "arm64", "MikroTik"
	LegacyLogin                   bool   // answer the first /login with a challenge (pre-6.43 flow)
	MaxSessions                   int    // the api service's max-sessions; zero: 20, RouterOS's default
	Latency                       time.Duration
	WriteServiceTime              time.Duration
	Logger                        *slog.Logger // nil: discard

	// FilesDir holds the router's files (/file, /import, container
	// tarballs and mount sources). Empty: a temporary directory, created
	// on first use and removed by Close.
	FilesDir string
	// ContainerRunner runs a container when /container/start starts it;
	// nil: containers reach running but run nothing. See Container.
	ContainerRunner ContainerRunner
	// ExtractTime is how long /container/add stays extracting before the
	// container is stopped (ready to start). Zero: 100 ms.
	ExtractTime time.Duration
	// ContainersDisabled emulates /system/device-mode container=no (the
	// factory setting; the simulator defaults to a router prepared for
	// containers).
	ContainersDisabled bool

	// HistoryLimit bounds History: 0 keeps every state (cheap: each write
	// stores only the rows it changed, shared copy-on-write), n > 0 keeps
	// the newest n states, n < 0 keeps none (History returns only the
	// current state).
	HistoryLimit int
}

// Item is one row as the API prints it, ".id" included.
type Item map[string]string

// Trap is an error the router answered with !trap. Exec returns it as
// *Trap.
type Trap struct{ Message, Category string }

func (t *Trap) Error() string { return t.Message }

// Stats counts what clients did over the network (Exec is not counted).
type Stats struct {
	Commands int            // every command sentence except /login
	Logins   int            // successful logins
	Writes   map[string]int // successful writes by verb: add, set, remove, move, enable, disable, unset
}

// Router is one simulated RouterOS router.
type Router struct {
	opts      Options
	log       *slog.Logger
	version   string
	minor     int                           // 7.minor
	schema    *[nTables]map[string]propKind // version-dependent writable properties
	emitEmpty bool
	started   time.Time

	latency     atomic.Int64
	serviceTime atomic.Int64
	writeMu     sync.Mutex // serialises writes router-wide

	mu        sync.Mutex // guards everything below
	db        *db
	identity  string
	hist      history
	stats     Stats
	dropAfter int // -1: off
	injects   map[string][]string
	listeners []*listener
	sessions  map[*session]struct{}
	singles   map[string]map[string]string // singleton menus other than identity and resource
	globals   map[string]val               // :global variables
	files     fileStore
	ctrs      map[uint64]*runningContainer
	ctrArch   map[uint64]string // image architecture of each extracted container
	nextConn  uint64
	routerLog []string
	ctx       context.Context // cancelled by Close: ends running scripts
	cancel    context.CancelFunc
	logSeq    uint64 // lines ever logged: /log ids
	ln        net.Listener
	closed    bool

	wg sync.WaitGroup
}

type listener struct {
	s   *session
	tag string
	tab tableID
}

// New returns a router with RouterOS 7 defconf, not yet listening.
func New(opts Options) *Router {
	if opts.User == "" {
		opts.User = "admin"
	}
	if opts.ROSVersion == "" {
		opts.ROSVersion = DefaultROSVersion
	}
	if opts.Board == "" {
		opts.Board = "RB5009UG+S+"
	}
	if opts.Architecture == "" {
		opts.Architecture = "arm64"
	}
	if opts.Identity == "" {
		opts.Identity = "MikroTik"
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 20 // max-sessions default [C: manual ip/service]
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{
		opts: opts, log: log, version: opts.ROSVersion,
		emitEmpty: versionAtLeast(opts.ROSVersion, 7, 18),
		minor:     minorOf(opts.ROSVersion),
		globals:   map[string]val{},
		ctrs:      map[uint64]*runningContainer{},
		ctrArch:   map[uint64]string{},
		files:     fileStore{dir: opts.FilesDir},
		started:   time.Now(),
		db:        newDB(), identity: opts.Identity,
		dropAfter: -1, injects: map[string][]string{},
		sessions: map[*session]struct{}{},
		stats:    Stats{Writes: map[string]int{}},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.latency.Store(int64(opts.Latency))
	r.serviceTime.Store(int64(opts.WriteServiceTime))
	r.schema = schemaFor(r.minor)
	r.db.defconf(opts.Board)
	r.db.defconf6(r.minor)
	r.db.defconfMenus(opts.User, opts.Password, opts.MaxSessions)
	r.singles = map[string]map[string]string{
		"/container/config":   {"registry-url": "https://lscr.io", "tmpdir": "", "ram-high": "0"},
		"/system/device-mode": {"mode": "enterprise", "container": boolStr(!opts.ContainersDisabled)},
		// DNS learnt from the WAN's DHCP client [I]: RouterOS starts no
		// container without DNS [C: manual containers].
		"/ip/dns": {"servers": "", "dynamic-servers": "192.168.1.1", "allow-remote-requests": "true"},
	}
	r.db.rec = nil
	r.hist.limit = opts.HistoryLimit
	for i := range r.hist.base {
		r.hist.base[i] = append([]*row(nil), r.db.t[i].rows...)
	}
	return r
}

// versionAtLeast compares a RouterOS version "7.18.2" with major.minor.
func versionAtLeast(v string, major, minor int) bool {
	v, _, _ = strings.Cut(v, " ")
	parts := strings.Split(v, ".")
	a, _ := strconv.Atoi(parts[0])
	b := 0
	if len(parts) > 1 {
		b, _ = strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	return a > major || a == major && b >= minor
}

// Listen creates a router and serves it on addr in the background.
func Listen(addr string, opts Options) (*Router, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	r := New(opts)
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = r.serve(ln)
	}()
	return r, nil
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("rossim: router closed")

// Serve accepts API connections on l until Close.
func (r *Router) Serve(l net.Listener) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.ln = l
	r.mu.Unlock()
	r.wg.Add(1)
	defer r.wg.Done()
	return r.serve(l)
}

func (r *Router) serve(l net.Listener) error { return r.serveFrom(l, nil) }

// origin is where a container's connections come from: its veth.
type origin struct {
	iface    string
	from, to netip.Addr // the container's address, the router's (gateway)
}

// serveFrom serves l; with o set, every session appears to come from the
// container's veth instead of its TCP peer, and must pass the input chain.
func (r *Router) serveFrom(l net.Listener, o *origin) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if closed {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		if o != nil {
			// The connection crosses the router's input chain from the
			// veth: defconf drops it unless the veth is in the LAN list
			// (or an earlier rule accepts it) [3P: tikoci SKILL.md,
			// reference 4]. A real drop makes the connect time out; the
			// simulator closes it at once.
			v := r.Snapshot().Evaluate(Packet{Chain: "input", InInterface: o.iface, Src: o.from, Dst: o.to,
				Protocol: 6, SrcPort: 40000, DstPort: 8728, ConnState: "new"})
			if v.Action != "accept" {
				r.logf("firewall: input %s from %s to %s:8728 on %s (rule %s)", v.Action, o.from, o.to, o.iface, v.RuleID)
				conn.Close()
				continue
			}
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			conn.Close()
			return ErrClosed
		}
		if len(r.sessions) >= r.maxSessions() {
			// Undocumented on RouterOS; like a client outside
			// available-from, the connection is accepted then closed [I:
			// reference 1.9].
			r.mu.Unlock()
			r.log.Info("api session refused: max-sessions reached", "remote", conn.RemoteAddr().String())
			conn.Close()
			continue
		}
		s := newSession(r, conn)
		r.nextConn++
		s.connID = r.nextConn
		if o != nil {
			s.from = o.from
		}
		if !r.serviceAdmits(s.from) {
			// A client outside available-from (or with the service
			// disabled) completes the TCP connect, then the router closes
			// it [C: manual ip/service].
			r.mu.Unlock()
			r.log.Info("api session refused by /ip/service", "remote", conn.RemoteAddr().String())
			conn.Close()
			continue
		}
		r.sessions[s] = struct{}{}
		r.wg.Add(2)
		r.mu.Unlock()
		go s.readLoop()
		go s.writeLoop()
	}
}

// Addr is the listening address, "host:port", or "" before listening.
func (r *Router) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln == nil {
		return ""
	}
	return r.ln.Addr().String()
}

// Close stops listening, closes every session and waits for its goroutines.
func (r *Router) Close() error {
	r.cancel()
	r.stopContainers()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.wg.Wait()
		return nil
	}
	r.closed = true
	var err error
	if r.ln != nil {
		err = r.ln.Close()
	}
	for s := range r.sessions {
		s.abort()
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.files.close()
	return err
}

// SetLatency changes the delay before each reply.
func (r *Router) SetLatency(d time.Duration) { r.latency.Store(int64(d)) }

// SetWriteServiceTime changes the time each write takes.
func (r *Router) SetWriteServiceTime(d time.Duration) { r.serviceTime.Store(int64(d)) }

// DropAfter makes the router, after n more commands (counted router-wide,
// /login excluded), close the connection that sends the next one, abruptly
// and without a reply. A negative n turns it off.
func (r *Router) DropAfter(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropAfter = n
}

// InjectTrap makes the next `times` network commands whose path equals command
// answer !trap =message=message then !done, with no effect.
func (r *Router) InjectTrap(command, message string, times int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i < times; i++ {
		r.injects[command] = append(r.injects[command], message)
	}
}

// Stats returns the counters since New or the last ResetStats.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Writes = make(map[string]int, len(r.stats.Writes))
	for k, v := range r.stats.Writes {
		s.Writes[k] = v
	}
	return s
}

// ResetStats zeroes the counters.
func (r *Router) ResetStats() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats = Stats{Writes: map[string]int{}}
}

// Exec runs one command as the local console would: no login, no network, no
// fault injection, not counted in Stats. Rows come back as Items; a command
// whose !done carries =ret= (add, print count-only) returns one Item
// {"ret": value}. Errors are Trap values (the first trap of the reply).
// listen, /cancel, /login and /quit need a session and are refused.
func (r *Router) Exec(words ...string) ([]Item, error) {
	if len(words) == 0 {
		return nil, &Trap{Message: "no command"}
	}
	c := parseCommand(words)
	if strings.HasSuffix(c.path, "/listen") || c.path == "/login" || c.path == "/cancel" || c.path == "/quit" {
		return nil, &Trap{Message: c.path + " needs an API session; Exec does not run it"}
	}
	if _, ok := c.get("follow"); ok {
		return nil, &Trap{Message: "follow needs an API session; Exec does not run it"}
	}
	if _, ok := c.get("follow-only"); ok {
		return nil, &Trap{Message: "follow-only needs an API session; Exec does not run it"}
	}
	res := r.execute(c)
	r.deliver(res.events)
	var items []Item
	for _, s := range res.sents {
		switch s[0] {
		case "!trap":
			t := &Trap{}
			for _, w := range s[1:] {
				if v, ok := strings.CutPrefix(w, "=message="); ok {
					t.Message = v
				} else if v, ok := strings.CutPrefix(w, "=category="); ok {
					t.Category = v
				}
			}
			return nil, t
		case "!re":
			it := Item{}
			for _, w := range s[1:] {
				k, v, _ := strings.Cut(w[1:], "=")
				it[k] = v
			}
			items = append(items, it)
		case "!done":
			if len(s) > 1 && len(items) == 0 {
				items = append(items, Item{"ret": strings.TrimPrefix(s[1], "=ret=")})
			}
		}
	}
	return items, nil
}

// Firewall is the firewall state at one moment: filter rows in global order
// (the dynamic dummy first) and address-list entries, as the API prints
// them, of /ip/firewall and of /ipv6/firewall (Filter6, AddressList6),
// plus the interface-list membership that Evaluate needs.
type Firewall struct {
	Filter, AddressList   []Item
	Filter6, AddressList6 []Item
	members               map[string][]string
}

// Members returns the enabled members of each interface list in this state.
func (f Firewall) Members() map[string][]string {
	m := make(map[string][]string, len(f.members))
	for k, v := range f.members {
		m[k] = append([]string(nil), v...)
	}
	return m
}

func materialize(t *[nTables][]*row) Firewall {
	p := &printer{filter: [2][]*row{t[tFilter], t[tFilter6]}}
	f := Firewall{
		Filter:       make([]Item, 0, len(t[tFilter])),
		AddressList:  make([]Item, 0, len(t[tAddr])),
		Filter6:      make([]Item, 0, len(t[tFilter6])),
		AddressList6: make([]Item, 0, len(t[tAddr6])),
		members:      membership(t[tIfMember]),
	}
	for _, x := range t[tFilter] {
		f.Filter = append(f.Filter, toItem(p.printFilter(fam4, x)))
	}
	for _, x := range t[tAddr] {
		f.AddressList = append(f.AddressList, toItem(printAddr(x)))
	}
	for _, x := range t[tFilter6] {
		f.Filter6 = append(f.Filter6, toItem(p.printFilter(fam6, x)))
	}
	for _, x := range t[tAddr6] {
		f.AddressList6 = append(f.AddressList6, toItem(printAddr(x)))
	}
	return f
}

// Snapshot returns a deep copy of the current firewall.
func (r *Router) Snapshot() Firewall {
	r.mu.Lock()
	var t [nTables][]*row
	for i := range t {
		t[i] = append([]*row(nil), r.db.t[i].rows...)
	}
	r.mu.Unlock()
	return materialize(&t)
}

// history keeps the state before its first entry and, per successful write,
// the row changes it made. Rows are immutable, so this costs a few words per
// changed row instead of a copy of the firewall per write.
type history struct {
	base    [nTables][]*row
	entries [][]change
	limit   int
}

func applyChanges(t *[nTables][]*row, cs []change) {
	for _, c := range cs {
		rows := t[c.tab]
		switch c.op {
		case opInsert:
			rows = append(rows, nil)
			copy(rows[c.idx+1:], rows[c.idx:])
			rows[c.idx] = c.row
		case opDelete:
			rows = append(rows[:c.idx], rows[c.idx+1:]...)
		case opReplace:
			rows[c.idx] = c.row
		}
		t[c.tab] = rows
	}
}

// History returns the initial state, then one snapshot after every
// successful write, in order (bounded by Options.HistoryLimit).
func (r *Router) History() []Firewall {
	r.mu.Lock()
	if r.hist.limit < 0 {
		r.mu.Unlock()
		return []Firewall{r.Snapshot()}
	}
	var t [nTables][]*row
	for i := range t {
		t[i] = append([]*row(nil), r.hist.base[i]...)
	}
	entries := append([][]change(nil), r.hist.entries...)
	r.mu.Unlock()
	out := make([]Firewall, 0, len(entries)+1)
	out = append(out, materialize(&t))
	for _, e := range entries {
		applyChanges(&t, e)
		out = append(out, materialize(&t))
	}
	return out
}

// commit records a successful write (r.mu held) and returns the listen
// events it produces.
func (r *Router) commit() []event {
	d := r.db
	cs := append([]change(nil), d.rec...)
	d.rec = d.rec[:0]
	switch {
	case r.hist.limit < 0:
	default:
		r.hist.entries = append(r.hist.entries, cs)
		if r.hist.limit > 0 {
			for len(r.hist.entries) > r.hist.limit-1 && len(r.hist.entries) > 0 {
				applyChanges(&r.hist.base, r.hist.entries[0])
				r.hist.entries[0] = nil
				r.hist.entries = r.hist.entries[1:]
			}
		}
	}
	if len(r.listeners) == 0 {
		return nil
	}
	return r.events(cs)
}

// event is one listen notification: a row as printed now, or a dead id.
type event struct {
	tab  tableID
	kvs  []kv
	dead uint64
}

func (r *Router) events(cs []change) []event {
	type key struct {
		t  tableID
		id uint64
	}
	var order []key
	seen := map[key]bool{}
	for _, c := range cs {
		k := key{c.tab, c.row.id}
		if !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	p := newPrinter(r.db)
	var out []event
	for _, k := range order {
		if cur, ok := r.db.t[k.t].byID[k.id]; ok {
			out = append(out, event{tab: k.t, kvs: p.print(k.t, cur)})
		} else {
			out = append(out, event{tab: k.t, dead: k.id})
		}
	}
	return out
}

// deliver sends listen events to the sessions that follow their table: !re
// with the row, or =.id= and =.dead=true for a removed item [C: API-doc
// listen example; the capture shows true].
func (r *Router) deliver(evs []event) {
	if len(evs) == 0 {
		return
	}
	r.mu.Lock()
	ls := append([]*listener(nil), r.listeners...)
	r.mu.Unlock()
	for _, l := range ls {
		var sents [][]string
		for _, e := range evs {
			if e.tab != l.tab {
				continue
			}
			if e.kvs != nil {
				sents = append(sents, reSentence(e.kvs))
			} else {
				sents = append(sents, []string{"!re", "=.id=" + idString(e.dead), "=.dead=true"})
			}
		}
		if len(sents) > 0 {
			l.s.send(appendSentences(nil, sents, l.tag), false)
		}
	}
}

func (r *Router) removeListeners(s *session, tag string, all bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var tags []string
	kept := r.listeners[:0]
	for _, l := range r.listeners {
		if l.s == s && (all || l.tag == tag) {
			tags = append(tags, l.tag)
			continue
		}
		kept = append(kept, l)
	}
	for i := len(kept); i < len(r.listeners); i++ {
		r.listeners[i] = nil
	}
	r.listeners = kept
	return tags
}

// session is one API connection.
type session struct {
	r        *Router
	conn     net.Conn
	br       *bufio.Reader
	loggedIn bool
	chal     []byte
	connID   uint64
	from     netip.Addr      // where the router sees the session come from
	user     string          // logged-in user
	policies map[string]bool // the user's group policies

	wmu     sync.Mutex
	cond    *sync.Cond
	queue   []batch
	closing bool // close once the queue is written
	dead    bool
}

type batch struct {
	due  time.Time
	data []byte
}

func newSession(r *Router, conn net.Conn) *session {
	s := &session{r: r, conn: conn, br: bufio.NewReaderSize(conn, 32<<10), from: remoteIP(conn)}
	s.cond = sync.NewCond(&s.wmu)
	return s
}

// send queues reply bytes; with no latency and nothing queued it writes at
// once. closeAfter closes the connection once they are written (!fatal).
func (s *session) send(data []byte, closeAfter bool) {
	lat := time.Duration(s.r.latency.Load())
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.dead || s.closing {
		return
	}
	if lat <= 0 && len(s.queue) == 0 {
		s.write(data)
	} else {
		s.queue = append(s.queue, batch{due: time.Now().Add(lat), data: data})
	}
	if closeAfter {
		s.closing = true
	}
	s.cond.Signal()
}

// write writes with s.wmu held; a client that stops reading for 30 s is cut.
func (s *session) write(data []byte) {
	_ = s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.conn.Write(data); err != nil {
		s.dead = true
		s.conn.Close()
	}
}

func (s *session) writeLoop() {
	defer s.r.wg.Done()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for {
		for len(s.queue) == 0 && !s.closing && !s.dead {
			s.cond.Wait()
		}
		if s.dead || len(s.queue) == 0 {
			s.dead = true
			s.conn.Close()
			return
		}
		if wait := time.Until(s.queue[0].due); wait > 0 {
			s.wmu.Unlock()
			time.Sleep(wait)
			s.wmu.Lock()
			continue
		}
		// Write every batch that is due in one syscall.
		now := time.Now()
		var buf []byte
		n := 0
		for n < len(s.queue) && !s.queue[n].due.After(now) {
			buf = append(buf, s.queue[n].data...)
			n++
		}
		s.queue = append(s.queue[:0], s.queue[n:]...)
		s.write(buf)
	}
}

// abort closes the connection at once, without a reply.
func (s *session) abort() {
	s.wmu.Lock()
	s.dead = true
	s.conn.Close()
	s.cond.Signal()
	s.wmu.Unlock()
}

func (s *session) readLoop() {
	defer s.r.wg.Done()
	remote := s.conn.RemoteAddr().String()
	s.r.log.Debug("api session opened", "remote", remote)
	defer func() {
		s.r.removeListeners(s, "", true)
		s.r.mu.Lock()
		delete(s.r.sessions, s)
		s.r.mu.Unlock()
		s.wmu.Lock()
		s.closing = true
		s.cond.Signal()
		s.wmu.Unlock()
		s.r.log.Debug("api session closed", "remote", remote)
	}()
	for {
		words, err := readSentence(s.br)
		if err != nil {
			return
		}
		if !s.handle(parseCommand(words)) {
			return
		}
	}
}

// fatal: !fatal is followed by a bare reason word, not =message=, then the
// router closes the connection [C: cmd-notes; librouteros-analysis].
func (s *session) fatal(reason string) {
	s.send(appendSentences(nil, [][]string{{"!fatal", reason}}, ""), true)
}

// handle runs one command; false ends the session.
func (s *session) handle(c *command) bool {
	r := s.r
	switch c.path {
	case "/quit":
		s.fatal("session terminated on request") // [C: cmd-notes]
		return false
	case "/login":
		s.send(appendSentences(nil, s.login(c).sents, c.tag), false)
		return true
	}
	if !s.loggedIn {
		s.fatal("not logged in") // [3P: @mhycy/routeros-client README]
		return false
	}
	r.mu.Lock()
	r.stats.Commands++
	drop := false
	switch {
	case r.dropAfter == 0:
		r.dropAfter = -1
		drop = true
	case r.dropAfter > 0:
		r.dropAfter--
	}
	var injected string
	hasInject := false
	if q := r.injects[c.path]; len(q) > 0 {
		injected, hasInject = q[0], true
		r.injects[c.path] = q[1:]
	}
	r.mu.Unlock()
	if drop {
		r.log.Info("dropping api session (DropAfter)", "command", c.path)
		s.abort()
		return false
	}
	if c.path == "/cancel" {
		s.cancel(c)
		return true
	}
	if need := needs(c.path); need != "" && !s.policies[need] {
		s.send(appendSentences(nil, trapResult(errPermission).sents, c.tag), false)
		return true
	}
	var res result
	if hasInject {
		res = trapResult(&Trap{Message: injected})
	} else {
		c.wire = true
		res = r.execute(c)
	}
	if r.log.Enabled(context.Background(), slog.LevelDebug) && len(res.sents) > 0 {
		r.log.Debug("api command", "command", c.path, "tag", c.tag, "reply", res.sents[len(res.sents)-1], "write", res.write)
	}
	if res.write != "" {
		r.mu.Lock()
		r.stats.Writes[res.write]++
		r.mu.Unlock()
	}
	r.deliver(res.events)
	if res.listen != nil {
		// listen never ends by itself [C: API-doc]: no !done until /cancel.
		r.mu.Lock()
		r.listeners = append(r.listeners, &listener{s: s, tag: c.tag, tab: res.listen.tab})
		r.mu.Unlock()
	}
	if res.raw != nil {
		s.send(appendSentences(res.raw, res.sents, c.tag), false)
	} else if len(res.sents) > 0 {
		s.send(appendSentences(nil, res.sents, c.tag), false)
	}
	return true
}

// cancel implements /cancel [C: API-doc]: the cancelled command gets !trap
// category 2 "interrupted", /cancel its own !done, then the cancelled
// command its !done. Without =tag= every running command is cancelled.
func (s *session) cancel(c *command) {
	tag, hasTag := c.get("tag")
	tags := s.r.removeListeners(s, tag, !hasTag)
	var buf []byte
	for _, t := range tags {
		buf = appendSentences(buf, [][]string{{"!trap", "=category=2", "=message=interrupted"}}, t)
	}
	// Cancelling a tag that is not running is undocumented; it is answered
	// with a plain !done [I].
	buf = appendSentences(buf, [][]string{{"!done"}}, c.tag)
	for _, t := range tags {
		buf = appendSentences(buf, [][]string{{"!done"}}, t)
	}
	s.send(buf, false)
}

// login: 6.43+ takes name and password in plain text; wrong credentials
// trap "invalid user name or password (6)" [3P: real 6.47.6 transcript,
// BenMenking/routeros-api#52; go-routeros TestLoginIncorrectPost643]. In legacy
// mode the first /login is answered with a challenge in =ret=, and the second
// must carry =response=00<md5(0x00 + password + challenge)>; failure is
// "cannot log in" [C: librouteros-analysis; go-routeros TestLoginPre643].
// After a failed login the connection stays open [I].
func (s *session) login(c *command) result {
	r := s.r
	name, _ := c.get("name")
	if resp, ok := c.get("response"); ok {
		chal := s.chal
		s.chal = nil
		pol, why := r.userFor(name, func(pw string) bool { return chal != nil && resp == ChallengeResponse(chal, pw) }, s.from)
		if pol != nil {
			return s.loginOK(name, pol)
		}
		r.log.Info("api login failed", "user", name, "method", "challenge", "cause", why)
		return trapResult(&Trap{Message: "cannot log in"})
	}
	if r.opts.LegacyLogin {
		s.chal = make([]byte, 16)
		_, _ = rand.Read(s.chal)
		return doneResult(hex.EncodeToString(s.chal))
	}
	pw, _ := c.get("password")
	pol, why := r.userFor(name, func(p string) bool { return p == pw }, s.from)
	if pol != nil {
		return s.loginOK(name, pol)
	}
	r.log.Info("api login failed", "user", name, "remote", s.from.String(), "cause", why)
	return trapResult(errLogin)
}

func (s *session) loginOK(name string, pol map[string]bool) result {
	s.r.mu.Lock() // connectionRows reads these under r.mu
	s.loggedIn = true
	s.user = name
	s.policies = pol
	s.r.stats.Logins++
	s.r.mu.Unlock()
	s.r.log.Info("api user logged in", "user", name, "remote", s.conn.RemoteAddr().String())
	return doneResult("")
}

// ChallengeResponse is the legacy login response for a challenge: "00" then
// hex(md5(0x00 + password + challenge)) [C: librouteros-analysis; go-routeros
// client.go challengeResponse].
func ChallengeResponse(challenge []byte, password string) string {
	h := md5.New() //nolint:gosec
	h.Write([]byte{0})
	h.Write([]byte(password))
	h.Write(challenge)
	return fmt.Sprintf("00%x", h.Sum(nil))
}
