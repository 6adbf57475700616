// Package fsfault makes real file-system faults for the agent's tests: a
// small tmpfs that really fills up (ENOSPC from the kernel, not a fake
// writer), a read-only mount, and a bbolt file corrupted past its meta
// pages. Mounting needs root (CAP_SYS_ADMIN); without it the tests that
// need a mount skip and say why, and ReadOnlyDir falls back to a directory
// without write permission, which stops any user but root.
package fsfault

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// mount mounts a tmpfs of size bytes (with extra options) on a new
// directory, unmounted when the test ends; ok is false when this process
// cannot mount.
func mount(t testing.TB, size string, extra string) (string, bool) {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		return "", false
	}
	opts := "size=" + size
	if extra != "" {
		opts += "," + extra
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Logf("mount tmpfs: %v: %s", err, out)
		return "", false
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir, true
}

// SmallDisk returns a directory on its own tmpfs of the given size (e.g.
// "256k"), or skips the test when it cannot mount one.
func SmallDisk(t testing.TB, size string) string {
	t.Helper()
	dir, ok := mount(t, size, "")
	if !ok {
		t.Skip("a full disk needs a size-limited tmpfs, and this process cannot mount (run as root)")
	}
	return dir
}

// Fill writes a filler file in dir until the file system refuses with
// ENOSPC, and returns a function that removes it again.
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// ReadOnlyDir returns a directory nobody can write in: a read-only tmpfs
// when this process can mount, else, for a user other than root (root
// ignores permission bits; the test is skipped), a directory with mode
// 0500.
func ReadOnlyDir(t testing.TB) string {
	t.Helper()
	if dir, ok := mount(t, "64k", "ro"); ok {
		return dir
	}
	if os.Geteuid() == 0 {
		t.Skip("a read-only directory needs a read-only mount for root (it ignores permission bits), and this process cannot mount")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	return dir
}

// CorruptPastMeta overwrites every page of a closed bbolt file after its
// two meta pages with random bytes: the meta pages still validate, so bbolt
// v1.5.0 trusts them and panics reading the freelist page they point to.
func CorruptPastMeta(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 2 * page; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// RemountReadOnly makes the tmpfs of a SmallDisk directory read-only, as a
// file system remounted read-only after errors is.
func RemountReadOnly(t testing.TB, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s read-only: %v: %s", dir, err, out)
	}
}
