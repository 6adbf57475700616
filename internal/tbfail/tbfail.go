// Package tbfail checks a test helper's failure path: it runs the helper
// with a testing.TB whose Fatalf records the message and stops the helper,
// instead of failing the test that checks it.
package tbfail

import (
	"fmt"
	"testing"
)

// Fatalf runs f with a testing.TB standing in for t whose Fatalf stops f;
// it returns the message f gave Fatalf, or "" where f returned without
// calling it. Every other method is t's.
func Fatalf(t testing.TB, f func(testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	func() {
		defer func() {
			// Only the recorder's own stop is caught: any other panic
			// is the helper's failure, the test's to see.
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		f(r)
	}()
	return r.failed
}

type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}
