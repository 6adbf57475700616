package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Cause is why a broker could not be used, classified by error type.
type Cause int

// The causes a failed connection attempt is classified into.
const (
	// CauseUnreachable: no TCP connection (refused, no route, no DNS
	// answer, timeout) or no CONNACK in time.
	CauseUnreachable Cause = iota + 1
	// CauseUntrusted: the broker's certificate was not signed by a CA the
	// agent trusts, or is not for the URL's host name.
	CauseUntrusted
	// CauseTLS: the TLS handshake failed otherwise (e.g. the port does not
	// serve TLS).
	CauseTLS
	// CauseCredentials: CONNACK 4 or 5, the broker refused the username
	// and password.
	CauseCredentials
	// CauseRefused: another CONNACK refusal (server unavailable,
	// identifier rejected, protocol version).
	CauseRefused
	// CauseOther: anything else.
	CauseOther
)

func (c Cause) String() string {
	switch c {
	case CauseUnreachable:
		return "unreachable"
	case CauseUntrusted:
		return "certificate not trusted"
	case CauseTLS:
		return "TLS handshake failed"
	case CauseCredentials:
		return "credentials refused"
	case CauseRefused:
		return "connection refused by the broker"
	}
	return "failed"
}

// BrokerFailure is what one broker URL did in a failed attempt.
type BrokerFailure struct {
	URL   string // redacted
	Cause Cause
	Err   error
}

// ConnectError is a failed connection attempt: every broker URL failed.
type ConnectError struct {
	Failures []BrokerFailure
}

func (e *ConnectError) Error() string {
	var b strings.Builder
	b.WriteString("connect to the broker: ")
	for i, f := range e.Failures {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.URL + ": " + f.Cause.String() + ": " + f.Err.Error())
	}
	return b.String()
}

// Unwrap gives the failures' errors to errors.Is and errors.As.
func (e *ConnectError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f.Err
	}
	return errs
}

// Cause is the cause of the failure that says most about what to fix: a
// broker that answered and refused says more than one that did not answer.
func (e *ConnectError) Cause() Cause {
	best := Cause(0)
	for _, f := range e.Failures {
		if best == 0 || rank(f.Cause) > rank(best) {
			best = f.Cause
		}
	}
	return best
}

func rank(c Cause) int {
	switch c {
	case CauseCredentials:
		return 5
	case CauseUntrusted:
		return 4
	case CauseTLS:
		return 3
	case CauseRefused:
		return 2
	case CauseUnreachable:
		return 1
	}
	return 0
}

// Refused reports whether a broker answered and said no: retrying fast
// would not help and would flood its log.
func (e *ConnectError) Refused() bool {
	switch e.Cause() {
	case CauseCredentials, CauseUntrusted, CauseTLS:
		return true
	}
	return false
}

// connectError builds the ConnectError of the attempt that just failed
// with err (paho's error, which describes only the last broker) from the
// per-URL dial results recorded by dial: a URL whose dial failed failed
// there; the last one that dialled got err's CONNACK refusal.
func (cl *Client) connectError(err error) *ConnectError {
	cl.mu.Lock()
	attempts := append([]attempt(nil), cl.attempts...)
	cl.mu.Unlock()
	ce := &ConnectError{}
	lastDialled := -1
	for i, a := range attempts {
		if a.err == nil {
			lastDialled = i
		}
	}
	for i, a := range attempts {
		switch {
		case a.err != nil:
			ce.Failures = append(ce.Failures, BrokerFailure{URL: a.url, Cause: classify(a.err), Err: a.err})
		case i == lastDialled:
			ce.Failures = append(ce.Failures, BrokerFailure{URL: a.url, Cause: classify(err), Err: err})
		default:
			// Dialled, then refused; paho kept only the last broker's
			// answer.
			ce.Failures = append(ce.Failures, BrokerFailure{URL: a.url, Cause: CauseOther, Err: errors.New("the broker did not accept the connection")})
		}
	}
	if len(ce.Failures) == 0 {
		ce.Failures = []BrokerFailure{{URL: cl.connectedURL(), Cause: classify(err), Err: err}}
	}
	return ce
}

func classify(err error) Cause {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		alert     tls.AlertError
		netErr    net.Error
		opErr     *net.OpError
		dnsErr    *net.DNSError
	)
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return CauseCredentials
	case errors.Is(err, packets.ErrorRefusedServerUnavailable), errors.Is(err, packets.ErrorRefusedIDRejected), errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return CauseRefused
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return CauseUntrusted
	case errors.As(err, &record), errors.As(err, &alert):
		return CauseTLS
	case errors.As(err, &dnsErr), errors.As(err, &opErr), errors.As(err, &netErr), errors.Is(err, packets.ErrorNetworkError):
		return CauseUnreachable
	}
	return CauseOther
}
