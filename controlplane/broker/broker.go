// Package broker is the control plane's embedded MQTT broker (mochi-mqtt),
// with the authentication and ACL of DESIGN.md section 4, so one process is
// enough to run Rampart.
//
// # Who may connect
//
// A site connects with username "org/site" (protocol.SiteMQTTUser) and the
// password keys.Key.SiteSecret(org, site); the control plane connects as
// keys.ControlPlaneMQTTUser with keys.Key.ControlPlaneMQTTPassword. Nothing
// is stored per site: credentials are derived from the key, so enrolling a
// site writes nothing and rotating the key revokes everything. Anonymous
// clients and ids that are not topic-safe (protocol.ValidOrgID,
// protocol.ValidSiteID) are refused.
//
// # What each may do
//
// A site may subscribe to exactly <root>/org/site/desired and publish to
// exactly <root>/org/site/status and <root>/org/site/presence, its last will
// included. The control plane may subscribe to <root>/+/+/status and
// <root>/+/+/presence (or any one site's, optionally as a $share
// subscription) and publish any site's desired state. Everything else is
// denied.
//
// # mochi-mqtt pitfalls this package handles
//
//   - A subscription is checked against its filter string, wildcards and all;
//     a delivery (live or retained) is checked again against the concrete
//     topic. The ACL here accepts only exact filters for sites, and checks
//     delivered topics too, so a site subscribing to "#" or "<root>/+/+/desired"
//     is refused and could not receive another site's document even if a
//     filter slipped through.
//   - The last will is published without any ACL check, so its topic is
//     checked when the client connects.
//   - A client id is global: a client connecting with another client's id
//     takes over its session (and subscriptions). Client ids are therefore
//     prefixed with the authenticated username, so a site can only ever take
//     over its own sessions.
//   - mochi's TCP listener disconnects its clients before it closes its
//     socket, so a client reconnecting at once is accepted by a closing
//     broker and hangs; this package uses its own listener that closes the
//     socket first. That listener also closes connections itself, because
//     mochi's way (Clients.GetByListener) can deadlock against a client
//     disconnecting at the same moment.
//   - Retained messages go out after the SUBACK, so a message published
//     just after a subscription can arrive twice, the retained copy possibly
//     after newer live ones. Receivers must compare revisions.
//   - A QoS 1 publish that the ACL refuses disconnects an MQTT 3.1.1 client
//     (5.0 clients get a PUBACK with "not authorized").
package broker

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/protocol"
)

// DefaultListen is the address the broker listens on unless configured
// (DESIGN.md section 9, --mqtt-listen).
const DefaultListen = ":1883"

// DefaultMaxPendingWrites bounds the messages queued to one client. mochi
// allocates this queue up front for every connection (8 bytes a slot), so it
// is most of a connected site's memory; a site rarely has more than one or
// two documents in flight. The control plane's own connection receives every
// site's status, so a burst larger than this queue drops messages (counted in
// rampart_broker_messages_dropped_total); status is retained, so a dropped one
// can be re-read.
const DefaultMaxPendingWrites = 1024

// Options configures a Broker. The zero value of every field but Key is
// usable.
type Options struct {
	// Listen is the TCP address to listen on; DefaultListen if empty. Use
	// "127.0.0.1:0" in tests.
	Listen string
	// Key derives every site's password and the control plane's. Required.
	Key keys.Key
	// TopicRoot is protocol.DefaultTopicRoot if empty.
	TopicRoot string
	// Logger receives the broker's logs; slog.Default() if nil.
	Logger *slog.Logger
	// Registry gets the broker's metrics; none are registered if nil.
	Registry prometheus.Registerer
	// MaxPendingWrites is DefaultMaxPendingWrites if zero.
	MaxPendingWrites int
}

// Sentinel errors.
var (
	ErrNoKey    = errors.New("broker: Options.Key is required")
	ErrBadRoot  = errors.New("broker: topic root must be non-empty levels without wildcards, e.g. rampart/v1")
	errNotSite  = errors.New("not a site username")
	zeroKeyPass = (keys.Key{}).ControlPlaneMQTTPassword()
)

// Broker is a running embedded broker.
type Broker struct {
	srv      *mqtt.Server
	listener *tcpListener
	root     string
	log      *slog.Logger
	closed   atomic.Bool
	subID    atomic.Int32
}

