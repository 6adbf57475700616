package controlplane

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// The audit trail (DESIGN.md section 2, #16): every successful write of a
// group or prefix list records one AuditEvent in the write's own
// transaction: who (the token's subject and organisation), what (method,
// kind, id, the version written and the body as stored after it), when,
// and the request id. The events of a resource are also its versions
// (Versions): one record, not two. Events older than the retention period
// are pruned a bounded batch at a time.

// AuditEventIDPrefix starts every audit event id.
const AuditEventIDPrefix = "evt_"

// DefaultAuditRetention is how long events are kept unless the operator
// says otherwise (--audit-retention).
const DefaultAuditRetention = 90 * 24 * time.Hour

// AuditEvent is one write as the audit trail keeps it.
type AuditEvent struct {
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
	OrgID     string    `json:"org_id"`
	Subject   string    `json:"subject"`
	RequestID string    `json:"request_id"`
	// Method is POST, PUT or DELETE.
	Method       string `json:"method"`
	ResourceKind string `json:"resource_kind"`
	ResourceID   string `json:"resource_id"`
	// Version is the resource's version after the write (its ETag); a
	// delete has the version it would have had.
	Version uint64 `json:"version"`
	// Body is the resource as stored after the write (its status as of
	// the write); null for a delete.
	Body json.RawMessage `json:"body"`
}

// NewAuditEvent is the event of a write of (kind, id) by wr at at, with
// the stored body after it (nil for a delete). Its ID comes from the
// store (AuditEventID).
func NewAuditEvent(wr WriteRequest, org, kind, id string, version uint64, body []byte, at time.Time) AuditEvent {
	method := wr.Method
	switch {
	case method != "": // from the API
	case body == nil:
		method = "DELETE"
	case version == 1:
		method = "POST"
	default:
		method = "PUT"
	}
	subject := wr.Subject
	if subject == "" {
		subject = "unknown"
	}
	b := json.RawMessage("null")
	if body != nil {
		b = json.RawMessage(body)
	}
	return AuditEvent{At: at.UTC(), OrgID: org, Subject: subject, RequestID: wr.RequestID, Method: method,
		ResourceKind: kind, ResourceID: id, Version: version, Body: b}
}

// AppendJSON appends e's JSON, as the API answers it, to b. The body is
// spliced in as stored, not re-encoded (json.Marshal would validate and
// compact it): a 44 KB group is copied once in the write.
func (e AuditEvent) AppendJSON(b []byte) ([]byte, error) {
	body := e.Body
	if len(body) == 0 {
		body = json.RawMessage("null")
	}
	e.Body = json.RawMessage("null")
	head, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit event: %w", err)
	}
	head = bytes.TrimSuffix(head, []byte("null}")) // Body is the last field
	b = slices.Grow(b, len(head)+len(body)+1)
	return append(append(append(b, head...), body...), '}'), nil
}

// AuditKey is the position of an event in its organisation's trail: the
// write's time (Unix nanoseconds) then a sequence number, both big-endian,
// so keys sort by time and events of one instant by commit order.
type AuditKey [16]byte

// NewAuditKey is the key of an event at at with sequence number seq.
func NewAuditKey(at time.Time, seq uint64) AuditKey {
	var k AuditKey
	binary.BigEndian.PutUint64(k[:8], uint64(at.UnixNano()))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// AuditTimeKey is the first key at or after at.
func AuditTimeKey(at time.Time) AuditKey { return NewAuditKey(at, 0) }

// ID is the event's public id.
func (k AuditKey) ID() string { return AuditEventIDPrefix + hex.EncodeToString(k[:]) }

// ParseAuditEventID is the key of an event id; false when id is not one.
func ParseAuditEventID(id string) (AuditKey, bool) {
	var k AuditKey
	h, ok := strings.CutPrefix(id, AuditEventIDPrefix)
	if !ok || len(h) != 2*len(k) {
		return k, false
	}
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return k, false
	}
	return k, true
}

// AuditQuery selects events of one organisation, newest first.
type AuditQuery struct {
	// ResourceID, when set, keeps only that resource's events.
	ResourceID string
	// Since (inclusive) and Until (exclusive) bound the events' time;
	// zero means unbounded.
	Since, Until time.Time
	// Before, when set, continues a listing: only events older than this
	// key (the last of the previous page).
	Before *AuditKey
	Limit  int
}

// Start is the key a newest-first walk starts below (exclusive): the
// smaller of Before and Until; ok is false when the walk starts at the
// newest event.
func (q AuditQuery) Start() (AuditKey, bool) {
	var start AuditKey
	ok := false
	if !q.Until.IsZero() {
		start, ok = AuditTimeKey(q.Until), true
	}
	if q.Before != nil && (!ok || string(q.Before[:]) < string(start[:])) {
		start, ok = *q.Before, true
	}
	return start, ok
}

// Done reports whether a newest-first walk that reached key k has passed
// Since.
func (q AuditQuery) Done(k AuditKey) bool {
	if q.Since.IsZero() {
		return false
	}
	since := AuditTimeKey(q.Since)
	return string(k[:]) < string(since[:])
}

