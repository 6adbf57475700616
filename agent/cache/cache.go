// Package cache keeps the last desired state the agent accepted in a bbolt
// file, so a restarted agent enforces its policy at once, before (or
// without) reaching the broker.
//
// # Never a single point of failure
//
// The cache only matters while the broker is unreachable, so nothing that
// goes wrong with it may stop the agent (DESIGN.md beside the agent, "Cache
// and flash"):
//
//   - Open always returns a usable Cache. A state directory that cannot be
//     created or written leaves it in memory (Persistent reports false) and
//     the error says so; every later Put tries the directory again.
//   - A file bbolt cannot open (all garbage) or that fails its consistency
//     check, or whose opening panics (valid meta pages and garbage
//     elsewhere make bbolt v1.5.0 panic while it reads the freelist), is
//     renamed to agent.db.corrupt-<unix nanoseconds> (never deleted: an
//     operator may want it) and a new file is made. A panic at open leaks
//     the half-opened file's descriptor and mapping: bbolt gives no handle
//     to close them, and the agent opens the cache once.
//   - A Put that fails (a full disk, an I/O error) keeps the document as
//     pending; Retry writes it later. The file that still holds an older
//     document is moved aside to agent.db.stale-<unix nanoseconds> at once
//     (a rename needs no free blocks), so an agent restarted before the
//     retry succeeds finds no cache rather than an older one: it then waits
//     for the broker instead of applying a revision older than the one it
//     had already applied.
//
// # Flash
//
// The agent runs on routers whose flash wears out: Put writes only when the
// document differs from the stored one, so steady state writes nothing.
package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rampart-fw/rampart/protocol"
)

// FileName is the cache's file inside the state directory.
const FileName = "agent.db"

// ErrNotFound is returned by Get when nothing was ever cached.
var ErrNotFound = errors.New("no cached desired state")

// ErrCorrupt wraps what was wrong with a cache file that was moved aside.
var ErrCorrupt = errors.New("cache file is corrupt")

var (
	bucket     = []byte("agent")
	desiredKey = []byte("desired")
)

// Options tune Open. The zero value is usable.
type Options struct {
	// Timeout bounds waiting for another process's lock on the file;
	// zero means 5 seconds (never forever: a stuck agent must say why).
	Timeout time.Duration
}

// MovedError reports a cache file that was renamed out of the way.
type MovedError struct {
	From, To string
	Err      error // why: ErrCorrupt wrapping bbolt's complaint, or a failed write
}

func (e *MovedError) Error() string {
	return fmt.Sprintf("moved cache %s aside to %s: %v", e.From, e.To, e.Err)
}

func (e *MovedError) Unwrap() error { return e.Err }

// Cache is the cache file, or, while the state directory is unusable, the
// memory that stands in for it. It is used by one goroutine.
type Cache struct {
	dir     string
	opts    Options
	db      *bolt.DB               // nil: no usable file
	pending []byte                 // the newest document as received, not yet written
	pendRev uint64                 // its revision, for errors
	mem     *protocol.DesiredState // the newest document, written or not
}

// Open opens (creating if needed) the cache in dir. It always returns a
// usable Cache; a non-nil error says what went wrong and what was done
// about it (a file moved aside, working from memory), for the log.
func Open(dir string, opts Options) (*Cache, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	c := &Cache{dir: dir, opts: opts}
	err := c.open(opts.Timeout)
	return c, err
}

// reopenTimeout bounds waiting for the file's lock when Put or Retry
// reopen it: they run on the agent's loop, which must not stall.
const reopenTimeout = 50 * time.Millisecond

// Persistent reports whether the cache has a usable file.
func (c *Cache) Persistent() bool { return c.db != nil }

// Pending reports whether an accepted document still waits to be written.
func (c *Cache) Pending() bool { return c.pending != nil }

// Path is the cache file's path.
func (c *Cache) Path() string { return filepath.Join(c.dir, FileName) }

func (c *Cache) open(timeout time.Duration) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", c.dir, err)
	}
	path := c.Path()
	existed := fileExists(path)
	db, err := openBolt(path, timeout)
	var moved error
	if err != nil && !existed {
		// bbolt made the file and failed to initialise it (a full disk):
		// it is ours and holds nothing, so it goes, or the next attempt
		// would take it for a corrupt cache.
		os.Remove(path)
	}
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) || errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) || !existed {
			// Locked by another process, not ours to open, or on a
			// read-only file system: nothing to repair here. Such a file
			// is not read either: a write that failed on it could not
			// move it aside, so it may be older than what was applied.
			return fmt.Errorf("open cache %s: %w", path, err)
		}
		if moved = c.moveAside(path, "corrupt", fmt.Errorf("%w: %w", ErrCorrupt, err)); !isMoved(moved) {
			return moved
		}
		if db, err = openBolt(path, timeout); err != nil {
			os.Remove(path) // as above: made by this attempt, empty
			return fmt.Errorf("open new cache %s after moving the old one aside (%v): %w", path, moved, err)
		}
	}
	c.db = db
	return moved
}

