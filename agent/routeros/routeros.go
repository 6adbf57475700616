// Package routeros is the agent's adapter to the RouterOS API, built on
// github.com/go-routeros/routeros/v3 (v3.0.1) with its known pitfalls worked
// around:
//
//   - the agent dials the TCP (or TLS) connection itself and sets a deadline
//     on it before every command, because the library ignores contexts in
//     synchronous mode and its /login can hang;
//   - every session is used by one goroutine at a time (a synchronous client
//     is not safe for concurrent use), and the library's asynchronous mode is
//     never used (it drops fast replies and cancels every request at once);
//   - any error that is not a !trap (a protocol error, a timeout, !fatal, an
//     unknown reply word) marks the session broken; it is closed and a new
//     one is dialled on next use, since the stream may be out of sync;
//   - errors are typed: *Trap (a refusal; errors.Is tells its kind, the
//     router's message text is read in one place, Trap.Is), *LoginError,
//     and *ConnError for everything that broke the connection.
//
// # Sessions
//
// A Client holds a small pool of logged-in sessions, each used by one
// goroutine at a time. Ordered writes (filter rules) go one at a time through
// a session: RouterOS may run the commands of one connection concurrently, so
// only waiting for each reply guarantees their order. Independent writes
// (address-list entries) are pipelined on one session (Session.Pipeline):
// up to a window of tagged commands in flight, so a large apply is bound by
// the router's write rate, not by one round trip per write.
package routeros

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	ros "github.com/go-routeros/routeros/v3"
	"github.com/go-routeros/routeros/v3/proto"
)

// Item is one printed row.
type Item map[string]string

// Trap is a !trap reply: the router refused a command. The session stays
// usable. errors.Is(trap, ErrExists) and the other Err values below tell
// what kind of refusal it is: this is the one place where the router's
// message text is read, each with its source.
type Trap struct {
	Command  string
	Message  string
	Category string // "" when the router sent none (most traps)
}

func (t *Trap) Error() string { return fmt.Sprintf("%s: %s", t.Command, t.Message) }

// The kinds of trap the agent acts on.
var (
	// ErrExists: "failure: already have such entry" on an address-list
	// add [C: REST-doc; reference section 4].
	ErrExists = errors.New("already exists on the router")
	// ErrPermission: "not enough permissions (9)", the user's group lacks
	// a policy the command needs [3P: danikf/tik4net#12,
	// tomaae/homeassistant-mikrotik_router#235, socialwifi/RouterOS-api#109].
	ErrPermission = errors.New("not enough permissions")
	// ErrNoSuchItem: "no such item (4)", an id that is gone [3P:
	// tik4net#13; reference section 2.4].
	ErrNoSuchItem = errors.New("no such item")
	// ErrNoSuchValue: "input does not match any value of <property>",
	// category 1, e.g. an interface list that does not exist [C: API-doc
	// for interface].
	ErrNoSuchValue = errors.New("no such value")
)

// Is matches a trap to the kind its message names.
func (t *Trap) Is(target error) bool {
	switch target {
	case ErrExists:
		return strings.HasSuffix(t.Message, "already have such entry")
	case ErrPermission:
		return strings.HasPrefix(t.Message, "not enough permissions")
	case ErrNoSuchItem:
		return strings.HasPrefix(t.Message, "no such item")
	case ErrNoSuchValue:
		return strings.HasPrefix(t.Message, "input does not match any value of")
	}
	return false
}

// Property is the property a "no such value" trap names ("input does not
// match any value of in-interface-list" → "in-interface-list"), or "".
func (t *Trap) Property() string {
	const prefix = "input does not match any value of "
	if !t.Is(ErrNoSuchValue) {
		return ""
	}
	p, _, _ := strings.Cut(t.Message[len(prefix):], ",")
	return strings.TrimSpace(p)
}

