package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file keeps the audit trail (controlplane/audit.go): one event per
// write, recorded in the write's transaction, read newest first, pruned in
// bounded batches. An event's key is controlplane.AuditKey: its time, then
// a number from audit_event_seq, which every replica draws from.

// queueAudit queues e's insert on b (its ID from its key: its time and
// seq, drawn from audit_event_seq by lockOrgAndNumber), for the write's
// transaction.
func queueAudit(b *pgx.Batch, e cp.AuditEvent, seq int64) error {
	k := cp.NewAuditKey(e.At, uint64(seq))
	e.ID = k.ID()
	js, err := e.AppendJSON(nil)
	if err != nil {
		return err
	}
	b.Queue(`INSERT INTO audit_events (org_id, key, resource_id, event) VALUES ($1, $2, $3, $4)`, e.OrgID, k[:], e.ResourceID, js)
	return nil
}

// AuditEvents answers the organisation's events q selects, newest first,
// as their JSON, and whether more follow.
func (s *Store) AuditEvents(ctx context.Context, org string, q cp.AuditQuery) ([]json.RawMessage, bool, error) {
	var start, since []byte // nil: unbounded
	if k, ok := q.Start(); ok {
		start = k[:]
	}
	if !q.Since.IsZero() {
		k := cp.AuditTimeKey(q.Since)
		since = k[:]
	}
	where := `org_id = $1 AND ($2::bytea IS NULL OR key < $2) AND ($3::bytea IS NULL OR key >= $3)`
	args := []any{org, start, since, queryLimit(q.Limit)}
	if q.ResourceID != "" {
		where += ` AND resource_id = $5`
		args = append(args, q.ResourceID)
	}
	rows, err := s.pool.Query(ctx, `SELECT event FROM audit_events WHERE `+where+` ORDER BY key DESC LIMIT $4`, args...)
	if err != nil {
		return nil, false, classify("list audit events", err)
	}
	defer rows.Close()
	var out []json.RawMessage
	more := false
	for rows.Next() {
		if len(out) == q.Limit {
			more = true
			break
		}
		var js []byte
		if err := rows.Scan(&js); err != nil {
			return nil, false, classify("list audit events", err)
		}
		out = append(out, js)
	}
	return out, more, classify("list audit events", rows.Err())
}

// PruneAudit deletes events older than cutoff, of every organisation, at
// most max in one transaction, and says how many it deleted (max means
// more may remain). Replicas may prune at once: an event goes once.
func (s *Store) PruneAudit(ctx context.Context, cutoff time.Time, max int) (int, error) {
	end := cp.AuditTimeKey(cutoff)
	tag, err := s.pool.Exec(ctx, `DELETE FROM audit_events WHERE (org_id, key) IN
		(SELECT org_id, key FROM audit_events WHERE key < $1 ORDER BY key LIMIT $2)`, end[:], max)
	if err != nil {
		return 0, classify("prune audit events", err)
	}
	return int(tag.RowsAffected()), nil
}
