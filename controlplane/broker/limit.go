package broker

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
)

// Why a connection was closed before mochi read a packet; the values label
// rampart_broker_refused_total.
const (
	refusedConnectTimeout = "connect_timeout"  // no CONNECT within Options.ConnectTimeout
	refusedTooLargeLogin  = "too_large_login"  // a packet before login above MaxConnectBytes
	refusedTooLarge       = "too_large"        // a packet after login above the user's limit
	refusedMalformed      = "malformed_length" // a remaining length of more than four bytes
	refusedStatusTooLarge = "status_too_large" // a status or presence payload above protocol.MaxStatusBytes
	refusedDecommissioned = "decommissioned"   // a decommissioned site's credentials (Options.Decommissioned)
)

// ErrPacketTooLarge is the read error of a connection that announced a
// packet larger than it may send; mochi then closes the connection.
var ErrPacketTooLarge = errors.New("mqtt packet larger than this connection may send")

var errMalformedLength = errors.New("mqtt remaining length longer than four bytes")

// limitConn bounds what mochi reads from one connection. mochi allocates a
// packet's full stated size before reading it (mochi-mqtt v2.7.9,
// Client.ReadPacket), and its only bound, Capabilities.MaximumPacketSize,
// is one number for every client and every stage. limitConn follows the MQTT
// framing of the bytes it hands mochi (fixed header byte, remaining length,
// body) and, at a header whose packet is larger than the connection's
// current limit, hands over only the bytes before that header and then fails
// the read: mochi never sees the length, so it never allocates it.
//
// The limit starts at MaxConnectBytes and is raised once the CONNECT is
// authenticated (login), to what that user may send.
type limitConn struct {
	net.Conn
	limit    atomic.Int64 // largest packet, fixed header included
	loggedIn atomic.Bool
	refused  func(reason string)

	f   framer
	err error // returned by the next Read
}

func newLimitConn(c net.Conn, limit int64, refused func(string)) *limitConn {
	lc := &limitConn{Conn: c, refused: refused}
	lc.limit.Store(limit)
	return lc
}

// login raises (or lowers) the limit for an authenticated user.
func (c *limitConn) login(limit int64) {
	c.limit.Store(limit)
	c.loggedIn.Store(true)
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && !c.loggedIn.Load() {
		c.refused(refusedConnectTimeout)
	}
	keep, ferr := c.f.scan(p[:n], c.limit.Load())
	if ferr != nil {
		reason := refusedTooLarge
		switch {
		case errors.Is(ferr, errMalformedLength):
			reason = refusedMalformed
		case !c.loggedIn.Load():
			reason = refusedTooLargeLogin
		}
		c.refused(reason)
		c.err = ferr
		if keep == 0 {
			return 0, ferr
		}
		return keep, nil
	}
	return n, err
}

// framer follows MQTT framing across reads. The zero value expects a fixed
// header.
type framer struct {
	stage     int   // 0: header byte next, 1: in the remaining length, 2: in the body
	length    int64 // remaining length decoded so far
	shift     uint
	lenBytes  int
	remaining int64 // body bytes still to come
}

// scan advances over b. If a packet in b is larger than limit (or its length
// is malformed), it returns how many bytes of b precede that packet's header
// (0 if the header began in an earlier read) and an error; otherwise
// len(b), nil.
func (f *framer) scan(b []byte, limit int64) (int, error) {
	start := 0 // where the packet being framed began in b (0 if before b)
	for i := 0; i < len(b); {
		switch f.stage {
		case 0:
			start = i
			f.stage, f.length, f.shift, f.lenBytes = 1, 0, 0, 0
			i++
		case 1:
			c := b[i]
			i++
			f.length |= int64(c&0x7f) << f.shift
			f.shift += 7
			f.lenBytes++
			if c&0x80 != 0 {
				if f.lenBytes == 4 {
					return start, errMalformedLength
				}
				continue
			}
			if size := 1 + int64(f.lenBytes) + f.length; size > limit {
				return start, fmt.Errorf("%w: %d bytes announced, at most %d allowed", ErrPacketTooLarge, size, limit)
			}
			f.remaining = f.length
			f.stage = 2
			if f.remaining == 0 {
				f.stage = 0
			}
		case 2:
			k := min(f.remaining, int64(len(b)-i))
			i += int(k)
			f.remaining -= k
			if f.remaining == 0 {
				f.stage = 0
			}
		}
	}
	return len(b), nil
}
