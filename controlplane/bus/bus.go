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
// The bus reconnects with backoff after a lost connection and, after every
// connection (the first included), subscribes again and calls
// Options.OnConnect. The control plane republishes every site's document
// there: republishing is harmless (agents ignore a revision they have) and it
// restores retained state on a broker that restarted without persistence.
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
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
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

// Options configures a Bus. URL is required; every other zero value is
// usable.
type Options struct {
	// URL of the broker: tcp://host:port (also mqtt://, ssl://, tls://,
	// ws:// and wss://, as paho accepts them).
	URL string
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
	// OnConnect runs in its own goroutine after every connection, once the
	// subscriptions are in place; its context ends when the connection is
	// lost or the bus closes. Republish every site's document here.
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
	ErrNoURL   = errors.New("bus: Options.URL is required")
	ErrInvalid = errors.New("bus: invalid desired state")
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

	liveMu sync.Mutex
	live   map[liveKey]struct{} // (site, kind) seen live on this connection

	stopReports func()
}

type liveKey struct{ org, site, kind string }

type event struct {
	org, site, kind string
	payload         []byte
}

// Connect dials the broker and returns once the first connection is up and
// subscribed, or ctx ends. After that the bus reconnects on its own until
// Close.
func Connect(ctx context.Context, opts Options) (*Bus, error) {
	if opts.URL == "" {
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
		opts:   opts,
		log:    opts.Logger.With("component", "mqtt"),
		m:      newMetrics(),
		window: make(chan struct{}, opts.MaxInFlight),
		done:   make(chan struct{}),
		live:   make(map[liveKey]struct{}),
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

	connected := make(chan struct{}, 1)
	po := paho.NewClientOptions().
		AddBroker(opts.URL).
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
		SetAutoReconnect(true).
		SetMaxReconnectInterval(opts.MaxReconnectInterval).
		SetOrderMatters(true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.m.connected.Set(0)
			b.endConnection()
			b.log.Warn("mqtt connection lost; reconnecting", "url", opts.URL, "error", err)
		}).
		SetOnConnectHandler(func(c paho.Client) {
			b.m.connected.Set(1)
			b.m.connects.Inc()
			cctx := b.beginConnection()
			if opts.Reports == nil {
				// A new subscription replays retained messages; they are
				// news again.
				b.liveMu.Lock()
				clear(b.live)
				b.liveMu.Unlock()
			}
			go func() {
				if err := b.subscribe(cctx); err != nil {
					b.log.Error("mqtt subscribe failed; status and presence are not ingested until the next connection", "error", err)
				}
				select {
				case connected <- struct{}{}:
				default:
				}
				if opts.OnConnect != nil && cctx.Err() == nil {
					opts.OnConnect(cctx)
				}
			}()
		})
	b.client = paho.NewClient(po)
	if opts.Reports != nil && opts.Ingester != nil {
		b.stopReports = opts.Reports.SubscribeReports(b.deliver)
	}
	if err := b.firstConnect(ctx, connected); err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to mqtt broker %s: %w", opts.URL, err)
	}
	return b, nil
}

// firstConnect retries until the broker accepts the connection, ctx ends, or
// the broker refuses the credentials (retrying cannot fix those). Later
// connections are paho's automatic reconnects.
func (b *Bus) firstConnect(ctx context.Context, connected <-chan struct{}) error {
	backoff := 100 * time.Millisecond
	for {
		tok := b.client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		err := tok.Error()
		if err == nil {
			select {
			case <-connected:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if rc := tok.(*paho.ConnectToken).ReturnCode(); rc == packets.ErrRefusedBadUsernameOrPassword || rc == packets.ErrRefusedNotAuthorised {
			return fmt.Errorf("the broker refused the credentials of user %q: %w", b.opts.Username, err)
		}
		b.log.Warn("mqtt connect failed; retrying", "url", b.opts.URL, "error", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		backoff = min(2*backoff, b.opts.MaxReconnectInterval)
	}
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
			return fmt.Errorf("subscribe to %s: the broker refused (code %#x); check the control plane's broker credentials and ACL", f, code)
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
	for _, c := range []prometheus.Collector{m.publishes, m.ingested, m.connected, m.connects} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register mqtt metrics: %w", err)
		}
	}
	return nil
}
