package main

// The MQTT side of the serve path: the embedded broker or an
// external one, the bus, and the syncer that publishes desired state and
// ingests status (DESIGN.md sections 4 to 6).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/controlplane/bus"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/syncer"
)

// The MQTT extension goes first, whatever the order of files: every other
// extension (the demo's agents) needs the broker listening and the
// control plane publishing.
func init() { extensions = append([]Extension{&mqttExtension{}}, extensions...) }

// MQTT is what the MQTT extension sets on Main once started.
type MQTT struct {
	// AgentURL is the broker URL an agent on this machine dials: the
	// embedded broker's real address (with the port chosen for
	// --mqtt-listen :0), or --mqtt-url without its credentials.
	AgentURL string
	// EnrollURL is the broker URL enrollment hands to routers:
	// --agent-mqtt-url, else DefaultAgentMQTTURL.
	EnrollURL string
	// Broker is the embedded broker; nil with --mqtt-url.
	Broker *broker.Broker
	Bus    *bus.Bus
	Syncer *syncer.Syncer
}

// mqttConnectTimeout bounds the first connection to the broker at start.
const mqttConnectTimeout = 30 * time.Second

// ingestWorkers is the bus's number of status ingestion workers.
const ingestWorkers = 32

type mqttExtension struct {
	agentURL string
}

// AgentMQTTURL is the URL agents on this machine dial (the demo asks).
func (e *mqttExtension) AgentMQTTURL() string { return e.agentURL }

// Configure installs the compiler's Revisioner and gives this Main its own
// extension value (the registered one is shared by every Main of a test).
func (e *mqttExtension) Configure(m *Main) error {
	if m.Revisioner == nil {
		m.Revisioner = compile.Revisioner{}
	}
	if m.Config.MQTTURL != "" {
		if _, _, _, err := brokerURL(m.Config.MQTTURL); err != nil {
			return err
		}
	}
	exts := make([]Extension, len(m.Extensions))
	for i, x := range m.Extensions {
		if x == Extension(e) {
			x = &mqttExtension{}
		}
		exts[i] = x
	}
	m.Extensions = exts
	return nil
}

// brokerURL splits credentials out of an external broker's URL
// (tcp://user:password@host:1883), which paho wants separately.
func brokerURL(raw string) (u, user, password string, err error) {
	p, err := url.Parse(raw)
	if err != nil || p.Host == "" {
		return "", "", "", fmt.Errorf("--mqtt-url %q: want a broker URL such as tcp://mosquitto.example.net:1883", raw)
	}
	switch p.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return "", "", "", fmt.Errorf("--mqtt-url %q: scheme %q is not one of tcp, mqtt, ssl, tls, mqtts, ws, wss; want e.g. tcp://mosquitto.example.net:1883", raw, p.Scheme)
	}
	if p.User != nil {
		user = p.User.Username()
		password, _ = p.User.Password()
		p.User = nil
	}
	return p.String(), user, password, nil
}

// DefaultAgentMQTTURL is the broker URL handed to routers when
// --agent-mqtt-url is not set: the external broker's URL (without
// credentials), or this host's name with the embedded broker's port. It is
// a guess that suits a lab; behind NAT or TLS set --agent-mqtt-url.
func DefaultAgentMQTTURL(mqttURL, mqttListen string) string {
	if mqttURL != "" {
		if u, _, _, err := brokerURL(mqttURL); err == nil {
			return u
		}
		return mqttURL
	}
	if mqttListen == "" {
		mqttListen = broker.DefaultListen
	}
	host, port, err := net.SplitHostPort(mqttListen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		} else {
			host = "127.0.0.1"
		}
	}
	return "tcp://" + net.JoinHostPort(host, port)
}

func (e *mqttExtension) Start(ctx context.Context, m *Main) (func(), error) {
	c := m.Config
	log := m.Logger.With("part", "mqtt")
	sy := syncer.New(syncer.Options{Store: m.Store, Logger: log, Registry: m.Registry})
	m.Store.OnChange(sy.Changed)

	opts := bus.Options{
		Ingester:  sy,
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
		var err error
		// Reports reach the control plane in process (below), so no connection
		// needs a deep queue: a site has one or two documents in flight, and
		// 64 slots instead of 1,024 save about 10 KB per connected site
		// (BENCHMARKS.md, "End to end").
		brk, err = broker.Start(broker.Options{Listen: c.MQTTListen, Key: m.Key, Logger: log, Registry: m.Registry, MaxPendingWrites: 64})
		if err != nil {
			return nil, fmt.Errorf("start embedded MQTT broker: %w", err)
		}
		opts.URL = brk.URL()
		opts.Username, opts.Password = keys.ControlPlaneMQTTUser, m.Key.ControlPlaneMQTTPassword()
		// In process: nothing is dropped however many sites report.
		opts.Reports = brk
	} else {
		var err error
		if opts.URL, opts.Username, opts.Password, err = brokerURL(c.MQTTURL); err != nil {
			return nil, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, mqttConnectTimeout)
	b, err := bus.Connect(cctx, opts)
	cancel()
	if err != nil {
		if brk != nil {
			brk.Close()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("connect to MQTT broker %s: no connection within %s", opts.URL, mqttConnectTimeout)
		}
		return nil, fmt.Errorf("connect to MQTT broker %s: %w", opts.URL, err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sy.Run(runCtx, b)
	}()

	e.agentURL = opts.URL // credentials of an external URL stay out: agents use their own
	enroll := c.AgentMQTTURL
	if enroll == "" && brk != nil {
		enroll = DefaultAgentMQTTURL("", brk.Addr()) // the real port, also with --mqtt-listen :0
	} else if enroll == "" {
		enroll = DefaultAgentMQTTURL(c.MQTTURL, c.MQTTListen)
	}
	m.MQTT = MQTT{AgentURL: e.agentURL, EnrollURL: enroll, Broker: brk, Bus: b, Syncer: sy}
	key := m.Key
	m.API.EnableEnrollment(api.EnrollerFunc(func(org, site string) container.Site {
		return container.ForSite(key, org, site, enroll)
	}))
	log.Info("mqtt started", "broker", opts.URL, "embedded", brk != nil, "agent_mqtt_url", enroll)

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