// ValidTopicRoot reports whether root can prefix Rampart's topics: one or
// more non-empty levels, none of them a wildcard, not starting with $.
func ValidTopicRoot(root string) bool {
	if root == "" || strings.HasPrefix(root, "$") {
		return false
	}
	for _, level := range strings.Split(root, "/") {
		if level == "" || strings.ContainsAny(level, "+#\x00") {
			return false
		}
	}
	return true
}

// Start listens on opts.Listen and serves until Close.
func Start(opts Options) (*Broker, error) {
	if opts.Key.ControlPlaneMQTTPassword() == zeroKeyPass {
		return nil, ErrNoKey
	}
	if opts.TopicRoot == "" {
		opts.TopicRoot = protocol.DefaultTopicRoot
	}
	if !ValidTopicRoot(opts.TopicRoot) {
		return nil, fmt.Errorf("%w (got %q)", ErrBadRoot, opts.TopicRoot)
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxPendingWrites <= 0 {
		opts.MaxPendingWrites = DefaultMaxPendingWrites
	}
	log := opts.Logger.With("component", "broker")

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = int32(opts.MaxPendingWrites)
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 log,
		SysTopicResendInterval: 60,
	})
	m := newMetrics(srv)
	h := &aclHook{
		root:   opts.TopicRoot,
		key:    opts.Key,
		cpPass: []byte(opts.Key.ControlPlaneMQTTPassword()),
		log:    log,
		m:      m,
	}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("add broker hook: %w", err)
	}
	tcp := &tcpListener{id: "tcp", addr: opts.Listen}
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("listen for mqtt on %s: %w", opts.Listen, err)
	}
	if opts.Registry != nil {
		if err := m.register(opts.Registry); err != nil {
			_ = srv.Close()
			return nil, err
		}
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("start broker: %w", err)
	}
	return &Broker{srv: srv, listener: tcp, root: opts.TopicRoot, log: log}, nil
}

// Addr is the address the broker listens on, with the real port when
// Options.Listen asked for port 0.
func (b *Broker) Addr() string { return b.listener.Address() }

// URL is what a client on this machine dials: tcp://host:port, with a
// loopback host when the broker listens on every interface.
func (b *Broker) URL() string {
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil {
		return "tcp://" + b.Addr()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "tcp://" + net.JoinHostPort(host, port)
}

// SubscribeReports delivers, in process, every site's status and presence:
// first the retained ones (retained true), then each as it is published
// (retained false), until stop is called. fn runs on the publishing
// connection's goroutine, so one site's messages arrive in order; it may
// block briefly (that holds up only that site's connection).
//
// This is how the control plane ingests from its own broker. A network
// subscriber gets retained messages through its pending-write queue, and
// mochi drops what does not fit (MaxPendingWrites, and 8192 unacknowledged
// QoS 1 messages): a control plane reconnecting over TCP to a broker holding
// 10,000 retained statuses would receive only part of them.
func (b *Broker) SubscribeReports(fn func(topic string, payload []byte, retained bool)) (stop func()) {
	handler := func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload, false)
	}
	var subs []mqtt.InlineSubscription
	for _, kind := range []string{protocol.KindStatus, protocol.KindPresence} {
		sub := mqtt.InlineSubscription{
			Subscription: packets.Subscription{Filter: b.root + "/+/+/" + kind, Identifier: int(b.subID.Add(1))},
			Handler:      handler,
		}
		// Subscribe before replaying, so nothing published in between is
		// missed; a replayed copy may then follow a newer live message,
		// which the caller must tolerate (the retained flag tells them).
		b.srv.Topics.InlineSubscribe(sub)
		subs = append(subs, sub)
	}
	for _, sub := range subs {
		for _, pk := range b.srv.Topics.Messages(sub.Filter) {
			fn(pk.TopicName, pk.Payload, true)
		}
	}
	return func() {
		for _, sub := range subs {
			b.srv.Topics.InlineUnsubscribe(sub.Identifier, sub.Filter)
		}
	}
}

// Clients is the number of connected, authenticated clients.
func (b *Broker) Clients() int64 { return atomic.LoadInt64(&b.srv.Info.ClientsConnected) }

// Close disconnects every client, stops listening and waits for the
// connections' goroutines to end. Retained messages are lost: the control
// plane republishes every site's desired state when it connects.
func (b *Broker) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	return b.srv.Close()
}

type metrics struct {
	clients      prometheus.GaugeFunc
	authFailures prometheus.Counter
	aclDenied    *prometheus.CounterVec
	dropped      prometheus.Counter
}