func isMoved(err error) bool {
	var m *MovedError
	return errors.As(err, &m)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// openBolt opens path and checks it, turning bbolt's panics on a corrupt
// file into errors.
func openBolt(path string, timeout time.Duration) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("bbolt panicked opening it: %v", p)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	check := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("bbolt panicked checking it: %v", p)
			}
		}()
		// Read only: a valid cache on a full disk must still open (an
		// update would need free pages and fail it).
		missing := false
		if err := db.View(func(tx *bolt.Tx) error {
			for e := range tx.Check() {
				return e
			}
			b := tx.Bucket(bucket)
			if b == nil {
				missing = true
				return nil
			}
			if v := b.Get(desiredKey); v != nil && !json.Valid(v) {
				return errors.New("the cached document is not JSON")
			}
			return nil
		}); err != nil || !missing {
			return err
		}
		return db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucket)
			return err
		})
	}
	if err := check(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// moveAside closes the file and renames it to path.<why>-<unix ns>. It
// returns a *MovedError wrapping cause, or the rename's failure.
func (c *Cache) moveAside(path, why string, cause error) error {
	if c.db != nil {
		c.db.Close()
		c.db = nil
	}
	to := path + "." + why + "-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Rename(path, to); err != nil {
		return fmt.Errorf("move cache %s aside (%v): %w", path, cause, err)
	}
	return &MovedError{From: path, To: to, Err: cause}
}

// Close closes the file.
func (c *Cache) Close() error {
	if c.db == nil {
		return nil
	}
	err := c.db.Close()
	c.db = nil
	return err
}

// Get returns the cached document, or ErrNotFound. A document that cannot
// be read or decoded is an error (the caller logs it and waits for the
// broker); the file is moved aside so the next start does not meet it.
func (c *Cache) Get() (protocol.DesiredState, error) {
	if c.mem != nil {
		return *c.mem, nil
	}
	var d protocol.DesiredState
	if c.db == nil {
		return d, ErrNotFound
	}
	err := c.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(desiredKey)
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &d)
	})
	switch {
	case err == nil:
		c.mem = &d
		return d, nil
	case errors.Is(err, ErrNotFound):
		return d, err
	}
	err = fmt.Errorf("read cached desired state: %w", err)
	if m := c.moveAside(c.Path(), "corrupt", err); isMoved(m) {
		err = m
		c.open(reopenTimeout) //nolint:errcheck // a failure leaves the cache in memory; the next Put says so
	}
	return d, err
}

// view runs fn in a read transaction, turning a panic (a corrupt page met
// after open) into an error.
func (c *Cache) view(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bbolt panicked reading it: %v", p)
		}
	}()
	return c.db.View(fn)
}

// Put stores d, whose JSON as received is raw, writing only if it differs
// from what is stored. raw is stored as it is, not encoded again: a document
// of 10,000 entries is ~0.5 MB, and a second copy per change costs a router
// under the agent's heap limit collections (BENCHMARKS.md, "Agent:
// receiving a document"); it also keeps fields this agent does not know.
// raw must not be modified afterwards. Put reports whether it wrote. On
// failure d stays pending (Retry writes it) and the file, which holds an
// older document, is moved aside; the error says both.
func (c *Cache) Put(d protocol.DesiredState, raw []byte) (bool, error) {
	c.mem = &d
	c.pending, c.pendRev = raw, d.Revision
	return c.write()
}

// Retry writes the pending document, if any, reopening the state
// directory if it had no usable file. It reports whether it wrote.
func (c *Cache) Retry() (bool, error) {
	if c.pending == nil {
		return false, nil
	}
	return c.write()
}

func (c *Cache) write() (bool, error) {
	b := c.pending
	if c.db == nil {
		if err := c.open(reopenTimeout); c.db == nil {
			return false, fmt.Errorf("desired state revision %d kept in memory only: %w", c.pendRev, err)
		}
	}
	var same, holds bool
	if err := c.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(desiredKey)
		same, holds = bytes.Equal(v, b), v != nil
		return nil
	}); err == nil && same {
		c.pending = nil
		return false, nil
	}
	err := c.update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(desiredKey, b) })
	if err == nil {
		c.pending = nil
		return true, nil
	}
	err = fmt.Errorf("write cached desired state revision %d: %w", c.pendRev, err)
	if !holds {
		return false, err // nothing older in it that a restart could apply
	}
	if m := c.moveAside(c.Path(), "stale", err); isMoved(m) {
		return false, fmt.Errorf("%w; the older cached document was moved aside so a restart cannot apply it", m)
	} else if m != nil {
		return false, fmt.Errorf("%w; %w", err, m)
	}
	return false, err
}

func (c *Cache) update(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bbolt panicked writing it: %v", p)
		}
	}()
	return c.db.Update(fn)
}