// AuditPruneBatch bounds the events one prune transaction deletes, so
// pruning a large backlog holds the store's single writer about a
// millisecond at a time (100 events of a 250-rule group: 1.0 ms; 500 took
// 10.6 ms, BenchmarkPruneAuditBatch), never long enough to delay a write
// noticeably.
const AuditPruneBatch = 100

// AuditCutoff is the time before which events are pruned.
func AuditCutoff(now time.Time, retention time.Duration) time.Time { return now.Add(-retention) }

// AuditPruner deletes, in the background, the events older than the
// retention period: at once and then every interval, AuditPruneBatch at a
// time with a pause between batches, so a large backlog never holds a
// store's writer for long (each batch is one short transaction; writes
// waiting meanwhile go first). Every store runs one until it closes.
type AuditPruner struct {
	stop chan struct{}
	once sync.Once
	done sync.WaitGroup
}

// StartAuditPruner starts pruning through prune (a store's PruneAudit)
// the events older than retention at now() (zero: DefaultAuditRetention),
// every interval (zero: an hour). Errors go to logf (nil: dropped); the
// next round retries.
func StartAuditPruner(now func() time.Time, retention, interval time.Duration,
	prune func(cutoff time.Time, max int) (int, error), logf func(error)) *AuditPruner {
	if retention <= 0 {
		retention = DefaultAuditRetention
	}
	if interval <= 0 {
		interval = time.Hour
	}
	if logf == nil {
		logf = func(error) {}
	}
	p := &AuditPruner{stop: make(chan struct{})}
	p.done.Go(func() { p.run(now, retention, interval, prune, logf) })
	return p
}

// Stop stops the pruner and waits for it; it may be called more than once.
func (p *AuditPruner) Stop() {
	p.once.Do(func() { close(p.stop) })
	p.done.Wait()
}

func (p *AuditPruner) run(now func() time.Time, retention, interval time.Duration,
	prune func(cutoff time.Time, max int) (int, error), logf func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := prune(AuditCutoff(now(), retention), AuditPruneBatch)
			if err != nil {
				logf(err)
			}
			if err != nil || n < AuditPruneBatch {
				break
			}
			select {
			case <-p.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// Version is one earlier (or the current) version of a group or prefix
// list, from its audit event: restoring it is a PUT of Body.
type Version struct {
	// ID is the audit event's id (paging: starting_after).
	ID      string    `json:"id"`
	Version uint64    `json:"version"`
	At      time.Time `json:"at"`
	Subject string    `json:"subject"`
	OrgID   string    `json:"org_id"`
	Method  string    `json:"method"`
	// Body is the resource in its write form (SecurityGroupWrite or
	// PrefixListWrite): what a PUT takes.
	Body json.RawMessage `json:"body"`
}

// VersionOf is the version an event records; false for a delete, which
// records no version to restore.
func VersionOf(e AuditEvent) (Version, bool, error) {
	if e.Method == "DELETE" || len(e.Body) == 0 || string(e.Body) == "null" {
		return Version{}, false, nil
	}
	w, err := WriteForm(e.ResourceKind, e.Body)
	if err != nil {
		return Version{}, false, fmt.Errorf("version %d of %s: %w", e.Version, e.ResourceID, err)
	}
	return Version{ID: e.ID, Version: e.Version, At: e.At, Subject: e.Subject, OrgID: e.OrgID, Method: e.Method, Body: w}, true, nil
}

// WriteForm turns a stored group or prefix list into the body a PUT takes:
// ids and status go, everything a client writes stays.
func WriteForm(kind string, stored []byte) (json.RawMessage, error) {
	var w any
	switch kind {
	case KindSecurityGroup:
		var g SecurityGroup
		if err := json.Unmarshal(stored, &g); err != nil {
			return nil, fmt.Errorf("decode security group: %w", err)
		}
		gw := SecurityGroupWrite{Name: g.Name, Description: &g.Description, Rules: make([]FilterRuleWrite, 0, len(g.Rules)), Sites: g.Sites}
		if gw.Sites == nil {
			gw.Sites = []string{}
		}
		for _, r := range g.Rules {
			gw.Rules = append(gw.Rules, FilterRuleWrite{Direction: r.Direction, Order: r.Order, Protocol: r.Protocol, Port: r.Port, Address: r.Address, Description: r.Description})
		}
		w = gw
	case KindPrefixList:
		var l PrefixList
		if err := json.Unmarshal(stored, &l); err != nil {
			return nil, fmt.Errorf("decode prefix list: %w", err)
		}
		lw := PrefixListWrite{Name: l.Name, Description: &l.Description, Prefixes: make([]PrefixWrite, 0, len(l.Prefixes)), Sites: l.Sites}
		for _, p := range l.Prefixes {
			lw.Prefixes = append(lw.Prefixes, PrefixWrite{CIDR: p.CIDR, Description: p.Description})
		}
		w = lw
	default:
		return nil, fmt.Errorf("write form of %q: not a group or prefix list", kind)
	}
	return json.Marshal(w)
}
