// Package syncer joins the control plane's store to MQTT (DESIGN.md sections
// 4 to 6): it publishes every site's desired state after each committed
// write, republishes everything after each (re)connection, and folds what
// agents report back into the store, where the status of groups, prefix
// lists and sites is derived.
//
// # Publishing
//
// The store calls Changed after every commit with the documents the write
// compiled for its sites (the Revisioner's, Change.Documents); Changed only
// keeps them, marks the sites dirty and wakes the loop (Run), so a write
// never waits for MQTT. The loop publishes each dirty site's newest
// document, stamped with the epoch, retained at QoS 1: a write is compiled
// once, in its transaction, for its own sites. A site without such a
// document (after a connection, RepublishAll) is compiled from one
// read-only snapshot of the store (compile.CompileTx) and stamped with the
// revision the Revisioner stored in the same snapshot (compile.Stamp).
// A failed publish leaves the sites dirty and is retried with backoff.
// When several control planes share one store, each publishes what its own
// writes committed; a store that implements PublishFence (store/postgres)
// then orders their publishes per site, and the syncer publishes through
// it, so an older revision never lands after a newer one.
// RepublishAll (called on every bus connection, the first included) marks
// every known site dirty: documents are full state with stable revisions, so
// republishing is idempotent and restores a broker that lost its retained
// messages.
//
// # Ingesting
//
// Syncer is the bus's Ingester. Status and presence are queued in the order
// they arrive and folded into the store many at a time (Store.Ingest: one
// transaction, each resource's sync record decoded and written once per
// batch), so 10,000 sites confirming at once cost a few transactions, not
// 10,000. The queue is bounded (Options.MaxQueuedReports): when it is full,
// receiving waits, which holds up the broker connection that delivered the
// report, so a flood of reports slows its sender and loses nothing. The
// store folds each report with controlplane.FoldStatus: reports are taken
// in order only (an older revision, or an "applying" after that revision's
// outcome, is stale), another epoch's revisions confirm nothing, a revision
// higher than any the site was given is refused, and a report taken
// confirms the resources waiting for the site. A site stored as online that announces no
// presence within Options.PresenceGrace of a connection is marked offline: an
// embedded broker forgets retained presence when it restarts, and an agent
// that died meanwhile leaves no last will.
//
// A report the store finds behind (controlplane.ReportBehind: an outcome of
// an older revision than the site was given) makes the syncer publish the
// site's document again: a broker may lose a retained publish it
// acknowledged (nats-server 2.9.10 did, after a node died), and the agent,
// which reports again when it reconnects, would otherwise never get it. A
// site is republished so at most once per Options.BehindInterval; a report
// within it is answered when the interval ends, so an agent that keeps
// reporting an old revision costs one document per interval, not one per
// report.
//
// After each change the syncer also asks the store to Settle the affected
// sites: a write that leaves a site's content as it was gives it its current
// revision again, which an agent that already applied it never reports
// again. The write confirms such sites for its own resource in its
// transaction; Settle puts the sites' own state right (a delete leaves a
// site syncing to a revision no resource awaits) and lets the propagation
// metric count them.
//
// # Metrics
//
//	rampart_propagation_seconds          write commit → last affected site confirmed
//	rampart_sites{state}                 sites by state (running counts)
//	rampart_status_reports_total{result} taken, stale, other_epoch, refused (a forged revision), behind (republished), decommissioned, over_quota
//	rampart_desired_compile_errors_total documents that could not be stamped
//
// Publishes, broker clients and connection state are counted by packages bus
// and broker.
//
// # Decommissioned sites
//
// Every Options.ForgetInterval the loop asks the store to forget the
// decommissioning sites that are done (their agents applied the empty
// document, or the deadline passed; controlplane/decommission.go), then
// for each closes its broker connections (Options.Disconnect) and clears
// its retained desired, status and presence (Publisher.ClearSite), in the
// publishing loop so that nothing older is published after the clearing.
package syncer

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/protocol"
)

