package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rampart-fw/rampart/agent/reconcile"
	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/agent/routeros"
	"github.com/rampart-fw/rampart/protocol"
)

// errConfirm makes update read the router before reporting a new revision
// that the observation says needs no write.
var errConfirm = errors.New("a new revision with nothing to write is confirmed against the router")

// announceWrites is the size of plan from which a new revision is
// announced as applying before its writes. A router takes about a
// millisecond a write (the agent's benchmarks give rossim that
// WriteServiceTime), so a smaller plan is applied, read back and reported
// applied within a few tenths of a second: an "applying" would be
// overwritten before anyone could read it, yet it cost every site a
// status through the broker and the control plane's ingestion, and the
// apply a broker round trip before its first write. When 10,000 sites
// each changed one rule, it was one of the three messages per site
// (document, applying, applied) and about a third of the CPU of both
// sides (BENCHMARKS.md, end to end). A large
// apply (a first sync of thousands of address-list entries takes
// seconds) still says so, which also keeps its site syncing past the
// control plane's sync deadline while it works.
const announceWrites = 100

// bigRead is the number of rows above which a sync hands freed memory back
// to the OS at once (see sync).
const bigRead = 2000

// sync re-reads the router and makes it match the current desired state:
// the resync, which catches drift. (A retry after a failure reads the
// router too: every failure drops the observation.)
func (a *Agent) sync(ctx context.Context) error {
	a.observed = nil
	return a.update(ctx)
}

// update makes the router match the current desired state, planning from
// the last observation (the tables as the last apply read them back) when
// there is one, so a new revision costs its writes and the read-back of the
// tables it wrote, not a read of every table first. An apply planned from
// an observation the router no longer matches (edited by hand since, a
// dropped connection) fails on a write or on the read-back; it is then
// planned again at once from a fresh read, as a retry would, without
// reporting the first attempt. See DESIGN.md, "Observed state".
func (a *Agent) update(ctx context.Context) error {
	a.lastRead = 0
	trusted := a.observed != nil
	writes, err := a.syncOnce(ctx, 0)
	if err != nil && trusted && ctx.Err() == nil {
		if !errors.Is(err, errConfirm) {
			a.log.Info("the router no longer matches the last observation; reading it again", "err", err)
		}
		a.observed = nil
		_, err = a.syncOnce(ctx, writes)
	}
	if a.lastRead > bigRead {
		// Reading and planning thousands of rows leaves megabytes of freed
		// heap that the runtime would return to the OS only slowly; the
		// agent shares a router's RAM, so return it now (one collection,
		// a few milliseconds, at most once per resync).
		debug.FreeOSMemory()
	}
	return err
}

