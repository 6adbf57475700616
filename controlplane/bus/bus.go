// Package bus is the control plane's side of MQTT (DESIGN.md section 4): it
// publishes every site's desired state, retained at QoS 1, and ingests what
// agents report on their status and presence topics. It speaks plain MQTT
// 3.1.1 through paho, so the same code runs against the embedded broker
// (package broker) and an external one such as Mosquitto.
//
// # Publishing
//
// PublishDesired sends many documents without waiting a round trip for each:
// publishes are pipelined with at most Options.MaxInFlight unacknowledged at
// a time. A document is validated before it leaves (the same check the agent
// makes), so the bus never publishes what an agent would refuse, and never an
// empty payload: a site with no policy left gets a document with no groups
// and no lists, which tells its agent to remove everything.
//
// # Connections
//
// New returns at once and connects in the background, retrying with backoff
// for as long as the broker is down, so the control plane serves its API
// without a broker and publishes once it connects. Options.URLs may name
// several brokers (the nodes of a cluster): each connection attempt tries
// them in order. The bus reconnects with backoff after a lost connection
// and, after every connection (the first included), subscribes again and
// calls Options.OnConnect. The control plane republishes every site's
// document there: republishing is harmless (agents ignore a revision they
// have) and it restores retained state on a broker that restarted without
// persistence. Publishes in flight when a connection is lost fail at once
// (the session is clean; nothing is resent behind the caller's back).
//
// A broker may refuse a subscription for a while (a NATS cluster electing
// JetStream leaders refuses QoS 1 subscriptions for 10–15 s): the bus
// retries a refused subscription with backoff on the same connection until
// it is granted, never waiting for the next connection. Refused publishes of
// desired state fail PublishDesired, whose caller retries (package syncer).
//
// # Resync
//
// Once subscribed on a connection, the bus publishes a
// protocol.ResyncRequest (non-retained, QoS 1) on protocol.ResyncTopic,
// retried like a subscription until the broker takes it. Every agent answers
// by publishing its status and presence again. That is how the control plane
// learns every site's status after it (re)connects on brokers that never
// deliver retained messages to wildcard subscriptions (RabbitMQ 3.x); on the
// others the answers duplicate the retained copies, which ingestion
// tolerates.
//
// # Ingestion
//
// With the embedded broker, set Options.Reports to it: status and presence
// then come in process, with no queue that could drop them. Over MQTT, mochi
// drops what does not fit a subscriber's pending-write queue, and a
// reconnecting control plane is sent every retained status at once.
//
// Status and presence are parsed, checked against their topic (a document
// that names another site than the topic it came on is refused: a site's
// credentials only let it write its own topics, so a mismatch is a bug or an
// attack) and handed to the Ingester. Delivery is ordered per site and runs
// on a few workers, so a slow Ingester never stalls the MQTT connection.
// Retained messages are delivered again after every reconnect, so the
// Ingester must be idempotent.
//
// A broker sends retained messages after acknowledging a subscription, so a
// message published in between reaches the bus twice: live, then again as
// the retained copy, possibly after newer live messages (observed with
// mochi-mqtt). The bus therefore drops a retained delivery for a site and
// kind once it has seen a live one on the same connection. The Ingester must
// still treat an older revision than it holds as stale.
package bus

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-fw/rampart/protocol"
)

// ReportSource is an in-process feed of status and presence, such as the
// embedded broker (*broker.Broker). With one, the bus ingests from it instead
// of subscribing over MQTT: nothing is dropped on the way, however many
// sites report at once or are retained.
type ReportSource interface {
	SubscribeReports(fn func(topic string, payload []byte, retained bool)) (stop func())
}

// Ingester receives what sites report. Calls for one site come in the order
// the broker delivered them, never concurrently; calls for different sites
// may be concurrent.
type Ingester interface {
	SiteStatus(ctx context.Context, org, site string, st protocol.SiteStatus)
	SitePresence(ctx context.Context, org, site string, p protocol.Presence)
}

// Defaults for Options.
const (
	DefaultMaxInFlight          = 256
	DefaultWorkers              = 4
	DefaultMaxReconnectInterval = 10 * time.Second
	defaultQueue                = 1024
)

