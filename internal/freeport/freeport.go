// Package freeport finds loopback TCP ports nothing listens on, for tests
// that must name an address before the server that will use it starts (a
// child process, a broker restarted on the same port, a client dialled
// before its server exists).
package freeport

import (
	"fmt"
	"net"
	"testing"
)

// Ports returns n distinct free loopback ports. Every listener stays open
// until all are picked, so the kernel does not hand one out twice.
func Ports(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Addr is a free loopback address ("127.0.0.1:PORT"); it fails tb when
// none can be had.
func Addr(tb testing.TB) string {
	tb.Helper()
	ports, err := Ports(1)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0])
}
