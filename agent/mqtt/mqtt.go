// Package mqtt is the agent's adapter to its broker, built on
// github.com/eclipse/paho.mqtt.golang (v1.5.1).
//
// # Connection
//
// The adapter keeps the connection up itself instead of using paho's
// automatic reconnect, whose backoff grows to its maximum and does not
// reset between outages close together (agents came back up to 30 s after
// the broker did):
//
//   - one attempt tries every broker URL in order (several comma-separated
//     URLs are a clustered broker), MQTT 3.1.1 only: paho's fallback to 3.1
//     would make two CONNECTs per attempt, doubling the broker's
//     authentication failures for a wrong secret;
//   - after a failed attempt it waits RetryBase doubled per failure, capped
//     at MaxReconnectInterval (1 s by default) while no broker answers, so
//     an agent is back within about a second of the broker's return after
//     an outage of any length, and at MaxRefusedInterval (15 s) when a
//     broker answered and refused (credentials, TLS): retrying fast would
//     only flood its log. Each wait is jittered over its upper half, so a
//     fleet does not reconnect in lockstep;
//   - a connection that held (HeldAfter, 10 s) resets the backoff, and the
//     first attempt after it is immediate (jittered over RetryBase);
//   - every failed attempt is reported to OnConnectFailed as a
//     *ConnectError whose Cause says what went wrong per broker URL.
//
// Every connection subscribes to the site's desired topic (QoS 1, so the
// retained document arrives at once) and to the resync topic. A refused
// subscription (SUBACK 0x80: a clustered broker electing leaders refuses
// them for seconds) is retried with backoff on the same connection, never
// left until the next one.
//
// # Publishing
//
// Status and presence are states, not events: the adapter holds the latest
// of each and publishes it (QoS 1, retained) until the broker acknowledges
// it, retrying a refused or unanswered publish with backoff, and again on
// every new connection (a broker restarted without persistence lost it)
// and on a resync request from the control plane (protocol.ResyncTopic),
// after a random delay of up to ResyncMaxDelay so a fleet does not answer
// at once. A status replaced before it was acknowledged is not sent: the
// newest one says everything the older did. Presence online is republished
// every PresenceInterval (see Options.PresenceInterval). The last will is
// protocol.OfflinePayload, retained, so the control plane sees an agent
// that vanished as offline.
//
// The adapter also remembers the local address of its broker connection:
// the agent's own source address as the router's firewall sees it, which the
// lock-out guard in rampart-out accepts.
package mqtt

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rampart-fw/rampart/protocol"
)

// Options configure a Client.
type Options struct {
	// URLs are the broker's URLs, tried in order at every attempt.
	URLs               []*url.URL
	ClientID           string
	Username, Password string
	TopicRoot          string
	OrgID, SiteID      string
	// TLSConfig is used for ssl/tls/mqtts URLs; nil means the system roots.
	TLSConfig *tls.Config
	// OnDesired receives every payload on the desired topic. It must not
	// block: paho calls it from its delivery goroutine.
	OnDesired func(payload []byte)
	// OnConnection is told when the connection goes up or down.
	OnConnection func(up bool)
	// OnConnectFailed is told about every failed connection attempt.
	OnConnectFailed func(*ConnectError)
	// RetryBase is the first wait after a failed attempt, subscription or
	// publish; zero means 250 ms.
	RetryBase time.Duration
	// MaxReconnectInterval caps the reconnect backoff while no broker
	// answers; zero means 1 s.
	MaxReconnectInterval time.Duration
	// MaxRefusedInterval caps it while a broker answers and refuses
	// (credentials, TLS); zero means 15 s.
	MaxRefusedInterval time.Duration
	// HeldAfter is how long a connection must last for the backoff to
	// reset; zero means 10 s.
	HeldAfter time.Duration
	// ConnectTimeout bounds one connection attempt per URL (TCP, TLS and
	// CONNACK); zero means 10 s.
	ConnectTimeout time.Duration
	// PresenceInterval is how often presence online is published again
	// while connected; zero means 60 s. The repeat is what corrects a stale
	// will: when a connection drops and the agent reconnects at once, the
	// broker may publish the old connection's will ("offline", retained)
	// after the new connection's "online", and without a repeat the site
	// would read offline until the next reconnect.
	PresenceInterval time.Duration
	// ResyncMaxDelay bounds the random delay before answering a resync
	// request; zero means 2 s.
	ResyncMaxDelay time.Duration
	Logger         *slog.Logger
}

