package freeport

import (
	"net"
	"testing"
)

// TestPortsAreDistinctAndFree: the ports differ and each can be listened on.
func TestPortsAreDistinctAndFree(t *testing.T) {
	ports, err := Ports(12)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice in %v", p, ports)
		}
		seen[p] = true
	}
	l, err := net.Listen("tcp", Addr(t))
	if err != nil {
		t.Fatalf("listen on Addr: %v", err)
	}
	l.Close()
}
