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
// subscription) and publish any site's desired state, and on any site's
// status and presence (the empty retained messages that clear a
// decommissioned site's). Everything else is denied.
//
// The control plane also publishes the resync request
// (protocol.ResyncTopic), which every site may read.
//
// # Limits
//
// Everything a connection sends is bounded before mochi reads it:
//
//   - Time: a connection must complete its TLS handshake (on the ssl://
//     listener) and send its CONNECT within Options.ConnectTimeout
//     (DefaultConnectTimeout, 5 s); mochi sets no deadline until it has read
//     a CONNECT. The listener sets one on the socket; mochi replaces it
//     with the keepalive's once it has the CONNECT.
//   - Size: mochi reads a packet's stated length and allocates it whole
//     before decoding it, login or not, and its one bound
//     (Capabilities.MaximumPacketSize, set here to
//     MaxControlPlanePacketBytes) is the same for every client and every
//     stage. The listener therefore wraps each connection in a reader that
//     follows the MQTT framing and fails the read at the header of a packet
//     above the connection's limit, before mochi sees its length:
//     MaxConnectBytes before login, MaxSitePacketBytes for a site,
//     MaxControlPlanePacketBytes for the control plane (the largest desired
//     state document, protocol.MaxDesiredStateBytes, plus its topic).
//   - Retained status: a site's status or presence payload above
//     protocol.MaxStatusBytes is refused in an OnPublish hook, before it is
//     retained, and the connection closed.
//
// Each refusal closes the connection and is counted in
// rampart_broker_refused_total by reason.
//
// # Decommissioned sites
//
// A site's secret is derived from the key, so it cannot be revoked alone:
// Options.Decommissioned names the sites whose credentials are refused
// (the store's list of decommissioned sites). Their connections are
// refused after the password check (reason "decommissioned"), and
// Disconnect closes those still open, last will suppressed.
//
// # TLS
//
// With Options.TLS, a second listener serves ssl:// (MQTT over TLS) on
// Options.TLSListen (DefaultTLSListen, :8883), with the same
// authentication, ACL and limits. The plain listener stays for the control
// plane's own connection; bind it to loopback when TLS is on.
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
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/protocol"
)

// DefaultListen is the address the broker listens on unless configured
// (DESIGN.md section 9, --mqtt-listen).
const DefaultListen = ":1883"

// DefaultTLSListen is the address of the TLS (ssl://) listener when
// Options.TLS is set and Options.TLSListen is not (--mqtts-listen).
const DefaultTLSListen = ":8883"

// DefaultConnectTimeout bounds the time from accepting a connection to
// having read its CONNECT packet (the TLS handshake included). A router on
// a slow link connects in well under a second; a connection that says
// nothing is closed.
const DefaultConnectTimeout = 5 * time.Second

// Packet size limits, fixed header included (DESIGN.md section 4).
const (
	// MaxConnectBytes bounds every packet before login. A CONNECT holds a
	// client id, a username (an organisation and a site id, at most 198
	// bytes), a password and a last will of a presence topic and payload:
	// under 1 KiB for every Rampart client.
	MaxConnectBytes = 8 << 10
	// MaxSitePacketBytes bounds a site's packets after login: its largest
	// is a status publish (protocol.MaxStatusBytes of payload and a topic).
	MaxSitePacketBytes = protocol.MaxStatusBytes + protocol.MaxTopicBytes + packetOverhead
	// MaxControlPlanePacketBytes bounds the control plane's packets: its
	// largest is a desired state publish (protocol.MaxDesiredStateBytes).
	// It is also mochi's Capabilities.MaximumPacketSize.
	MaxControlPlanePacketBytes = protocol.MaxDesiredStateBytes + protocol.MaxTopicBytes + packetOverhead
	// packetOverhead: fixed header (5), topic length (2), packet id (2).
	packetOverhead = 16
)

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
	// TLS, if set, adds an ssl:// listener on TLSListen with this
	// configuration (its Certificates). The plain listener stays.
	TLS *tls.Config
	// TLSListen is DefaultTLSListen if empty.
	TLSListen string
	// ConnectTimeout is DefaultConnectTimeout if zero.
	ConnectTimeout time.Duration
	// Decommissioned reports whether a site was decommissioned (the
	// store's Decommissioned): its credentials, derived from the key like
	// every site's, are refused. Nil refuses none. It is asked on every
	// site's connection, so it must be quick and must not block.
	Decommissioned func(org, site string) bool
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
	tls      *tcpListener // nil without Options.TLS
	root     string
	log      *slog.Logger
	m        *metrics
	closed   atomic.Bool
	subID    atomic.Int32
}

