package main

// The MQTT side of the serve path: the embedded broker or an external one,
// the bus, and the syncer that publishes desired state and ingests status
// (DESIGN.md sections 4 to 6).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/controlplane/bus"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/syncer"
)

// MQTT is the MQTT side once started.
type MQTT struct {
	// AgentURL is the broker URL an agent on this machine dials: the
	// embedded broker's real plain address (with the port chosen for
	// --mqtt-listen :0), or the first --mqtt-url without its credentials.
	AgentURL string
	// EnrollURL is the broker URL enrollment hands to routers:
	// --agent-mqtt-url, else DefaultAgentMQTTURL.
	EnrollURL string
	// Listen and TLSListen are the embedded broker's listening addresses
	// ("" for an external broker, and TLSListen without TLS).
	Listen, TLSListen string
	// Broker is the embedded broker; nil with --mqtt-url.
	Broker *broker.Broker
	Bus    *bus.Bus
	Syncer *syncer.Syncer
}

// embeddedConnectTimeout bounds the wait for the bus's first connection to
// the embedded broker, which listens in this process.
const embeddedConnectTimeout = 30 * time.Second

// ingestWorkers is the bus's number of status ingestion workers.
const ingestWorkers = 32

// brokerURLs splits --mqtt-url, one URL or several comma-separated (the
// nodes of a clustered broker), and takes the credentials out of them
// (tcp://user:password@host:1883), which paho wants separately. Every URL
// that carries credentials must carry the same.
func brokerURLs(raw string) (urls []string, user, password string, err error) {
	credentialed := ""
	for _, one := range strings.Split(raw, ",") {
		one = strings.TrimSpace(one)
		p, err := url.Parse(one)
		if err != nil || p.Host == "" {
			return nil, "", "", fmt.Errorf("--mqtt-url %q: want a broker URL such as tcp://mosquitto.example.net:1883, or several separated by commas", one)
		}
		switch p.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			return nil, "", "", fmt.Errorf("--mqtt-url %q: scheme %q is not one of tcp, mqtt, ssl, tls, mqtts, ws, wss; want e.g. tcp://mosquitto.example.net:1883", one, p.Scheme)
		}
		if p.User != nil {
			u := p.User.Username()
			pw, _ := p.User.Password()
			if credentialed != "" && (u != user || pw != password) {
				return nil, "", "", fmt.Errorf("--mqtt-url: %s and %s carry different credentials; give the same user and password in each, or in one", credentialed, p.Redacted())
			}
			user, password, credentialed = u, pw, p.Redacted()
			p.User = nil
		}
		urls = append(urls, p.String())
	}
	return urls, user, password, nil
}

// redactURLs is --mqtt-url without passwords, for the log.
func redactURLs(raw string) string {
	parts := strings.Split(raw, ",")
	for i, one := range parts {
		parts[i] = redactURL(strings.TrimSpace(one))
	}
	return strings.Join(parts, ",")
}

// checkMQTTConfig refuses a --mqtt-url that is no broker URL, and an
// --mqtt-ca without one, before anything starts.
func checkMQTTConfig(c Config) error {
	if c.MQTTURL == "" {
		if c.MQTTCA != "" {
			return errors.New("--mqtt-ca is for an external ssl:// broker (--mqtt-url); the embedded broker needs none")
		}
		return nil
	}
	_, _, _, err := brokerURLs(c.MQTTURL)
	return err
}

// clientTLS is the TLS configuration for an external broker: the system's
// CAs, plus those of --mqtt-ca.
func clientTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read --mqtt-ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--mqtt-ca %s: no PEM certificate in it; want a file of \"-----BEGIN CERTIFICATE-----\" blocks", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// warnCleartextURLs warns about every --mqtt-url the control plane reaches
// without TLS beyond this machine.
func warnCleartextURLs(log *slog.Logger, urls []string) {
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		switch u.Scheme {
		case "tcp", "mqtt", "ws":
			port := u.Port()
			if port == "" {
				port = "1883"
			}
			warnCleartext(log, "the control plane's broker "+raw, net.JoinHostPort(u.Hostname(), port))
		}
	}
}

// embeddedListen is the embedded broker's plain listener: --mqtt-listen,
// else broker.DefaultListen, or loopback only when TLS is on (the control
// plane's own connection and the demo's agents use it; routers use ssl://).
func embeddedListen(c Config, tlsOn bool) string {
	switch {
	case c.MQTTListen != "":
		return c.MQTTListen
	case tlsOn:
		return "127.0.0.1" + broker.DefaultListen
	default:
		return broker.DefaultListen
	}
}