// Store is what the syncer needs from storage (store/bolt implements it).
type Store interface {
	Epoch() string
	Orgs(ctx context.Context) ([]string, error)
	ViewPolicy(ctx context.Context, org string, fn func(cp.PolicyTx) error) error
	ListSites(ctx context.Context, org string) ([]cp.Site, error)
	GetSite(ctx context.Context, org, id string) (cp.Site, error)
	// Ingest takes reports in order, many in one transaction.
	Ingest(ctx context.Context, reports []cp.Report) ([]cp.ReportResult, error)
	Settle(ctx context.Context, org string, sites []string) error
	// CountSites counts sites by state as GET /vpc/sites shows them, for
	// metrics, without listing them.
	CountSites(ctx context.Context) (map[cp.SiteState]int, error)
	// ForgetDecommissioned forgets the decommissioning sites that are
	// done and returns every forgotten site whose topics are still to be
	// cleared; SiteCleared records that they were.
	ForgetDecommissioned(ctx context.Context) ([]cp.SiteRef, error)
	SiteCleared(ctx context.Context, org, site string) error
}

// PublishFence is implemented by a store that several control planes share
// (store/postgres): Publish calls publish with the documents no replica has
// published a newer revision of, holding their sites until it returns, so
// one replica's older revision never lands after another's newer one. The
// syncer publishes through it when its Store has it.
type PublishFence interface {
	Publish(ctx context.Context, org string, docs []protocol.DesiredState, publish func(context.Context, []protocol.DesiredState) error) error
}

// Publisher sends desired-state documents (bus.Bus implements it).
type Publisher interface {
	PublishDesired(ctx context.Context, docs ...protocol.DesiredState) error
	// ClearSite clears a site's retained desired, status and presence.
	ClearSite(ctx context.Context, org, site string) error
}

// Defaults of Options.
const (
	DefaultBatch          = 500
	DefaultRetryMin       = 200 * time.Millisecond
	DefaultRetryMax       = 10 * time.Second
	DefaultPublishTimeout = time.Minute
	// DefaultPresenceGrace exceeds an agent's longest reconnect backoff
	// (30 s) plus its connect timeout (10 s), with room for a slow machine.
	DefaultPresenceGrace = 90 * time.Second
	// DefaultIngestBatch bounds the reports of one store transaction.
	DefaultIngestBatch = 4096
	// DefaultMaxQueuedReports bounds the reports received and not yet in
	// the store: three per site (applying, applied, presence) for 20,000
	// sites reporting at once.
	DefaultMaxQueuedReports = 65536
	// DefaultBehindInterval is the least time between two republishes of
	// one site that reports behind.
	DefaultBehindInterval = 10 * time.Second
	// DefaultForgetInterval: a decommissioned site is forgotten within
	// about a second of its agent's confirmation.
	DefaultForgetInterval = time.Second
	propagationMaxAge     = time.Hour
	propagationMaxCount   = 10000
)

// Options configures New. Store is required; other zero values are usable.
type Options struct {
	Store Store
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
	// Registry receives the syncer's metrics; none are registered if nil.
	Registry prometheus.Registerer
	// Batch is how many documents one PublishDesired call carries
	// (DefaultBatch).
	Batch int
	// RetryMin and RetryMax bound the backoff after a failed publish.
	RetryMin, RetryMax time.Duration
	// PublishTimeout bounds one PublishDesired call (DefaultPublishTimeout).
	PublishTimeout time.Duration
	// PresenceGrace is how long after a broker connection a site stored as
	// online may stay unheard before it is marked offline
	// (DefaultPresenceGrace; negative: never). An embedded broker forgets
	// retained presence when it restarts, and an agent that died meanwhile
	// leaves no last will: without this its site would read online forever.
	PresenceGrace time.Duration
	// MaxQueuedReports bounds the reports received and not yet in the
	// store (DefaultMaxQueuedReports). When it is reached, receiving
	// waits: the broker connection that delivered the report is held up
	// (the embedded broker's publishing site, or the control plane's own
	// connection to an external broker), so a flood slows its sender
	// instead of growing the control plane's memory, and nothing is lost.
	MaxQueuedReports int
	// BehindInterval is the least time between two republishes of a site
	// whose reports are behind its revision (DefaultBehindInterval).
	BehindInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ForgetInterval is how often decommissioning sites are checked and
	// the forgotten ones cleared (DefaultForgetInterval).
	ForgetInterval time.Duration
	// Disconnect closes a forgotten site's broker connections before its
	// topics are cleared (the embedded broker's Broker.Disconnect); nil
	// with an external broker, which cannot be told.
	Disconnect func(org, site string) int
}

