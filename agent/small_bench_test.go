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
// GODEBUG=memprofilerate=0 makes the test binary's heap what the agent's
// is (see below):
//
//	GODEBUG=memprofilerate=0 go test -run XXX -bench SmallChange -benchtime 200x ./agent/
//	GODEBUG=memprofilerate=0 go test -run XXX -bench 'SmallChange/latency=0/limit=12MiB' -benchtime 200x ./agent/
func BenchmarkSmallChange(b *testing.B) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	if runtime.MemProfileRate != 0 {
		// The agent's binary does not link the memory profiler, so the
		// linker turns sampling off; a test binary samples from its start
		// and its profile's hash table (~1.4 MB) counts against the heap
		// limit, tripling the collections under 12 MiB.
		b.Log("memory profiling is on: under a heap limit this measures more collections than the agent has; run with GODEBUG=memprofilerate=0")
	}
	bin := filepath.Join(b.TempDir(), "routeros-sim")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rampart-fw/rampart/cmd/routeros-sim").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	// One simulator per latency, loaded once (the first apply of 10,260
	// writes takes seconds) and shared by the scenarios of that latency,
	// which run one after the other; one agent lives at a time, so the heap
	// limit applies to one agent's memory, as in production.
	type router struct {
		s    *simAgent
		lat  time.Duration
		rev  uint64
		stop func()
	}
	var cur *router
	parent := b // a router outlives the sub-benchmark that set it up
	parent.Cleanup(func() {
		if cur != nil {
			cur.stop()
		}
	})
	setup := func(b *testing.B, lat, svc time.Duration) *router {
		if cur != nil && cur.lat == lat {
			return cur
		}
		if cur != nil {
			cur.stop()
			cur = nil
			runtime.GC()
		}
		addr, kill := startSim(bin, lat, svc)
		a, err := New(testConfig(parent, addr), Options{RouterTimeout: 20 * time.Second})
		if err != nil {
			kill()
			b.Fatal(err)
		}
		c, err := cache.Open(parent.TempDir(), cache.Options{})
		if err != nil {
			kill()
			b.Fatal(err)
		}
		a.cache = c
		cur = &router{s: &simAgent{Agent: a}, lat: lat, rev: 1, stop: func() { a.router.Close(); c.Close(); kill() }}
		cur.s.apply(b, bigPolicy(1, 0))
		return cur
	}
	type scenario struct {
		name     string
		lat, svc time.Duration
		variant  int
		limit    int64
	}
	var scenarios []scenario
	// With the agent's own soft heap limit, as in production (main.go),
	// the smaller ones it replaced, a larger one and none: the collector's
	// work is part of the agent's time, and under 12 MiB it is most of it
	// (BENCHMARKS.md).
	for _, net := range []struct {
		name     string
		lat, svc time.Duration
	}{{"latency=0", 0, 0}, {"latency=2ms,service=1ms", 2 * time.Millisecond, benchService}} {
		limits := []int64{12 << 20, 13 << 20, defaultMemoryLimit, 16 << 20, math.MaxInt64}
		slices.Sort(limits)
		for _, limit := range slices.Compact(limits) {
			lim := fmt.Sprintf("limit=%dMiB", limit>>20)
			if limit == math.MaxInt64 {
				lim = "limit=none"
			}
			scenarios = append(scenarios,
				scenario{net.name + "/" + lim + "/one-rule", net.lat, net.svc, 1, limit},
				scenario{net.name + "/" + lim + "/one-entry", net.lat, net.svc, 3, limit})
		}
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
			var gc0 runtime.MemStats
			runtime.ReadMemStats(&gc0)
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
			// Collections per change (the one above not counted): under a
			// tight heap limit they are most of the agent's time.
			b.ReportMetric(float64(ms.NumGC-gc0.NumGC-1)/float64(b.N), "GCs/op")
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

// startSim runs the simulator binary; it returns its API address and how
// to stop it.
func startSim(bin string, lat, svc time.Duration) (string, func()) {
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--latency", lat.String(), "--write-service-time", svc.String())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		panic(err)
	}
	if err := cmd.Start(); err != nil {
		panic(fmt.Sprintf("start routeros-sim: %v", err))
	}
	kill := func() { cmd.Process.Kill(); cmd.Wait() }
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && strings.Contains(line.Msg, "serving") {
			go func() {
				for sc.Scan() {
				}
			}()
			return line.Addr, kill
		}
	}
	kill()
	panic(fmt.Sprintf("routeros-sim did not say where it listens: %v", sc.Err()))
}
