package main

// The end-to-end benchmark: a write through the REST API → every affected
// site's agent has applied it to its simulated router and reported so. The
// control plane (API, store, syncer, embedded broker or a connection to
// Mosquitto) runs in this process; the sites (package fleet: rossim and the
// real agent each) run in child processes, this test binary re-executed
// (TestMain), at most e2eShard sites each: both ends of every connection
// would not fit one process's file descriptors, and the control plane's
// memory is then measured alone.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/internal/benchproc"
	"github.com/rampart-fw/rampart/internal/fleet"
	"github.com/rampart-fw/rampart/internal/pgtest"
)

const (
	e2eFleetEnv = "RAMPART_BENCH_E2E_FLEET" // "url|org|first|n|keydir"
	e2eShard    = 2500
	e2eSite     = "site_b"
)

func TestMain(m *testing.M) {
	benchproc.Serve(e2eFleetEnv, runE2EFleet)
	benchproc.Serve(scaleFleetEnv, runScaleFleet)
	os.Exit(pgtest.Main(m)) // the PostgreSQL server of the --store-url tests, stopped after them
}

// runE2EFleet runs sites first..first+n-1 and answers the parent on stdin:
// "mark" remembers each site's applied revision ("marked"); "wait" waits
// until every site applied a newer one and answers "done", the CPU time the
// process used since the mark ("cpu=nanoseconds") and, per site, when it
// first reported it (Unix nanoseconds).
func runE2EFleet(spec string) error {
	p := strings.Split(spec, "|")
	first, _ := strconv.Atoi(p[2])
	n, _ := strconv.Atoi(p[3])
	key, err := keys.Load(p[4])
	if err != nil {
		return err
	}
	ctx := context.Background()
	f, err := fleet.Start(ctx, fleet.Options{N: n, First: first, Org: p[1], SitePrefix: e2eSite, BrokerURL: p[0], Key: key,
		ResyncInterval: time.Hour})
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Println(benchproc.Ready)
	base := make([]uint64, n)
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	var cpu0 time.Duration
	marks := 0
	for in.Scan() {
		switch in.Text() {
		case "mark":
			for i := range n {
				_, base[i], _ = f.Site(i).Applied()
			}
			if marks++; marks == 2 {
				// RAMPART_BENCH_FLEET_PROFILE=dir: a CPU profile of each
				// fleet process over the measured writes (the first mark is
				// the warm-up's), dir/fleet-FIRST.prof.
				if dir := os.Getenv("RAMPART_BENCH_FLEET_PROFILE"); dir != "" {
					pf, err := os.Create(filepath.Join(dir, fmt.Sprintf("fleet-%d.prof", first)))
					if err != nil {
						return err
					}
					if err := pprof.StartCPUProfile(pf); err != nil {
						return err
					}
					defer pf.Close()
					defer pprof.StopCPUProfile()
				}
			}
			cpu0 = processCPU()
			fmt.Fprintln(out, "marked")
		case "wait":
			wctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
			err := f.WaitApplied(wctx, func(i int) uint64 { return base[i] + 1 })
			cancel()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "done cpu=%d", processCPU()-cpu0)
			for i := range n {
				_, rev, at := f.Site(i).Applied()
				started := at // no apply start recorded: count the apply as instant
				if t := f.Site(i).Started(rev); !t.IsZero() {
					started = t
				}
				fmt.Fprintf(out, " %d/%d", at.UnixNano(), started.UnixNano())
			}
			fmt.Fprintln(out)
		default:
			return fmt.Errorf("unknown command %q", in.Text())
		}
		out.Flush()
	}
	return nil
}

