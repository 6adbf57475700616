package benchproc

import (
	"bufio"
	"fmt"
	"os"
	"testing"
)

const childEnv = "RAMPART_BENCHPROC_TEST_CHILD"

func TestMain(m *testing.M) {
	Serve(childEnv, echo)
	os.Exit(m.Run())
}

// echo answers every line with its spec and the line.
func echo(spec string) error {
	fmt.Println(Ready)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(spec, in.Text())
	}
	return in.Err()
}

// TestChildrenAnswerInLines: two children start at once, get ready, and
// each answers its own commands, in order.
func TestChildrenAnswerInLines(t *testing.T) {
	a, b := Start(t, childEnv, "a"), Start(t, childEnv, "b", "UNUSED=1")
	WaitReady(t, a, b)
	for _, tc := range []struct {
		p          *Proc
		line, want string
	}{{a, "one", "a one"}, {b, "two", "b two"}, {a, "three", "a three"}} {
		if got := tc.p.Ask(t, tc.line, tc.want[:1]); got != tc.want {
			t.Errorf("Ask(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
	b.Send(t, "four")
	if got := b.Receive(t, "b"); got != "b four" {
		t.Errorf("Receive = %q, want %q", got, "b four")
	}
}
