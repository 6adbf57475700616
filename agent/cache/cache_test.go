package cache

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
		wrote, err := c.Put(d)
		if err != nil || wrote != want {
			t.Fatalf("put %d: wrote %v, %v; want %v", i, wrote, err, want)
		}
	}
	d.Revision = 2
	if wrote, _ := c.Put(d); !wrote {
		t.Fatal("a new revision was not written")
	}
	c.Close()

	c, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Get()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, got); diff != "" {
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