// syncOnce is one attempt of update; prior is the number of writes an
// earlier attempt of the same update made. It returns the writes the router
// accepted. An attempt planned from the observation does not report its
// failure (update tries again from a fresh read); any failure drops the
// observation.
func (a *Agent) syncOnce(ctx context.Context, prior int) (int, error) {
	d := a.desired
	if d == nil {
		return 0, nil
	}
	start := time.Now()
	trusted := a.observed != nil
	fail := func(writes int, err error) (int, error) {
		a.observed = nil
		if trusted {
			return writes, err
		}
		return writes, a.fail(ctx, d, start, prior+writes, err)
	}
	isNew := a.appliedEpoch != d.Epoch || a.appliedRev != d.Revision
	if a.routerVersion == "" {
		if err := a.identify(ctx); err != nil {
			return fail(0, err)
		}
	}
	var st reconcile.Observed
	if trusted {
		st = *a.observed
	} else {
		var err error
		if st, err = a.read(ctx); err != nil {
			return fail(0, err)
		}
		for f := range st {
			reconcile.SortEntries(st[f].Entries)
		}
		a.m.routerConnected.Set(1)
	}
	guard := a.guard(st)
	w := a.render(d, guard)
	if (len(w[render.IPv4].Out) > 0 || len(w[render.IPv6].Out) > 0) && !guard[render.IPv4].IsValid() && !guard[render.IPv6].IsValid() {
		a.log.Warn("outbound filtering without a guard: the agent's own address towards the broker is unknown, so a policy could cut it off", "broker", a.cfg.MQTTURLs[0].Host)
	}
	ops := reconcile.Plan(st, w)
	if len(ops) == 0 && !isNew && a.published {
		a.observed = &st
		return 0, nil // steady state: nothing to write, nothing new to say
	}
	if len(ops) == 0 && isNew && trusted {
		// A new revision that needs no write has no read-back to confirm
		// it: it is reported applied only after a read of the router.
		return fail(0, errConfirm)
	}
	if len(ops) > 0 {
		if addsJumps(ops) {
			if err := a.checkWAN(ctx); err != nil {
				return fail(0, err)
			}
		}
		if isNew && a.pendingApplied {
			a.pendingApplied = false
			if a.opts.OnApplyStart != nil {
				a.opts.OnApplyStart(d.Revision, len(ops))
			}
			if len(ops) >= announceWrites {
				a.status = a.newStatus(d, protocol.StateApplying)
				a.publish(ctx)
			}
		}
		a.log.Info("applying", "revision", d.Revision, "writes", len(ops), "drift", !isNew)
	}
	writes, err := a.execute(ctx, ops)
	if err != nil {
		return fail(writes, err)
	}
	// Read back and compare: the plan against what the router now holds
	// must be empty. A table the plan did not write is not read again, nor
	// are the address lists it did not write: reading 10,000 entries back
	// after a one-entry change was most of its time (BENCHMARKS.md, "Small
	// changes"). What was not read back is trusted as observed, as it is
	// when planning.
	var spec [render.NumFamilies]readSpec
	var written [render.NumFamilies][]string
	var some [render.NumFamilies]bool
	readBack := false
	for _, f := range render.Families {
		menu := reconcile.Menus[f]
		spec[f].filter = slices.ContainsFunc(ops, func(op reconcile.Op) bool { return op.Path == menu.Filter })
		written[f] = reconcile.WrittenLists(ops, menu.AddressList, st[f].Entries)
		spec[f].lists = len(written[f]) > 0
		if some[f] = spec[f].lists && len(written[f]) <= maxListQuery; some[f] {
			spec[f].query = listQuery(written[f])
		} else if spec[f].lists {
			st[f].Entries = nil
		}
		readBack = readBack || spec[f].filter || spec[f].lists
	}
	big := len(ops) > bigRead
	ops = nil // let a large plan go before the read-back allocates
	if big {
		debug.FreeOSMemory()
	}
	if readBack {
		st2, err := a.readTables(ctx, spec)
		if err != nil {
			return fail(writes, err)
		}
		a.m.routerConnected.Set(1)
		for _, f := range render.Families {
			if spec[f].filter {
				st[f].Filter = st2[f].Filter
			}
			switch {
			case some[f]:
				// The observed entries of the other lists stay; those of
				// the lists written are replaced by what the router now
				// holds.
				st[f].Entries = reconcile.ReplaceLists(st[f].Entries, written[f], st2[f].Entries)
			case spec[f].lists:
				st[f].Entries = st2[f].Entries
				reconcile.SortEntries(st[f].Entries)
			}
		}
	}
	if rest := reconcile.Plan(st, w); len(rest) > 0 {
		return fail(writes, &mismatchError{writes: len(rest), first: rest[0].String()})
	}
	// What was just read back (and what was read before, for a table the
	// plan did not write) is the router now: the next revision plans from it.
	a.observed = &st
	writes += prior
	if !isNew && writes > 0 {
		a.driftRepairs += writes
		a.m.driftRepairs.Add(float64(writes))
		a.log.Warn("repaired drift", "writes", writes, "revision", d.Revision)
	}
	a.appliedEpoch, a.appliedRev = d.Epoch, d.Revision
	a.failures = 0
	dur := time.Since(start)
	a.m.applyDuration.Observe(dur.Seconds())
	a.m.applies.WithLabelValues("applied").Inc()
	a.m.appliedRevision.Set(float64(d.Revision))
	a.m.lastApplied.Set(float64(time.Now().Unix()))
	a.m.managedRules.Set(float64(w.Rules()))
	a.m.managedEntries.Set(float64(w.Entries()))
	st2 := a.newStatus(d, protocol.StateApplied)
	st2.DurationMS = dur.Milliseconds()
	st2.Rules = w.Rules() // both families
	st2.AddressEntries = w.Entries()
	st2.Operations = writes
	if !isNew && writes == 0 && a.status.State == protocol.StateApplied {
		// Nothing happened (e.g. a reconnect): keep the last apply's figures.
		st2.Operations, st2.DurationMS, st2.AppliedAt = a.status.Operations, a.status.DurationMS, a.status.AppliedAt
	}
	a.status = st2
	a.log.Info("applied", "revision", d.Revision, "writes", writes, "duration_ms", st2.DurationMS)
	a.publish(ctx)
	return writes, nil
}

