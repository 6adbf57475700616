// Package benchproc runs part of a benchmark in child processes: the test
// binary itself, re-executed with an environment variable that its TestMain
// recognises. The benchmarks that measure one side of thousands of
// connections (the MQTT fan-out, the end-to-end benchmark) put the other
// side in children, so the measured process holds only what is measured and
// both ends of every connection need not fit one process's file
// descriptors.
//
// # Protocol
//
// Parent and child speak in lines: the parent writes commands to the
// child's stdin, the child answers on its stdout, and prints "ready" once it
// is set up. The child's stderr is the parent's. When the parent closes the
// child's stdin (at the end of the benchmark), the child cleans up and
// exits; an exit status other than 0 fails the benchmark.
//
//	func TestMain(m *testing.M) {
//		benchproc.Serve("RAMPART_BENCH_X", runChild) // returns unless a child
//		os.Exit(m.Run())
//	}
//
//	p := benchproc.Start(b, "RAMPART_BENCH_X", spec)
//	benchproc.WaitReady(b, p)
//	reply := p.Ask(b, "wait", "done")
package benchproc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Ready is the line a child prints once it is set up.
const Ready = "ready"

// Serve runs the child's part when the environment variable env is set:
// run(its value), then it exits the process, with status 1 and the error on
// stderr if run failed. Without env it returns at once. Call it first in
// TestMain.
func Serve(env string, run func(spec string) error) {
	spec := os.Getenv(env)
	if spec == "" {
		return
	}
	if err := run(spec); err != nil {
		fmt.Fprintf(os.Stderr, "%s child: %v\n", env, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Proc is one child process.
type Proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// Start starts a child that runs the test binary's Serve with env=spec and
// the extra environment variables extra ("K=V"). It does not wait for the
// child to be ready (see WaitReady), so several children can set up at
// once. At cleanup the child's stdin is closed and its exit awaited.
func Start(tb testing.TB, env, spec string, extra ...string) *Proc {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env+"="+spec), extra...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<30) // one answer may list every site
	tb.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			tb.Errorf("child %s: %v", env, err)
		}
	})
	return &Proc{cmd: cmd, in: in, out: sc}
}

// WaitReady waits until every child printed Ready.
func WaitReady(tb testing.TB, procs ...*Proc) {
	tb.Helper()
	for _, p := range procs {
		p.Receive(tb, Ready)
	}
}

// Send writes one line to the child.
func (p *Proc) Send(tb testing.TB, line string) {
	tb.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		tb.Fatalf("send %q to child: %v", line, err)
	}
}

// Receive reads the child's next line, which must start with want.
func (p *Proc) Receive(tb testing.TB, want string) string {
	tb.Helper()
	if !p.out.Scan() {
		tb.Fatalf("child ended while %q was expected: %v", want, p.out.Err())
	}
	if !strings.HasPrefix(p.out.Text(), want) {
		tb.Fatalf("child said %q, want a line starting with %q", p.out.Text(), want)
	}
	return p.out.Text()
}

// Ask sends line and returns the answer, which must start with want.
func (p *Proc) Ask(tb testing.TB, line, want string) string {
	tb.Helper()
	p.Send(tb, line)
	return p.Receive(tb, want)
}
