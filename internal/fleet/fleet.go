// Package fleet runs simulated sites in one process: for each site a RouterOS
// simulator (package rossim) on 127.0.0.1 and the real agent (package agent),
// configured in code, connected to an MQTT broker with the site's own
// credentials. The control plane's --demo flag and the end-to-end benchmark
// use it; nothing in it is a stand-in for the agent or the router.
//
// # Using it
//
//	f, err := fleet.Start(ctx, fleet.Options{N: 3, Org: "org_demo", BrokerURL: url, Key: key})
//	defer f.Close()
//	// write policy through the API, then:
//	err = f.WaitApplied(ctx, func(i int) uint64 { return 1 })
//	rows := f.Router(0).Snapshot().Filter
//
// # Cost per site
//
// One listener and one connection on the simulator's side, one RouterOS
// session, one MQTT connection and one small bbolt file on the agent's side.
// The agent's metrics listener is off and its registry is private. Measured
// with 1,000 applied sites and the embedded broker in the same process: 17
// goroutines and about 270 KiB of heap and stacks per site, the broker's side
// of the connection included (TestCostPerSite; BENCHMARKS.md, "End to end").
// The file descriptors (about five per site, against a limit of 20,000 here)
// bound a process first, so the benchmark runs large fleets in several
// processes (Options.First).
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rampart-fw/rampart/agent"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// Defaults of Options.
const (
	DefaultOrg            = "org_demo"
	DefaultSitePrefix     = "site_demo"
	DefaultRouterUser     = "admin"
	DefaultRouterPassword = "rampart-demo"
)

// Options configure a fleet. N, BrokerURL and Key are required; every other
// zero value is usable.
type Options struct {
	// N is the number of sites.
	N int
	// Org is the organisation of every site; DefaultOrg if empty.
	Org string
	// SitePrefix names the sites: prefix + number, numbers from First.
	// DefaultSitePrefix if empty (site_demo1, site_demo2, ...).
	SitePrefix string
	// First is the number of the first site; zero means 1. Several
	// processes run one large fleet by giving each a range.
	First int
	// BrokerURL is where the agents connect (tcp://127.0.0.1:1883), or
	// the nodes of a clustered broker, comma-separated: each site is given
	// every URL, starting at a different one (site i at URL i mod n), so
	// the fleet spreads over the nodes as a real one would and every agent
	// can fail over.
	BrokerURL string
	// MQTTCA is a PEM file of a CA the agents trust for an ssl:// BrokerURL
	// (RAMPART_MQTT_CA); empty means the system's.
	MQTTCA string
	// Key derives each site's MQTT secret (keys.Key.SiteSecret), as the
	// control plane's broker expects. A broker that allows anonymous
	// clients accepts any secret.
	Key keys.Key
	// TopicRoot is protocol.DefaultTopicRoot if empty.
	TopicRoot string
	// DataDir holds one state directory per site; empty means a temporary
	// directory that Close removes.
	DataDir string
	// WANList is the agents' WAN interface list; agent.DefaultWANList if
	// empty (defconf's, which the simulator has).
	WANList string
	// ResyncInterval is how often each agent re-reads its router; zero
	// means agent.DefaultResyncInterval.
	ResyncInterval time.Duration
	// Throttle is the agents' least time between two applies; zero means
	// the agent's default (100 ms).
	Throttle time.Duration
	// RouterUser and RouterPassword log the agents in to their simulators;
	// DefaultRouterUser and DefaultRouterPassword if empty.
	RouterUser, RouterPassword string
	// Latency delays every simulator reply.
	Latency time.Duration
	// Logger receives the agents' logs (each with its org and site) and the
	// simulators'; nil discards them.
	Logger *slog.Logger
	// OnStatus is called with every status an agent published (i is the
	// site's index, 0 to N-1), on that agent's goroutine: keep it short.
	OnStatus func(i int, st protocol.SiteStatus)
	// MaxSchema is the newest desired-state schema the agents read (see
	// agent.Options.MaxSchema); zero means the build's. Lower simulates a
	// fleet of older agents.
	MaxSchema int
	// StartParallel bounds how many sites start at once; zero means 64.
	StartParallel int
}

