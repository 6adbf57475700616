package wait

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records a failure instead of stopping the
// test, so the helper's failure path can be checked.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

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
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != r {
				panic(p)
			}
		}()
		For(r, 30*time.Millisecond, "never", func() bool { return false })
	}()
	if !strings.Contains(r.failed, "never: not within 30ms") {
		t.Fatalf("failure message %q does not name the condition and the bound", r.failed)
	}
}
