package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/agent/cache"
)

// BenchmarkSmallChange measures a change of one or two writes on a router
// holding the benchmark policy (250 rules, 10,000 entries), from the
// document's bytes arriving (accept: decode, validate, cache) to the status
// "applied" (render, plan, writes, read-back, verification, publish). Each
// op applies the next of two revisions that differ by the scenario's change,
// back and forth.
//
// The simulator runs in its own process (cmd/routeros-sim), so this
// process's CPU time is the agent's alone: agent-cpu-ms is the agent's own
// time per change (everything but the router's side of the round trips);
// wall-ms adds the round trips and the simulator's work. The write service
// time is benchService, as in BenchmarkApply (the issue measured 5 ms; it
// changes the wall time, not the agent's).
//
//	go test -run XXX -bench SmallChange -benchtime 200x ./agent/
func BenchmarkSmallChange(b *testing.B) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	bin := filepath.Join(b.TempDir(), "routeros-sim")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rampart-fw/rampart/cmd/routeros-sim").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	// One simulator per setting, loaded once (the first apply of 10,260
	// writes takes seconds) and shared by its scenarios.
	type router struct {
		s   *simAgent
		rev uint64
	}
	routers := map[time.Duration]*router{}
	parent := b // the routers live as long as the whole benchmark
	setup := func(b *testing.B, lat, svc time.Duration) *router {
		if r := routers[lat]; r != nil {
			return r
		}
		addr := startSim(parent, bin, lat, svc)
		a, err := New(testConfig(parent, addr), Options{RouterTimeout: 20 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		parent.Cleanup(func() { a.router.Close() })
		c, err := cache.Open(parent.TempDir(), cache.Options{})
		if err != nil {
			b.Fatal(err)
		}
		parent.Cleanup(func() { c.Close() })
		a.cache = c
		r := &router{s: &simAgent{Agent: a}, rev: 1}
		r.s.apply(b, bigPolicy(1, 0))
		routers[lat] = r
		return r
	}
	type scenario struct {
		name     string
		lat, svc time.Duration
		variant  int
		limit    int64
	}
	var scenarios []scenario
	// With the agent's own soft heap limit, as in production (main.go),
	// larger ones and none: the collector's work is part of the agent's
	// time, and under 12 MiB it is most of it (BENCHMARKS.md).
	for _, limit := range []int64{defaultMemoryLimit, 16 << 20, 20 << 20, math.MaxInt64} {
		lim := fmt.Sprintf("limit=%dMiB", limit>>20)
		if limit == math.MaxInt64 {
			lim = "limit=none"
		}
		scenarios = append(scenarios,
			scenario{lim + "/one-rule/latency=0", 0, 0, 1, limit},
			scenario{lim + "/one-entry/latency=0", 0, 0, 3, limit},
			scenario{lim + "/one-rule/latency=2ms,service=1ms", 2 * time.Millisecond, benchService, 1, limit},
			scenario{lim + "/one-entry/latency=2ms,service=1ms", 2 * time.Millisecond, benchService, 3, limit})
	}
	for _, tc := range scenarios {
		b.Run(tc.name, func(b *testing.B) {
			debug.SetMemoryLimit(tc.limit)
			defer debug.SetMemoryLimit(math.MaxInt64)
			ctx := context.Background()
			r := setup(b, tc.lat, tc.svc)
			s := r.s
			// The two documents, with a revision to fill in: the payloads are
			// made one at a time, outside the measured window (holding b.N
			// documents of ~0.5 MB at once would keep the heap over the
			// agent's limit and time the collector, not the agent).
			var tmpl [2][]byte
			for k, v := range []int{tc.variant, 0} {
				tmpl[k], _ = json.Marshal(bigPolicy(revMark, v))
			}
			payload := func(i int) []byte {
				r.rev++
				return bytes.Replace(tmpl[i%2], []byte(fmt.Sprintf(`"revision":%d`, revMark)), []byte(fmt.Sprintf(`"revision":%d`, r.rev)), 1)
			}
			ops := 0
			wall := make([]time.Duration, 0, b.N)
			cpu := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				doc := payload(i)
				start, cpu0 := time.Now(), cpuTime()
				if !s.accept(doc) {
					b.Fatal("document refused")
				}
				if err := s.update(ctx); err != nil {
					b.Fatal(err)
				}
				cpu = append(cpu, cpuTime()-cpu0)
				wall = append(wall, time.Since(start))
				ops += s.status.Operations
			}
			if b.N%2 == 1 {
				s.accept(payload(1)) // back to the base for the next scenario
				if err := s.update(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-MiB")
			b.ReportMetric(p50(wall), "wall-ms")
			b.ReportMetric(p50(cpu), "agent-cpu-ms")
			b.ReportMetric(float64(ops)/float64(b.N), "writes/op")
		})
	}
}

// revMark is the revision in the template documents, replaced per op.
const revMark = 987654321

func p50(ds []time.Duration) float64 {
	slices.Sort(ds)
	return float64(ds[len(ds)/2].Microseconds()) / 1000
}

// cpuTime is the CPU this process used so far (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startSim runs the simulator binary and returns its API address.
func startSim(b *testing.B, bin string, lat, svc time.Duration) string {
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--latency", lat.String(), "--write-service-time", svc.String())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && strings.Contains(line.Msg, "serving") {
			go func() {
				for sc.Scan() {
				}
			}()
			return line.Addr
		}
	}
	b.Fatal(fmt.Errorf("routeros-sim did not say where it listens: %v", sc.Err()))
	return ""
}