// render returns the wanted rows of d, reusing the last result while the
// document and the guard address are the same (resyncs then allocate
// nothing for a large policy), and the entries of unchanged prefix lists
// otherwise.
func (a *Agent) render(d *protocol.DesiredState, guard [render.NumFamilies]netip.Addr) render.Wanted {
	if a.rendered.doc != d || a.rendered.guard != guard {
		a.rendered.doc, a.rendered.guard = d, guard
		a.rendered.w = a.rendered.r.Render(d, render.Options{WANList: a.cfg.WANList, Guards: guard})
	}
	return a.rendered.w
}

func (a *Agent) newStatus(d *protocol.DesiredState, state string) protocol.SiteStatus {
	return protocol.SiteStatus{
		Schema: protocol.StatusSchema, OrgID: a.cfg.OrgID, SiteID: a.cfg.SiteID,
		Epoch: d.Epoch, Revision: d.Revision, State: state,
		AppliedAt: time.Now().UTC(), DriftRepairs: a.driftRepairs,
		AgentVersion: agentVersion, RouterOSVersion: a.routerVersion, Board: a.routerBoard,
	}
}

func (a *Agent) fail(ctx context.Context, d *protocol.DesiredState, start time.Time, writes int, err error) error {
	var trap *routeros.Trap
	if !errors.As(err, &trap) {
		a.m.routerConnected.Set(0)
		a.m.routerReconnects.Inc()
	}
	if a.holdTransient && transient(err) {
		// Within the apply's retry budget (applyRetrying): a dropped
		// connection is not a failure anyone needs to see yet.
		a.held = true
		a.m.applies.WithLabelValues("interrupted").Inc()
		a.log.Warn("apply interrupted; trying again on a new session", "revision", d.Revision, "err", err, "writes", writes)
		return err
	}
	msg := a.explain(err)
	a.log.Error("apply failed: "+msg, "revision", d.Revision, "err", err, "writes", writes)
	a.m.applies.WithLabelValues("failed").Inc()
	st := a.newStatus(d, protocol.StateFailed)
	st.Error = msg
	st.Operations = writes
	st.DurationMS = time.Since(start).Milliseconds()
	if a.status.State == protocol.StateApplied && a.appliedEpoch == d.Epoch && a.appliedRev == d.Revision {
		// The revision was applied; a failed drift repair is reported as
		// failed too, so an operator sees the router no longer matches.
		st.AppliedAt = a.status.AppliedAt
	}
	a.status = st
	a.publish(ctx)
	return err
}

func (a *Agent) publish(_ context.Context) {
	if a.refused != nil {
		// Whatever the held policy's applies say, the revision the control
		// plane asked for was refused (Agent.refuse).
		a.status = *a.refused
	}
	if a.status.State == "" {
		return
	}
	// A RouterOS message can be of any length; the broker closes the
	// connection of a site whose status exceeds protocol.MaxStatusBytes.
	a.status = a.status.Bounded()
	if a.status != a.lastReported {
		a.lastReported = a.status
		if a.opts.OnStatus != nil {
			a.opts.OnStatus(a.status)
		}
	}
	if a.mq != nil {
		// Returns at once: the adapter publishes the newest status until
		// the broker acknowledges it, and again on every connection.
		if err := a.mq.PublishStatus(a.status); err != nil {
			a.log.Error("publish status", "err", err)
		}
	}
	a.published = a.status.State != protocol.StateApplying
}

func (a *Agent) identify(ctx context.Context) error {
	rows, _, err := a.router.Run(ctx, "/system/resource/print")
	if err != nil {
		return fmt.Errorf("read system resource: %w", err)
	}
	if len(rows) > 0 {
		v, _, _ := strings.Cut(rows[0]["version"], " ")
		a.routerVersion, a.routerBoard = v, rows[0]["board-name"]
	}
	return nil
}

// addsJumps reports whether a plan adds or changes a jump, the only writes
// that name the WAN interface list (existing jumps already found it).
func addsJumps(ops []reconcile.Op) bool {
	for _, op := range ops {
		if op.Phase == reconcile.PhaseJumps && op.Kind != reconcile.Move {
			return true
		}
	}
	return false
}

