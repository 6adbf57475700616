// Package agent keeps one router's firewall equal to its site's desired
// state. It runs in a RouterOS container: it receives the site's DesiredState
// over MQTT, caches it in bbolt, renders it to RouterOS rows and reconciles
// the router's firewall through the RouterOS API, then reports a SiteStatus.
//
// # Loop
//
// Events only mark state dirty: a new document, the resync timer, a retry
// timer. One goroutine applies: it reads the router, plans the fewest writes
// (package reconcile), executes them in gap-free order, reads back and
// reports. Failures back off exponentially with jitter. See DESIGN.md beside
// this file.
//
// # Configuration
//
// Only the environment, read by LoadConfig (section 9 of the design):
// RAMPART_MQTT_URL (one or several comma-separated URLs), RAMPART_MQTT_CA,
// RAMPART_ORG_ID, RAMPART_SITE_ID, RAMPART_SITE_SECRET,
// RAMPART_ROUTEROS_ADDR, RAMPART_ROUTEROS_USER, RAMPART_ROUTEROS_PASSWORD,
// RAMPART_ROUTEROS_TLS, RAMPART_STATE_DIR, RAMPART_METRICS_ADDR,
// RAMPART_RESYNC_INTERVAL, RAMPART_WAN_LIST.
package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-routeros/routeros/v3/proto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rampart-fw/rampart/agent/cache"
	"github.com/rampart-fw/rampart/agent/mqtt"
	"github.com/rampart-fw/rampart/agent/reconcile"
	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/agent/routeros"
	"github.com/rampart-fw/rampart/internal/buildinfo"
	"github.com/rampart-fw/rampart/protocol"
)

// agentVersion is the build's version (buildinfo), reported in every
// status; read once, as it cannot change.
var agentVersion = buildinfo.Version()

// Options are the agent's non-environment knobs, for tests and embedding.
// The zero value is usable.
type Options struct {
	Logger *slog.Logger
	// Registry receives the agent's metrics and serves /metrics; nil means
	// a new registry.
	Registry *prometheus.Registry
	// RetryBase and RetryMax bound the backoff after a failed apply; zero
	// means 1 s and 60 s.
	RetryBase, RetryMax time.Duration
	// Throttle is the least time between two applies, so a burst of
	// documents costs one apply; zero means 100 ms.
	Throttle time.Duration
	// RouterSessions is the RouterOS session pool size; zero means 2.
	RouterSessions int
	// RouterTimeout bounds each RouterOS command; zero means 15 s.
	RouterTimeout time.Duration
	// MQTTMaxReconnect caps the broker reconnect backoff while no broker
	// answers; zero means 1 s (see package mqtt).
	MQTTMaxReconnect time.Duration
	// MQTTHeldAfter is how long a broker connection must last for the
	// reconnect backoff to reset; zero means 10 s.
	MQTTHeldAfter time.Duration
	// ApplyAttempts and ApplyRetryBudget bound how often, and for how
	// long, an apply whose RouterOS connection dropped is tried again on a
	// new session before it is reported failed; zero means 8 attempts
	// within 20 s. See applyRetrying.
	ApplyAttempts    int
	ApplyRetryBudget time.Duration
	// CacheRetry is how often a cache write that failed is tried again;
	// zero means 10 s.
	CacheRetry time.Duration
	// ComplainEvery is the least time between two identical explanatory
	// log lines (a broker or router that stays unreachable); zero means
	// 30 s.
	ComplainEvery time.Duration
	// MQTTConnectTimeout bounds one broker connection attempt; zero means
	// 10 s.
	MQTTConnectTimeout time.Duration
	// PresenceInterval is how often presence online is republished; zero
	// means 60 s (see mqtt.Options.PresenceInterval for why it repeats).
	PresenceInterval time.Duration
	// OnStatus, if set, is called on the agent's goroutine once with each
	// status the agent reports, when it reports it (the broker gets the
	// same status, retried until it acknowledges), so an embedder (the
	// in-process demo fleet, its benchmark) sees what the control plane
	// sees without subscribing.
	OnStatus func(protocol.SiteStatus)
	// MaxSchema is the newest desired-state schema the agent reads; zero
	// means protocol.SchemaVersion. A lower value makes the agent behave
	// as one built before the later schemas (1: an agent that predates
	// IPv6), which refuses a newer document whole and reports it failed,
	// asking to be upgraded (protocol.SchemaTooNewError).
	MaxSchema int
	// OnApplyStart, if set, is called on the agent's goroutine when the
	// first writes of a new revision are about to go to the router, with
	// the number of writes planned, whether or not the apply is large
	// enough to be announced as applying (announceWrites).
	OnApplyStart func(revision uint64, writes int)
}

