package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/console"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/store/postgres"
	"github.com/rampart-fw/rampart/internal/buildinfo"
)

// DBFile is the bbolt file's name inside the data directory.
const DBFile = "rampart.db"

// Main is the control plane assembled from its parts, testable without a
// process: fill Config, call Start, then Close. Start wires the parts in
// order, each one explicitly: the store, the API (HTTP or HTTPS), the MQTT
// side (mqtt.go), then, with --demo, the simulated routers (demo.go).
type Main struct {
	Config   Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Now is the clock of the store and the token verifier; nil means
	// time.Now.
	Now func() time.Time
	// SweepInterval is how often sync deadlines are checked; zero means a
	// second.
	SweepInterval time.Duration
	// BehindInterval is the least time between two republishes of a site
	// that reports an older revision than it was given; zero means
	// syncer.DefaultBehindInterval.
	BehindInterval time.Duration

	// Set by Start.
	Store Store
	// Replicas is Store when it is PostgreSQL's (--store-url), nil with
	// bbolt: what several control planes on one database need beyond Store.
	Replicas *postgres.Store
	Key      keys.Key
	API      *api.Server
	// Console serves / and the session cookie in front of API (console.go).
	Console *console.Console
	// Addr is the HTTP listener's address (useful with port 0).
	Addr net.Addr
	// TLS is the server certificate of --tls-cert and --tls-key; nil
	// without them.
	TLS *tls.Config
	// MQTT is the MQTT side, set once it started.
	MQTT MQTT

	http   *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stops  []func()
}

// Start opens the store and starts serving. It returns once the listeners
// are bound; it does not wait for an external broker, which it keeps
// dialling in the background (/readyz reports it).
func (m *Main) Start(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if m.Registry == nil {
		m.Registry = prometheus.NewRegistry()
	}
	if m.SweepInterval <= 0 {
		m.SweepInterval = time.Second
	}
	c := m.Config
	if err := checkMQTTConfig(c); err != nil {
		return err
	}
	if m.TLS, err = loadTLS(c.TLSCert, c.TLSKey); err != nil {
		return err
	}
	if c.Demo > maxDemo {
		return fmt.Errorf("--demo %d: at most %d simulated routers in one process (each costs about five file descriptors); use the fleet benchmark for more", c.Demo, maxDemo)
	}
	ctx, m.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			m.Close()
		}
	}()

	// The store.
	if m.Key, err = keys.LoadOrCreate(c.DataDir); err != nil {
		return err
	}
	if m.Store, err = m.openStore(ctx); err != nil {
		return err
	}

	// The API.
	verifier, err := auth.New(ctx, auth.Options{
		HMACKey: m.Key.JWTSigningKey(), JWKSURL: c.JWKSURL, Issuer: c.JWTIssuer, Audience: c.JWTAudience,
		OrgClaim: c.JWTOrgClaim, Now: m.Now,
	})
	if err != nil {
		return err
	}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(m.Registry, "controlplane")
	m.API, err = api.New(api.Options{Store: m.Store, Verifier: verifier, Logger: m.Logger, Registry: m.Registry,
		Ready: m.readyChecks()})
	if err != nil {
		return err
	}
	handler, err := newConsole(m, verifier)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.HTTPAddr, err)
	}
	m.Addr = ln.Addr()
	if m.TLS != nil {
		ln = tls.NewListener(ln, m.TLS)
	}
	m.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn)}
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("http server stopped", "error", err)
		}
	}()
	go func() {
		defer m.wg.Done()
		m.Store.RunSweeper(ctx, m.SweepInterval, func(err error) { m.Logger.Error("sweep sync deadlines", "error", err) })
	}()

	// The MQTT side.
	stop, err := m.startMQTT(ctx)
	if err != nil {
		return err
	}
	m.stops = append(m.stops, stop)

	// The demo's routers, once the broker listens.
	if c.Demo > 0 {
		stop, err := m.startDemo(ctx)
		if err != nil {
			return err
		}
		m.stops = append(m.stops, stop)
	}

	auth := "embedded HS256 tokens (mint one with `rampart-controlplane token`)"
	if c.JWKSURL != "" {
		auth = "tokens from " + c.JWKSURL
	}
	m.Logger.Info("control plane serving", "http_addr", m.Addr.String(), "https", m.TLS != nil, "data_dir", c.DataDir, "store", storeName(c), "epoch", m.Store.Epoch(),
		"auth", auth, "sync_timeout", c.SyncTimeout.String(), "mqtt_url", redactURLs(c.MQTTURL), "mqtt_listen", m.MQTT.Listen, "mqtts_listen", m.MQTT.TLSListen, "demo", c.Demo)
	return nil
}

// brokerReady is /readyz's broker check.
func (m *Main) brokerReady(context.Context) error {
	if m.MQTT.Bus == nil {
		return errors.New("the MQTT side has not started")
	}
	return m.MQTT.Bus.Ready()
}

// loadTLS loads --tls-cert and --tls-key; both or neither.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together: give both (a PEM certificate chain and its PEM private key), or neither to serve without TLS")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load --tls-cert %s and --tls-key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// probeDisk writes and syncs a small new file in dir and removes it. bbolt
// reading its meta page says nothing about a full or read-only disk, and a
// write into the database's free pages can still succeed on a full one; a
// new file needs a new block.
func probeDisk(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return fmt.Errorf("probe data directory: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write([]byte("ok\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("probe data directory: write %s: %w", f.Name(), err)
	}
	return nil
}

// Close shuts down gracefully: the HTTP server finishes requests in flight
// (up to 10 s), the demo and the MQTT side stop, then the store closes.
func (m *Main) Close() error {
	var errs []error
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down http: %w", err))
		}
		cancel()
	}
	for i := len(m.stops) - 1; i >= 0; i-- {
		m.stops[i]()
	}
	m.stops = nil
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.Store != nil {
		if err := m.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
		m.Store, m.Replicas = nil, nil
	}
	return errors.Join(errs...)
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("rampart-controlplane", flag.ContinueOnError) }

// subcommandFlags is the flag set of subcommand name: errors and -h go to
// stderr, and -h prints usage (its synopsis and what it does), if any,
// above the flags.
func subcommandFlags(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if usage != "" {
		fs.Usage = func() {
			fmt.Fprint(stderr, usage)
			fs.PrintDefaults()
		}
	}
	return fs
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet()
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: rampart-controlplane [flags]            serve the API and the MQTT side
       rampart-controlplane SUBCOMMAND [flags]  one of: %s ("SUBCOMMAND -h" for its flags)

Every flag can also be set as RAMPART_<FLAG_IN_CAPS> in the environment.

`, strings.Join(subcommandNames(), ", "))
		fs.PrintDefaults()
	}
	var c Config
	bindConfig(fs, &c)
	if err := parseFlags(fs, args, os.Getenv); err != nil {
		return err
	}
	logger, err := newLogger(stderr, c.LogLevel)
	if err != nil {
		return err
	}
	m := &Main{Config: c, Logger: logger}
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down")
	return m.Close()
}