// checkWAN fails early, before any write, when the WAN interface list the
// jumps need does not exist: RouterOS would refuse the jump half-way through
// an apply with a message that does not say what to do.
func (a *Agent) checkWAN(ctx context.Context) error {
	rows, _, err := a.router.Run(ctx, "/interface/list/print", "=.proplist=name")
	if err != nil {
		var trap *routeros.Trap
		if errors.As(err, &trap) {
			return nil // cannot tell; let the writes speak
		}
		return fmt.Errorf("read interface lists: %w", err)
	}
	for _, r := range rows {
		if r["name"] == a.cfg.WANList {
			return nil
		}
	}
	return &wanMissingError{list: a.cfg.WANList}
}

// maxListQuery is the number of written address lists up to which the
// read-back selects them with a query; past it, it reads every list.
const maxListQuery = 16

// listQuery returns the API query words selecting address lists names.
func listQuery(names []string) []string {
	q := make([]string, 0, len(names)+1)
	for _, n := range names {
		q = append(q, "?list="+n)
	}
	if len(names) > 1 {
		q = append(q, "?#"+strings.Repeat("|", len(names)-1))
	}
	return q
}

// execute runs a plan and returns the number of writes the router accepted.
// Phases run one after the other; the writes of a concurrent phase are
// pipelined on one session.
func (a *Agent) execute(ctx context.Context, ops []reconcile.Op) (int, error) {
	if len(ops) == 0 {
		return 0, nil
	}
	ids := make([]string, len(ops))
	var writes atomic.Int64
	resolve := func(id string) string {
		if n, ok := reconcile.IsRef(id); ok {
			return ids[n]
		}
		return id
	}
	ok := func(i int, ret string) {
		writes.Add(1)
		a.m.operations.WithLabelValues(string(ops[i].Kind)).Inc()
		ids[i] = ret
	}
	tolerate := func(op reconcile.Op, err error) bool {
		// Someone (or an earlier, interrupted apply) added the entry; the
		// read-back repairs its comment if needed.
		return op.Kind == reconcile.Add && reconcile.IsAddressList(op.Path) && errors.Is(err, routeros.ErrExists)
	}
	run := func(s *routeros.Session, i int) error {
		op := ops[i]
		words := op.Words(resolve)
		if words == nil {
			return nil // a remove whose rows were never created
		}
		_, ret, err := s.Run(words...)
		if err != nil {
			if tolerate(op, err) {
				return nil
			}
			return fmt.Errorf("%s: %w", op, err)
		}
		ok(i, ret)
		return nil
	}
	for start := 0; start < len(ops); {
		end := start + 1
		for end < len(ops) && ops[end].Phase == ops[start].Phase {
			end++
		}
		var err error
		if ops[start].Phase.Concurrent() && end-start > 1 {
			err = a.pipelined(ctx, ops, start, end, resolve, ok, tolerate)
		} else {
			err = a.sequential(ctx, start, end, run)
		}
		if err != nil {
			return int(writes.Load()), err
		}
		start = end
	}
	return int(writes.Load()), nil
}

func (a *Agent) sequential(ctx context.Context, start, end int, run func(*routeros.Session, int) error) error {
	s, err := a.router.Acquire(ctx)
	if err != nil {
		return err
	}
	defer a.router.Release(s)
	for i := start; i < end; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := run(s, i); err != nil {
			return err
		}
	}
	return nil
}

// pipelineWindow is how many independent writes are in flight on one
// session: enough to cover a few milliseconds of round trip at the write
// rate of a router, small enough to keep a router's API queue short.
const pipelineWindow = 64

// pipelined runs the independent writes ops[start:end] on one session with
// up to pipelineWindow in flight.
func (a *Agent) pipelined(ctx context.Context, ops []reconcile.Op, start, end int, resolve func(string) string, ok func(i int, ret string), tolerate func(reconcile.Op, error) bool) error {
	s, err := a.router.Acquire(ctx)
	if err != nil {
		return err
	}
	defer a.router.Release(s)
	index := make([]int, 0, end-start)
	for i := start; i < end; i++ {
		if ops[i].Kind != reconcile.Remove || ops[i].Words(resolve) != nil {
			index = append(index, i)
		}
	}
	var first error
	cmd := func(k int) []string { return ops[index[k]].Words(resolve) }
	perr := s.Pipeline(len(index), cmd, pipelineWindow, func(k int, ret string, err error) {
		i := index[k]
		switch {
		case err == nil:
			ok(i, ret)
		case tolerate(ops[i], err):
		case first == nil:
			first = fmt.Errorf("%s: %w", ops[i], err)
		}
	})
	if perr != nil {
		return perr
	}
	return first
}
