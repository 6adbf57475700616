package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/internal/buildinfo"
)

// DBFile is the bbolt file's name inside the data directory.
const DBFile = "rampart.db"

// Extension plugs another part (the MQTT broker, publisher and status
// ingestion, the --demo routers) into the serve path without changing it.
// Files of this package register theirs in init:
//
//	func init() { extensions = append(extensions, mqttExtension{}) }
type Extension interface {
	// Configure runs before the store opens; it may set m.Revisioner.
	Configure(m *Main) error
	// Start runs once the store and the API are up (m.Store, m.Key and
	// m.Config are set). stop is called on shutdown, before the store
	// closes.
	Start(ctx context.Context, m *Main) (stop func(), err error)
}

var extensions []Extension

// Main is the control plane assembled from its parts, testable without a
// process: fill Config, call Start, then Close.
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
	// Revisioner is handed to the store (an Extension sets it).
	Revisioner cp.Revisioner
	// Extensions default to the registered ones.
	Extensions []Extension

	// Set by Start.
	Store *bolt.Store
	Key   keys.Key
	API   *api.Server
	// Addr is the HTTP listener's address (useful with port 0).
	Addr net.Addr

	// Set by the MQTT extension's Start (mqtt.go), which runs before every
	// other extension.
	MQTT MQTT

	http   *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stops  []func()
}

// Start opens the store and starts serving. It returns once the listener is
// bound.
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
	if m.Extensions == nil {
		m.Extensions = extensions
	}
	c := m.Config
	if c.Demo > 0 && len(m.Extensions) == 0 {
		return errors.New("--demo needs the MQTT side and the simulated routers, which this build does not include yet")
	}
	ctx, m.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	for _, e := range m.Extensions {
		if err := e.Configure(m); err != nil {
			return fmt.Errorf("configure: %w", err)
		}
	}
	if m.Key, err = keys.LoadOrCreate(c.DataDir); err != nil {
		return err
	}
	m.Store, err = bolt.Open(filepath.Join(c.DataDir, DBFile), bolt.Options{
		SyncTimeout: c.SyncTimeout, Now: m.Now, Revisioner: m.Revisioner, Quotas: c.Quotas,
		AuditRetention: c.AuditRetention, OnPruneError: func(err error) { m.Logger.Error("prune audit events", "error", err) },
	})
	if err != nil {
		return err
	}
	verifier, err := auth.New(ctx, auth.Options{
		HMACKey: m.Key.JWTSigningKey(), JWKSURL: c.JWKSURL, Issuer: c.JWTIssuer, Audience: c.JWTAudience,
		OrgClaim: c.JWTOrgClaim, Now: m.Now,
	})
	if err != nil {
		return err
	}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(m.Registry, "controlplane")
	m.API, err = api.New(api.Options{Store: m.Store, Verifier: verifier, Logger: m.Logger, Registry: m.Registry})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.HTTPAddr, err)
	}
	m.Addr = ln.Addr()
	m.http = &http.Server{Handler: m.API, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
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
	for _, e := range m.Extensions {
		stop, err := e.Start(ctx, m)
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		if stop != nil {
			m.stops = append(m.stops, stop)
		}
	}
	auth := "embedded HS256 tokens (mint one with `rampart-controlplane token`)"
	if c.JWKSURL != "" {
		auth = "tokens from " + c.JWKSURL
	}
	m.Logger.Info("control plane serving", "http_addr", m.Addr.String(), "data_dir", c.DataDir, "epoch", m.Store.Epoch(),
		"auth", auth, "sync_timeout", c.SyncTimeout.String(), "mqtt_url", c.MQTTURL, "mqtt_listen", c.MQTTListen, "demo", c.Demo)
	return nil
}

// Close shuts down gracefully: the HTTP server finishes requests in flight
// (up to 10 s), extensions stop, then the store closes.
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
		m.Store = nil
	}
	return errors.Join(errs...)
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("rampart-controlplane", flag.ContinueOnError) }

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
