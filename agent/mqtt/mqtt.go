// Package mqtt is the agent's adapter to its broker, built on
// github.com/eclipse/paho.mqtt.golang.
//
// The connection is kept up in the background: paho retries the first
// connect and reconnects with exponential backoff; every (re)connect
// subscribes to the site's desired topic again (QoS 1, so the retained
// document is delivered at once) and publishes presence online, retained.
// The last will publishes protocol.OfflinePayload, retained, so the control
// plane sees an agent that vanished as offline.
//
// The adapter also remembers the local address of its broker connection:
// the agent's own source address as the router's firewall sees it, which the
// lock-out guard in rampart-out accepts.
package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/rampart-fw/rampart/protocol"
)

// Options configure a Client.
type Options struct {
	URL                *url.URL
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
	// MaxReconnectInterval caps the reconnect backoff; zero means 30 s.
	MaxReconnectInterval time.Duration
	// ConnectTimeout bounds one connection attempt (TCP, TLS and CONNACK);
	// zero means 10 s.
	ConnectTimeout time.Duration
	// PresenceInterval is how often presence online is published again
	// while connected; zero means 60 s. The repeat is what corrects a stale
	// will: when a connection drops and the agent reconnects at once, the
	// broker may publish the old connection's will ("offline", retained)
	// after the new connection's "online", and without a repeat the site
	// would read offline until the next reconnect.
	PresenceInterval time.Duration
	Logger           *slog.Logger
}

// Client is a running broker connection.
type Client struct {
	opts Options
	c    paho.Client

	mu    sync.Mutex
	local netip.Addr

	stop chan struct{} // closed by Close; ends the presence heartbeat
	done chan struct{} // closed when the heartbeat has ended
}

// Start begins connecting in the background and returns at once; the broker
// may be unreachable for as long as it likes.
func Start(o Options) (*Client, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MaxReconnectInterval == 0 {
		o.MaxReconnectInterval = 30 * time.Second
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.PresenceInterval == 0 {
		o.PresenceInterval = 60 * time.Second
	}
	u := *o.URL
	if u.Port() == "" {
		port := "1883"
		if u.Scheme != "tcp" && u.Scheme != "mqtt" {
			port = "8883"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	cl := &Client{opts: o, stop: make(chan struct{}), done: make(chan struct{})}
	desired := protocol.DesiredTopic(o.TopicRoot, o.OrgID, o.SiteID)
	presence := protocol.PresenceTopic(o.TopicRoot, o.OrgID, o.SiteID)

	po := paho.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(o.ClientID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetKeepAlive(30*time.Second).
		SetConnectTimeout(o.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(o.MaxReconnectInterval).
		SetBinaryWill(presence, protocol.OfflinePayload, 1, true).
		SetCustomOpenConnectionFn(cl.dial).
		SetStore(noResendStore{paho.NewMemoryStore()})
	if o.TLSConfig != nil {
		po.SetTLSConfig(o.TLSConfig)
	}
	po.SetOnConnectHandler(func(c paho.Client) {
		o.Logger.Info("mqtt connected", "broker", u.Redacted())
		// Subscribing on every connect is the resubscribe: the session is
		// clean, so the broker forgot the old subscription.
		tok := c.Subscribe(desired, 1, func(_ paho.Client, m paho.Message) {
			if o.OnDesired != nil {
				o.OnDesired(m.Payload())
			}
		})
		go func() {
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				o.Logger.Error("subscribe to desired state", "topic", desired, "err", tok.Error())
				// A connection that cannot subscribe is useless: drop it so
				// paho reconnects and tries again.
				return
			}
			cl.publishOnline(c)
		}()
		if o.OnConnection != nil {
			o.OnConnection(true)
		}
	})
	po.SetConnectionLostHandler(func(_ paho.Client, err error) {
		o.Logger.Warn("mqtt connection lost", "err", err)
		if o.OnConnection != nil {
			o.OnConnection(false)
		}
	})
	cl.c = paho.NewClient(po)
	// With ConnectRetry the token completes only once connected (or the
	// client is disconnected); nobody waits for it.
	cl.c.Connect()
	go cl.heartbeat()
	return cl, nil
}

// publishOnline publishes presence online, retained, and waits for the
// broker's acknowledgement.
func (cl *Client) publishOnline(c paho.Client) {
	b, _ := json.Marshal(protocol.Presence{State: protocol.PresenceOnline, At: time.Now().UTC()})
	p := c.Publish(protocol.PresenceTopic(cl.opts.TopicRoot, cl.opts.OrgID, cl.opts.SiteID), 1, true, b)
	if !p.WaitTimeout(30*time.Second) || p.Error() != nil {
		cl.opts.Logger.Warn("publish presence", "err", p.Error())
	}
}

// heartbeat republishes presence online every PresenceInterval while
// connected (see Options.PresenceInterval), until Close.
func (cl *Client) heartbeat() {
	defer close(cl.done)
	t := time.NewTicker(cl.opts.PresenceInterval)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
			if cl.c.IsConnectionOpen() {
				cl.publishOnline(cl.c)
			}
		}
	}
}

// noResendStore keeps no outbound PUBLISH packets, so paho never resends
// one after a reconnect. paho v1.5.1's resume sets the DUP flag on stored
// packets while the new connection's writer may be writing the same packet
// (a publish made from the connect handler), a data race the race detector
// reports. The agent does not need the resend: on every connect it publishes
// presence again, and its loop republishes its current status (a resent old
// status could even arrive after a newer one).
type noResendStore struct{ paho.Store }

func (s noResendStore) Put(key string, p packets.ControlPacket) {
	if _, ok := p.(*packets.PublishPacket); ok && strings.HasPrefix(key, "o.") {
		return
	}
	s.Store.Put(key, p)
}

// dial opens the broker connection like paho would for tcp and tls URLs, and
// records its local address.
func (cl *Client) dial(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: cl.opts.ConnectTimeout}
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		conn, err = d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts":
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{}
		}
		conn, err = tls.DialWithDialer(d, "tcp", uri.Host, cfg)
	default:
		return nil, fmt.Errorf("unsupported broker scheme %q", uri.Scheme)
	}
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

// ErrNotConnected is returned by Publish while the broker is unreachable.
var ErrNotConnected = errors.New("not connected to the broker")

// PublishStatus publishes st on the site's status topic, retained, QoS 1.
func (cl *Client) PublishStatus(ctx context.Context, st protocol.SiteStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	return cl.publish(ctx, protocol.StatusTopic(cl.opts.TopicRoot, cl.opts.OrgID, cl.opts.SiteID), b)
}

func (cl *Client) publish(ctx context.Context, topic string, b []byte) error {
	if !cl.c.IsConnectionOpen() {
		return ErrNotConnected
	}
	tok := cl.c.Publish(topic, 1, true, b)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	}
}

// Close publishes presence offline (a clean stop sends no will) and
// disconnects.
func (cl *Client) Close() {
	close(cl.stop)
	<-cl.done
	if cl.c.IsConnectionOpen() {
		tok := cl.c.Publish(protocol.PresenceTopic(cl.opts.TopicRoot, cl.opts.OrgID, cl.opts.SiteID), 1, true, protocol.OfflinePayload)
		tok.WaitTimeout(2 * time.Second)
	}
	cl.c.Disconnect(250)
}