// Client is a running broker connection.
type Client struct {
	opts     Options
	c        paho.Client
	desired  string
	resync   string
	status   string
	presence string

	mu         sync.Mutex
	local      netip.Addr
	gen        uint64 // connection generation: +1 per connection made
	up         bool
	attempts   []attempt // the current attempt's per-URL results (dial)
	policy     reconnectPolicy
	st         slot
	pr         slot
	resyncing  bool
	connecting paho.Token // the last Connect, for Close to wait out

	kick      chan struct{} // wakes the publisher
	lost      chan struct{} // the connection was lost
	stop      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// slot is the latest payload of one topic and whether the broker has
// acknowledged it on the current connection. Presence has no stored
// payload: it is made when sent, so its time is the time of sending.
type slot struct {
	payload []byte
	version uint64 // +1 per new payload; 0: nothing to publish yet
	acked   uint64 // version acknowledged...
	ackGen  uint64 // ...on this connection
}

func (s *slot) dirty(gen uint64) bool {
	return s.version > 0 && (s.acked != s.version || s.ackGen != gen)
}

// Start begins connecting in the background and returns at once; the broker
// may be unreachable for as long as it likes.
func Start(o Options) (*Client, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("start mqtt client: no broker URL")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.RetryBase, 250*time.Millisecond)
	def(&o.MaxReconnectInterval, time.Second)
	def(&o.MaxRefusedInterval, 15*time.Second)
	def(&o.HeldAfter, 10*time.Second)
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.PresenceInterval, 60*time.Second)
	def(&o.ResyncMaxDelay, 2*time.Second)
	cl := &Client{
		opts:     o,
		desired:  protocol.DesiredTopic(o.TopicRoot, o.OrgID, o.SiteID),
		resync:   protocol.ResyncTopic(o.TopicRoot),
		status:   protocol.StatusTopic(o.TopicRoot, o.OrgID, o.SiteID),
		presence: protocol.PresenceTopic(o.TopicRoot, o.OrgID, o.SiteID),
		pr:       slot{version: 1},
		policy:   reconnectPolicy{base: o.RetryBase, unreachableMax: o.MaxReconnectInterval, refusedMax: o.MaxRefusedInterval, heldAfter: o.HeldAfter},
		kick:     make(chan struct{}, 1),
		lost:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	po := paho.NewClientOptions().
		SetClientID(o.ClientID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetProtocolVersion(4). // explicit: no fallback to 3.1 (see the package doc)
		SetCleanSession(true).
		SetOrderMatters(false).
		SetKeepAlive(30*time.Second).
		SetConnectTimeout(o.ConnectTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetBinaryWill(cl.presence, protocol.OfflinePayload, 1, true).
		SetCustomOpenConnectionFn(cl.dial)
	for _, u := range o.URLs {
		po.AddBroker(withPort(u).String())
	}
	if o.TLSConfig != nil {
		po.SetTLSConfig(o.TLSConfig)
	}
	po.SetConnectionLostHandler(func(_ paho.Client, err error) {
		o.Logger.Warn("mqtt connection lost", "err", err)
		cl.mu.Lock()
		cl.up = false
		cl.mu.Unlock()
		if o.OnConnection != nil {
			o.OnConnection(false)
		}
		select {
		case cl.lost <- struct{}{}:
		default:
		}
	})
	cl.c = paho.NewClient(po)
	cl.wg.Add(3)
	go cl.connect()
	go cl.publisher()
	go cl.heartbeat()
	return cl, nil
}

// withPort adds the scheme's default port.
func withPort(u *url.URL) *url.URL {
	v := *u
	if v.Port() == "" {
		port := "1883"
		if !plain(v.Scheme) {
			port = "8883"
		}
		v.Host = net.JoinHostPort(v.Hostname(), port)
	}
	return &v
}

func plain(scheme string) bool { return scheme == "tcp" || scheme == "mqtt" }

// sleep waits d or until Close; it reports false on Close.
func (cl *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-cl.stop:
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads d over its upper half.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

// backoff is base doubled per failure after the first, capped.
func backoff(base, limit time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// connect keeps the connection up until Close.
func (cl *Client) connect() {
	defer cl.wg.Done()
	for {
		cl.mu.Lock()
		cl.attempts = cl.attempts[:0]
		cl.mu.Unlock()
		tok := cl.c.Connect()
		cl.mu.Lock()
		cl.connecting = tok
		cl.mu.Unlock()
		select {
		case <-cl.stop:
			return
		case <-tok.Done():
		}
		if err := tok.Error(); err != nil {
			ce := cl.connectError(err)
			cl.mu.Lock()
			wait := cl.policy.failed(ce.Refused())
			cl.mu.Unlock()
			if cl.opts.OnConnectFailed != nil {
				cl.opts.OnConnectFailed(ce)
			}
			if !cl.sleep(wait) {
				return
			}
			continue
		}
		since := time.Now()
		cl.mu.Lock()
		cl.gen++
		gen := cl.gen
		cl.up = true
		cl.mu.Unlock()
		cl.opts.Logger.Info("mqtt connected", "broker", cl.connectedURL())
		if cl.opts.OnConnection != nil {
			cl.opts.OnConnection(true)
		}
		cl.wg.Add(1)
		go cl.subscribe(gen)
		cl.wake()
		select {
		case <-cl.stop:
			return
		case <-cl.lost:
		}
		cl.mu.Lock()
		cl.up = false // again: the loss may have been handled before up was set
		wait := cl.policy.lost(time.Since(since))
		cl.mu.Unlock()
		if !cl.sleep(wait) {
			return
		}
	}
}

// Backoff reports the longest wait between two connection attempts so far
// and the failed attempts since the last connection that held: what a
// test of the reconnect policy asserts on, instead of timing.
func (cl *Client) Backoff() (longest time.Duration, failures int) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.policy.longest, cl.policy.failures
}

// reconnectPolicy is the wait before each connection attempt (see the
// package doc), kept apart from the connection so it can be tested alone.
type reconnectPolicy struct {
	base, unreachableMax, refusedMax, heldAfter time.Duration

	failures int           // attempts since the last connection that held
	longest  time.Duration // the longest wait so far
}

// failed is the wait after a failed attempt; refused says a broker
// answered and said no.
func (p *reconnectPolicy) failed(refused bool) time.Duration {
	p.failures++
	limit := p.unreachableMax
	if refused {
		limit = max(limit, p.refusedMax)
	}
	return p.waited(jitter(backoff(p.base, limit, p.failures)))
}

// lost is the wait after a connection that was up for up: one that held
// resets the backoff and is followed by an attempt within base.
func (p *reconnectPolicy) lost(up time.Duration) time.Duration {
	if up >= p.heldAfter {
		p.failures = 0
	}
	var wait time.Duration
	if p.failures == 0 {
		wait = rand.N(p.base + 1)
	} else {
		wait = jitter(backoff(p.base, p.unreachableMax, p.failures))
	}
	p.failures++
	return p.waited(wait)
}

func (p *reconnectPolicy) waited(d time.Duration) time.Duration {
	p.longest = max(p.longest, d)
	return d
}

func (cl *Client) connectedURL() string {
	r := cl.c.OptionsReader()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for i := len(cl.attempts) - 1; i >= 0; i-- {
		if cl.attempts[i].err == nil {
			return cl.attempts[i].url
		}
	}
	if s := r.Servers(); len(s) > 0 {
		return s[0].Redacted()
	}
	return ""
}

// subscribe subscribes the connection gen to the desired and resync
// topics, retrying refused subscriptions with backoff while gen lasts.
func (cl *Client) subscribe(gen uint64) {
	defer cl.wg.Done()
	pending := map[string]byte{cl.desired: 1, cl.resync: 1}
	for failures := 0; ; {
		if !cl.current(gen) {
			return
		}
		tok := cl.c.SubscribeMultiple(pending, cl.onMessage)
		var err error
		select {
		case <-cl.stop:
			return
		case <-tok.Done():
			err = tok.Error()
		case <-time.After(cl.opts.ConnectTimeout):
			err = errors.New("no SUBACK in time")
		}
		if err == nil {
			for topic, q := range tok.(*paho.SubscribeToken).Result() {
				if q <= 2 {
					delete(pending, topic)
				}
			}
			if len(pending) == 0 {
				cl.opts.Logger.Debug("mqtt subscribed", "topics", []string{cl.desired, cl.resync})
				return
			}
			err = fmt.Errorf("broker refused the subscription (SUBACK 0x80) to %v", slices.Sorted(maps.Keys(pending)))
		}
		failures++
		wait := jitter(backoff(cl.opts.RetryBase, 5*time.Second, failures))
		cl.opts.Logger.Warn("mqtt subscribe failed; retrying on this connection", "err", err, "retry_in", wait.Round(time.Millisecond).String())
		if !cl.sleep(wait) {
			return
		}
	}
}

func (cl *Client) current(gen uint64) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.up && cl.gen == gen
}

// maxControlPayload bounds what is read of a resync request: it is a small
// JSON object, and the agent only needs to know one arrived.
const maxControlPayload = 1 << 10

func (cl *Client) onMessage(_ paho.Client, m paho.Message) {
	switch m.Topic() {
	case cl.desired:
		if cl.opts.OnDesired != nil {
			cl.opts.OnDesired(m.Payload())
		}
	case cl.resync:
		if len(m.Payload()) > maxControlPayload {
			cl.opts.Logger.Warn("ignoring an oversized resync request", "bytes", len(m.Payload()))
			return
		}
		cl.mu.Lock()
		if cl.resyncing {
			cl.mu.Unlock()
			return // one answer covers requests that arrive meanwhile
		}
		cl.resyncing = true
		cl.mu.Unlock()
		cl.wg.Add(1)
		go func() {
			defer cl.wg.Done()
			ok := cl.sleep(rand.N(cl.opts.ResyncMaxDelay + 1))
			cl.mu.Lock()
			cl.resyncing = false
			if ok {
				cl.st.acked = 0 // the same status again
				cl.pr.version++ // and presence, as of now
			}
			cl.mu.Unlock()
			cl.wake()
		}()
	}
}

func (cl *Client) wake() {
	select {
	case cl.kick <- struct{}{}:
	default:
	}
}

// publisher publishes the status and presence slots until the broker has
// acknowledged them on the current connection, with backoff after a
// failure.
func (cl *Client) publisher() {
	defer cl.wg.Done()
	var retry <-chan time.Time
	failures := 0
	for {
		select {
		case <-cl.stop:
			return
		case <-cl.kick:
		case <-retry:
		}
		retry = nil
		if err := cl.flush(); err != nil {
			failures++
			wait := jitter(backoff(cl.opts.RetryBase, 5*time.Second, failures))
			cl.opts.Logger.Warn("mqtt publish failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond).String())
			retry = time.After(wait)
		} else {
			failures = 0
		}
	}
}

// flush publishes what the broker has not acknowledged on this connection:
// presence first (the control plane counts a site online before reading
// its status), then status.
func (cl *Client) flush() error {
	for _, isStatus := range []bool{false, true} {
		cl.mu.Lock()
		s, topic := &cl.pr, cl.presence
		if isStatus {
			s, topic = &cl.st, cl.status
		}
		gen := cl.gen
		if !cl.up {
			cl.mu.Unlock()
			return nil // the next connection wakes the publisher
		}
		if !s.dirty(gen) {
			cl.mu.Unlock()
			continue
		}
		payload, version := s.payload, s.version
		cl.mu.Unlock()
		if !isStatus {
			payload, _ = json.Marshal(protocol.Presence{State: protocol.PresenceOnline, At: time.Now().UTC()})
		}

		tok := cl.c.Publish(topic, 1, true, payload)
		var err error
		select {
		case <-cl.stop:
			return nil
		case <-tok.Done():
			err = tok.Error()
		case <-time.After(cl.opts.ConnectTimeout):
			err = errors.New("no PUBACK in time")
		}
		if err != nil {
			if !cl.current(gen) {
				return nil // the connection went; the next one publishes again
			}
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		cl.mu.Lock()
		if s.version == version {
			s.acked, s.ackGen = version, gen
		}
		cl.mu.Unlock()
	}
	return nil
}

// heartbeat republishes presence online every PresenceInterval (see
// Options.PresenceInterval), until Close.
func (cl *Client) heartbeat() {
	defer cl.wg.Done()
	t := time.NewTicker(cl.opts.PresenceInterval)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
			cl.mu.Lock()
			cl.pr.version++
			cl.mu.Unlock()
			cl.wake()
		}
	}
}

// PublishStatus makes st the site's status. It returns at once: the status
// is published, retained, until the broker acknowledges it (see the
// package doc).
func (cl *Client) PublishStatus(st protocol.SiteStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	cl.mu.Lock()
	cl.st.payload, cl.st.version = b, cl.st.version+1
	cl.mu.Unlock()
	cl.wake()
	return nil
}

// attempt is the dial result of one broker URL in the current attempt.
type attempt struct {
	url string
	err error
}

// dial opens the broker connection like paho would for tcp and tls URLs,
// and records its local address and, for the connect error, its outcome.
func (cl *Client) dial(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	conn, err := cl.dialURL(uri, o.TLSConfig)
	cl.mu.Lock()
	cl.attempts = append(cl.attempts, attempt{url: uri.Redacted(), err: err})
	cl.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil {
		cl.mu.Lock()
		cl.local = ap.Addr().Unmap()
		cl.mu.Unlock()
	}
	return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, 4<<10)}, nil
}