func (b *Broker) metrics() *metrics { return b.m }

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
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.TLSListen == "" {
		opts.TLSListen = DefaultTLSListen
	}
	log := opts.Logger.With("component", "broker")

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = int32(opts.MaxPendingWrites)
	caps.MaximumPacketSize = MaxControlPlanePacketBytes
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 log,
		SysTopicResendInterval: 60,
	})
	m := newMetrics(srv)
	h := &aclHook{
		root:           opts.TopicRoot,
		key:            opts.Key,
		cpPass:         []byte(opts.Key.ControlPlaneMQTTPassword()),
		log:            log,
		m:              m,
		decommissioned: opts.Decommissioned,
	}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("add broker hook: %w", err)
	}
	refused := func(reason string) { m.refused.WithLabelValues(reason).Inc() }
	tcp := &tcpListener{id: "tcp", addr: opts.Listen, connectTimeout: opts.ConnectTimeout, maxConnect: MaxConnectBytes, refused: refused}
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("listen for mqtt on %s: %w", opts.Listen, err)
	}
	var ssl *tcpListener
	if opts.TLS != nil {
		ssl = &tcpListener{id: "ssl", addr: opts.TLSListen, tls: opts.TLS, connectTimeout: opts.ConnectTimeout, maxConnect: MaxConnectBytes, refused: refused}
		if err := srv.AddListener(ssl); err != nil {
			_ = srv.Close()
			return nil, fmt.Errorf("listen for mqtt over tls on %s: %w", opts.TLSListen, err)
		}
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
	return &Broker{srv: srv, listener: tcp, tls: ssl, root: opts.TopicRoot, log: log, m: m}, nil
}

// Addr is the address the broker listens on, with the real port when
// Options.Listen asked for port 0.
func (b *Broker) Addr() string { return b.listener.Address() }

// TLSAddr is the address of the ssl:// listener; "" without Options.TLS.
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// URL is what a client on this machine dials: tcp://host:port, with a
// loopback host when the broker listens on every interface.
func (b *Broker) URL() string { return localURL("tcp", b.Addr()) }

// TLSURL is URL for the ssl:// listener; "" without Options.TLS.
func (b *Broker) TLSURL() string {
	if b.tls == nil {
		return ""
	}
	return localURL("ssl", b.TLSAddr())
}