func startE2EShards(b *testing.B, url, org, keyDir string, n int) []*benchproc.Proc {
	var shards []*benchproc.Proc
	for first := 1; first <= n; first += e2eShard {
		size := min(e2eShard, n-first+1)
		var env []string
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			// The agents' caches in memory: each real agent has its own
			// flash, while thousands of bbolt files on one disk would
			// queue behind each other's fsyncs (5 s for 1,000 applies here,
			// against 2.3 s in tmpfs), measuring this machine's disk.
			env = append(env, "TMPDIR=/dev/shm")
		}
		shards = append(shards, benchproc.Start(b, e2eFleetEnv, fmt.Sprintf("%s|%s|%d|%d|%s", url, org, first, size, keyDir), env...))
	}
	benchproc.WaitReady(b, shards...)
	return shards
}

// BenchmarkEndToEnd: one iteration is one PUT of a prefix list that groups
// attached to every site use (its CIDR changes), timed from the request to
// each site's agent reporting the new revision applied.
//
//	go test -run '^$' -bench 'EndToEnd/embedded' -benchtime 5x -timeout 60m ./cmd/rampart-controlplane
//	RAMPART_TEST_MQTT_URL=tcp://127.0.0.1:PORT go test -run '^$' -bench 'EndToEnd/mosquitto' -benchtime 5x -timeout 60m ./cmd/rampart-controlplane
//
// RAMPART_BENCH_SITES=100,1000 picks the sizes (default 100,1000,10000).
// Give Mosquitto "max_queued_messages 0": at 10,000 sites the control
// plane's subscription otherwise overflows its queue (BENCHMARKS.md).
func BenchmarkEndToEnd(b *testing.B) {
	benchEachTarget(b, []string{"embedded", "mosquitto"}, benchSizes(b, 100, 1000, 10000), benchEndToEnd)
}

func e2eHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

