// Package buildinfotest checks, from a command's own tests, that its main
// answers --version with buildinfo.Line. main usually ends the process, so
// the check runs it in a child process: the test binary itself, re-run for
// the one test.
package buildinfotest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/internal/buildinfo"
)

const childEnv = "RAMPART_BUILDINFOTEST_CHILD"

// CheckVersion runs main as `program --version` in a child process and
// fails t unless it prints exactly buildinfo.Line(program) and exits 0.
// Call it from a top-level test of the command's package.
func CheckVersion(t *testing.T, program string, main func()) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		os.Args = []string{program, "--version"}
		main()
		os.Exit(0)
	}
	// A main that ignored --version might serve until killed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --version: %v", program, err)
	}
	if got, want := string(out), buildinfo.Line(program)+"\n"; got != want {
		t.Errorf("%s --version printed %q, want %q", program, got, want)
	}
}
