package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "rampart-agent-amd64.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	// The real build, as `go run ./cmd/rampart-image` does it.
	if err := run(ctx, []string{"--arch", "amd64", "--out", out, "--ca-certs", ""}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Size() < 1e6 {
		t.Fatalf("tarball: %v, size %d", err, fi.Size())
	}
	if !strings.Contains(stdout.String(), "wrote "+out) {
		t.Errorf("stdout %q does not say what was written", stdout.String())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left beside the tarball: %v", entries)
	}

	// --version prints the version it stamped into that agent.
	var v bytes.Buffer
	if err := run(ctx, []string{"--version"}, &v, &stderr); err != nil {
		t.Fatal(err)
	}
	version, ok := strings.CutPrefix(v.String(), "rampart-image ")
	version, _, _ = strings.Cut(version, " (go")
	if !ok || version == "" || !strings.Contains(stdout.String(), "agent "+version+",") {
		t.Errorf("--version printed %q; the build said %q", v.String(), stdout.String())
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--arch", "arm64"}, "--arch and --out are required"},
		{[]string{"--arch", "mips", "--out", filepath.Join(dir, "x.tar")}, "want arm64, arm or amd64"},
		{[]string{"--arch", "arm64", "--out", filepath.Join(dir, "x.tar"), "--binary", filepath.Join(dir, "missing")}, "read agent binary"},
		{[]string{"--arch", "arm64", "--out", filepath.Join(dir, "x.tar"), "extra"}, "unexpected arguments"},
		{[]string{"--arch", "arm64", "--out", filepath.Join(dir, "x.tar"), "--agent-version", "1.0 beta"}, `invalid version "1.0 beta": want`},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tc.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar")); err == nil {
		t.Error("a failed run left a tarball")
	}
}
