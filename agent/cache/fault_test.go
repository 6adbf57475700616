package cache

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rampart-fw/rampart/agent/internal/fsfault"
	"github.com/rampart-fw/rampart/protocol"
)

func sealed(rev uint64) protocol.DesiredState {
	d := protocol.DesiredState{OrgID: "o", SiteID: "site_a", Epoch: "e", Revision: rev}
	d.Seal()
	return d
}

// put stores d as the agent does: with its JSON as received.
func put(t *testing.T, c *Cache, d protocol.DesiredState) (bool, error) {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return c.Put(d, raw)
}

// asideFiles lists the files in dir moved aside for why.
func asideFiles(t *testing.T, dir, why string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, FileName+"."+why+"-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCorruptFilesAreMovedAsideAndReplaced(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"good meta pages, garbage elsewhere", func(t *testing.T, path string) { fsfault.CorruptPastMeta(t, path) }},
		{"all garbage", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("not a bbolt file ", 2000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := put(t, c, sealed(1)); err != nil {
				t.Fatal(err)
			}
			c.Close()
			tc.corrupt(t, filepath.Join(dir, FileName))
			before, _ := os.ReadFile(filepath.Join(dir, FileName))

			c, err = Open(dir, Options{})
			var moved *MovedError
			if !errors.As(err, &moved) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open of a corrupt file: %v, want a MovedError wrapping ErrCorrupt", err)
			}
			t.Logf("Open: %v", err)
			defer c.Close()
			if !c.Persistent() {
				t.Fatal("no new cache file after moving the corrupt one aside")
			}
			aside := asideFiles(t, dir, "corrupt")
			if len(aside) != 1 || aside[0] != moved.To {
				t.Fatalf("moved aside: %v, error says %s", aside, moved.To)
			}
			if kept, _ := os.ReadFile(aside[0]); string(kept) != string(before) {
				t.Error("the corrupt file was not kept as it was")
			}
			if _, err := c.Get(); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get from the new file: %v", err)
			}
			if wrote, err := put(t, c, sealed(2)); !wrote || err != nil {
				t.Fatalf("Put into the new file: %v %v", wrote, err)
			}
		})
	}
}

func TestUnusableDirectoryWorksFromMemory(t *testing.T) {
	dir := fsfault.ReadOnlyDir(t)
	c, err := Open(filepath.Join(dir, "state"), Options{})
	if err == nil || c.Persistent() {
		t.Fatalf("Open in a read-only directory: %v, persistent %v", err, c.Persistent())
	}
	if _, err := c.Get(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := put(t, c, sealed(3)); err == nil || !c.Pending() {
		t.Fatalf("Put in a read-only directory: %v, pending %v", err, c.Pending())
	}
	if d, err := c.Get(); err != nil || d.Revision != 3 {
		t.Fatalf("Get from memory: %d %v", d.Revision, err)
	}
}

// TestFullDiskKeepsTheDocumentPendingAndNeverAnOlderFile: a write that
// meets a full disk (a real ENOSPC from a size-limited tmpfs) keeps the
// document pending and moves the older file aside, so a restart in
// between finds no cache instead of the older revision; once space is
// back, Retry writes it.
func TestFullDiskKeepsTheDocumentPendingAndNeverAnOlderFile(t *testing.T) {
	dir := fsfault.SmallDisk(t, "1m")
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := put(t, c, sealed(1)); err != nil {
		t.Fatal(err)
	}
	free := fsfault.Fill(t, dir)
	big := sealed(2)
	big.PrefixLists = []protocol.PrefixList{{ID: "prfx_lst_a", Name: "a"}}
	for i := range 2000 {
		big.PrefixLists[0].CIDRs = append(big.PrefixLists[0].CIDRs, "10."+itoa(i/250)+"."+itoa(i%250)+".0/24")
	}
	big.Seal()
	if wrote, err := put(t, c, big); wrote || err == nil || !c.Pending() {
		t.Fatalf("Put on a full disk: wrote %v, %v, pending %v", wrote, err, c.Pending())
	} else {
		t.Logf("Put on a full disk: %v", err)
	}
	if d, err := c.Get(); err != nil || d.Revision != 2 {
		t.Fatalf("Get while pending: %d %v", d.Revision, err)
	}

	// A restart now: no cache, not revision 1.
	c2, _ := Open(dir, Options{Timeout: 50e6})
	if _, err := c2.Get(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a restart with the write still pending found %v, want no cache", err)
	}
	c2.Close()
	if n := len(asideFiles(t, dir, "stale")); n != 1 {
		t.Errorf("%d stale files moved aside, want 1", n)
	}

	if wrote, err := c.Retry(); wrote || err == nil {
		t.Fatalf("Retry on a still full disk: %v %v", wrote, err)
	}
	free()
	if wrote, err := c.Retry(); !wrote || err != nil || c.Pending() {
		t.Fatalf("Retry after freeing space: %v %v, pending %v", wrote, err, c.Pending())
	}
	c.Close()
	c3, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if d, err := c3.Get(); err != nil || d.Revision != 2 {
		t.Fatalf("after a restart: revision %d, %v; want 2", d.Revision, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestReadOnlyFileSystemIsNeitherReadNorMovedAside: a cache on a file
// system that went read-only is left alone and not trusted (a write that
// failed there could not move it aside, so it may be older than what was
// applied): the cache works from memory.
func TestReadOnlyFileSystemIsNeitherReadNorMovedAside(t *testing.T) {
	dir := fsfault.SmallDisk(t, "1m")
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, sealed(1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	fsfault.RemountReadOnly(t, dir)
	c, err = Open(dir, Options{})
	defer c.Close()
	if err == nil || c.Persistent() || isMoved(err) {
		t.Fatalf("Open on a read-only file system: %v, persistent %v", err, c.Persistent())
	}
	if _, err := c.Get(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v, want nothing from a file that cannot be trusted", err)
	}
	if n := len(asideFiles(t, dir, "corrupt")); n != 0 {
		t.Errorf("%d files moved aside on a read-only file system", n)
	}
}

// TestValidCacheOpensOnAFullDisk: a full disk does not make a good cache
// look corrupt: it opens and is read.
func TestValidCacheOpensOnAFullDisk(t *testing.T) {
	dir := fsfault.SmallDisk(t, "1m")
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, sealed(4)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	fsfault.Fill(t, dir)
	c, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open on a full disk: %v", err)
	}
	defer c.Close()
	if d, err := c.Get(); err != nil || d.Revision != 4 {
		t.Fatalf("Get on a full disk: %d %v", d.Revision, err)
	}
}