func (cl *Client) dialURL(uri *url.URL, cfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: cl.opts.ConnectTimeout}
	switch uri.Scheme {
	case "tcp", "mqtt":
		return d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts":
		if cfg == nil {
			cfg = &tls.Config{}
		}
		return tls.DialWithDialer(d, "tcp", uri.Host, cfg)
	}
	return nil, fmt.Errorf("unsupported broker scheme %q", uri.Scheme)
}

// bufferedConn reads through a buffer: paho reads every packet's fixed
// header a byte at a time (packets.ReadPacket, decodeLength in v1.5.1), which
// on a bare TCP connection is a read syscall per byte. paho reads the
// connection from one goroutine only.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// LocalAddr is the local address of the most recent broker connection; the
// zero Addr until one was made.
func (cl *Client) LocalAddr() netip.Addr {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.local
}

// Connected reports whether the broker connection is up.
func (cl *Client) Connected() bool { return cl.c.IsConnectionOpen() }

// Close publishes presence offline (a clean stop sends no will) and
// disconnects. Calls after the first do nothing.
func (cl *Client) Close() {
	first := false
	cl.closeOnce.Do(func() { first = true; close(cl.stop) })
	if !first {
		return
	}
	cl.wg.Wait()
	cl.mu.Lock()
	tok := cl.connecting
	cl.mu.Unlock()
	if tok != nil {
		// An attempt in flight would otherwise complete after Disconnect
		// and leave a connection nobody closes.
		tok.WaitTimeout(cl.opts.ConnectTimeout)
	}
	if cl.c.IsConnectionOpen() {
		tok := cl.c.Publish(cl.presence, 1, true, protocol.OfflinePayload)
		tok.WaitTimeout(2 * time.Second)
	}
	cl.c.Disconnect(250)
}
