package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	wrkDuration = flag.Duration("wrk.duration", 5*time.Second, "how long each BenchmarkAPIWrk and BenchmarkAPIWrkRate case runs wrk")
	wrkGETRates = flag.String("wrk.get-rates", "2000,5000,10000,15000,20000", "GET rates BenchmarkAPIWrkRate offers, requests per second over all connections")
	wrkPUTRates = flag.String("wrk.put-rates", "200,400,600,800", "PUT rates BenchmarkAPIWrkRate offers, requests per second over all connections")
)

// BenchmarkAPIWrk measures the same GET and PUT of a 250-rule group as
// BenchmarkAPI, over real HTTP against a real bbolt file, but driven by wrk
// in its own process (one thread, 1 or 64 connections, keep-alive), so
// the benchmark process is the server alone: its user+system CPU per
// request (server-cpu-µs/op) is the server's cost, and wrk's own CPU is
// reported apart (wrk-cpu-µs/op). Latency percentiles and req/s are wrk's
// (--latency). PUTs use testdata/put.lua: round-robin over one group per
// connection, or all on one group (PUT250-onegroup).
//
// wrk is a Debian package (apt-get install -y wrk); without it on PATH the
// benchmark is skipped. Each case runs wrk once for -wrk.duration, so run
// it with -benchtime 1x:
//
//	go test -run '^$' -bench 'BenchmarkAPIWrk$' -benchtime 1x ./controlplane/api
func BenchmarkAPIWrk(b *testing.B) {
	wrk, script, bodyFiles := wrkSetup(b)
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("GET250/clients=%d", clients), func(b *testing.B) {
			url, tok, _, ids := benchServer(b, false, 1)
			runWrk(b, wrk, clients, url+"/vpc/security-groups/"+ids[0], nil, "-H", "Authorization: Bearer "+tok)
		})
		b.Run(fmt.Sprintf("PUT250/batch/clients=%d", clients), func(b *testing.B) {
			url, tok, _, ids := benchServer(b, false, clients)
			runWrk(b, wrk, clients, url, nil, "-s", script, "--", tok, bodyFiles[0], bodyFiles[1], strings.Join(ids, ","))
		})
	}
	b.Run("PUT250-onegroup/batch/clients=64", func(b *testing.B) {
		url, tok, _, ids := benchServer(b, false, 1)
		runWrk(b, wrk, 64, url, nil, "-s", script, "--", tok, bodyFiles[0], bodyFiles[1], ids[0])
	})
}

// BenchmarkAPIWrkRate is the latency of 64 clients at a given load, where
// BenchmarkAPIWrk (and BenchmarkAPI) measure it at saturation. There each
// connection sends its next request as soon as the last is answered, so
// the server is always 64 requests behind and the mean latency is 64
// divided by the throughput the 2 cores allow (Little's law), whatever
// the code does. Here each of wrk's 64 connections thinks between
// requests (testdata/think.lua: exponential, mean 64/rate, so together
// they offer about rate requests per second, nearly Poisson, as
// independent operators and scripts would). "req/s" is what was answered:
// a little under the offered rate, since a connection's cycle is its think
// time plus the answer. handler-p99-ms is the server's own view: the upper
// bound of the bucket of the API's request-duration histogram (from the
// handler's start to its last write) that holds its 99th percentile.
//
// wrk was chosen over a Go client here: an open-loop client in Go, in its
// own process, measured p99 3-20 ms for GETs at 5,000/s while the
// handlers' p99 stayed under 0.5 ms; wrk at the same load saw 1.1-1.3 ms.
// The tail was the Go client's (its CPU per request was above the
// server's).
//
//	go test -run '^$' -bench BenchmarkAPIWrkRate -benchtime 1x ./controlplane/api
//	go test -run '^$' -bench BenchmarkAPIWrkRate -benchtime 1x ./controlplane/api -args -wrk.get-rates=15000 -wrk.put-rates=400,600
func BenchmarkAPIWrkRate(b *testing.B) {
	const clients = 64
	wrk, script, bodyFiles := wrkSetup(b)
	think, err := filepath.Abs("testdata/think.lua")
	if err != nil {
		b.Fatal(err)
	}
	// env makes wrk's connections think long enough to offer rate
	// requests per second in all.
	env := func(rate int) []string {
		return []string{fmt.Sprintf("RAMPART_WRK_THINK_MS=%g", float64(clients)*1000/float64(rate))}
	}
	for _, rate := range parseRates(b, *wrkGETRates) {
		b.Run(fmt.Sprintf("GET250/clients=%d/rate=%d", clients, rate), func(b *testing.B) {
			url, tok, _, ids, reg := benchServerRegistry(b, false, 1)
			runWrk(b, wrk, clients, url+"/vpc/security-groups/"+ids[0], env(rate), "-s", think, "-H", "Authorization: Bearer "+tok)
			b.ReportMetric(handlerP99(b, reg, "GET")*1000, "handler-p99-ms")
		})
	}
	for _, rate := range parseRates(b, *wrkPUTRates) {
		b.Run(fmt.Sprintf("PUT250/clients=%d/rate=%d", clients, rate), func(b *testing.B) {
			url, tok, _, ids, reg := benchServerRegistry(b, false, clients)
			runWrk(b, wrk, clients, url, env(rate), "-s", script, "--", tok, bodyFiles[0], bodyFiles[1], strings.Join(ids, ","))
			b.ReportMetric(handlerP99(b, reg, "PUT")*1000, "handler-p99-ms")
		})
	}
}

