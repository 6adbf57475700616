package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/store"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/controlplane/store/postgres"
)

// runMigrate copies a bbolt store into an empty PostgreSQL database, all
// or nothing: every organisation's groups, prefix lists, sites,
// decommissions and audit trail, with their ids, versions, sync states,
// per-site revisions, the compiler's per-site data, the newest report of
// each site, and the store's epoch (store.Dump says why that is the whole store). Agents
// then see the same epoch and revisions from the new store and re-apply
// nothing.
//
// The bbolt file must not be in use: bbolt's lock makes a running control
// plane on it an error, not a race. The target must be empty; run migrate
// before any control plane starts on it (one that started already has the
// database's own new epoch in memory).
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := subcommandFlags("migrate", stderr, `Usage: rampart-controlplane migrate --from-bolt FILE --store-url postgres://…

Copies a bbolt store (the control plane stopped) into an empty PostgreSQL
database, all or nothing, keeping ids, versions, statuses, revisions, the
audit trail and the store's epoch. Then start the control planes with
--store-url.

`)
	from := fset.String("from-bolt", "", "the bbolt file to copy, as the stopped control plane left it (its --data-dir/"+DBFile+")")
	to := fset.String("store-url", "", "the PostgreSQL database to copy into (postgres://…); it must hold no Rampart data yet")
	timeout := fset.Duration("timeout", 30*time.Minute, "give up (and change nothing) after this long")
	if err := parseFlags(fset, args, os.Getenv); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return errors.New("migrate: --from-bolt FILE and --store-url postgres://… are both required")
	}
	if err := checkStoreURL(*to); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// bolt.Open creates a missing file: a mistyped path would copy an
	// empty store.
	if fi, err := os.Stat(*from); err != nil || fi.IsDir() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("migrate: --from-bolt %s is not a bbolt file; give the control plane's %s (in its --data-dir)", *from, DBFile)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	src, err := bolt.Open(*from, bolt.Options{})
	if err != nil {
		return fmt.Errorf("migrate: open %s (is a control plane still running on it?): %w", filepath.Clean(*from), err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, *to)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer dst.Close()

	// The key beside the bbolt file is the one the sites' passwords were
	// derived from: record it, so a control plane started on the database
	// with another key is refused (checkKey). Before the copy, so a
	// database a control plane with another key already started on is
	// refused with nothing copied. Without a key file there, the first
	// control plane to start records its own.
	keyNote := "; no " + keys.KeyFile + " beside it: the first control plane to start records its key, and every other must hold the same"
	if key, err := keys.Load(filepath.Dir(*from)); err == nil {
		keyFile := filepath.Join(filepath.Dir(*from), keys.KeyFile)
		err := dst.CheckKey(ctx, key.Fingerprint())
		if mismatch := (*postgres.KeyMismatchError)(nil); errors.As(err, &mismatch) {
			return fmt.Errorf("migrate: nothing was copied: %s: %w: a control plane with another key has started on this database; the sites' passwords are derived from %s, so copy into a database no control plane has started on (setup.sql creates one)", keyFile, err, keyFile)
		}
		if err != nil {
			return fmt.Errorf("migrate: nothing was copied: %w", err)
		}
		keyNote = "; every control plane on it needs " + filepath.Join(filepath.Dir(*from), keys.KeyFile)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("migrate: nothing was copied: %w", err)
	}

	var n copied
	err = dst.Import(ctx, src.Epoch(), func(put func(*store.Dump) error) error {
		_, err := src.Export(ctx, func(d *store.Dump) error {
			n.Add(d)
			return put(d)
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: nothing was copied: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "copied %s into %s: %s; epoch %s%s\n", *from, redactURL(*to), n, src.Epoch(), keyNote)
	return err
}

// copied counts what migrate copied, for its last line.
type copied struct{ orgs, groups, lists, sites, events int }

func (c *copied) Add(d *store.Dump) {
	c.orgs++
	c.groups += len(d.Groups)
	c.lists += len(d.Lists)
	c.sites += len(d.Sites)
	c.events += len(d.Audit)
}

func (c copied) String() string {
	return fmt.Sprintf("%d organisations, %d security groups, %d prefix lists, %d sites, %d audit events", c.orgs, c.groups, c.lists, c.sites, c.events)
}
