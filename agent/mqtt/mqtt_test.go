package mqtt

import (
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/google/go-cmp/cmp"
)

func TestBackoffDoublesToItsCap(t *testing.T) {
	var got []time.Duration
	for f := 1; f <= 7; f++ {
		got = append(got, backoff(250*time.Millisecond, time.Second, f))
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, time.Second, time.Second, time.Second, time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	for range 1000 {
		if j := jitter(time.Second); j < 500*time.Millisecond || j > time.Second {
			t.Fatalf("jitter %s outside the upper half of 1s", j)
		}
	}
}

// TestConnectErrorNamesTheMostTellingCause: with several brokers, one
// that answered and refused says more than one that did not answer.
func TestConnectErrorNamesTheMostTellingCause(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	tests := []struct {
		name    string
		errs    []error
		cause   Cause
		refusal bool
	}{
		{"unreachable", []error{refused}, CauseUnreachable, false},
		{"credentials", []error{refused, packets.ErrorRefusedBadUsernameOrPassword}, CauseCredentials, true},
		{"not authorised", []error{packets.ErrorRefusedNotAuthorised}, CauseCredentials, true},
		{"untrusted", []error{refused, x509.UnknownAuthorityError{}}, CauseUntrusted, true},
		{"server unavailable", []error{packets.ErrorRefusedServerUnavailable}, CauseRefused, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ce := &ConnectError{}
			for _, err := range tc.errs {
				ce.Failures = append(ce.Failures, BrokerFailure{URL: "tcp://x:1883", Cause: classify(err), Err: err})
			}
			if got := ce.Cause(); got != tc.cause {
				t.Errorf("cause %v, want %v", got, tc.cause)
			}
			if ce.Refused() != tc.refusal {
				t.Errorf("refused %v, want %v", ce.Refused(), tc.refusal)
			}
			if !errors.Is(ce, tc.errs[len(tc.errs)-1]) {
				t.Errorf("%v does not unwrap to %v", ce, tc.errs[len(tc.errs)-1])
			}
		})
	}
}
