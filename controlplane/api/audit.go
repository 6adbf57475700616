package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// The audit trail and versions (#16): GET /vpc/audit-events and GET
// /vpc/{security-groups,prefix-lists}/{id}/versions read the events every
// write records in its transaction (controlplane/audit.go), newest first,
// paged like every list (paging.go).

// auditPage reads the paging parameters of an audit listing into q.
func auditPage(r *http.Request, q *cp.AuditQuery) error {
	limit, after, err := page(r, func(id string) bool { _, ok := cp.ParseAuditEventID(id); return ok }, "an audit event id ("+cp.AuditEventIDPrefix+"...)")
	if err != nil {
		return err
	}
	q.Limit = limit
	if after != "" {
		k, _ := cp.ParseAuditEventID(after)
		q.Before = &k
	}
	return nil
}

// auditEvents answers GET /vpc/audit-events: the organisation's events,
// newest first, optionally of one resource (resource_id) and within
// [since, until).
func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request, org string) error {
	var q cp.AuditQuery
	if err := auditPage(r, &q); err != nil {
		return err
	}
	v := r.URL.Query()
	if id := v.Get("resource_id"); id != "" {
		if !cp.ValidID(cp.SecurityGroupIDPrefix, id) && !cp.ValidID(cp.PrefixListIDPrefix, id) && !protocol.ValidSiteID(id) {
			return cp.Errorf(cp.CodeInvalidValue, "resource_id", "resource_id %q is not the id of a security group (%s...), a prefix list (%s...) or a site (site_...).", id, cp.SecurityGroupIDPrefix, cp.PrefixListIDPrefix)
		}
		q.ResourceID = id
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if raw := v.Get(p.name); raw != "" {
			t, err := time.Parse(time.RFC3339Nano, raw)
			if err != nil {
				return cp.Errorf(cp.CodeInvalidValue, p.name, "%s %q is not an RFC 3339 time; send one such as 2026-11-21T10:00:00Z.", p.name, raw)
			}
			*p.t = t
		}
	}
	events, more, err := s.opts.Store.AuditEvents(r.Context(), org, q)
	if err != nil {
		return err
	}
	if more {
		var last struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(events[len(events)-1], &last); err != nil {
			return fmt.Errorf("decode audit event: %w", err)
		}
		setNext(w, r, q.Limit, last.ID)
	}
	// The events are the stored JSON: joined, not decoded and encoded.
	body := []byte{'['}
	for i, e := range events {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, e...)
	}
	return writeRaw(w, http.StatusOK)(append(body, ']'), nil)
}

// versions answers GET .../{id}/versions of a kind: every version of the
// resource its audit trail holds, newest first, each with the body a PUT
// takes to restore it. Another organisation's id, or one that neither
// exists nor has events, is 404.
func (s *Server) versions(kind, param string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, org string) error {
		id := r.PathValue(param)
		q := cp.AuditQuery{ResourceID: id}
		if err := auditPage(r, &q); err != nil {
			return err
		}
		events, more, err := s.opts.Store.AuditEvents(r.Context(), org, q)
		if err != nil {
			return err
		}
		if len(events) == 0 && q.Before == nil {
			if _, err := s.opts.Store.GetJSON(r.Context(), org, kind, id); err != nil {
				return err // 404 when it does not exist
			}
		}
		out := make([]cp.Version, 0, len(events))
		var lastID string
		for _, raw := range events {
			var e cp.AuditEvent
			if err := json.Unmarshal(raw, &e); err != nil {
				return fmt.Errorf("decode audit event: %w", err)
			}
			lastID = e.ID
			v, ok, err := cp.VersionOf(e)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, v)
			}
		}
		if more {
			setNext(w, r, q.Limit, lastID)
		}
		return writeJSON(w, http.StatusOK, out)
	}
}
