package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/rampart-fw/rampart/internal/buildinfo"
)

// TestVersion runs main with --version in a child process (main exits the
// process otherwise): it prints the build's version, and starts nothing.
func TestVersion(t *testing.T) {
	if os.Getenv("RAMPART_TEST_RUN_MAIN") == "1" {
		os.Args = []string{"rampart-agent", "--version"}
		main()
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestVersion$")
	cmd.Env = append(os.Environ(), "RAMPART_TEST_RUN_MAIN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rampart-agent --version: %v", err)
	}
	if got, want := string(out), buildinfo.Line("rampart-agent")+"\n"; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
}