// Agent is one running agent.
type Agent struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	reg    *prometheus.Registry
	m      *metrics
	router *routeros.Client

	notify chan struct{}

	mu          sync.Mutex
	inbox       [][]byte // desired payloads not yet looked at
	metricsAddr string
	healthy     bool

	brokerSays complaint // used by the MQTT connect goroutine only
	routerSays complaint // used by the Run goroutine only

	// Loop state, owned by the Run goroutine.
	mq             *mqtt.Client
	cache          *cache.Cache
	desired        *protocol.DesiredState
	appliedEpoch   string
	appliedRev     uint64
	published      bool // status for the current state was published
	status         protocol.SiteStatus
	lastReported   protocol.SiteStatus // last status given to Options.OnStatus
	lastRead       int                 // rows the last readTables returned
	observed       *reconcile.Observed // the router as the last apply left it; nil: read it
	driftRepairs   int
	failures       int
	lastGuard      [render.NumFamilies]netip.Addr
	routerVersion  string
	routerBoard    string
	pendingApplied bool // a new revision whose writes have not started yet
	holdTransient  bool // applyRetrying: fail keeps a transient failure to itself
	held           bool // fail kept one
	rendered       struct {
		doc   *protocol.DesiredState
		guard [render.NumFamilies]netip.Addr
		w     render.Wanted
		r     render.Renderer // remembers the last document's prefix lists
	}

	// refused is the failed status of the newest document received when
	// it was refused for its schema (too new for this agent); nil once a
	// newer document is accepted. While set, it is the status reported
	// (publish): the control plane's current revision is the refused one,
	// and the held policy, still enforced, is not what it asked for.
	refused *protocol.SiteStatus
}

// New makes an agent from cfg; Run starts it.
func New(cfg Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 60 * time.Second
	}
	if opts.Throttle == 0 {
		opts.Throttle = 100 * time.Millisecond
	}
	if opts.ApplyAttempts == 0 {
		opts.ApplyAttempts = 8
	}
	if opts.ApplyRetryBudget == 0 {
		opts.ApplyRetryBudget = 20 * time.Second
	}
	if opts.CacheRetry == 0 {
		opts.CacheRetry = 10 * time.Second
	}
	if opts.ComplainEvery == 0 {
		opts.ComplainEvery = 30 * time.Second
	}
	a := &Agent{
		cfg:    cfg,
		opts:   opts,
		log:    opts.Logger.With("org", cfg.OrgID, "site", cfg.SiteID),
		reg:    opts.Registry,
		m:      newMetrics(opts.Registry),
		notify: make(chan struct{}, 1),
	}
	a.brokerSays = complaint{log: a.log, interval: opts.ComplainEvery}
	a.routerSays = complaint{log: a.log, interval: opts.ComplainEvery}
	a.router = routeros.New(routeros.Options{
		Addr: cfg.RouterOSAddr, User: cfg.RouterOSUser, Password: cfg.RouterOSPassword,
		TLS: cfg.RouterOSTLS, Sessions: opts.RouterSessions, Timeout: opts.RouterTimeout,
	})
	return a, nil
}

// MetricsAddr is the address the metrics listener bound, once Run started it.
func (a *Agent) MetricsAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metricsAddr
}

