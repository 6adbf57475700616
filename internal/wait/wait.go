// Package wait is how tests across the module wait for something to happen.
// Tests here run on a loaded 2-core CI machine beside other packages' tests,
// so waiting is always by polling with a generous bound, never by sleeping a
// fixed time and hoping.
package wait

import (
	"testing"
	"time"
)

// Until polls cond until it returns "" and fails the test if that has
// not happened within the bound. cond's last answer says why not, and goes
// into the failure message. The poll starts at 10 ms and backs off to 100 ms,
// so quick conditions return quickly and slow ones (an HTTP call to another
// process) do not load the machine.
func Until(t testing.TB, within time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	pause := 10 * time.Millisecond
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, within, why)
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// For is Until for a condition that gives no reason.
func For(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	Until(t, within, what, func() string {
		if cond() {
			return ""
		}
		return "still false"
	})
}
