// Package cache keeps the last desired state the agent accepted in a bbolt
// file, so a restarted agent enforces its policy at once, before (or
// without) reaching the broker.
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
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rampart-fw/rampart/protocol"
)

// FileName is the cache's file inside the state directory.
const FileName = "agent.db"

// ErrNotFound is returned by Get when nothing was ever cached.
var ErrNotFound = errors.New("no cached desired state")

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

// Cache is an open cache file.
type Cache struct {
	db *bolt.DB
}

// Open opens (creating if needed) the cache in dir.
func Open(dir string, opts Options) (*Cache, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init cache %s: %w", path, err)
	}
	return &Cache{db: db}, nil
}

// Close closes the file.
func (c *Cache) Close() error { return c.db.Close() }

// Get returns the cached document, or ErrNotFound.
func (c *Cache) Get() (protocol.DesiredState, error) {
	var d protocol.DesiredState
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(desiredKey)
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &d)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return d, err
		}
		return d, fmt.Errorf("read cached desired state: %w", err)
	}
	return d, nil
}

// Put stores d, writing only if it differs from what is stored. It reports
// whether it wrote.
func (c *Cache) Put(d protocol.DesiredState) (bool, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return false, fmt.Errorf("encode desired state: %w", err)
	}
	var same bool
	if err := c.db.View(func(tx *bolt.Tx) error {
		same = bytes.Equal(tx.Bucket(bucket).Get(desiredKey), b)
		return nil
	}); err != nil {
		return false, fmt.Errorf("read cached desired state: %w", err)
	}
	if same {
		return false, nil
	}
	if err := c.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put(desiredKey, b)
	}); err != nil {
		return false, fmt.Errorf("write cached desired state: %w", err)
	}
	return true, nil
}