// LoginError is a login the router refused: "invalid user name or
// password (6)" from 6.43 on, "cannot log in" before [reference section
// 2; rossim's login].
type LoginError struct {
	Addr, User, Message string
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("log in to RouterOS at %s as %q: %s", e.Addr, e.User, e.Message)
}

// ConnError is a failure of the connection rather than a refusal: the API
// cannot be reached, the TLS handshake or the stream failed, a command
// timed out, or the router closed the session. The session is broken; a
// new one may well succeed.
type ConnError struct {
	Addr string
	Op   string // what was being done: "connect", "log in", a command
	Err  error
}

func (e *ConnError) Error() string { return fmt.Sprintf("%s: %v", e.Op, e.Err) }

func (e *ConnError) Unwrap() error { return e.Err }

// Dialing reports whether the connection could not be opened at all (as
// opposed to failing once open).
func (e *ConnError) Dialing() bool { return e.Op == "connect" }

// Options configure a Client. Zero values are usable except Addr and User.
type Options struct {
	Addr, User, Password string
	// TLS dials api-ssl. RouterOS usually serves a self-signed certificate,
	// so TLSConfig nil means no verification (the agent talks to its own
	// router over the container's veth).
	TLS       bool
	TLSConfig *tls.Config
	// Timeout bounds every command and the login; zero means 15 s.
	Timeout time.Duration
	// Sessions is the pool size; zero means 2.
	Sessions int
	Logger   *slog.Logger
}

// Session is one logged-in API connection. go-routeros logs it in; after
// that the session writes and reads sentences itself (wire.go): the
// library's reader and writer start a goroutine and allocate a buffer for
// every Read and Write call, i.e. for every word and every length byte,
// which made them most of the agent's CPU per apply.
type Session struct {
	conn    net.Conn
	c       *ros.Client
	r       *sentenceReader // buffered, kept for the session's life
	wbuf    []byte          // the sentence being sent
	timeout time.Duration
	broken  bool
	addr    string
}

// connErr marks the session broken and returns a *ConnError.
func (s *Session) connErr(op string, err error) error {
	s.broken = true
	return &ConnError{Addr: s.addr, Op: op, Err: err}
}

// Dial opens one session.
func Dial(ctx context.Context, o Options) (*Session, error) {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, &ConnError{Addr: o.Addr, Op: "connect", Err: fmt.Errorf("connect to RouterOS API at %s: %w", o.Addr, err)}
	}
	if o.TLS {
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // own router over the container veth; see package doc
		}
		conn = tls.Client(conn, cfg)
	}
	c, err := ros.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, &ConnError{Addr: o.Addr, Op: "connect", Err: fmt.Errorf("start RouterOS API client: %w", err)}
	}
	c.SetLogHandler(slog.NewTextHandler(io.Discard, nil))
	s := &Session{conn: conn, c: c, r: newSentenceReader(conn), timeout: timeout, addr: o.Addr}
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		conn.Close()
		return nil, &ConnError{Addr: o.Addr, Op: "connect", Err: fmt.Errorf("set deadline: %w", err)}
	}
	if err := c.Login(o.User, o.Password); err != nil {
		conn.Close()
		var de *ros.DeviceError
		if errors.As(err, &de) {
			return nil, &LoginError{Addr: o.Addr, User: o.User, Message: de.Sentence.Map["message"]}
		}
		return nil, &ConnError{Addr: o.Addr, Op: "log in", Err: fmt.Errorf("log in to RouterOS at %s: %w", o.Addr, err)}
	}
	return s, nil
}

// Run sends one command and returns its rows. A *Trap error leaves the
// session usable; any other error marks it broken.
func (s *Session) Run(words ...string) ([]Item, string, error) {
	var items []Item
	ret, err := s.exchange(func(ps []proto.Pair) {
		it := make(Item, len(ps))
		for _, p := range ps {
			it[p.Key] = p.Value
		}
		items = append(items, it)
	}, words)
	if err != nil {
		return nil, "", err
	}
	return items, ret, nil
}

