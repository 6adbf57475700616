package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3"

	"github.com/rampart-fw/rampart/internal/syncbuf"
)

func TestMainServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"--listen", "127.0.0.1:0", "--user", "u", "--password", "p", "--ros-version", "7.16.2", "--latency", "1ms"}, &logs)
	}()
	var addr string
	deadline := time.Now().Add(20 * time.Second)
	for addr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no serving log line: %s", logs.String())
		}
		for _, line := range strings.Split(logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "routeros-sim serving" {
				addr, _ = m["addr"].(string)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := routeros.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("u", "p"); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Run("/system/resource/print")
	if err != nil {
		t.Fatal(err)
	}
	if v := rep.Re[0].Map["version"]; v != "7.16.2 (stable)" {
		t.Fatalf("version %q", v)
	}
	rep, err = c.Run("/ip/firewall/filter/print", "=count-only=")
	if err != nil || rep.Done.Map["ret"] != "12" {
		t.Fatalf("defconf filter count: %v %v", rep, err)
	}
	c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Main did not return after cancel")
	}
}
