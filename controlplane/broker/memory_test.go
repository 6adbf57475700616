package broker

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/rampart-fw/rampart/internal/benchproc"
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
	benchproc.WaitReady(b, benchproc.Start(b, holdEnv, fmt.Sprintf("%s %d", brk.Addr(), n)))
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

const holdEnv = "RAMPART_BENCH_HOLD_CONNECTIONS"

func TestMain(m *testing.M) {
	benchproc.Serve(holdEnv, holdConnections)
	os.Exit(m.Run())
}

// holdConnections is BenchmarkConnectionMemory's child: spec is "addr n";
// it connects and subscribes n sites, says ready, and holds them until
// stdin closes.
func holdConnections(spec string) error {
	var (
		addr string
		n    int
	)
	if _, err := fmt.Sscanf(spec, "%s %d", &addr, &n); err != nil {
		return fmt.Errorf("parse spec %q: %w", spec, err)
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		org, site := "org_bench", fmt.Sprintf("site_%d", i)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		var buf bytes.Buffer
		cp := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 600,
				ClientIdentifier: protocol.SiteMQTTUser(org, site), UsernameFlag: true, PasswordFlag: true,
				Username: []byte(protocol.SiteMQTTUser(org, site)), Password: []byte(testKey.SiteSecret(org, site))}}
		if err := cp.ConnectEncode(&buf); err != nil {
			return err
		}
		sp := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1, ProtocolVersion: 4,
			Filters: packets.Subscriptions{{Filter: protocol.DesiredTopic(root, org, site), Qos: 1}}}
		if err := sp.SubscribeEncode(&buf); err != nil {
			return err
		}
		if _, err := c.Write(buf.Bytes()); err != nil {
			return err
		}
		go io.Copy(io.Discard, c)
	}
	fmt.Println(benchproc.Ready)
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}