func (a *Agent) wake() {
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// Run runs the agent until ctx ends. It returns an error only when it cannot
// start (the metrics address cannot be bound, the broker TLS configuration
// cannot be built): the cache, the broker and the router may each be
// unusable for as long as they like, and the agent says so in its log.
func (a *Agent) Run(ctx context.Context) error {
	a.openCache()
	defer a.cache.Close()
	defer a.router.Close()

	if a.cfg.MetricsAddr != "" {
		stop, err := a.serveMetrics()
		if err != nil {
			return err
		}
		defer stop()
	}

	var tlsConfig *tls.Config
	for _, u := range a.cfg.MQTTURLs {
		if u.Scheme != "tcp" && u.Scheme != "mqtt" {
			var err error
			if tlsConfig, err = a.cfg.MQTTTLSConfig(); err != nil {
				return fmt.Errorf("broker TLS (%s): %w", protocol.EnvMQTTCA, err)
			}
			break
		}
	}
	mq, err := mqtt.Start(mqtt.Options{
		URLs: a.cfg.MQTTURLs, ClientID: "rampart-agent-" + a.cfg.OrgID + "-" + a.cfg.SiteID,
		Username: a.cfg.MQTTUser(), Password: a.cfg.SiteSecret, TLSConfig: tlsConfig,
		TopicRoot: a.cfg.TopicRoot, OrgID: a.cfg.OrgID, SiteID: a.cfg.SiteID,
		OnDesired: func(b []byte) {
			a.mu.Lock()
			a.inbox = append(a.inbox, b)
			a.mu.Unlock()
			a.wake()
		},
		OnConnection: func(up bool) {
			if up {
				a.m.mqttConnected.Set(1)
				a.brokerSays.clear()
			} else {
				a.m.mqttConnected.Set(0)
			}
		},
		OnConnectFailed: func(err *mqtt.ConnectError) {
			a.brokerSays.say(a.explainBroker(err), err)
		},
		MaxReconnectInterval: a.opts.MQTTMaxReconnect,
		HeldAfter:            a.opts.MQTTHeldAfter,
		ConnectTimeout:       a.opts.MQTTConnectTimeout,
		PresenceInterval:     a.opts.PresenceInterval,
		Logger:               a.log,
	})
	if err != nil {
		return err
	}
	a.mq = mq
	defer mq.Close()
	a.setHealthy(true)
	defer a.setHealthy(false)

	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	<-retry.C
	cacheRetry := time.NewTicker(a.opts.CacheRetry) // a no-op unless a write is pending
	defer cacheRetry.Stop()
	dirty := a.desired != nil
	reread := false // the resync is due: read the router, do not trust the observation
	var lastApply time.Time
	retryPending := false
	// With nothing to apply (no cache, no broker yet) the router is still
	// reached, so a wrong address, user or password is in the log within
	// seconds of starting, not after the first document. Its own timer: a
	// document that arrives meanwhile is not held up by the probe's backoff.
	probe := time.NewTimer(0)
	defer probe.Stop()
	probeFailures := 0
	for {
		if dirty && !retryPending {
			if wait := a.opts.Throttle - time.Since(lastApply); wait > 0 {
				retry.Reset(wait)
				retryPending = true
			} else {
				dirty = false
				lastApply = time.Now()
				apply := a.update
				if reread {
					reread, apply = false, a.sync
				}
				if err := a.applyRetrying(ctx, apply); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					dirty = true
					retry.Reset(a.backoff())
					retryPending = true
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.notify:
			if a.takeEvents() {
				dirty = true
			}
		case <-resync.C:
			if a.desired != nil {
				dirty, reread = true, true
			}
		case <-retry.C:
			retryPending = false
		case <-cacheRetry.C:
			a.retryCache()
		case <-probe.C:
			if a.desired != nil || a.routerVersion != "" {
				continue // an apply reaches the router, and says what fails
			}
			if err := a.identify(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				a.routerSays.say("cannot use the router: "+a.explain(err), err)
				probeFailures++
				probe.Reset(jitter(min(a.opts.RetryBase<<min(probeFailures-1, 16), a.opts.RetryMax)))
			} else {
				a.routerSays.clear()
				a.log.Info("RouterOS API reachable", "version", a.routerVersion, "board", a.routerBoard)
			}
		}
	}
}

// applyRetrying runs apply, and while it fails on the connection
// (transient) tries again from a fresh read of the router, up to
// ApplyAttempts attempts within ApplyRetryBudget, with a short backoff:
// a flapping API connection is not a failure the site reports. Only a
// failure that persists past the budget, or a refusal (a trap, a login),
// is reported failed, saying what it was.
func (a *Agent) applyRetrying(ctx context.Context, apply func(context.Context) error) error {
	start := time.Now()
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		a.holdTransient = attempt < a.opts.ApplyAttempts && time.Since(start) < a.opts.ApplyRetryBudget
		a.held = false
		err := apply(ctx)
		a.holdTransient = false
		if err == nil || ctx.Err() != nil || !a.held {
			return err
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
		apply = a.sync
	}
}

// openCache opens the cache; nothing about it stops the agent (package
// cache): a repaired file or a directory it cannot use is logged, and the
// cached document, if any, becomes current.
func (a *Agent) openCache() {
	c, err := cache.Open(a.cfg.StateDir, cache.Options{})
	a.cache = c
	switch {
	case err != nil && c.Persistent():
		a.log.Warn("cache repaired", "err", err)
	case err != nil:
		a.log.Error(fmt.Sprintf("no usable cache in %s: working from memory, so the policy is enforced but not kept across restarts until the directory is usable (check %s)", a.cfg.StateDir, protocol.EnvStateDir), "err", err)
	}
	d, err := c.Get()
	switch {
	case errors.Is(err, cache.ErrNotFound):
	case err != nil:
		a.log.Warn("cache unreadable; waiting for the broker", "err", err)
	default:
		if err := d.ValidateMax(a.cfg.OrgID, a.cfg.SiteID, a.opts.MaxSchema); err != nil {
			a.log.Warn("ignoring cached desired state", "err", err)
			return
		}
		a.desired = &d
		a.pendingApplied = true
		a.m.desiredRevision.Set(float64(d.Revision))
		a.log.Info("enforcing cached desired state", "epoch", d.Epoch, "revision", d.Revision)
	}
}

// retryCache writes a document whose cache write failed.
func (a *Agent) retryCache() {
	wrote, err := a.cache.Retry()
	switch {
	case err != nil:
		a.log.Warn("cache write failed again; the policy is enforced from memory and the write retried", "err", err, "retry_in", a.opts.CacheRetry.String())
	case wrote:
		a.log.Info("cache written after earlier failures", "path", a.cache.Path())
	}
}

// takeEvents handles what the MQTT goroutines queued; it reports whether an
// apply is needed.
func (a *Agent) takeEvents() bool {
	a.mu.Lock()
	inbox := a.inbox
	a.inbox = nil
	a.mu.Unlock()
	dirty := false
	for _, b := range inbox {
		if a.accept(b) {
			dirty = true
		}
	}
	return dirty
}

// accept checks one desired payload and makes it current when it is valid
// and newer than the one held. The payload is decoded once, its hash
// checked once (Validate), and cached as received: no copy of it is made
// (BENCHMARKS.md, "Agent: receiving a document").
func (a *Agent) accept(b []byte) bool {
	if len(bytes.TrimSpace(b)) == 0 {
		a.log.Warn("ignoring empty desired-state payload")
		a.m.documents.WithLabelValues("invalid").Inc()
		return false
	}
	var d protocol.DesiredState
	if err := json.Unmarshal(b, &d); err != nil {
		a.log.Warn("ignoring malformed desired state", "err", err)
		a.m.documents.WithLabelValues("invalid").Inc()
		return false
	}
	err := d.ValidateMax(a.cfg.OrgID, a.cfg.SiteID, a.opts.MaxSchema)
	if tooNew, ok := errors.AsType[*protocol.SchemaTooNewError](err); ok && d.OrgID == a.cfg.OrgID && d.SiteID == a.cfg.SiteID {
		a.refuse(&d, tooNew)
		return false
	}
	if err != nil {
		a.log.Warn("ignoring invalid desired state", "revision", d.Revision, "err", err)
		a.m.documents.WithLabelValues("invalid").Inc()
		return false
	}
	if a.stale(&d) {
		a.log.Debug("ignoring stale or duplicate desired state", "epoch", d.Epoch, "revision", d.Revision)
		a.m.documents.WithLabelValues("stale").Inc()
		return false
	}
	a.refused = nil
	a.desired = &d
	a.pendingApplied = true
	a.published = false
	a.driftRepairs = 0
	a.failures = 0
	a.m.documents.WithLabelValues("accepted").Inc()
	a.m.desiredRevision.Set(float64(d.Revision))
	if wrote, err := a.cache.Put(d, b); err != nil {
		a.log.Error("cache write failed; the policy is enforced from memory and the write retried", "revision", d.Revision, "err", err, "retry_in", a.opts.CacheRetry.String())
	} else if wrote {
		a.log.Info("accepted desired state", "epoch", d.Epoch, "revision", d.Revision)
	}
	return true
}

// stale reports whether d is no newer than the document held, or than
// the one last refused: what the control plane sent after it supersedes d.
func (a *Agent) stale(d *protocol.DesiredState) bool {
	if a.desired != nil && !d.Newer(a.desired.Epoch, a.desired.Revision) {
		return true
	}
	return a.refused != nil && !d.Newer(a.refused.Epoch, a.refused.Revision)
}

// refuse handles a document addressed to this site in a schema newer than
// the agent reads. Nothing of it reaches the router: the held policy stays
// enforced (and repaired) as it was. The refusal is reported failed, with
// the error's sentence (upgrade the agent), for the refused revision, and
// stays the reported status until a newer document is accepted.
func (a *Agent) refuse(d *protocol.DesiredState, err *protocol.SchemaTooNewError) {
	a.m.documents.WithLabelValues("too_new").Inc()
	if a.stale(d) && (a.refused == nil || a.refused.Epoch != d.Epoch || a.refused.Revision != d.Revision) {
		a.log.Debug("ignoring stale desired state of a newer schema", "epoch", d.Epoch, "revision", d.Revision, "schema", d.Schema)
		return
	}
	a.log.Error("refused desired state: "+err.Error(), "revision", d.Revision, "schema", d.Schema, "max_schema", err.Max)
	st := a.newStatus(d, protocol.StateFailed)
	st.Error = err.Error()
	a.refused = &st
	a.publish(context.Background())
}

// jitter spreads d over its upper half.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

func (a *Agent) backoff() time.Duration {
	a.failures++
	d := a.opts.RetryBase
	for i := 1; i < a.failures && d < a.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, a.opts.RetryMax)
	// Full jitter on the upper half: routers that failed together (a broker
	// or control plane hiccup) do not retry in lockstep.
	return jitter(d)
}

func (a *Agent) setHealthy(ok bool) {
	a.mu.Lock()
	a.healthy = ok
	a.mu.Unlock()
}

func (a *Agent) serveMetrics() (func(), error) {
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s (%s): %w", a.cfg.MetricsAddr, protocol.EnvMetricsAddr, err)
	}
	a.mu.Lock()
	a.metricsAddr = ln.Addr().String()
	a.mu.Unlock()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		ok := a.healthy
		a.mu.Unlock()
		if !ok {
			http.Error(w, "agent loop not running", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}

// read reads every table of every family: the agent always reads the
// IPv6 tables too, even for an IPv4-only policy, so that what an earlier
// dual-stack policy left there is found and removed (two more prints per
// full read; an apply then plans nothing for a table with nothing managed).
func (a *Agent) read(ctx context.Context) (reconcile.Observed, error) {
	var all [render.NumFamilies]readSpec
	for f := range all {
		all[f] = readSpec{filter: true, lists: true}
	}
	return a.readTables(ctx, all)
}

// readSpec is what to read of one family: its filter table, its address
// lists (query, if any, selects the lists to read: API query words).
type readSpec struct {
	filter, lists bool
	query         []string
}

// readTables reads the tables spec names, family by family.
func (a *Agent) readTables(ctx context.Context, spec [render.NumFamilies]readSpec) (reconcile.Observed, error) {
	var st reconcile.Observed
	defer func() {
		n := 0
		for _, t := range st {
			n += len(t.Filter) + len(t.Entries)
		}
		a.lastRead = max(a.lastRead, n)
	}()
	for _, f := range render.Families {
		menu, t := reconcile.Menus[f], &st[f]
		if spec[f].filter {
			if err := a.router.Stream(ctx, func(ps []proto.Pair) { t.Filter = append(t.Filter, filterItem(ps)) }, menu.Filter+"/print"); err != nil {
				return st, fmt.Errorf("read %s firewall filter: %w", f, err)
			}
		}
		if spec[f].lists {
			intern := map[string]string{}
			row := func(ps []proto.Pair) {
				t.Entries = append(t.Entries, reconcile.EntryFromPairs(func(yield func(k, v string) bool) {
					for _, p := range ps {
						if !yield(p.Key, p.Value) {
							return
						}
					}
				}, intern))
			}
			if err := a.router.Stream(ctx, row, append([]string{menu.AddressList + "/print", "=.proplist=.id,list,address,comment,dynamic,disabled"}, spec[f].query...)...); err != nil {
				return st, fmt.Errorf("read %s address lists: %w", f, err)
			}
		}
	}
	return st, nil
}

// foreignKeys are the properties the planner reads of a filter row it does
// not own (reconcile.Plan): where it is, and whether it is static.
var foreignKeys = [...]string{".id", "chain", "comment", "dynamic", "builtin"}

// filterItem converts a printed filter row. Someone else's row (outside
// the owned chains, without a rampart: comment) keeps only foreignKeys:
// most of a router's rules are not the agent's, and it reads them back
// after every apply.
func filterItem(ps []proto.Pair) reconcile.Item {
	var chain, comment string
	for _, p := range ps {
		switch p.Key {
		case "chain":
			chain = p.Value
		case "comment":
			comment = p.Value
		}
	}
	if chain != render.ChainIn && chain != render.ChainOut && !strings.HasPrefix(comment, render.CommentPrefix) {
		it := make(reconcile.Item, len(foreignKeys))
		for _, p := range ps {
			if slices.Contains(foreignKeys[:], p.Key) {
				it[p.Key] = p.Value
			}
		}
		return it
	}
	it := make(reconcile.Item, len(ps))
	for _, p := range ps {
		it[p.Key] = p.Value
	}
	return it
}

// guard finds the agent's own source addresses towards its broker, one per
// family: the local address of the MQTT connection, else the address the
// kernel would use to reach the broker in that family (a UDP "connect"
// sends nothing), else the one already on the router in that family's
// table, else the last one known. A family in which the agent has no
// address towards its broker (no IPv6 on the container, a broker without
// an AAAA record) has no guard: the agent cannot be using it, and should
// it gain one, the next apply finds it, while Go's dialer falls back to
// the other family meanwhile (DESIGN.md, "The guard").
func (a *Agent) guard(st reconcile.Observed) [render.NumFamilies]netip.Addr {
	var g [render.NumFamilies]netip.Addr
	if a.mq != nil {
		if ip := a.mq.LocalAddr().Unmap(); ip.IsValid() {
			g[render.AddrFamily(ip)] = ip
		}
	}
	host := a.cfg.MQTTURLs[0].Hostname()
	for _, f := range render.Families {
		if g[f].IsValid() {
			a.lastGuard[f] = g[f]
			continue
		}
		network := "udp4"
		if f == render.IPv6 {
			network = "udp6"
		}
		if c, err := net.Dial(network, net.JoinHostPort(host, "9")); err == nil {
			ap, perr := netip.ParseAddrPort(c.LocalAddr().String())
			c.Close()
			if ip := ap.Addr().Unmap(); perr == nil && render.AddrFamily(ip) == f {
				g[f], a.lastGuard[f] = ip, ip
				continue
			}
		}
		for _, it := range st[f].Filter {
			if key, _, ok := render.ParseComment(it["comment"]); ok && key == render.KeyOutGuard && it["chain"] == render.ChainOut {
				if p, err := netip.ParsePrefix(it["src-address"]); err == nil && p.IsSingleIP() {
					g[f] = p.Addr() // an IPv6 table prints a host as /128
				} else if ip, err := netip.ParseAddr(it["src-address"]); err == nil {
					g[f] = ip
				}
			}
		}
		if !g[f].IsValid() {
			g[f] = a.lastGuard[f]
		}
	}
	return g
}