// Site is one simulated site.
type Site struct {
	ID     string
	Router *rossim.Router

	mu      sync.Mutex
	status  protocol.SiteStatus
	applied uint64    // highest revision reported applied (current epoch)
	epoch   string    // epoch of applied
	at      time.Time // when applied was first reported
	// applying is when the agent last started writing a new revision to
	// the router (the document had reached it).
	applying    time.Time
	applyingRev uint64
}

// Started is when the agent started writing revision rev to the router
// (the document had reached it), or the zero time if it did not for that
// revision.
func (s *Site) Started(rev uint64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applyingRev != rev {
		return time.Time{}
	}
	return s.applying
}

// Applied is the highest revision the site's agent reported applied, in the
// epoch of its latest report, and when it first did.
func (s *Site) Applied() (epoch string, revision uint64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch, s.applied, s.at
}

// Status is the last status the site's agent published (zero before any).
func (s *Site) Status() protocol.SiteStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Site) record(st protocol.SiteStatus) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = st
	if st.State != protocol.StateApplied {
		return
	}
	if st.Epoch != s.epoch || st.Revision > s.applied {
		s.epoch, s.applied, s.at = st.Epoch, st.Revision, now
	}
}

// Fleet is a running fleet. Its methods are safe for concurrent use.
type Fleet struct {
	opts    Options
	sites   []*Site
	tmp     string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	changed chan struct{} // closed and replaced on every applied report

	mu   sync.Mutex
	errs []error
}