func localURL(scheme, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return scheme + "://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
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

// Disconnect closes every connection of a site, without its last will
// (a decommissioned site's presence would otherwise be retained again
// after its topics were cleared), and reports how many it closed. With
// Options.Decommissioned saying so, the site cannot come back.
func (b *Broker) Disconnect(org, site string) int {
	user := protocol.SiteMQTTUser(org, site)
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline || string(cl.Properties.Username) != user {
			continue
		}
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
		_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
		n++
	}
	if n > 0 {
		b.log.Info("mqtt connections of a decommissioned site closed", "user", user, "connections", n)
	}
	return n
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
	refused      *prometheus.CounterVec
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
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_broker_refused_total",
		Help: "MQTT connections the embedded broker closed before reading a packet it would not take, by reason: connect_timeout (no CONNECT in time), too_large_login (a packet before login above the login limit), too_large (a packet above the user's limit), malformed_length, status_too_large (a status or presence payload above its bound), decommissioned (a decommissioned site's credentials, refused at login).",
	}, []string{"reason"})
	for _, r := range []string{refusedConnectTimeout, refusedTooLargeLogin, refusedTooLarge, refusedMalformed, refusedStatusTooLarge, refusedDecommissioned} {
		m.refused.WithLabelValues(r)
	}
	m.aclDenied.WithLabelValues("read")
	m.aclDenied.WithLabelValues("write")
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.clients, m.authFailures, m.aclDenied, m.dropped, m.refused} {
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
		return topic == protocol.DesiredTopic(root, id.org, id.site) || topic == protocol.ResyncTopic(root)
	}
	if write {
		if topic == protocol.ResyncTopic(root) {
			return true
		}
		// Any site's topics: desired state, and an empty retained status
		// and presence that clear a decommissioned site's (it holds the
		// key every site's secret comes from, so this gives it nothing).
		_, _, _, ok := protocol.ParseTopic(root, topic)
		return ok
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
	root           string
	key            keys.Key
	cpPass         []byte
	log            *slog.Logger
	m              *metrics
	decommissioned func(org, site string) bool // nil: none
}

func (h *aclHook) ID() string { return "rampart-acl" }

func (h *aclHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublishDropped || b == mqtt.OnPublish
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	ok, reason := h.authenticate(user, pk)
	if !ok {
		h.m.authFailures.Inc()
		h.log.Warn("mqtt connection refused", "user", user, "remote", cl.Net.Remote, "reason", reason)
		return false
	}
	// After the password: only the holder of the site's real secret is
	// counted as a decommissioned site coming back.
	if id, _ := parseUser(user); !id.controlPlane && h.denied(id) {
		h.m.refused.WithLabelValues(refusedDecommissioned).Inc()
		h.log.Warn("mqtt connection refused: the site was decommissioned; enroll it again to let it in", "user", user, "remote", cl.Net.Remote)
		return false
	}
	// Namespace the client id by user so that no client can take over
	// another user's session (mochi lets a new connection with an existing
	// id inherit that session's subscriptions and disconnects the old one).
	cl.ID = user + "|" + cl.ID
	if lc, ok := cl.Net.Conn.(interface{ login(limit int64) }); ok { // a *limitConn
		limit := int64(MaxSitePacketBytes)
		if user == keys.ControlPlaneMQTTUser {
			limit = MaxControlPlanePacketBytes
		}
		lc.login(limit)
	}
	return true
}

// OnPublish closes the connection of a site whose status or presence is
// larger than protocol.MaxStatusBytes: it would be retained, and the packet
// limit leaves room for a topic on top of the payload.
func (h *aclHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || len(pk.Payload) <= protocol.MaxStatusBytes || string(cl.Properties.Username) == keys.ControlPlaneMQTTUser {
		return pk, nil
	}
	h.m.refused.WithLabelValues(refusedStatusTooLarge).Inc()
	h.log.Warn("mqtt publish refused: payload too large; closing the connection", "user", string(cl.Properties.Username),
		"topic", pk.TopicName, "bytes", len(pk.Payload), "max", protocol.MaxStatusBytes)
	cl.Stop(fmt.Errorf("%w: %d bytes on %s, at most %d", ErrPacketTooLarge, len(pk.Payload), pk.TopicName, protocol.MaxStatusBytes))
	return pk, packets.ErrRejectPacket
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

func (h *aclHook) denied(id identity) bool {
	return h.decommissioned != nil && !id.controlPlane && h.decommissioned(id.org, id.site)
}

func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	id, err := parseUser(string(cl.Properties.Username))
	// A site decommissioned while connected is refused everything until
	// Disconnect closes it.
	if err == nil && allowed(h.root, id, topic, write) && !h.denied(id) {
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
