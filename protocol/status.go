package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Size bounds of what crosses the broker. The embedded broker refuses larger
// packets before it reads them (controlplane/broker), and the control plane
// never publishes a larger document.
const (
	// MaxDesiredStateBytes bounds a DesiredState's JSON. The API bounds a
	// group at 250 rules; a rule at its bounds is about 2.4 KB of JSON (a
	// 255-character description that JSON may escape to 6 bytes a
	// character, a long port list, ids), so a full group is at most about
	// 600 KB, and a full group of ordinary rules (short descriptions) about
	// 50 KB. 4 MiB holds six worst-case full groups, or about 80 ordinary
	// ones (20,000 rules), plus their prefix lists: more than a RouterOS
	// filter chain evaluates at line rate [I]. The agent must hold the
	// document it receives within its soft heap limit (16 MiB,
	// agent/DESIGN.md), which a larger bound would not leave room for.
	// The control plane refuses a write that would make a site's document
	// larger (controlplane.Revise, document_too_large), so none is
	// committed that could not be published.
	MaxDesiredStateBytes = 4 << 20
	// MaxStatusBytes bounds a SiteStatus's (and a Presence's) JSON. A status
	// is a few hundred bytes of counts and versions plus Error, a sentence;
	// 16 KiB leaves Error more than 10,000 characters. An agent must keep
	// its status under it (truncate Error): the broker closes the
	// connection of a site that sends a larger packet.
	MaxStatusBytes = 16 << 10
	// MaxTopicBytes bounds a topic: the root, an organisation id (128), a
	// site id (69) and a kind, with room for a long root.
	MaxTopicBytes = 512
)

// Bounds of the text a status carries. An agent cuts its status to them
// before it publishes (SiteStatus.Bounded), so a status always fits
// MaxStatusBytes however long a RouterOS message is; the control plane cuts
// what it stores to them again, since a report of any size may come from a
// compromised site or through a broker without a size limit.
const (
	// MaxStatusError bounds Error: room for RouterOS's trap message and the
	// agent's explanation of it.
	MaxStatusError = 1024
	// MaxStatusText bounds the agent version, RouterOS version and board.
	MaxStatusText = 128
)

// Bounded returns st with its text fields cut to MaxStatusError and
// MaxStatusText.
func (st SiteStatus) Bounded() SiteStatus {
	st.Error = Truncate(st.Error, MaxStatusError)
	st.AgentVersion = Truncate(st.AgentVersion, MaxStatusText)
	st.RouterOSVersion = Truncate(st.RouterOSVersion, MaxStatusText)
	st.Board = Truncate(st.Board, MaxStatusText)
	return st
}

// Truncate cuts s to at most n bytes, on a UTF-8 boundary, marking the cut
// with "…" so a reader knows text is missing.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// ErrStatusMismatch is returned by ParseStatus for a status that names
// another site than the topic it came on. A site's credentials only let it
// write its own topics, so a mismatch is a bug or an attack.
var ErrStatusMismatch = errors.New("status names another site than its topic")

// ParseStatus decodes a SiteStatus published on org/site's status topic and
// checks it: the schema is known, it names org and site, and its state is one
// of the three an agent reports.
func ParseStatus(b []byte, org, site string) (SiteStatus, error) {
	var st SiteStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return SiteStatus{}, fmt.Errorf("parse status: %w", err)
	}
	switch {
	case st.Schema < MinSchema || st.Schema > SchemaVersion:
		return SiteStatus{}, fmt.Errorf("parse status: schema %d is not supported (want %d to %d)", st.Schema, MinSchema, SchemaVersion)
	case st.OrgID != org || st.SiteID != site:
		return SiteStatus{}, fmt.Errorf("%w: %s/%s on the topic of %s/%s", ErrStatusMismatch, st.OrgID, st.SiteID, org, site)
	case st.State != StateApplying && st.State != StateApplied && st.State != StateFailed:
		return SiteStatus{}, fmt.Errorf("parse status: state %q is not one of %s, %s, %s", st.State, StateApplying, StateApplied, StateFailed)
	}
	return st, nil
}

// ResyncRequest is the payload published on ResyncTopic. The control plane
// publishes one each time it (re)connects to a broker; every agent subscribes
// and, after a random delay of 0–2 s, republishes its status (retained) and
// its presence. Some brokers never deliver retained messages to wildcard
// subscriptions (RabbitMQ 3.x), so a control plane cannot rely on reading the
// retained statuses after a restart.
type ResyncRequest struct {
	Schema int       `json:"schema"`
	At     time.Time `json:"at"`
}