// Syncer publishes desired state and ingests reports. Create it with New,
// register Changed with the store, hand it to the bus as Ingester, and Run
// it with the bus as Publisher.
type Syncer struct {
	opts  Options
	log   *slog.Logger
	epoch string

	mu    sync.Mutex
	all   bool                       // republish every site
	dirty map[string]map[string]bool // org → sites to publish
	// ready holds the documents writes compiled (Change.Documents), the
	// newest revision of each site, until published: the syncer compiles
	// only sites without one (after a connection, RepublishAll).
	ready map[string]map[string]protocol.DesiredState
	// sent is the newest revision published of each site (org → site), so
	// that a write's change announced late, after a newer one was
	// published, never publishes an older document.
	sent   map[string]map[string]uint64
	settle map[string]map[string]bool // org → sites to settle
	props  map[string][]*propagation  // org → writes not yet confirmed everywhere
	nprops int
	busy   bool
	// heard holds the sites ("org/site") heard from since the last
	// connection; presenceDue is set when the grace after it has passed.
	heard       map[string]bool
	connectGen  int
	presenceDue int
	// behind holds, per site ("org/site") that reported behind, when the
	// syncer last republished it for that, and whether a republish waits
	// for the interval to end; entries older than the interval are swept.
	behind      map[string]*behindSite
	behindSweep int
	// inQ holds reports not yet in the store, in arrival order; inDone
	// counts those taken (for Drain).
	inMu     sync.Mutex
	inQ      []cp.Report
	inQueued uint64
	inDone   uint64
	inCond   *sync.Cond
	inWake   chan struct{}
	inStop   bool // the ingest loop has ended: enqueue no longer waits

	// presenceMu orders the presence check's writes with ingestion: a
	// presence holds it (read) from noting the site as heard until its
	// write is done, so the check never overwrites a fresher presence.
	// Only presence counts as heard: a status may be a retained copy.
	presenceMu sync.RWMutex
	wake       chan struct{}
	running    bool

	m metrics
}

type behindSite struct {
	at      time.Time
	pending bool
}

// propagation is one committed write waiting for its sites' confirmations.
type propagation struct {
	start time.Time
	want  map[string]uint64
}

type metrics struct {
	propagation   prometheus.Histogram
	reports       *prometheus.CounterVec
	compileErrors prometheus.Counter
	publishErrors prometheus.Counter
}

// New makes a Syncer.
func New(opts Options) *Syncer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.PresenceGrace == 0 {
		opts.PresenceGrace = DefaultPresenceGrace
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.MaxQueuedReports <= 0 {
		opts.MaxQueuedReports = DefaultMaxQueuedReports
	}
	if opts.BehindInterval <= 0 {
		opts.BehindInterval = DefaultBehindInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ForgetInterval <= 0 {
		opts.ForgetInterval = DefaultForgetInterval
	}
	s := &Syncer{
		opts: opts, log: opts.Logger, epoch: opts.Store.Epoch(),
		dirty: map[string]map[string]bool{}, settle: map[string]map[string]bool{}, ready: map[string]map[string]protocol.DesiredState{},
		sent: map[string]map[string]uint64{}, behind: map[string]*behindSite{}, behindSweep: 1024,
		props: map[string][]*propagation{}, wake: make(chan struct{}, 1), inWake: make(chan struct{}, 1),
	}
	s.inCond = sync.NewCond(&s.inMu)
	s.m = metrics{
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rampart_propagation_seconds",
			Help:    "Time from a committed write to the confirmation of it by the last affected site.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_status_reports_total",
			Help: "Site status reports folded into the store, by result (taken, stale, other_epoch, refused: a revision the site was never given; behind: taken, an outcome of an older revision than the site was given, so its document is published again; decommissioned: a forgotten site's; over_quota: a site its organisation does not know, beyond its site quota).",
		}, []string{"result"}),
		compileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_desired_compile_errors_total",
			Help: "Site documents that could not be compiled or stamped with their stored revision.",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_desired_publish_retries_total",
			Help: "Publish rounds that failed and were retried.",
		}),
	}
	for _, r := range cp.ReportResults {
		s.m.reports.WithLabelValues(r.String())
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(s.m.propagation, s.m.reports, s.m.compileErrors, s.m.publishErrors,
			&siteCollector{store: opts.Store, log: s.log})
	}
	return s
}

