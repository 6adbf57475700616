package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/rampart-fw/rampart/internal/buildinfo"
)

// TestVersion: --version prints the build's version and nothing else runs
// (no data directory, no listener).
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-version"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{arg}, &stdout, &stderr); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if got, want := stdout.String(), buildinfo.Line("rampart-controlplane")+"\n"; got != want || stderr.Len() != 0 {
			t.Errorf("%s printed %q (stderr %q), want %q", arg, got, stderr.String(), want)
		}
	}
}
