package broker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/protocol"
)

// BenchmarkConnectionMemory measures what one connected site costs the
// broker's process: heap in use and goroutine stacks after GC, connected
// minus idle, divided by sites. The sites are raw MQTT 3.1.1 connections
// (CONNECT, SUBSCRIBE to their desired topic) held by a child process, so
// nothing of theirs is counted. One iteration connects every site.
//
//	go test -run '^$' -bench ConnectionMemory -benchtime 1x ./controlplane/broker
func BenchmarkConnectionMemory(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, pending := range []int{DefaultMaxPendingWrites, 64} {
			b.Run(fmt.Sprintf("sites=%d/pending=%d", n, pending), func(b *testing.B) {
				for range b.N {
					benchConnectionMemory(b, n, pending)
				}
			})
		}
	}
}

func benchConnectionMemory(b *testing.B, n, pending int) {
	brk, err := Start(Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quietLogger(), MaxPendingWrites: pending})
	if err != nil {
		b.Fatal(err)
	}
	defer brk.Close()
	var before, after runtime.MemStats
	readMem(&before)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldConnections$")
	cmd.Env = append(os.Environ(), "RAMPART_BROKER_MEM_CHILD="+brk.Addr(), "RAMPART_BROKER_MEM_N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
	}
	for deadline := time.Now().Add(time.Minute); brk.Clients() < int64(n); {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d sites connected after a minute", brk.Clients(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A stack shrinks by half per GC only while its goroutine uses less
	// than a quarter of it, so collect until nothing moves.
	for range 4 {
		runtime.GC()
	}
	readMem(&after)
	perSite := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	b.ReportMetric(perSite(after.HeapInuse+after.StackInuse, before.HeapInuse+before.StackInuse), "B/site")
	b.ReportMetric(perSite(after.StackInuse, before.StackInuse), "stack-B/site")
	b.ReportMetric(perSite(after.HeapInuse, before.HeapInuse), "heap-B/site")
	b.ReportMetric(float64(runtime.NumGoroutine())/float64(n), "goroutines/site")
}

func readMem(ms *runtime.MemStats) {
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(ms)
}

// TestHoldConnections is BenchmarkConnectionMemory's child: it connects and
// subscribes N sites, says ready, and holds them until stdin closes.
func TestHoldConnections(t *testing.T) {
	addr := os.Getenv("RAMPART_BROKER_MEM_CHILD")
	if addr == "" {
		t.Skip("child process of BenchmarkConnectionMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("RAMPART_BROKER_MEM_N"))
	conns := make([]net.Conn, 0, n)
	for i := range n {
		org, site := "org_bench", fmt.Sprintf("site_%d", i)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var buf bytes.Buffer
		cp := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 600,
				ClientIdentifier: keys.SiteMQTTUser(org, site), UsernameFlag: true, PasswordFlag: true,
				Username: []byte(keys.SiteMQTTUser(org, site)), Password: []byte(testKey.SiteSecret(org, site))}}
		if err := cp.ConnectEncode(&buf); err != nil {
			t.Fatal(err)
		}
		sp := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1, ProtocolVersion: 4,
			Filters: packets.Subscriptions{{Filter: protocol.DesiredTopic(root, org, site), Qos: 1}}}
		if err := sp.SubscribeEncode(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, c)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}