// send writes one sentence (words, then .tag=tag if tag is not empty) in one
// Write.
func (s *Session) send(words []string, tag string) error {
	b := s.wbuf[:0]
	for _, w := range words {
		b = appendWord(b, w)
	}
	if tag != "" {
		b = appendWord(b, ".tag="+tag)
	}
	b = append(b, 0)
	if cap(b) <= 4<<10 {
		s.wbuf = b // a rare huge sentence is not kept
	}
	_, err := s.conn.Write(b)
	return err
}

// exchange sends one command and reads its reply up to !done, calling row
// for each !re as it arrives; it returns !done's ret. Errors as in Run.
func (s *Session) exchange(row func([]proto.Pair), words []string) (string, error) {
	if s.broken {
		return "", &ConnError{Addr: s.addr, Op: words[0], Err: errors.New("session is broken")}
	}
	if err := s.conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
		return "", s.connErr(words[0], fmt.Errorf("set deadline: %w", err))
	}
	if err := s.send(words, ""); err != nil {
		return "", s.connErr(words[0], err)
	}
	var trap *Trap
	for {
		if err := s.conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
			return "", s.connErr(words[0], fmt.Errorf("set deadline: %w", err))
		}
		sen, err := s.r.read()
		if err != nil {
			return "", s.connErr(words[0], err)
		}
		switch sen.word {
		case "!re":
			row(sen.pairs)
		case "!empty":
		case "!trap":
			trap = &Trap{Command: words[0], Message: sen.get("message"), Category: sen.get("category")}
		case "!done":
			if trap != nil {
				return "", trap
			}
			return sen.get("ret"), nil
		case "!fatal":
			return "", s.connErr(words[0], fmt.Errorf("router closed the session: %s", strings.Join(sen.bare, " ")))
		default:
			return "", s.connErr(words[0], fmt.Errorf("unexpected reply %s", sen.word))
		}
	}
}

// Stream runs a print and calls row for each row as it arrives, without
// holding the whole reply: a router's address lists can have tens of
// thousands of entries, and the agent must stay small. Errors as in Run.
func (s *Session) Stream(row func([]proto.Pair), words ...string) error {
	_, err := s.exchange(row, words)
	return err
}

// Stream runs a print on any session; see Session.Stream.
func (c *Client) Stream(ctx context.Context, row func([]proto.Pair), words ...string) error {
	s, err := c.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release(s)
	return s.Stream(row, words...)
}

