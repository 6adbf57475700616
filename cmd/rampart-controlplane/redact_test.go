package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRedactURLs checks that no password of a broker or store URL reaches
// a log line, including from a URL that does not parse.
func TestRedactURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"tcp://127.0.0.1:1883", "tcp://127.0.0.1:1883"},
		{"ssl://cp:s3cret@n1:8883, ssl://cp:s3cret@n2:8883", "ssl://cp:xxxxx@n1:8883,ssl://cp:xxxxx@n2:8883"},
		{"ssl://cp:s3cret@n1:8883,ssl://cp:s%zzret@n2:8883", "ssl://cp:xxxxx@n1:8883,…@n2:8883"},
		{"postgres://rampart:pw@db:5432/rampart", "postgres://rampart:xxxxx@db:5432/rampart"},
	} {
		if d := cmp.Diff(tc.want, redactURLs(tc.in)); d != "" {
			t.Errorf("redactURLs(%q) (-want +got):\n%s", tc.in, d)
		}
	}
}