// Changed is the store's ChangeFunc: it marks the change's sites dirty and
// returns at once.
func (s *Syncer) Changed(c cp.Change) {
	if len(c.Sites) == 0 {
		return
	}
	s.mu.Lock()
	d, st := orgMap(s.dirty, c.OrgID), orgMap(s.settle, c.OrgID)
	for _, site := range c.Sites {
		d[site], st[site] = true, true
	}
	for site, doc := range c.Documents {
		r := orgMap(s.ready, c.OrgID)
		// Changes may arrive out of commit order: keep the newest, and
		// nothing older than what was published.
		if cur, ok := r[site]; doc.Revision > s.sent[c.OrgID][site] && (!ok || doc.Revision >= cur.Revision) {
			r[site] = doc
		}
	}
	if len(c.Revisions) > 0 {
		want := map[string]uint64{}
		for site, r := range c.Revisions {
			if r != cp.UnknownRevision {
				want[site] = r
			}
		}
		if len(want) > 0 {
			s.addPropagation(c.OrgID, &propagation{start: s.opts.Now(), want: want})
		}
	}
	s.mu.Unlock()
	s.signal()
}

// RepublishAll marks every site of every organisation dirty. Call it after
// each broker connection (bus.Options.OnConnect).
func (s *Syncer) RepublishAll() {
	s.mu.Lock()
	s.all = true
	s.connectGen++
	gen := s.connectGen
	s.heard = map[string]bool{}
	s.mu.Unlock()
	s.signal()
	if s.opts.PresenceGrace > 0 {
		time.AfterFunc(s.opts.PresenceGrace, func() {
			s.mu.Lock()
			s.presenceDue = gen
			s.mu.Unlock()
			s.signal()
		})
	}
}

// hear notes that a site was heard from since the last connection.
func (s *Syncer) hear(org, site string) {
	s.mu.Lock()
	if s.heard != nil {
		s.heard[org+"/"+site] = true
	}
	s.mu.Unlock()
}

func (s *Syncer) wasHeard(org, site string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heard[org+"/"+site]
}

// checkPresence marks offline every site stored as online that has not
// been heard from since the connection whose grace has passed.
func (s *Syncer) checkPresence(ctx context.Context) {
	s.mu.Lock()
	due := s.presenceDue != 0 && s.presenceDue == s.connectGen
	s.presenceDue = 0
	s.mu.Unlock()
	if !due {
		return
	}
	orgs, err := s.opts.Store.Orgs(ctx)
	if err != nil {
		s.log.Error("check presence", "error", err)
		return
	}
	for _, org := range orgs {
		sites, err := s.opts.Store.ListSites(ctx, org)
		if err != nil {
			s.log.Error("check presence", "org", org, "error", err)
			continue
		}
		for _, site := range sites {
			if !site.Online || s.wasHeard(org, site.ID) {
				continue
			}
			s.presenceMu.Lock()
			if s.wasHeard(org, site.ID) {
				s.presenceMu.Unlock()
				continue
			}
			s.log.Info("site not heard from since the broker connection; marking it offline", "org", org, "site", site.ID,
				"grace", s.opts.PresenceGrace.String())
			// Queued behind anything already received: a presence that
			// arrives later is applied later and wins.
			s.enqueue(cp.Report{OrgID: org, SiteID: site.ID, Presence: &protocol.Presence{State: protocol.PresenceOffline}})
			s.presenceMu.Unlock()
		}
	}
}