// wrkSetup finds wrk (or skips the benchmark) and returns it with the PUT
// script and the two 250-rule bodies it alternates, written to files.
func wrkSetup(b *testing.B) (wrk, script string, bodyFiles []string) {
	b.Helper()
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not on PATH (apt-get install -y wrk); BenchmarkAPI measures with an in-process Go client instead")
	}
	dir := b.TempDir()
	for i := range 2 {
		body, _ := json.Marshal(bigGroup(i))
		f := filepath.Join(dir, fmt.Sprintf("body%d.json", i))
		if err := os.WriteFile(f, body, 0o600); err != nil {
			b.Fatal(err)
		}
		bodyFiles = append(bodyFiles, f)
	}
	script, err = filepath.Abs("testdata/put.lua")
	if err != nil {
		b.Fatal(err)
	}
	return wrk, script, bodyFiles
}

func parseRates(b *testing.B, s string) []int {
	var rates []int
	for _, f := range strings.Split(s, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r <= 0 {
			b.Fatalf("rate %q: want a positive whole number of requests per second", f)
		}
		rates = append(rates, r)
	}
	return rates
}

// handlerP99 is the upper bound of the request-duration bucket that holds
// the 99th percentile of the method's requests (+Inf past the last).
func handlerP99(b *testing.B, reg *prometheus.Registry, method string) float64 {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rampart_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			route := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					route = l.GetValue()
				}
			}
			if !strings.HasPrefix(route, method+" ") {
				continue
			}
			h := m.GetHistogram()
			for _, bk := range h.GetBucket() {
				if float64(bk.GetCumulativeCount()) >= 0.99*float64(h.GetSampleCount()) {
					return bk.GetUpperBound()
				}
			}
			return math.Inf(1)
		}
	}
	b.Fatalf("no request-duration histogram for %s requests", method)
	return 0
}

// runWrk runs wrk against url once, with env added to its environment,
// and reports its results, with the CPU of this process (the server) and
// of wrk per request.
func runWrk(b *testing.B, wrk string, clients int, url string, env []string, args ...string) {
	b.Helper()
	argv := append([]string{"-t1", fmt.Sprintf("-c%d", clients), "-d" + wrkDuration.String(), "--latency", "--timeout", "10s"}, args...)
	// wrk takes the URL before the script's arguments.
	if i := indexOf(argv, "--"); i >= 0 {
		argv = append(argv[:i:i], append([]string{url}, argv[i:]...)...)
	} else {
		argv = append(argv, url)
	}
	cmd := exec.CommandContext(context.Background(), wrk, argv...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	b.ResetTimer()
	cpu0 := cpuTime()
	err := cmd.Run()
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", strings.Join(argv, " "), err, out.String())
	}
	res, err := parseWrk(out.String())
	if err != nil {
		b.Fatalf("wrk output: %v\n%s", err, out.String())
	}
	if res.non2xx > 0 || res.errors > 0 {
		b.Fatalf("wrk saw %d non-2xx answers and %d socket errors\n%s", res.non2xx, res.errors, out.String())
	}
	if res.requests == 0 {
		b.Fatalf("wrk completed no request\n%s", out.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	wrkCPU := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	b.ReportMetric(res.p50.Seconds()*1000, "p50-ms")
	b.ReportMetric(res.p99.Seconds()*1000, "p99-ms")
	b.ReportMetric(res.rps, "req/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(res.requests), "server-cpu-µs/op")
	b.ReportMetric(float64(wrkCPU.Microseconds())/float64(res.requests), "wrk-cpu-µs/op")
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

type wrkResult struct {
	p50, p99       time.Duration
	requests       int64
	rps            float64
	non2xx, errors int64
}

var (
	wrkPercentile = regexp.MustCompile(`^\s*(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkRequests   = regexp.MustCompile(`^\s*(\d+) requests in `)
	wrkRPS        = regexp.MustCompile(`^Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket     = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads wrk 4's report (with --latency).
func parseWrk(s string) (wrkResult, error) {
	var r wrkResult
	var found int
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if m := wrkPercentile.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[m[3]]
			d := time.Duration(v * float64(unit))
			if m[1] == "50" {
				r.p50 = d
			} else {
				r.p99 = d
			}
			found++
		}
		if m := wrkRequests.FindStringSubmatch(line); m != nil {
			r.requests, _ = strconv.ParseInt(m[1], 10, 64)
			found++
		}
		if m := wrkRPS.FindStringSubmatch(line); m != nil {
			r.rps, _ = strconv.ParseFloat(m[1], 64)
			found++
		}
		if m := wrkNon2xx.FindStringSubmatch(line); m != nil {
			r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := wrkSocket.FindStringSubmatch(line); m != nil {
			for _, x := range m[1:] {
				n, _ := strconv.ParseInt(x, 10, 64)
				r.errors += n
			}
		}
	}
	if found != 4 {
		return r, fmt.Errorf("found %d of the 4 expected lines (p50, p99, requests, Requests/sec)", found)
	}
	return r, nil
}

// TestParseWrk reads a report of wrk 4.1 as BenchmarkAPIWrk does.
func TestParseWrk(t *testing.T) {
	const report = `Running 3s test @ http://127.0.0.1:41327/vpc/security-groups/sec_grp_x
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.93ms    2.10ms  31.15ms   84.41%
    Req/Sec    22.33k     1.21k   24.19k    80.00%
  Latency Distribution
     50%    2.16ms
     75%    3.49ms
     90%    5.37ms
     99%   11.10ms
  66672 requests in 3.00s, 2.77GB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:  22217.80
Transfer/sec:      0.92GB
`
	got, err := parseWrk(report)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{p50: 2160 * time.Microsecond, p99: 11100 * time.Microsecond, requests: 66672, rps: 22217.80, non2xx: 3, errors: 3}
	if got != want {
		t.Errorf("parseWrk = %+v, want %+v", got, want)
	}
	if _, err := parseWrk("Running 3s test\n"); err == nil {
		t.Error("parseWrk accepted a report without results")
	}
}
