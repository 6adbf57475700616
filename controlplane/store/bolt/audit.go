package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file keeps the audit trail (controlplane/audit.go): one event per
// write, recorded in the write's transaction, read newest first, and
// pruned in bounded batches.
//
//	orgs/<org>/audit/<AuditKey>/e   resource id, 0, the event's JSON
//	orgs/<org>/auditres/<resource id>\x00<AuditKey>   the resource's events
//
// Each event has a bucket of its own, for the reason groups do (the
// package doc): bbolt keeps at least two keys in a leaf, so with events
// of 44 KB as values of one bucket every write rewrote the previous
// event too (~600 cpu-µs more per 250-rule PUT than without the trail);
// in its own bucket an event is written once.

var (
	bucketAudit    = []byte("audit")
	bucketAuditRes = []byte("auditres")
	keyEvent       = []byte("e")
)

// getEvent returns the stored event at k, nil if there is none.
func getEvent(audit *bolt.Bucket, k []byte) []byte {
	if b := audit.Bucket(k); b != nil {
		return b.Get(keyEvent)
	}
	return nil
}

// recordAudit stores e (its ID from its key) in the write's transaction.
// The event's JSON is built around the body, which is spliced in as
// stored, so a 44 KB group is copied once, not re-encoded in the writer.
func recordAudit(ob *bolt.Bucket, e cp.AuditEvent) error {
	audit := ob.Bucket(bucketAudit)
	seq, err := audit.NextSequence()
	if err != nil {
		return err
	}
	k := cp.NewAuditKey(e.At, seq)
	e.ID = k.ID()
	v, err := e.AppendJSON(append([]byte(e.ResourceID), 0))
	if err != nil {
		return err
	}
	eb, err := audit.CreateBucket(k[:])
	if err != nil {
		return err
	}
	if err := eb.Put(keyEvent, v); err != nil {
		return err
	}
	return ob.Bucket(bucketAuditRes).Put(key(e.ResourceID, string(k[:])), nil)
}

// audit records the event of a write in its transaction.
func (s *Store) audit(ctx context.Context, ob *bolt.Bucket, org, kind, id string, version uint64, body []byte, now time.Time) error {
	return recordAudit(ob, cp.NewAuditEvent(cp.WriteRequestFrom(ctx), org, kind, id, version, body, now))
}

// splitEvent returns the resource id and JSON of a stored event.
func splitEvent(v []byte) (string, []byte, error) {
	id, js, ok := bytes.Cut(v, []byte{0})
	if !ok {
		return "", nil, fmt.Errorf("decode audit event: no resource id")
	}
	return string(id), js, nil
}

// AuditEvents answers the organisation's events q selects, newest first,
// as their JSON, and whether more follow.
func (s *Store) AuditEvents(ctx context.Context, org string, q cp.AuditQuery) ([]json.RawMessage, bool, error) {
	var out []json.RawMessage
	more := false
	err := s.db.View(func(tx *bolt.Tx) error {
		ob, _ := orgBucket(tx, org, false)
		audit := sub(ob, bucketAudit)
		if audit == nil {
			return nil
		}
		var prefix []byte // the resource's index entries, or every event
		c := audit.Cursor()
		if q.ResourceID != "" {
			prefix = key(q.ResourceID, "")
			c = ob.Bucket(bucketAuditRes).Cursor()
		}
		var k []byte
		if start, ok := q.Start(); ok {
			k, _ = c.Seek(append(slices.Clone(prefix), start[:]...))
			if k == nil {
				k, _ = c.Last()
			}
			// Seek lands at or after start: step back below it.
			for k != nil && bytes.Compare(k, append(slices.Clone(prefix), start[:]...)) >= 0 {
				k, _ = c.Prev()
			}
		} else if prefix == nil {
			k, _ = c.Last()
		} else {
			// The last entry of the resource: seek past its prefix.
			k, _ = c.Seek(key(q.ResourceID + "\x01"))
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			var ak cp.AuditKey
			if len(k)-len(prefix) != len(ak) {
				return fmt.Errorf("decode audit key %x: wrong length", k)
			}
			copy(ak[:], k[len(prefix):])
			if q.Done(ak) {
				break
			}
			if len(out) == q.Limit {
				more = true
				break
			}
			v := getEvent(audit, ak[:])
			if v == nil {
				continue
			}
			_, js, err := splitEvent(v)
			if err != nil {
				return err
			}
			out = append(out, slices.Clone(js))
		}
		return nil
	})
	if err != nil {
		return nil, false, wrap("list audit events", err)
	}
	return out, more, nil
}

// PruneAudit deletes events older than cutoff, at most max in one
// transaction, and says how many it deleted (max means more may remain).
func (s *Store) PruneAudit(ctx context.Context, cutoff time.Time, max int) (int, error) {
	n := 0
	end := cp.AuditTimeKey(cutoff)
	err := s.write(ctx, func(tx *bolt.Tx) error {
		n = 0
		return tx.Bucket(bucketOrgs).ForEach(func(org, _ []byte) error {
			ob := tx.Bucket(bucketOrgs).Bucket(org)
			audit := sub(ob, bucketAudit)
			if audit == nil {
				return nil
			}
			type old struct{ k, res []byte }
			var olds []old
			c := audit.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, end[:]) < 0 && n+len(olds) < max; k, _ = c.Next() {
				res, _, err := splitEvent(getEvent(audit, k))
				if err != nil {
					return err
				}
				olds = append(olds, old{slices.Clone(k), []byte(res)})
			}
			for _, o := range olds {
				if err := audit.DeleteBucket(o.k); err != nil {
					return err
				}
				if err := ob.Bucket(bucketAuditRes).Delete(key(string(o.res), string(o.k))); err != nil {
					return err
				}
			}
			n += len(olds)
			return nil
		})
	})
	return n, wrap("prune audit events", err)
}