// Pipeline sends n commands, cmd(i) building the i-th when it is sent, over
// the session with up to window commands in flight
// (tagged; go-routeros's own asynchronous mode is not used, see the package
// doc) and calls done(i, ret, err) as each reply completes, in reply order.
// A *Trap is reported per command and does not stop the pipeline; any other
// error stops it, breaks the session and is returned.
//
// Use it only for commands whose relative order does not matter: RouterOS
// may run the commands of one connection concurrently.
func (s *Session) Pipeline(n int, cmd func(i int) []string, window int, done func(i int, ret string, err error)) error {
	if s.broken {
		return &ConnError{Addr: s.addr, Op: "pipeline", Err: errors.New("session is broken")}
	}
	if window < 1 {
		window = 1
	}
	r := s.r
	sem := make(chan struct{}, window)
	stop := make(chan struct{})
	// commands[i] is the command word of i, for trap messages; written by
	// the writer before i can have a reply.
	commands := make([]string, n)
	writeErr := make(chan error, 1)
	go func() {
		for i := range n {
			words := cmd(i)
			select {
			case sem <- struct{}{}:
			case <-stop:
				writeErr <- nil
				return
			}
			commands[i] = words[0]
			if err := s.send(words, "p"+strconv.Itoa(i)); err != nil {
				writeErr <- fmt.Errorf("send %s: %w", words[0], err)
				return
			}
		}
		writeErr <- nil
	}()
	type trapMsg struct{ message, category string }
	traps := map[string]trapMsg{}
	var err error
	for remaining := n; remaining > 0 && err == nil; {
		if e := s.conn.SetDeadline(time.Now().Add(s.timeout)); e != nil {
			err = e
			break
		}
		sen, e := r.read()
		if e != nil {
			err = fmt.Errorf("read pipelined reply: %w", e)
			break
		}
		if sen.word == "!fatal" {
			err = fmt.Errorf("router closed the session: %s", strings.Join(sen.bare, " "))
			break
		}
		i, perr := strconv.Atoi(strings.TrimPrefix(sen.tag, "p"))
		if perr != nil || i < 0 || i >= n {
			err = fmt.Errorf("pipelined reply %s with unknown tag %q", sen.word, sen.tag)
			break
		}
		switch sen.word {
		case "!re", "!empty":
		case "!trap":
			traps[sen.tag] = trapMsg{sen.get("message"), sen.get("category")}
		case "!done":
			if msg, ok := traps[sen.tag]; ok {
				delete(traps, sen.tag)
				done(i, "", &Trap{Command: commands[i], Message: msg.message, Category: msg.category})
			} else {
				done(i, sen.get("ret"), nil)
			}
			remaining--
			<-sem
		default:
			err = fmt.Errorf("pipelined reply: unexpected %s", sen.word)
		}
	}
	close(stop)
	if err != nil {
		s.broken = true
		s.conn.Close() // unblocks the writer
	}
	if werr := <-writeErr; err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return s.connErr("pipeline", err)
	}
	return nil
}

// Broken reports whether the session must be replaced.
func (s *Session) Broken() bool { return s.broken }

// Close closes the connection.
func (s *Session) Close() error { return s.c.Close() }

// Client is a pool of sessions to one router. It is safe for concurrent use;
// each session serves one caller at a time. An idle session is reused
// before another is dialled, so a caller that uses one session at a time
// (the agent's loop) logs in once, not once per pool slot: each API login
// is logged by RouterOS and holds one of its API sessions.
type Client struct {
	opts  Options
	slots chan struct{} // a token per session in use; capacity Sessions
	mu    sync.Mutex
	idle  []*Session // logged in and free, the most recently used last
	all   map[*Session]bool
}

// New makes a Client; sessions are dialled on first use.
func New(o Options) *Client {
	if o.Sessions <= 0 {
		o.Sessions = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Client{opts: o, slots: make(chan struct{}, o.Sessions), all: map[*Session]bool{}}
}

// Size is the number of sessions the pool may hold.
func (c *Client) Size() int { return c.opts.Sessions }

// Acquire takes a session from the pool, dialling one if none is idle. The
// caller must Release it.
func (c *Client) Acquire(ctx context.Context) (*Session, error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		s := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return s, nil
	}
	c.mu.Unlock()
	s, err := Dial(ctx, c.opts)
	if err != nil {
		<-c.slots
		return nil, err
	}
	c.mu.Lock()
	c.all[s] = true
	c.mu.Unlock()
	return s, nil
}

// Release returns a session to the pool; a broken one is closed.
func (c *Client) Release(s *Session) {
	if s.broken {
		c.drop(s)
	} else {
		c.mu.Lock()
		if c.all[s] { // not closed by Close meanwhile
			c.idle = append(c.idle, s)
		}
		c.mu.Unlock()
	}
	<-c.slots
}

func (c *Client) drop(s *Session) {
	s.Close()
	c.mu.Lock()
	delete(c.all, s)
	c.mu.Unlock()
}

// Run runs one command on any session.
func (c *Client) Run(ctx context.Context, words ...string) ([]Item, string, error) {
	s, err := c.Acquire(ctx)
	if err != nil {
		return nil, "", err
	}
	defer c.Release(s)
	return s.Run(words...)
}

// Close closes every session; in-flight callers see errors.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.all {
		s.Close()
	}
	c.all = map[*Session]bool{}
	c.idle = nil
	return nil
}
