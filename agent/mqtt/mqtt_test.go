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

// TestReconnectPolicy: the waits of issue 12 item 5, as state rather than
// timing. While no broker answers the wait never exceeds the 1 s cap,
// whatever the outage's length; a broker that refuses is retried more
// slowly; a connection that held resets the backoff, so the first attempt
// after it comes within the base wait, outage after outage; one that
// dropped at once does not.
func TestReconnectPolicy(t *testing.T) {
	p := reconnectPolicy{base: 250 * time.Millisecond, unreachableMax: time.Second, refusedMax: 15 * time.Second, heldAfter: 10 * time.Second}
	for outage := range 3 {
		for range 100 * (outage + 1) { // a long outage: 100 to 300 failed attempts
			if w := p.failed(false); w > time.Second {
				t.Fatalf("outage %d: waited %s with no broker answering, over the 1 s cap", outage, w)
			}
		}
		// The broker is back; the connection holds for a minute, then drops.
		if w := p.lost(time.Minute); w > p.base {
			t.Errorf("outage %d: first attempt after a connection that held waits %s, want at most %s", outage, w, p.base)
		}
		if p.failures != 1 {
			t.Errorf("outage %d: %d failures counted after a reset, want 1 (this attempt)", outage, p.failures)
		}
	}
	for range 10 {
		p.lost(time.Millisecond) // accepted, then dropped at once: no reset
	}
	if p.failures < 10 {
		t.Errorf("connections that did not hold reset the backoff (%d failures)", p.failures)
	}
	var longest time.Duration
	for range 20 {
		longest = max(longest, p.failed(true))
	}
	if longest <= time.Second || longest > 15*time.Second {
		t.Errorf("a refusing broker is retried after at most %s, want between 1 s and 15 s", longest)
	}
}
