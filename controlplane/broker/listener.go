package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener replaces mochi's listeners.TCP, whose Close disconnects the
// clients before it closes the socket: a client that reconnects at once (as
// paho does) is accepted in between and then neither served nor closed, so
// it hangs until its own connect timeout. This one stops accepting first and
// closes anything accepted after that.
//
// It also closes the connections itself rather than through mochi's
// closeClients callback: that goes through Clients.GetByListener, which
// takes the clients' read lock twice (it calls Len inside), and deadlocks
// when a client disconnecting at the same moment waits for the write lock
// in between (mochi-mqtt v2.7.9, seen as a hung Close in tests). Closing a
// connection ends its read loop, and mochi cleans the client up as for any
// dropped connection (its last will included).
//
// Before handing a connection to mochi it bounds it: a deadline for the
// CONNECT (mochi sets none until it has read one, and then only the
// client's keepalive), TLS when configured (the handshake runs within that
// deadline), and a limitConn that refuses packets above the connection's
// size limit before mochi allocates them.
type tcpListener struct {
	id, addr string
	tls      *tls.Config // nil: plain TCP
	// connectTimeout bounds the TLS handshake and the CONNECT packet.
	connectTimeout time.Duration
	// maxConnect is the largest packet before login.
	maxConnect int64
	refused    func(reason string)

	mu     sync.Mutex
	ln     net.Listener
	closed bool
	conns  map[net.Conn]struct{}
	log    *slog.Logger
}

var _ listeners.Listener = (*tcpListener)(nil)

func (l *tcpListener) ID() string { return l.id }
func (l *tcpListener) Protocol() string {
	if l.tls != nil {
		return "ssl"
	}
	return "tcp"
}

func (l *tcpListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *tcpListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.conns = make(map[net.Conn]struct{})
	l.mu.Unlock()
	return nil
}

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Warn("mqtt listener stopped", "error", err)
			}
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			continue
		}
		l.conns[conn] = struct{}{}
		l.mu.Unlock()
		go func() {
			// mochi replaces this deadline with the keepalive's once it has
			// read the CONNECT.
			_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
			c := conn
			if l.tls != nil {
				c = tls.Server(conn, l.tls)
			}
			if err := establish(l.id, newLimitConn(c, l.maxConnect, l.refused)); err != nil {
				l.log.Debug("mqtt connection ended", "error", err)
			}
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
		}()
	}
}

func (l *tcpListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	_ = l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
}
