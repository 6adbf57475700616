package rossim

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3/proto"
)

// BenchmarkSequential: one go-routeros client, one command at a time (a
// round trip per command), no injected latency.
func BenchmarkSequential(b *testing.B) {
	for _, bc := range []struct {
		name  string
		words func(i int) []string
	}{
		{"identity-print", func(int) []string { return []string{"/system/identity/print"} }},
		{"filter-print-query", func(int) []string {
			return []string{"/ip/firewall/filter/print", "?chain=input", "=.proplist=.id,comment"}
		}},
		{"address-list-add", func(i int) []string {
			return []string{"/ip/firewall/address-list/add", "=list=bench", fmt.Sprintf("=address=10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := start(b, Options{})
			c := dial(b, r, "admin", "")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Run(bc.words(i)...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
		})
	}
}

// BenchmarkPipelined: one connection, commands written back to back without
// waiting (tagged), replies read concurrently.
func BenchmarkPipelined(b *testing.B) {
	for _, name := range []string{"identity-print", "address-list-add"} {
		b.Run(name, func(b *testing.B) {
			r := start(b, Options{})
			conn, err := net.Dial("tcp", r.Addr())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 64<<10)
			w := proto.NewWriter(conn)
			w.BeginSentence()
			w.WriteWord("/login")
			w.WriteWord("=name=admin")
			w.WriteWord("=password=")
			_ = w.EndSentence()
			if _, err := readSentence(br); err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			b.ResetTimer()
			go func() {
				n := 0
				for n < b.N {
					s, err := readSentence(br)
					if err != nil {
						done <- err
						return
					}
					if s[0] == "!done" {
						n++
					}
				}
				done <- nil
			}()
			var buf bytes.Buffer
			for i := 0; i < b.N; i++ {
				words := []string{"/system/identity/print"}
				if name == "address-list-add" {
					words = []string{"/ip/firewall/address-list/add", "=list=bench", fmt.Sprintf("=address=10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
				}
				for _, wd := range words {
					buf.Write(appendWord(nil, wd))
				}
				buf.Write(appendWord(nil, fmt.Sprintf(".tag=%d", i)))
				buf.WriteByte(0)
				if buf.Len() > 32<<10 || i == b.N-1 {
					if _, err := conn.Write(buf.Bytes()); err != nil {
						b.Fatal(err)
					}
					buf.Reset()
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
		})
	}
}

// BenchmarkAddressList10k: the agent's large apply, 10,000 address-list
// entries added through Exec, with the default (unlimited) history; reports
// the heap the router holds afterwards.
func BenchmarkAddressList10k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r := New(Options{})
		start := time.Now()
		for j := 0; j < 10000; j++ {
			if _, err := r.Exec("/ip/firewall/address-list/add", "=list=big", fmt.Sprintf("=address=10.%d.%d.0/24", j>>8, j&255)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(10000/time.Since(start).Seconds(), "adds/s")
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "heap-MiB")
		runtime.KeepAlive(r)
	}
}

// BenchmarkParseScript: loading (parsing and checking every name of) a
// script the size of the onboarding script, about 9 KB.
func BenchmarkParseScript(b *testing.B) {
	r := New(Options{ROSVersion: "7.21.5"})
	defer r.Close()
	var sb strings.Builder
	for sb.Len() < 9000 {
		sb.WriteString(`:if ([:len [/interface/list/find where name=$lanList]] > 0) do={
  /interface/list/member/add list=$lanList interface=$veth comment=$tag
} else={ :put ("rampart: no interface list " . $lanList) }
/container/envs/add list=$tag key="RAMPART_MQTT_URL" value="tcp://broker.example:1883"
/ip/service/set [find where name="api" dynamic=no] address=172.17.0.0/24
`)
	}
	src := sb.String()
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.parseScript(src); err != nil {
			b.Fatal(err)
		}
	}
}