func newMetrics(srv *mqtt.Server) *metrics {
	m := &metrics{
		clients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_broker_clients",
			Help: "MQTT clients connected to the embedded broker (sites and the control plane).",
		}, func() float64 { return float64(atomic.LoadInt64(&srv.Info.ClientsConnected)) }),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_broker_auth_failures_total",
			Help: "MQTT connections refused: unknown user, wrong password, or a last will on a topic the user may not publish.",
		}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_broker_acl_denied_total",
			Help: "Subscriptions (read) and publishes (write) the ACL refused.",
		}, []string{"access"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_broker_messages_dropped_total",
			Help: "Messages dropped because a client's pending-write queue was full.",
		}),
	}
	m.aclDenied.WithLabelValues("read")
	m.aclDenied.WithLabelValues("write")
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.clients, m.authFailures, m.aclDenied, m.dropped} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register broker metrics: %w", err)
		}
	}
	return nil
}

// identity is who an authenticated connection is.
type identity struct {
	controlPlane bool
	org, site    string
}

func parseUser(user string) (identity, error) {
	if user == keys.ControlPlaneMQTTUser {
		return identity{controlPlane: true}, nil
	}
	org, site, ok := protocol.ParseSiteMQTTUser(user)
	if !ok {
		return identity{}, errNotSite
	}
	return identity{org: org, site: site}, nil
}

// allowed is the whole ACL. For reads, topic may be a subscription filter or
// a concrete topic being delivered.
func allowed(root string, id identity, topic string, write bool) bool {
	if !id.controlPlane {
		if write {
			return topic == protocol.StatusTopic(root, id.org, id.site) ||
				topic == protocol.PresenceTopic(root, id.org, id.site)
		}
		return topic == protocol.DesiredTopic(root, id.org, id.site)
	}
	if write {
		_, _, kind, ok := protocol.ParseTopic(root, topic)
		return ok && kind == protocol.KindDesired
	}
	// A $share/<group>/ prefix lets several control plane replicas split
	// status ingestion (DESIGN.md section 11).
	if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
		_, filter, ok := strings.Cut(rest, "/")
		if !ok {
			return false
		}
		topic = filter
	}
	if topic == root+"/+/+/"+protocol.KindStatus || topic == root+"/+/+/"+protocol.KindPresence {
		return true
	}
	_, _, kind, ok := protocol.ParseTopic(root, topic)
	return ok && (kind == protocol.KindStatus || kind == protocol.KindPresence)
}

// aclHook authenticates connections and enforces the ACL.
type aclHook struct {
	mqtt.HookBase
	root   string
	key    keys.Key
	cpPass []byte
	log    *slog.Logger
	m      *metrics
}

func (h *aclHook) ID() string { return "rampart-acl" }

func (h *aclHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublishDropped
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	ok, reason := h.authenticate(user, pk)
	if !ok {
		h.m.authFailures.Inc()
		h.log.Warn("mqtt connection refused", "user", user, "remote", cl.Net.Remote, "reason", reason)
		return false
	}
	// Namespace the client id by user so that no client can take over
	// another user's session (mochi lets a new connection with an existing
	// id inherit that session's subscriptions and disconnects the old one).
	cl.ID = user + "|" + cl.ID
	return true
}

func (h *aclHook) authenticate(user string, pk packets.Packet) (bool, string) {
	if user == "" {
		return false, "anonymous connections are not allowed"
	}
	id, err := parseUser(user)
	if err != nil {
		return false, `username is neither the control plane's nor "org/site"`
	}
	want := h.cpPass
	if !id.controlPlane {
		want = []byte(h.key.SiteSecret(id.org, id.site))
	}
	if subtle.ConstantTimeCompare(pk.Connect.Password, want) != 1 {
		return false, "wrong password"
	}
	if pk.Connect.WillFlag && !allowed(h.root, id, pk.Connect.WillTopic, true) {
		return false, fmt.Sprintf("last will on %q, which this user may not publish", pk.Connect.WillTopic)
	}
	return true, ""
}

func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	id, err := parseUser(string(cl.Properties.Username))
	if err == nil && allowed(h.root, id, topic, write) {
		return true
	}
	access := "read"
	if write {
		access = "write"
	}
	h.m.aclDenied.WithLabelValues(access).Inc()
	h.log.Debug("mqtt access denied", "user", string(cl.Properties.Username), "topic", topic, "access", access)
	return false
}

func (h *aclHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.m.dropped.Inc()
	h.log.Warn("mqtt message dropped: client queue full", "client", cl.ID, "topic", pk.TopicName)
}