// Options configures a Bus. URLs is required; every other zero value is
// usable.
type Options struct {
	// URLs of the broker, or of the nodes of a clustered broker, tried in
	// order: tcp://host:port (also mqtt://, ssl://, tls://, ws:// and
	// wss://, as paho accepts them).
	URLs []string
	// TLS configures ssl:// connections; nil uses the system's CA bundle.
	TLS *tls.Config
	// Username and Password, if the broker wants them. For the embedded
	// broker: keys.ControlPlaneMQTTUser and Key.ControlPlaneMQTTPassword().
	Username, Password string
	// ClientID defaults to "rampart-controlplane-" and a random suffix.
	ClientID string
	// TopicRoot is protocol.DefaultTopicRoot if empty.
	TopicRoot string
	// Ingester receives status and presence; without one the bus does not
	// subscribe.
	Ingester Ingester
	// Reports, if set, is where status and presence come from instead of an
	// MQTT subscription: set it to the embedded broker.
	Reports ReportSource
	// OnConnect runs in its own goroutine after every connection, beside the
	// subscriptions (a broker that refuses them for a while must not hold
	// up publishing); its context ends when the connection is lost or the
	// bus closes. Republish every site's document here.
	OnConnect func(ctx context.Context)
	// MaxInFlight bounds unacknowledged publishes (DefaultMaxInFlight).
	MaxInFlight int
	// Workers is the number of ingestion workers (DefaultWorkers).
	Workers int
	// MaxReconnectInterval caps the reconnect backoff
	// (DefaultMaxReconnectInterval).
	MaxReconnectInterval time.Duration
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
	// Registry gets the bus's metrics; none are registered if nil.
	Registry prometheus.Registerer
}

// Sentinel errors.
var (
	ErrClosed  = errors.New("bus: closed")
	ErrNoURL   = errors.New("bus: Options.URLs is required")
	ErrInvalid = errors.New("bus: invalid desired state")
	// ErrCredentials: the broker refused the control plane's username or
	// password. The bus keeps retrying (the broker may be fixed), but
	// WaitConnected returns it.
	ErrCredentials = errors.New("the broker refused the control plane's credentials")
	// ErrNotConnected is Ready's error while the bus has no connection with
	// its subscriptions in place.
	ErrNotConnected = errors.New("not connected to the MQTT broker")
)

// Bus is a connection to the broker.
type Bus struct {
	opts    Options
	log     *slog.Logger
	client  paho.Client
	m       *metrics
	window  chan struct{}
	shards  []chan event
	done    chan struct{}
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closed  atomic.Bool
	connMu  sync.Mutex
	connEnd context.CancelFunc // ends the current connection's OnConnect

	ready      chan struct{} // closed once the first connection is subscribed
	readyOnce  sync.Once
	refused    chan error             // credential refusals, for WaitConnected
	subscribed atomic.Bool            // the current connection's subscriptions are in place
	attempt    atomic.Pointer[string] // the URL of the latest connection attempt

	liveMu sync.Mutex
	live   map[liveKey]struct{} // (site, kind) seen live on this connection

	stopReports func()
}

type liveKey struct{ org, site, kind string }

type event struct {
	org, site, kind string
	payload         []byte
}

