package wait

import (
	"strings"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/internal/tbfail"
)

func TestUntilReturnsOnceTrue(t *testing.T) {
	n := 0
	Until(t, 10*time.Second, "third call", func() string {
		n++
		if n < 3 {
			return "not yet"
		}
		return ""
	})
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

func TestForFailsAfterBound(t *testing.T) {
	failed := tbfail.Fatalf(t, func(tb testing.TB) { For(tb, 30*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(failed, "never: not within 30ms") {
		t.Fatalf("failure message %q does not name the condition and the bound", failed)
	}
}
