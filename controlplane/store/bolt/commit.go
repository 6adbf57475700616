package bolt

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit.
//
// bbolt's Batch closes a batch a fixed delay after its first write and then
// queues it for the single writer: with 250-rule groups a commit (two
// fsyncs and ~60 KB per write) takes longer than the delay, so batches
// queued up small, each paying its own fsyncs, and the writer was busy all
// the time at ~1,100-2,000 writes/s. The committer below has no delay: one
// goroutine takes every write waiting, runs them in one transaction and
// commits; what arrives meanwhile waits for the next one. A lone write
// commits at once, and under load a batch is as large as one commit is
// long. A failing write (not found, locked, ...) rolls the transaction
// back, as in bbolt's Batch: it is removed and run alone afterwards, and
// the others are retried together.

// maxGroup bounds the writes of one transaction.
const maxGroup = 1000

var errClosed = errors.New("database is closed")

type call struct {
	fn  func(*bolt.Tx) error
	err chan error
}

type committer struct {
	db    *bolt.DB
	delay time.Duration // wait this long for more writes after the first
	calls chan *call
	quit  chan struct{}
	done  chan struct{}

	mu     sync.RWMutex // held to send, so none can follow close
	closed bool
}

func newCommitter(db *bolt.DB, delay time.Duration) *committer {
	c := &committer{db: db, delay: delay, calls: make(chan *call, maxGroup), quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// write runs fn in a transaction shared with other writers and returns its
// error once the transaction committed (or fn's own error).
func (c *committer) write(fn func(*bolt.Tx) error) error {
	k := &call{fn: fn, err: make(chan error, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return errClosed
	}
	c.calls <- k
	c.mu.RUnlock()
	return <-k.err
}

// close stops the committer; writes not yet taken get errClosed.
func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.quit)
	}
	c.mu.Unlock()
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	for {
		var first *call
		select {
		case first = <-c.calls:
		case <-c.quit:
			c.drain()
			return
		}
		group := []*call{first}
		if c.delay > 0 {
			t := time.NewTimer(c.delay)
		wait:
			for len(group) < maxGroup {
				select {
				case k := <-c.calls:
					group = append(group, k)
				case <-t.C:
					break wait
				}
			}
			t.Stop()
		}
	more:
		for len(group) < maxGroup {
			select {
			case k := <-c.calls:
				group = append(group, k)
			default:
				break more
			}
		}
		c.commit(group)
	}
}

func (c *committer) drain() {
	for {
		select {
		case k := <-c.calls:
			k.err <- errClosed
		default:
			return
		}
	}
}

// commit runs a group in one transaction. A write that fails is taken out
// and run alone after the others commit, so its answer is what it finds
// in a committed state, as if it came last.
func (c *committer) commit(group []*call) {
	var solo []*call
	for len(group) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bolt.Tx) error {
			for i, k := range group {
				if err := safely(k.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			solo = append(solo, group[failed])
			group = append(group[:failed:failed], group[failed+1:]...)
			continue
		}
		for _, k := range group { // the commit's own error, or nil
			k.err <- err
		}
		break
	}
	for _, k := range solo {
		k.err <- c.db.Update(func(tx *bolt.Tx) error { return safely(k.fn, tx) })
	}
}

// safely turns a panicking write into an error, so one bad write cannot
// take the committer (and every writer) down.
func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in write transaction: %v", p)
		}
	}()
	return fn(tx)
}