// Connect is New then WaitConnected: it returns once the first connection
// is up and subscribed, or ctx ends, or the broker refuses the credentials.
func Connect(ctx context.Context, opts Options) (*Bus, error) {
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := b.WaitConnected(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// New starts the bus and returns at once: it connects in the background,
// retrying until a broker accepts it, and reconnects on its own until Close.
// Publishes fail until it is connected.
func New(opts Options) (*Bus, error) {
	if len(opts.URLs) == 0 {
		return nil, ErrNoURL
	}
	if opts.TopicRoot == "" {
		opts.TopicRoot = protocol.DefaultTopicRoot
	}
	if opts.ClientID == "" {
		var r [6]byte
		_, _ = rand.Read(r[:])
		opts.ClientID = "rampart-controlplane-" + hex.EncodeToString(r[:])
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.MaxReconnectInterval <= 0 {
		opts.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Bus{
		opts:    opts,
		log:     opts.Logger.With("component", "mqtt"),
		m:       newMetrics(),
		window:  make(chan struct{}, opts.MaxInFlight),
		done:    make(chan struct{}),
		live:    make(map[liveKey]struct{}),
		ready:   make(chan struct{}),
		refused: make(chan error, 1),
	}
	if opts.Registry != nil {
		if err := b.m.register(opts.Registry); err != nil {
			return nil, err
		}
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	for range opts.Workers {
		ch := make(chan event, defaultQueue)
		b.shards = append(b.shards, ch)
		b.wg.Add(1)
		go b.work(ch)
	}

	po := paho.NewClientOptions().
		SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		// 3.1.1 only: paho would otherwise retry a refused connection as 3.1.
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(30 * time.Second).
		// The bus reconnects itself (connectLoop): paho's automatic
		// reconnection resends stored QoS 1 publishes while new ones go
		// out, and races with them (paho v1.5.1, client.resume sets Dup on a
		// packet the writer is sending; seen by the race detector). Without
		// it, a lost connection fails the publishes in flight at once, and
		// the caller publishes again on the next connection.
		SetAutoReconnect(false).
		SetOrderMatters(true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.m.connected.Set(0)
			b.subscribed.Store(false)
			b.endConnection()
			b.log.Warn("mqtt connection lost; reconnecting", "urls", opts.URLs, "error", err)
			go b.connectLoop()
		}).
		SetConnectionAttemptHandler(func(u *url.URL, tc *tls.Config) *tls.Config {
			s := u.String()
			b.attempt.Store(&s)
			return tc
		}).
		SetOnConnectHandler(func(c paho.Client) {
			b.m.connected.Set(1)
			b.m.connects.Inc()
			b.log.Info("mqtt connected", "url", b.Server())
			cctx := b.beginConnection()
			if opts.Reports == nil {
				// A new subscription replays retained messages; they are
				// news again.
				b.liveMu.Lock()
				clear(b.live)
				b.liveMu.Unlock()
			}
			go b.connected(cctx)
		})
	for _, u := range opts.URLs {
		po.AddBroker(u)
	}
	if opts.TLS != nil {
		po.SetTLSConfig(opts.TLS)
	}
	b.client = paho.NewClient(po)
	if opts.Reports != nil && opts.Ingester != nil {
		b.stopReports = opts.Reports.SubscribeReports(b.deliver)
	}
	go b.connectLoop()
	return b, nil
}

// WaitConnected returns once the bus has been connected and subscribed, or
// ctx ends, or the broker refuses the credentials (ErrCredentials).
func (b *Bus) WaitConnected(ctx context.Context) error {
	select {
	case <-b.ready:
		return nil
	case err := <-b.refused:
		return fmt.Errorf("connect to mqtt broker %s: %w", strings.Join(b.opts.URLs, ","), err)
	case <-ctx.Done():
		return fmt.Errorf("connect to mqtt broker %s: %w", strings.Join(b.opts.URLs, ","), ctx.Err())
	}
}

// Server is the URL of the broker the bus is connected to, or last tried.
func (b *Bus) Server() string {
	if p := b.attempt.Load(); p != nil {
		return *p
	}
	return ""
}

// Ready is nil while the bus is connected with its subscriptions in place,
// else an error saying why not (for a readiness check).
func (b *Bus) Ready() error {
	if !b.client.IsConnectionOpen() {
		return fmt.Errorf("%w (%s)", ErrNotConnected, strings.Join(b.opts.URLs, ","))
	}
	if !b.subscribed.Load() {
		return fmt.Errorf("%w: connected, but the broker has not yet granted the subscriptions", ErrNotConnected)
	}
	return nil
}

// connectLoop connects, retrying with backoff until a broker accepts the
// connection or the bus closes. It runs at start and after every lost
// connection, one at a time.
func (b *Bus) connectLoop() {
	backoff := 100 * time.Millisecond
	for {
		// Close closes done before it disconnects, and paho's Disconnect
		// waits for a connection attempt in progress and ends it, so an
		// attempt started after this check cannot outlive Close.
		select {
		case <-b.done:
			return
		default:
		}
		tok := b.client.Connect()
		select {
		case <-tok.Done():
		case <-b.done:
			// Close does not wait for a connect timeout. Its Disconnect
			// ends an attempt in progress; one that began after it is
			// ended here.
			go func() {
				if tok.Wait() && tok.Error() == nil {
					b.client.Disconnect(0)
				}
			}()
			return
		}
		err := tok.Error()
		if err == nil {
			return
		}
		if rc := tok.(*paho.ConnectToken).ReturnCode(); rc == packets.ErrRefusedBadUsernameOrPassword || rc == packets.ErrRefusedNotAuthorised {
			err = fmt.Errorf("%w (user %q): %w", ErrCredentials, b.opts.Username, err)
			b.log.Error("mqtt connect refused; check --mqtt-url's credentials; retrying", "urls", b.opts.URLs, "error", err, "retry_in", backoff)
			select {
			case b.refused <- err:
			default:
			}
		} else {
			b.log.Warn("mqtt connect failed; the API serves meanwhile; retrying", "urls", b.opts.URLs, "error", err, "retry_in", backoff)
		}
		select {
		case <-time.After(backoff):
		case <-b.done:
			return
		}
		backoff = min(2*backoff, b.opts.MaxReconnectInterval)
	}
}

// connected runs once per connection: subscribe, ask every agent to report
// again, then hand over to OnConnect. Refusals are retried on this
// connection until ctx (the connection) ends.
func (b *Bus) connected(ctx context.Context) {
	if opts := b.opts; opts.OnConnect != nil {
		// Republishing desired state does not wait for the subscriptions.
		go func() {
			if ctx.Err() == nil {
				opts.OnConnect(ctx)
			}
		}()
	}
	if !b.retry(ctx, "subscribe", b.subscribe) {
		return
	}
	b.subscribed.Store(true)
	b.readyOnce.Do(func() { close(b.ready) })
	b.retry(ctx, "resync", b.requestResync)
}

// retry runs op until it succeeds or ctx ends, with backoff, counting and
// logging each failure; it reports whether op succeeded.
func (b *Bus) retry(ctx context.Context, name string, op func(context.Context) error) bool {
	backoff := 100 * time.Millisecond
	for {
		err := op(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		b.m.refused.WithLabelValues(name).Inc()
		b.log.Warn("mqtt "+name+" refused; retrying on this connection", "error", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false
		}
		backoff = min(2*backoff, b.opts.MaxReconnectInterval)
	}
}

// requestResync publishes a protocol.ResyncRequest.
func (b *Bus) requestResync(ctx context.Context) error {
	payload, err := json.Marshal(protocol.ResyncRequest{Schema: protocol.StatusSchema, At: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode resync request: %w", err)
	}
	topic := protocol.ResyncTopic(b.opts.TopicRoot)
	tok := b.client.Publish(topic, 1, false, payload)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	b.m.resyncs.Inc()
	return nil
}

func (b *Bus) beginConnection() context.Context {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if b.connEnd != nil {
		b.connEnd()
	}
	ctx, cancel := context.WithCancel(b.ctx)
	b.connEnd = cancel
	return ctx
}

func (b *Bus) endConnection() {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if b.connEnd != nil {
		b.connEnd()
		b.connEnd = nil
	}
}

func (b *Bus) subscribe(ctx context.Context) error {
	if b.opts.Ingester == nil || b.opts.Reports != nil {
		return nil
	}
	root := b.opts.TopicRoot
	filters := map[string]byte{
		root + "/+/+/" + protocol.KindStatus:   1,
		root + "/+/+/" + protocol.KindPresence: 1,
	}
	tok := b.client.SubscribeMultiple(filters, b.handle)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("subscribe to status and presence: %w", err)
	}
	for f, code := range tok.(*paho.SubscribeToken).Result() {
		if code > 2 {
			return fmt.Errorf("subscribe to %s: the broker refused (code %#x); a clustered broker may be electing leaders, else check the control plane's broker credentials and ACL", f, code)
		}
	}
	return nil
}

// Connected reports whether the bus has a connection to the broker now.
func (b *Bus) Connected() bool { return b.client.IsConnectionOpen() }

// Close disconnects and stops ingestion. Publishes still in flight fail
// with ErrClosed.
func (b *Bus) Close() {
	if b.closed.Swap(true) {
		return
	}
	if b.stopReports != nil {
		b.stopReports()
	}
	b.cancel()
	close(b.done)
	b.client.Disconnect(250)
	b.wg.Wait()
	b.m.connected.Set(0)
}

// PublishDesired publishes each document retained at QoS 1 on its site's
// desired topic and waits until the broker has acknowledged them all, or
// ctx ends. Documents must be complete (Epoch and Revision set); one that
// fails validation is not sent and its error is returned with the others,
// while the rest still go out.
func (b *Bus) PublishDesired(ctx context.Context, docs ...protocol.DesiredState) error {
	if b.closed.Load() {
		return ErrClosed
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for i := range docs {
		d := &docs[i]
		payload, err := b.encode(d)
		if err != nil {
			b.m.publishes.WithLabelValues("invalid").Inc()
			fail(err)
			continue
		}
		select {
		case b.window <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return errors.Join(append(errs, fmt.Errorf("publish desired state: %w", ctx.Err()))...)
		case <-b.done:
			wg.Wait()
			return errors.Join(append(errs, ErrClosed)...)
		}
		topic := protocol.DesiredTopic(b.opts.TopicRoot, d.OrgID, d.SiteID)
		tok := b.client.Publish(topic, 1, true, payload)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-b.window }()
			var err error
			select {
			case <-tok.Done():
				err = tok.Error()
			case <-ctx.Done():
				err = ctx.Err()
			case <-b.done:
				err = ErrClosed
			}
			if err != nil {
				b.m.publishes.WithLabelValues("error").Inc()
				fail(fmt.Errorf("publish %s: %w", topic, err))
				return
			}
			b.m.publishes.WithLabelValues("ok").Inc()
		}()
	}
	wg.Wait()
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
	}
	return errors.Join(errs...)
}

// ClearSite publishes an empty retained message, at QoS 1, on a site's
// desired, status and presence topics, which makes the broker forget what
// it retained there (MQTT 3.1.1, 3.3.1.3), and waits for the broker's
// acknowledgements or ctx. The control plane clears a decommissioned
// site's topics once it is forgotten; an external broker's ACL must let
// the control plane publish on the sites' status and presence for this.
func (b *Bus) ClearSite(ctx context.Context, org, site string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if !protocol.ValidOrgID(org) || !protocol.ValidSiteID(site) {
		return fmt.Errorf("%w: organisation %q or site %q is not a valid id", ErrInvalid, org, site)
	}
	root := b.opts.TopicRoot
	for _, topic := range []string{protocol.DesiredTopic(root, org, site), protocol.StatusTopic(root, org, site), protocol.PresenceTopic(root, org, site)} {
		tok := b.client.Publish(topic, 1, true, []byte{})
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				return fmt.Errorf("clear %s: %w", topic, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("clear %s: %w", topic, ctx.Err())
		case <-b.done:
			return ErrClosed
		}
	}
	return nil
}

func (b *Bus) encode(d *protocol.DesiredState) ([]byte, error) {
	if !protocol.ValidOrgID(d.OrgID) || !protocol.ValidSiteID(d.SiteID) {
		return nil, fmt.Errorf("%w: organisation %q or site %q is not a valid id", ErrInvalid, d.OrgID, d.SiteID)
	}
	if err := d.Validate(d.OrgID, d.SiteID); err != nil {
		return nil, fmt.Errorf("%w for %s/%s: %w", ErrInvalid, d.OrgID, d.SiteID, err)
	}
	payload, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("%w for %s/%s: %w", ErrInvalid, d.OrgID, d.SiteID, err)
	}
	if len(payload) > protocol.MaxDesiredStateBytes {
		return nil, fmt.Errorf("%w for %s/%s: %d bytes, more than the %d a document may have (protocol.MaxDesiredStateBytes); detach groups from the site",
			ErrInvalid, d.OrgID, d.SiteID, len(payload), protocol.MaxDesiredStateBytes)
	}
	return payload, nil
}

// handle runs on paho's delivery goroutine.
func (b *Bus) handle(_ paho.Client, msg paho.Message) {
	b.deliver(msg.Topic(), msg.Payload(), msg.Retained())
}

// deliver routes a message to its site's worker; it does no parsing, so the
// connection it runs on is never held up for long.
func (b *Bus) deliver(topic string, payload []byte, retained bool) {
	org, site, kind, ok := protocol.ParseTopic(b.opts.TopicRoot, topic)
	if !ok || kind == protocol.KindDesired {
		b.m.ingested.WithLabelValues("unknown", "malformed").Inc()
		b.log.Warn("mqtt message on an unexpected topic ignored", "topic", topic)
		return
	}
	if b.staleRetained(liveKey{org, site, kind}, retained) {
		b.m.ingested.WithLabelValues(kind, "stale").Inc()
		return
	}
	h := fnv.New32a()
	h.Write([]byte(org))
	h.Write([]byte{'/'})
	h.Write([]byte(site))
	ev := event{org: org, site: site, kind: kind, payload: payload}
	select {
	case b.shards[h.Sum32()%uint32(len(b.shards))] <- ev:
	case <-b.done:
	}
}

// staleRetained reports whether a delivery is a retained copy of something
// already superseded by a live message on this connection.
func (b *Bus) staleRetained(k liveKey, retained bool) bool {
	b.liveMu.Lock()
	defer b.liveMu.Unlock()
	if !retained {
		b.live[k] = struct{}{}
		return false
	}
	_, seen := b.live[k]
	return seen
}

func (b *Bus) work(ch chan event) {
	defer b.wg.Done()
	for {
		select {
		case ev := <-ch:
			b.ingest(ev)
		case <-b.done:
			return
		}
	}
}

func (b *Bus) ingest(ev event) {
	if len(strings.TrimSpace(string(ev.payload))) == 0 {
		// A cleared retained message: nothing to report.
		return
	}
	switch ev.kind {
	case protocol.KindStatus:
		st, err := protocol.ParseStatus(ev.payload, ev.org, ev.site)
		if err != nil {
			result := "malformed"
			if errors.Is(err, protocol.ErrStatusMismatch) {
				result = "mismatch"
			}
			b.m.ingested.WithLabelValues(protocol.KindStatus, result).Inc()
			b.log.Warn("site status refused", "org", ev.org, "site", ev.site, "error", err)
			return
		}
		b.m.ingested.WithLabelValues(protocol.KindStatus, "accepted").Inc()
		b.opts.Ingester.SiteStatus(b.ctx, ev.org, ev.site, st)
	case protocol.KindPresence:
		p, err := protocol.ParsePresence(ev.payload)
		if err != nil {
			b.m.ingested.WithLabelValues(protocol.KindPresence, "malformed").Inc()
			b.log.Warn("site presence refused", "org", ev.org, "site", ev.site, "error", err)
			return
		}
		b.m.ingested.WithLabelValues(protocol.KindPresence, "accepted").Inc()
		b.opts.Ingester.SitePresence(b.ctx, ev.org, ev.site, p)
	}
}

type metrics struct {
	publishes *prometheus.CounterVec
	ingested  *prometheus.CounterVec
	connected prometheus.Gauge
	connects  prometheus.Counter
	refused   *prometheus.CounterVec
	resyncs   prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_desired_publishes_total",
			Help: "Desired state documents published, by result: ok (acknowledged by the broker), error, invalid (refused before sending).",
		}, []string{"result"}),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_site_reports_total",
			Help: "Status and presence messages received from sites, by kind and result: accepted, malformed, mismatch (names another site than its topic), stale (a retained copy of a message superseded on this connection).",
		}, []string{"kind", "result"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_controlplane_mqtt_connected",
			Help: "1 while the control plane is connected to the MQTT broker.",
		}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_controlplane_mqtt_connects_total",
			Help: "Connections the control plane made to the MQTT broker, the first included.",
		}),
	}
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_controlplane_mqtt_refused_total",
		Help: "Subscriptions and resync requests the broker refused or that failed on a live connection, each retried with backoff, by operation: subscribe, resync.",
	}, []string{"op"})
	m.refused.WithLabelValues("subscribe")
	m.refused.WithLabelValues("resync")
	m.resyncs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rampart_controlplane_resync_requests_total",
		Help: "Resync requests published (one per connection), asking every agent to report its status again.",
	})
	for _, r := range []string{"ok", "error", "invalid"} {
		m.publishes.WithLabelValues(r)
	}
	for _, k := range []string{protocol.KindStatus, protocol.KindPresence} {
		for _, r := range []string{"accepted", "malformed", "stale"} {
			m.ingested.WithLabelValues(k, r)
		}
	}
	m.ingested.WithLabelValues(protocol.KindStatus, "mismatch")
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.publishes, m.ingested, m.connected, m.connects, m.refused, m.resyncs} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register mqtt metrics: %w", err)
		}
	}
	return nil
}
