package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file fails syncs at their deadline and counts resources by status.

// Sweep fails every sync whose deadline has passed and reports how many it
// failed. The deadline index makes it cheap when nothing is due.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	now := s.opts.Now()
	n := 0
	defer s.reads.invalidate()
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		var due [][]byte
		c := tx.Bucket(bucketDeadlines).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])) > now.UnixNano() {
				break
			}
			due = append(due, slices.Clone(k))
		}
		for _, k := range due {
			parts := bytes.SplitN(k[8:], []byte{0}, 3)
			if len(parts) != 3 {
				if err := tx.Bucket(bucketDeadlines).Delete(k); err != nil {
					return err
				}
				continue
			}
			org, kind, id := string(parts[0]), string(parts[1]), string(parts[2])
			ob, _ := orgBucket(tx, org, false)
			if ob == nil {
				if err := tx.Bucket(bucketDeadlines).Delete(k); err != nil {
					return err
				}
				continue
			}
			if err := s.updateSync(tx, ob, org, kind, id, func(st *cp.SyncState) bool {
				if st.Expire(now) {
					n++
					return true
				}
				return false
			}); err != nil {
				return err
			}
			// A stale entry (the resource was deleted or rewritten) goes too.
			if err := tx.Bucket(bucketDeadlines).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sweep sync deadlines: %w", err)
	}
	return n, nil
}

// RunSweeper calls Sweep every interval until ctx ends, so syncs fail at
// their deadline, including ones that were pending when the process
// restarted. Errors go to onErr (may be nil).
func (s *Store) RunSweeper(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
