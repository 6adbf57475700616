package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file reads groups and prefix lists as the API's JSON: the stored
// document with the status its sync state has now (SyncState.At) spliced
// in, without decoding it.

// docQuery selects id, document and sync state columns of a kind's
// resources (scanDoc).
func docQuery(kind string) string {
	return `SELECT r.id, r.doc, ` + syncCols + ` FROM ` + table(kind) + ` r
		LEFT JOIN sync_states s ON s.org_id = r.org_id AND s.kind = '` + kind + `' AND s.resource_id = r.id`
}

// GetJSON returns one group or prefix list exactly as the API shows it.
// kind is controlplane.KindSecurityGroup or KindPrefixList.
func (s *Store) GetJSON(ctx context.Context, org, kind, id string) (cp.Stored, error) {
	_, raw, st, err := scanDoc(s.pool.QueryRow(ctx, docQuery(kind)+` WHERE r.org_id = $1 AND r.id = $2`, org, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return cp.Stored{ID: id}, cp.NotFound(kind, id)
	}
	if err != nil {
		return cp.Stored{ID: id}, classify("get "+kind, err)
	}
	return cp.Stored{ID: id, Body: cp.SpliceStatus(raw, st.At(s.opts.Now()).Status), Version: st.Version}, nil
}

// ListJSONPage returns at most limit groups or prefix lists of the
// organisation after the id after, as the API's JSON array, the id of the
// last one, and whether more follow.
func (s *Store) ListJSONPage(ctx context.Context, org, kind, after string, limit int) ([]byte, string, bool, error) {
	rows, err := s.pool.Query(ctx, docQuery(kind)+` WHERE r.org_id = $1 AND r.id > $2 ORDER BY r.id LIMIT $3`, org, after, queryLimit(limit))
	if err != nil {
		return nil, "", false, classify("list "+kind, err)
	}
	defer rows.Close()
	now := s.opts.Now()
	out := []byte{'['}
	last, more, n := "", false, 0
	for rows.Next() {
		if n == limit {
			more = true
			break
		}
		id, raw, st, err := scanDoc(rows)
		if err != nil {
			return nil, "", false, classify("list "+kind, err)
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, cp.SpliceStatus(raw, st.At(now).Status)...)
		last = id
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, "", false, classify("list "+kind, err)
	}
	return append(out, ']'), last, more, nil
}