// DefaultAgentMQTTURL is the broker URL handed to routers when
// --agent-mqtt-url is not set: every --mqtt-url (without credentials), or
// this host's name with the embedded broker's port: the ssl:// listener's
// (tlsListen) when TLS is on, else the plain one's (mqttListen). It is a
// guess that suits a lab; behind NAT set --agent-mqtt-url.
func DefaultAgentMQTTURL(mqttURL, mqttListen, tlsListen string) string {
	if mqttURL != "" {
		if urls, _, _, err := brokerURLs(mqttURL); err == nil {
			return strings.Join(urls, ",")
		}
		return mqttURL
	}
	scheme, listen := "tcp", mqttListen
	if tlsListen != "" {
		scheme, listen = "ssl", tlsListen
	}
	if listen == "" {
		listen = broker.DefaultListen
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if anyHost(host) {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		} else {
			host = "127.0.0.1"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// warnCleartext warns when a listener of what without TLS is reachable
// beyond this machine: site secrets, tokens and policies would cross the
// network in clear.
func warnCleartext(log *slog.Logger, what, addr string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return
	}
	log.Warn(what+" is beyond loopback without TLS: site secrets and policies cross the network in clear; use TLS (--tls-cert and --tls-key, ssl://), or loopback",
		"addr", addr)
}

// startMQTT starts the MQTT side: the embedded broker (unless --mqtt-url),
// the bus and the syncer, and enables enrollment. It does not wait for an
// external broker; the bus keeps dialling it and the syncer publishes once
// it is connected.
func (m *Main) startMQTT(ctx context.Context) (stop func(), err error) {
	c := m.Config
	log := m.Logger.With("part", "mqtt")
	so := syncer.Options{Store: m.Store, Logger: log, Registry: m.Registry, BehindInterval: m.BehindInterval}

	// The syncer is made once the broker is: it closes a decommissioned
	// site's connections through the embedded broker.
	var sy *syncer.Syncer
	opts := bus.Options{
		OnConnect: func(context.Context) { sy.RepublishAll() },
		Logger:    log,
		Registry:  m.Registry,
		// Each report is one store write; bbolt batches concurrent writes
		// into one fsync, so more workers mean fewer fsyncs when many
		// sites report at once.
		Workers: ingestWorkers,
	}
	var brk *broker.Broker
	if c.MQTTURL == "" {
		// Reports reach the control plane in process (below), so no
		// connection needs a deep queue: a site has one or two documents
		// in flight, and 64 slots instead of 1,024 save about 10 KB per
		// connected site (BENCHMARKS.md, "End to end").
		brk, err = broker.Start(broker.Options{Listen: embeddedListen(c, m.TLS != nil), TLS: m.TLS, TLSListen: c.MQTTSListen,
			Key: m.Key, Logger: log, Registry: m.Registry, MaxPendingWrites: 64, Decommissioned: m.Store.Decommissioned})
		if err != nil {
			return nil, fmt.Errorf("start embedded MQTT broker: %w", err)
		}
		warnCleartext(log, "the embedded MQTT broker's plain listener", brk.Addr())
		opts.URLs = []string{brk.URL()}
		opts.Username, opts.Password = keys.ControlPlaneMQTTUser, m.Key.ControlPlaneMQTTPassword()
		// In process: nothing is dropped however many sites report.
		opts.Reports = brk
	} else {
		if opts.URLs, opts.Username, opts.Password, err = brokerURLs(c.MQTTURL); err != nil {
			return nil, err
		}
		if opts.TLS, err = clientTLS(c.MQTTCA); err != nil {
			return nil, err
		}
		warnCleartextURLs(log, opts.URLs)
	}
	if m.TLS == nil {
		warnCleartext(log, "the API", m.Addr.String())
	}
	if brk != nil {
		so.Disconnect = brk.Disconnect
	}
	sy = syncer.New(so)
	m.Store.OnChange(sy.Changed)
	m.runReplicaDuties(ctx, sy.Changed)
	opts.Ingester = sy
	b, err := bus.New(opts)
	if err != nil {
		if brk != nil {
			brk.Close()
		}
		return nil, fmt.Errorf("start mqtt: %w", err)
	}
	if brk != nil {
		// In this process: it answers at once, and the demo's agents and
		// tests may count on a connected control plane.
		wctx, cancel := context.WithTimeout(ctx, embeddedConnectTimeout)
		err := b.WaitConnected(wctx)
		cancel()
		if err != nil {
			b.Close()
			brk.Close()
			return nil, err
		}
	}
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sy.Run(runCtx, b)
	}()

	m.MQTT = MQTT{AgentURL: opts.URLs[0], Broker: brk, Bus: b, Syncer: sy}
	enroll := c.AgentMQTTURL
	if brk != nil {
		m.MQTT.Listen, m.MQTT.TLSListen = brk.Addr(), brk.TLSAddr()
		if enroll == "" {
			enroll = DefaultAgentMQTTURL("", brk.Addr(), brk.TLSAddr()) // the real ports, also with :0
		}
	} else if enroll == "" {
		enroll = DefaultAgentMQTTURL(c.MQTTURL, "", "")
	}
	m.MQTT.EnrollURL = enroll
	key := m.Key
	m.API.EnableEnrollment(api.EnrollerFunc(func(org, site string) container.Site {
		return container.ForSite(key, org, site, enroll)
	}))
	log.Info("mqtt started", "broker", strings.Join(opts.URLs, ","), "embedded", brk != nil, "mqtts", m.MQTT.TLSListen, "agent_mqtt_url", enroll)

	return func() {
		// Reverse order of start: stop publishing, leave the broker, stop it.
		stopRun()
		<-done
		b.Close()
		if brk != nil {
			if err := brk.Close(); err != nil {
				log.Warn("close embedded broker", "error", err)
			}
		}
	}, nil
}
