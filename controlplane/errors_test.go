package controlplane_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// TestSentence: a wrapped error reads as the reason after its first
// prefix, capitalised and ending with one full stop.
func TestSentence(t *testing.T) {
	for _, tc := range []struct{ err, want string }{
		{"verify token: token is expired", "Token is expired."},
		{"redeem login link: this link was already used.", "This link was already used."},
		{"parse token: token has invalid claims: token is expired", "Token has invalid claims: token is expired."},
		{"no prefix here", "No prefix here."},
		{"", "The token is not valid."},
	} {
		got := cp.Sentence(fmt.Errorf("%w", errors.New(tc.err)))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Sentence(%q) (-want +got):\n%s", tc.err, diff)
		}
	}
}