// Start starts every site's simulator and agent. It returns once all are
// running (the agents connect to the broker in the background); Close
// stops them.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.N <= 0 {
		return nil, fmt.Errorf("start fleet: N is %d; want at least 1 site", opts.N)
	}
	if opts.BrokerURL == "" {
		return nil, errors.New("start fleet: BrokerURL is required")
	}
	var urls []*url.URL
	for _, raw := range strings.Split(opts.BrokerURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("start fleet: parse broker URL: %w", err)
		}
		urls = append(urls, u)
	}
	if opts.Org == "" {
		opts.Org = DefaultOrg
	}
	if opts.SitePrefix == "" {
		opts.SitePrefix = DefaultSitePrefix
	}
	if opts.First == 0 {
		opts.First = 1
	}
	if opts.TopicRoot == "" {
		opts.TopicRoot = protocol.DefaultTopicRoot
	}
	if opts.WANList == "" {
		opts.WANList = agent.DefaultWANList
	}
	if opts.ResyncInterval == 0 {
		opts.ResyncInterval = agent.DefaultResyncInterval
	}
	if opts.RouterUser == "" {
		opts.RouterUser = DefaultRouterUser
	}
	if opts.RouterPassword == "" {
		opts.RouterPassword = DefaultRouterPassword
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StartParallel <= 0 {
		opts.StartParallel = 64
	}
	if !protocol.ValidOrgID(opts.Org) {
		return nil, fmt.Errorf("start fleet: %q is not an organisation id; want org_ followed by letters and digits", opts.Org)
	}
	f := &Fleet{opts: opts, sites: make([]*Site, opts.N), changed: make(chan struct{})}
	if opts.DataDir == "" {
		var err error
		if f.tmp, err = os.MkdirTemp("", "rampart-fleet-"); err != nil {
			return nil, fmt.Errorf("start fleet: create state directory: %w", err)
		}
		opts.DataDir = f.tmp
		f.opts.DataDir = f.tmp
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel = cancel

	sem := make(chan struct{}, opts.StartParallel)
	var startWG sync.WaitGroup
	var startMu sync.Mutex
	var startErr error
	for i := range opts.N {
		id := fmt.Sprintf("%s%d", opts.SitePrefix, opts.First+i)
		if !protocol.ValidSiteID(id) {
			f.Close()
			return nil, fmt.Errorf("start fleet: %q is not a site id; want site_ followed by 1-64 letters and digits", id)
		}
		s := &Site{ID: id}
		f.sites[i] = s
		sem <- struct{}{}
		startWG.Add(1)
		go func() {
			defer startWG.Done()
			defer func() { <-sem }()
			k := i % len(urls)
			if err := f.startSite(runCtx, i, s, append(slices.Clone(urls[k:]), urls[:k]...)); err != nil {
				startMu.Lock()
				startErr = errors.Join(startErr, err)
				startMu.Unlock()
			}
		}()
	}
	startWG.Wait()
	if startErr != nil {
		f.Close()
		return nil, fmt.Errorf("start fleet: %w", startErr)
	}
	return f, nil
}

func (f *Fleet) startSite(ctx context.Context, i int, s *Site, urls []*url.URL) error {
	o := f.opts
	r, err := rossim.Listen("127.0.0.1:0", rossim.Options{
		User: o.RouterUser, Password: o.RouterPassword, Identity: s.ID, Latency: o.Latency,
		// No history: a demo or benchmark router only needs its present.
		HistoryLimit: -1,
		// The agent keeps one session; a second lets a person or test
		// look at the router at the same time.
		MaxSessions: 4,
		Logger:      o.Logger.With("router", s.ID),
	})
	if err != nil {
		return fmt.Errorf("start router of %s: %w", s.ID, err)
	}
	s.Router = r
	dir := filepath.Join(o.DataDir, s.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory of %s: %w", s.ID, err)
	}
	a, err := agent.New(agent.Config{
		MQTTURLs: urls, MQTTCA: o.MQTTCA, OrgID: o.Org, SiteID: s.ID, SiteSecret: o.Key.SiteSecret(o.Org, s.ID), TopicRoot: o.TopicRoot,
		RouterOSAddr: r.Addr(), RouterOSUser: o.RouterUser, RouterOSPassword: o.RouterPassword,
		StateDir: dir, ResyncInterval: o.ResyncInterval, WANList: o.WANList,
	}, agent.Options{
		Logger: o.Logger, Throttle: o.Throttle, MaxSchema: o.MaxSchema,
		// One session per agent: each costs a connection on both sides, and
		// a policy of a few rules gains nothing from a pool.
		RouterSessions: 1,
		OnApplyStart: func(rev uint64, _ int) {
			s.mu.Lock()
			s.applying, s.applyingRev = time.Now(), rev
			s.mu.Unlock()
		},
		OnStatus: func(st protocol.SiteStatus) {
			s.record(st)
			if st.State == protocol.StateApplied {
				f.notify()
			}
			if f.opts.OnStatus != nil {
				f.opts.OnStatus(i, st)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("create agent of %s: %w", s.ID, err)
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := a.Run(ctx); err != nil {
			f.mu.Lock()
			f.errs = append(f.errs, fmt.Errorf("agent of %s: %w", s.ID, err))
			f.mu.Unlock()
			o.Logger.Error("agent stopped", "site", s.ID, "err", err)
		}
	}()
	return nil
}

func (f *Fleet) notify() {
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// Len is the number of sites.
func (f *Fleet) Len() int { return len(f.sites) }

// Site is site i, 0 to Len()-1.
func (f *Fleet) Site(i int) *Site { return f.sites[i] }

// Router is site i's simulated router.
func (f *Fleet) Router(i int) *rossim.Router { return f.sites[i].Router }

// SiteIDs are the sites' ids in order.
func (f *Fleet) SiteIDs() []string {
	ids := make([]string, len(f.sites))
	for i, s := range f.sites {
		ids[i] = s.ID
	}
	return ids
}

// Org is the sites' organisation.
func (f *Fleet) Org() string { return f.opts.Org }

// RouterCredentials are the user and password of every simulated router.
func (f *Fleet) RouterCredentials() (user, password string) {
	return f.opts.RouterUser, f.opts.RouterPassword
}

// WaitApplied waits until every site i has reported applied for at least
// revision min(i) (in any epoch), or ctx ends. Its error names the sites
// still behind.
func (f *Fleet) WaitApplied(ctx context.Context, min func(i int) uint64) error {
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		var behind []string
		for i, s := range f.sites {
			if _, rev, _ := s.Applied(); rev < min(i) {
				behind = append(behind, s.ID)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			n := len(behind)
			if n > 5 {
				behind = append(behind[:5], fmt.Sprintf("and %d more", n-5))
			}
			return fmt.Errorf("wait for applied revisions: %d sites behind %v: %w", n, behind, ctx.Err())
		}
	}
}

// Close stops every agent and router and removes the temporary state
// directory. It reports agents that could not run.
func (f *Fleet) Close() error {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	for _, s := range f.sites {
		if s != nil && s.Router != nil {
			s.Router.Close()
		}
	}
	if f.tmp != "" {
		os.RemoveAll(f.tmp)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.errs...)
}
