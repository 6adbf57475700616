package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/rampart-fw/rampart/protocol"
)

func TestPutGetWritesOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty cache: %v", err)
	}
	d := protocol.DesiredState{OrgID: "o", SiteID: "site_a", Epoch: "e", Revision: 1}
	d.Seal()
	for i, want := range []bool{true, false, false} {
		wrote, err := put(t, c, d)
		if err != nil || wrote != want {
			t.Fatalf("put %d: wrote %v, %v; want %v", i, wrote, err, want)
		}
	}
	d.Revision = 2
	if wrote, _ := put(t, c, d); !wrote {
		t.Fatal("a new revision was not written")
	}
	c.Close()

	if diff := cmp.Diff(d, reopened(t, dir)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
}

// reopened opens the cache in dir again and returns what it holds.
func reopened(t *testing.T, dir string) protocol.DesiredState {
	t.Helper()
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Get()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestPutStoresTheDocumentAsReceived: the cache holds the payload's bytes,
// not a second encoding, so fields this agent does not know survive a
// restart and Get decodes what the control plane sent.
func TestPutStoresTheDocumentAsReceived(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := sealed(7)
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	raw = append([]byte(`{"added_later": {"x": [1, 2]}, `), raw[1:]...)
	if wrote, err := c.Put(d, raw); !wrote || err != nil {
		t.Fatalf("Put: wrote %v, %v", wrote, err)
	}
	c.Close()

	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte
	db.View(func(tx *bolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucket).Get(desiredKey))
		return nil
	})
	db.Close()
	if diff := cmp.Diff(string(raw), string(stored)); diff != "" {
		t.Errorf("stored bytes (-received +stored):\n%s", diff)
	}
	if diff := cmp.Diff(d, reopened(t, dir)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
}

func TestOpenTimesOutOnALockedFile(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Open(dir, Options{Timeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("a second Open of a locked cache succeeded")
	}
}