func (s *Syncer) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends. Only one Run may be active.
func (s *Syncer) Run(ctx context.Context, pub Publisher) {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		panic("syncer: Run called twice")
	}
	s.running = true
	s.mu.Unlock()
	ingested := make(chan struct{})
	go func() {
		defer close(ingested)
		s.ingestLoop(ctx)
	}()
	defer func() {
		<-ingested
		s.mu.Lock()
		s.running, s.busy = false, false
		s.mu.Unlock()
	}()
	backoff := time.Duration(0)
	forgetTick := time.NewTicker(s.opts.ForgetInterval)
	defer forgetTick.Stop()
	for {
		forgetDue := false
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-forgetTick.C:
			forgetDue = true
		}
		s.mu.Lock()
		all, dirty, settle := s.all, s.dirty, s.settle
		s.all, s.dirty, s.settle = false, map[string]map[string]bool{}, map[string]map[string]bool{}
		s.busy = true
		s.mu.Unlock()

		if forgetDue {
			s.forget(ctx, pub, dirty)
		}
		// Documents first: settling reads every site of a change, one
		// store read each (100,000 PostgreSQL round trips for a list that
		// every site uses, about a minute), and a site waits for nothing
		// of it.
		failed, err := s.publish(ctx, pub, all, dirty)
		s.settleSites(ctx, settle)
		s.checkPresence(ctx)
		if err != nil && ctx.Err() == nil {
			s.m.publishErrors.Inc()
			s.requeue(failed)
			backoff = min(max(backoff*2, s.opts.RetryMin), s.opts.RetryMax)
			s.log.Warn("publish desired state; will retry", "error", err, "retry_in", backoff.String())
			s.mu.Lock()
			s.busy = false
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			s.signal()
			continue
		}
		backoff = 0
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
	}
}

func (s *Syncer) pendingLocked() bool {
	return s.all || len(s.dirty) > 0 || len(s.settle) > 0 || s.busy
}

// Idle reports whether nothing is waiting to be published.
func (s *Syncer) Idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.pendingLocked()
}

// work is what a failed publish round puts back: all, or the sites of
// each organisation still to publish.
type work struct {
	all   bool
	dirty map[string]map[string]bool
}

func (s *Syncer) requeue(w work) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.all {
		s.all = true
	}
	for org, sites := range w.dirty {
		maps.Copy(orgMap(s.dirty, org), sites)
	}
}

// settleSites confirms resources that wait for a revision a site already
// applied (see Store.Settle), then drops from pending propagations the sites
// that need not report again.
func (s *Syncer) settleSites(ctx context.Context, settle map[string]map[string]bool) {
	for org, sites := range settle {
		list := slices.Sorted(maps.Keys(sites))
		if err := s.opts.Store.Settle(ctx, org, list); err != nil {
			s.log.Error("settle sites", "org", org, "error", err)
		}
		for _, site := range list {
			rec, err := s.opts.Store.GetSite(ctx, org, site)
			if err == nil && rec.AppliedRevision > 0 {
				s.confirmPropagation(org, site, rec.AppliedRevision)
			}
		}
	}
}

// forget forgets the decommissioning sites that are done
// (Store.ForgetDecommissioned) and, for each forgotten site, drops what
// was still to be published for it (dirty, this round's), closes its
// broker connections and clears its retained topics, in that order: the
// agent must not receive the cleared (empty) desired state, and nothing
// older may be published after the clearing, which is why this runs in
// the publishing loop. A site whose clearing failed stays with the store
// and is tried again at the next tick.
func (s *Syncer) forget(ctx context.Context, pub Publisher, dirty map[string]map[string]bool) {
	refs, err := s.opts.Store.ForgetDecommissioned(ctx)
	if err != nil {
		s.log.Error("forget decommissioned sites", "error", err)
		return
	}
	for _, ref := range refs {
		s.mu.Lock()
		delete(s.ready[ref.OrgID], ref.SiteID)
		s.mu.Unlock()
		delete(dirty[ref.OrgID], ref.SiteID)
		if s.opts.Disconnect != nil {
			s.opts.Disconnect(ref.OrgID, ref.SiteID)
		}
		cctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
		err := pub.ClearSite(cctx, ref.OrgID, ref.SiteID)
		cancel()
		if err == nil {
			err = s.opts.Store.SiteCleared(ctx, ref.OrgID, ref.SiteID)
		}
		if err != nil {
			s.log.Warn("clear a decommissioned site's topics; will retry", "org", ref.OrgID, "site", ref.SiteID, "error", err)
			continue
		}
		s.log.Info("decommissioned site forgotten", "org", ref.OrgID, "site", ref.SiteID)
	}
}