func benchEndToEnd(b *testing.B, target string, n int) {
	dir := b.TempDir()
	cfg := Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, MQTTListen: "127.0.0.1:0", JWTOrgClaim: "org_id", SyncTimeout: 30 * time.Minute, LogLevel: "warn",
		Quotas: cp.Quotas{Sites: max(n, cp.DefaultQuotas.Sites)}} // as an operator with that fleet sets --quota-sites
	if target == "mosquitto" {
		cfg.MQTTURL = os.Getenv("RAMPART_TEST_MQTT_URL")
		if cfg.MQTTURL == "" {
			b.Skip("RAMPART_TEST_MQTT_URL is not set")
		}
	}
	var r [4]byte
	rand.Read(r[:])
	// An organisation of its own per run: a shared Mosquitto keeps the
	// retained documents of earlier runs.
	org := "org_bench" + hex.EncodeToString(r[:])
	m := &Main{Config: cfg, Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registry: prometheus.NewRegistry()}
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	url := m.MQTT.AgentURL
	idle := e2eHeap()
	shards := startE2EShards(b, url, org, dir, n)
	connected := e2eHeap()

	tok := mintToken(b, dir, org)
	api := "http://" + m.Addr.String()
	sites := make([]string, n)
	for i := range sites {
		sites[i] = e2eSite + strconv.Itoa(i+1)
	}
	// A group holds at most cp.MaxSitesPerResource sites (#13.2): the
	// sites are spread over groups that all use one prefix list, and a
	// write is a PUT of that list (its one CIDR changes), which reaches
	// every site, as a PUT of one group attached to every site did.
	list := func(port int) string { return benchListBody("end-to-end benchmark", port) }
	group := func(sites []string, list string) string {
		return benchGroupBody("Bench", "end-to-end benchmark", sites, list)
	}
	do := func(method, path, body string) map[string]any {
		return benchDo(b, http.DefaultClient, api+path, tok, method, body)
	}
	// write sends one group write and returns when every site applied it:
	// per-site latencies, and when the API showed the group active.
	var id string
	var answered []float64 // how long the API took to answer each write
	// CPU time of the control plane's process and of the fleet's
	// processes, per write: the two share the machine's cores.
	var cpCPU, fleetCPU []float64
	write := func(port int) (lat, reached []int64, active time.Duration) {
		for _, s := range shards {
			s.Ask(b, "mark", "marked")
		}
		cpu0 := processCPU()
		var fcpu time.Duration
		t0 := time.Now()
		watch := []string{"/vpc/prefix-lists/" + id}
		if id == "" { // the warm-up: the list, then the groups
			id, _ = do("POST", "/vpc/prefix-lists", list(port))["id"].(string)
			watch = nil
			for i := 0; i < n; i += cp.MaxSitesPerResource {
				gid, _ := do("POST", "/vpc/security-groups", group(sites[i:min(i+cp.MaxSitesPerResource, n)], id))["id"].(string)
				watch = append(watch, "/vpc/security-groups/"+gid)
			}
		} else {
			do("PUT", "/vpc/prefix-lists/"+id, list(port))
		}
		answered = append(answered, float64(time.Since(t0)))
		awaitActive(b, do, watch, n, 25*time.Minute)
		active = time.Since(t0)
		cpCPU = append(cpCPU, float64(processCPU()-cpu0))
		for _, s := range shards {
			for _, f := range strings.Fields(strings.TrimPrefix(s.Ask(b, "wait", "done"), "done")) {
				if v, ok := strings.CutPrefix(f, "cpu="); ok {
					ns, _ := strconv.ParseInt(v, 10, 64)
					fcpu += time.Duration(ns)
					continue
				}
				a, st, _ := strings.Cut(f, "/")
				at, _ := strconv.ParseInt(a, 10, 64)
				started, _ := strconv.ParseInt(st, 10, 64)
				lat = append(lat, at-t0.UnixNano())
				reached = append(reached, started-t0.UnixNano())
			}
		}
		fleetCPU = append(fleetCPU, float64(fcpu))
		slices.Sort(lat)
		slices.Sort(reached)
		return lat, reached, active
	}
	// Warm-up: the group's creation brings every site to its first revision
	// (connections, subscriptions and first applies are not measured).
	write(8000)
	applied := e2eHeap()

	var p50s, p99s, maxs, actives, reach50s, reach99s []float64
	b.ResetTimer()
	for i := range b.N {
		lat, reached, active := write(8001 + i)
		reach50s = append(reach50s, float64(reached[n/2]))
		reach99s = append(reach99s, float64(reached[(n*99)/100]))
		if len(lat) != n {
			b.Fatalf("%d sites answered, want %d", len(lat), n)
		}
		p50s = append(p50s, float64(lat[n/2]))
		p99s = append(p99s, float64(lat[(n*99)/100]))
		maxs = append(maxs, float64(lat[n-1]))
		actives = append(actives, float64(active))
	}
	b.StopTimer()
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(p50s)/1e6, "p50-ms")
	b.ReportMetric(med(p99s)/1e6, "p99-ms")
	b.ReportMetric(slices.Max(maxs)/1e6, "max-ms")
	b.ReportMetric(med(actives)/1e6, "active-ms")
	b.ReportMetric(med(answered[1:])/1e6, "put-ms")
	// When the document reached the agents (they started writing it).
	b.ReportMetric(med(reach50s)/1e6, "reach-p50-ms")
	b.ReportMetric(med(reach99s)/1e6, "reach-p99-ms")
	// CPU per site and write, in milliseconds: the control plane (from the
	// request until the API shows the group active) and the fleet (agent,
	// simulator and their clients, from the mark until every site applied).
	b.ReportMetric(med(cpCPU[1:])/1e6/float64(n), "cp-cpu-ms/site")
	b.ReportMetric(med(fleetCPU[1:])/1e6/float64(n), "fleet-cpu-ms/site")
	// The control plane's heap and stacks per site: with the broker's
	// connections (connected, then with every site known and applied), and
	// the state beyond the connections.
	b.ReportMetric((float64(connected)-float64(idle))/float64(n), "conn-B/site")
	b.ReportMetric((float64(applied)-float64(idle))/float64(n), "cp-B/site")
	b.ReportMetric((float64(applied)-float64(connected))/float64(n), "state-B/site")
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchEachTarget runs bench as a sub-benchmark per target (the broker
// the control plane uses) and, inside it, per fleet size: target/sites=n.
func benchEachTarget(b *testing.B, targets []string, sizes []int, bench func(b *testing.B, target string, n int)) {
	for _, target := range targets {
		b.Run(target, func(b *testing.B) {
			for _, n := range sizes {
				b.Run(fmt.Sprintf("sites=%d", n), func(b *testing.B) { bench(b, target, n) })
			}
		})
	}
}

// benchSizes is the fleet sizes a benchmark runs: RAMPART_BENCH_SITES
// (comma-separated), else def.
func benchSizes(b *testing.B, def ...int) []int {
	s := os.Getenv("RAMPART_BENCH_SITES")
	if s == "" {
		return def
	}
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatalf("RAMPART_BENCH_SITES=%q: want sizes separated by commas: %v", s, err)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// benchListBody is the benchmarks' prefix list: one CIDR, 10.x.y.0/24,
// that changes with v.
func benchListBody(desc string, v int) string {
	body, _ := json.Marshal(map[string]any{"name": "Office", "description": desc,
		"prefixes": []map[string]any{{"cidr": fmt.Sprintf("10.%d.%d.0/24", v/256%256, v%256), "description": "office"}}})
	return string(body)
}

// benchGroupBody is the benchmarks' group for sites: HTTPS and HTTP from
// anywhere, SSH from the prefix list with id list.
func benchGroupBody(name, desc string, sites []string, list string) string {
	body, _ := json.Marshal(map[string]any{
		"name": name, "description": desc, "sites": sites,
		"rules": []map[string]any{
			{"direction": "inbound", "order": 10, "protocol": 6, "port": "443", "address": "0.0.0.0/0", "description": "Allow HTTPS"},
			{"direction": "inbound", "order": 20, "protocol": 6, "port": "80", "address": "0.0.0.0/0", "description": "Allow HTTP"},
			{"direction": "inbound", "order": 30, "protocol": 6, "port": "22", "address": list, "description": "Allow SSH from Office"},
		}})
	return string(body)
}

// benchDo sends one API request (apiRequest) and decodes the answer's
// object; any status from 300 up fails the benchmark.
func benchDo(b *testing.B, hc *http.Client, url, tok, method, body string) map[string]any {
	b.Helper()
	st, _, raw := apiRequest(b, hc, url, tok, method, body)
	if st >= 300 {
		b.Fatalf("%s %s: %d %s", method, url, st, raw)
	}
	var v map[string]any
	json.Unmarshal(raw, &v)
	return v
}

// awaitActive polls each group or prefix list of watch (paths, through
// do) in turn until it is active; one failed, or still pending past
// within, fails the benchmark. n is the sites they await.
func awaitActive(b *testing.B, do func(method, path, body string) map[string]any, watch []string, n int, within time.Duration) {
	b.Helper()
	for deadline := time.Now().Add(within); len(watch) > 0; {
		st := do("GET", watch[0], "")["status"]
		if st == "active" {
			watch = watch[1:]
			continue
		}
		if st == "failed" || time.Now().After(deadline) {
			b.Fatalf("%s is %v", watch[0], st)
		}
		// Each GET decodes the resource's sync record (every site it
		// awaits): at 10,000 sites, polling every 5 ms would cost the
		// control plane's process a good part of a core. 5 ms per 1,000
		// sites keeps the polling a small part of the measured time and
		// CPU, at 0.5 % resolution.
		time.Sleep(time.Duration(max(1, n/1000)) * 5 * time.Millisecond)
	}
}

func mintToken(b *testing.B, dir, org string) string {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--data-dir", dir, "--org", org}, &out, io.Discard); err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(out.String())
}
