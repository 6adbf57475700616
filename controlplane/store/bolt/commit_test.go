package bolt

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCommitterIsolatesWrites sends many concurrent writes through the
// committer, every third failing after it wrote and one panicking: each
// caller gets its own answer, the successful writes are all stored, the
// failed ones left nothing, and the committer answers after a panic.
func TestCommitterIsolatesWrites(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint("delay=", delay), func(t *testing.T) {
			db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
				t.Fatal(err)
			}
			c := newCommitter(db, delay)
			errRefused := errors.New("refused")
			const n = 300
			got := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i] = c.write(func(tx *bolt.Tx) error {
						if err := tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "%03d", i), []byte("v")); err != nil {
							return err
						}
						switch {
						case i == 7:
							panic("write exploded")
						case i%3 == 0:
							return errRefused
						}
						return nil
					})
				}()
			}
			wg.Wait()
			for i, err := range got {
				want := i%3 != 0 && i != 7
				if (err == nil) != want || (i%3 == 0 && !errors.Is(err, errRefused)) {
					t.Errorf("write %d: %v", i, err)
				}
			}
			if err := db.View(func(tx *bolt.Tx) error {
				for i := range n {
					stored := tx.Bucket([]byte("b")).Get(fmt.Appendf(nil, "%03d", i)) != nil
					if want := i%3 != 0 && i != 7; stored != want {
						t.Errorf("write %d: stored %v, want %v", i, stored, want)
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			c.close()
			if err := c.write(func(*bolt.Tx) error { return nil }); !errors.Is(err, errClosed) {
				t.Errorf("write after close: %v", err)
			}
		})
	}
}