// publish compiles and publishes; on error it returns what is left to do.
func (s *Syncer) publish(ctx context.Context, pub Publisher, all bool, dirty map[string]map[string]bool) (work, error) {
	if all {
		orgs, err := s.opts.Store.Orgs(ctx)
		if err != nil {
			return work{all: true, dirty: dirty}, err
		}
		for _, org := range orgs {
			sites, err := s.opts.Store.ListSites(ctx, org)
			if err != nil {
				return work{all: true, dirty: dirty}, err
			}
			d := orgMap(dirty, org)
			for _, site := range sites {
				d[site.ID] = true
			}
		}
	}
	orgs := slices.Sorted(maps.Keys(dirty))
	for i, org := range orgs {
		sites := slices.Sorted(maps.Keys(dirty[org]))
		for len(sites) > 0 {
			n := min(len(sites), s.opts.Batch)
			docs, err := s.documents(ctx, org, sites[:n])
			if err == nil && len(docs) > 0 {
				// Bounded: a publish caught by a lost connection may never
				// be acknowledged; the retry (and the republish after the
				// reconnection) sends it again.
				pctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
				if f, ok := s.opts.Store.(PublishFence); ok {
					err = f.Publish(pctx, org, docs, func(ctx context.Context, docs []protocol.DesiredState) error {
						return pub.PublishDesired(ctx, docs...)
					})
				} else {
					err = pub.PublishDesired(pctx, docs...)
				}
				cancel()
			}
			if err == nil {
				s.published(org, docs)
			}
			if err != nil {
				left := work{dirty: map[string]map[string]bool{}}
				left.dirty[org] = setOf(sites)
				for _, o := range orgs[i+1:] {
					left.dirty[o] = dirty[o]
				}
				return left, err
			}
			sites = sites[n:]
		}
	}
	return work{}, nil
}

func setOf(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

// documents are the documents to publish for sites: the ones their writes
// compiled (ready), stamped with the epoch, and for the others a compile.
func (s *Syncer) documents(ctx context.Context, org string, sites []string) ([]protocol.DesiredState, error) {
	var docs []protocol.DesiredState
	var rest []string
	s.mu.Lock()
	for _, site := range sites {
		if d, ok := s.ready[org][site]; ok {
			d.Epoch = s.epoch
			docs = append(docs, d)
		} else {
			rest = append(rest, site)
		}
	}
	s.mu.Unlock()
	if len(rest) == 0 {
		return docs, nil
	}
	compiled, err := s.compile(ctx, org, rest)
	return append(docs, compiled...), err
}

// published records what was just published and forgets the ready
// documents among it, unless a newer one arrived meanwhile.
func (s *Syncer) published(org string, docs []protocol.DesiredState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, sent := s.ready[org], orgMap(s.sent, org)
	for _, d := range docs {
		sent[d.SiteID] = max(sent[d.SiteID], d.Revision)
		if cur, ok := r[d.SiteID]; ok && cur.Revision <= d.Revision {
			delete(r, d.SiteID)
		}
	}
	if len(r) == 0 {
		delete(s.ready, org)
	}
}

// compile builds the documents of sites from one snapshot. A site that was
// never assigned a revision (known only from its agent's reports) has
// nothing to publish.
func (s *Syncer) compile(ctx context.Context, org string, sites []string) ([]protocol.DesiredState, error) {
	var docs []protocol.DesiredState
	err := s.opts.Store.ViewPolicy(ctx, org, func(tx cp.PolicyTx) error {
		var err error
		docs, err = compile.Published(tx, org, sites, s.epoch, func(site string, err error) {
			s.m.compileErrors.Inc()
			s.log.Error("stamp desired state", "org", org, "site", site, "error", err)
		})
		return err
	})
	return docs, err
}

// SiteStatus is the bus.Ingester method for status reports: it queues the
// report for the store.
func (s *Syncer) SiteStatus(_ context.Context, org, site string, st protocol.SiteStatus) {
	s.enqueue(cp.Report{OrgID: org, SiteID: site, Status: &st})
}

// SitePresence is the bus.Ingester method for presence.
func (s *Syncer) SitePresence(_ context.Context, org, site string, p protocol.Presence) {
	s.presenceMu.RLock()
	defer s.presenceMu.RUnlock()
	s.hear(org, site)
	s.enqueue(cp.Report{OrgID: org, SiteID: site, Presence: &p})
}

// enqueue queues r for the ingest loop, waiting while the queue is full.
func (s *Syncer) enqueue(r cp.Report) {
	s.inMu.Lock()
	for len(s.inQ) >= s.opts.MaxQueuedReports && !s.inStop {
		s.inCond.Wait()
	}
	s.inQ = append(s.inQ, r)
	s.inQueued++
	s.inMu.Unlock()
	select {
	case s.inWake <- struct{}{}:
	default:
	}
}

// ingestEach ingests reports one per transaction; a report that fails is
// logged and dropped (its result reads stale).
func (s *Syncer) ingestEach(ctx context.Context, batch []cp.Report) []cp.ReportResult {
	results := make([]cp.ReportResult, len(batch))
	for i, r := range batch {
		res, err := s.opts.Store.Ingest(ctx, batch[i:i+1])
		if err != nil {
			s.log.Error("drop a site report the store refuses", "org", r.OrgID, "site", r.SiteID, "error", err)
			results[i] = cp.ReportStale
			continue
		}
		results[i] = res[0]
	}
	return results
}

// Drain waits until every report received so far is in the store, or ctx
// ends. Tests and benchmarks use it.
func (s *Syncer) Drain(ctx context.Context) error {
	s.inMu.Lock()
	target := s.inQueued
	s.inMu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		s.inMu.Lock()
		s.inCond.Broadcast()
		s.inMu.Unlock()
	})
	defer stop()
	s.inMu.Lock()
	defer s.inMu.Unlock()
	for s.inDone < target {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.inCond.Wait()
	}
	return nil
}

// ingestLoop folds queued reports into the store, up to DefaultIngestBatch
// per transaction, until ctx ends. A failed transaction is retried: the
// reports are facts, losing one could leave a resource syncing.
func (s *Syncer) ingestLoop(ctx context.Context) {
	s.inMu.Lock()
	s.inStop = false
	s.inMu.Unlock()
	defer func() {
		s.inMu.Lock()
		s.inStop = true
		s.inCond.Broadcast()
		s.inMu.Unlock()
	}()
	backoff := time.Duration(0)
	for {
		s.inMu.Lock()
		n := min(len(s.inQ), DefaultIngestBatch)
		batch := slices.Clone(s.inQ[:n])
		s.inMu.Unlock()
		if n == 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.inWake:
			}
			continue
		}
		results, err := s.opts.Store.Ingest(ctx, batch)
		if err != nil && ctx.Err() == nil && backoff >= s.opts.RetryMax {
			// Failing for a while: take the reports one at a time, so one
			// the store cannot take (logged and dropped) does not hold up
			// every other site's.
			results, err = s.ingestEach(ctx, batch), nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(backoff*2, s.opts.RetryMin), s.opts.RetryMax)
			s.log.Error("ingest site reports; will retry", "reports", n, "error", err, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		for i, r := range batch {
			if r.Status == nil {
				continue
			}
			res := results[i]
			s.m.reports.WithLabelValues(res.String()).Inc()
			if res.Taken() && r.Status.State == protocol.StateApplied {
				s.confirmPropagation(r.OrgID, r.SiteID, r.Status.Revision)
			}
			if res == cp.ReportBehind {
				s.republishBehind(r.OrgID, r.SiteID)
			}
		}
		s.log.Debug("ingested site reports", "reports", n)
		s.inMu.Lock()
		s.inQ = slices.Delete(s.inQ, 0, n)
		s.inDone += uint64(n)
		s.inCond.Broadcast()
		s.inMu.Unlock()
	}
}

// republishBehind publishes the site's document again, now if the site
// was not republished so within Options.BehindInterval, else once the
// interval ends (one pending republish per site, however many reports).
func (s *Syncer) republishBehind(org, site string) {
	k := org + "/" + site
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.behind[k]
	if b == nil {
		if len(s.behind) >= s.behindSweep {
			s.sweepBehind(now)
		}
		b = &behindSite{}
		s.behind[k] = b
	}
	if b.pending {
		return
	}
	if wait := b.at.Add(s.opts.BehindInterval).Sub(now); !b.at.IsZero() && wait > 0 {
		b.pending = true
		time.AfterFunc(wait, func() {
			s.mu.Lock()
			b.pending, b.at = false, s.opts.Now()
			s.markDirtyLocked(org, site)
			s.mu.Unlock()
			s.signal()
		})
		return
	}
	b.at = now
	s.markDirtyLocked(org, site)
	s.signal()
}

// sweepBehind forgets sites last republished for being behind longer than
// the interval ago; s.mu is held.
func (s *Syncer) sweepBehind(now time.Time) {
	for k, b := range s.behind {
		if !b.pending && now.Sub(b.at) >= s.opts.BehindInterval {
			delete(s.behind, k)
		}
	}
	s.behindSweep = max(1024, 2*len(s.behind))
}

// markDirtyLocked marks a site to publish; s.mu is held.
func (s *Syncer) markDirtyLocked(org, site string) {
	orgMap(s.dirty, org)[site] = true
}

// orgMap returns m's map of org, creating it if missing.
func orgMap[V any](m map[string]map[string]V, org string) map[string]V {
	inner := m[org]
	if inner == nil {
		inner = map[string]V{}
		m[org] = inner
	}
	return inner
}

// addPropagation records a write to time; s.mu is held.
func (s *Syncer) addPropagation(org string, p *propagation) {
	if s.nprops >= propagationMaxCount {
		s.expirePropagations(true)
	}
	s.props[org] = append(s.props[org], p)
	s.nprops++
}

// expirePropagations drops writes older than propagationMaxAge (they will
// never be timed: a site never confirmed), or with force the oldest half.
func (s *Syncer) expirePropagations(force bool) {
	cutoff := s.opts.Now().Add(-propagationMaxAge)
	for org, ps := range s.props {
		keep := ps[:0]
		for i, p := range ps {
			if p.start.Before(cutoff) || force && i < len(ps)/2+1 {
				s.nprops--
				continue
			}
			keep = append(keep, p)
		}
		if len(keep) == 0 {
			delete(s.props, org)
		} else {
			s.props[org] = keep
		}
	}
}

// confirmPropagation notes that site applied revision, and observes the
// propagation time of every write whose last site that was.
func (s *Syncer) confirmPropagation(org, site string, revision uint64) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.props[org]
	keep := ps[:0]
	for _, p := range ps {
		if want, ok := p.want[site]; ok && revision >= want {
			delete(p.want, site)
		}
		if len(p.want) == 0 {
			s.m.propagation.Observe(now.Sub(p.start).Seconds())
			s.nprops--
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) == 0 {
		delete(s.props, org)
	} else {
		s.props[org] = keep
	}
}

// siteCollector counts sites by state on scrape.
type siteCollector struct {
	store Store
	log   *slog.Logger
}

var sitesDesc = prometheus.NewDesc("rampart_sites", "Sites known to the control plane, by state (in_sync, syncing, failed, offline, unknown, decommissioning).", []string{"state"}, nil)

func (c *siteCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sitesDesc }

func (c *siteCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counts, err := c.store.CountSites(ctx) // O(1) in the sites (#13.7)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(sitesDesc, err)
		return
	}
	for _, st := range cp.SiteStates {
		ch <- prometheus.MustNewConstMetric(sitesDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}
