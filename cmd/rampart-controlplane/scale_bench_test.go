package main

// The scale benchmark (issue #15 item 5): how far one control plane goes.
// The control plane (Main: API, bbolt store, syncer, bus, and the embedded
// broker or a connection to an external one) runs in this process; the
// sites are lightweight: MQTT clients in child processes (this test binary
// re-executed, TestMain) that answer each new document with "applied" at
// once, without a router or an agent. What is measured is then the control
// plane's own work per site: compiling, publishing, ingesting, confirming.
//
// File descriptors bound every process here (ulimit -n is 20,000 and
// cannot be raised), so a broker holds at most about 19,000 connections.
// With an external broker that allows anonymous clients, one connection
// therefore carries several sites (it subscribes to each one's desired
// topic and publishes each one's status): the control plane sees the same
// topics, documents and reports as from one connection per site. The
// embedded broker's ACL gives each site its own credentials, so there one
// connection is one site, and the fleet is as large as the control plane's
// descriptors allow.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/internal/benchproc"
	"github.com/rampart-fw/rampart/internal/pgtest"
	"github.com/rampart-fw/rampart/protocol"
)

const (
	scaleFleetEnv = "RAMPART_BENCH_SCALE_FLEET" // "url|org|first|n|perconn|keydir|source"
	scaleSite     = "site_s"
)

// runScaleFleet runs lightweight sites first..first+n-1, perconn sites per
// MQTT connection (perconn 1: each with its own credentials), connecting
// from the loopback address source (each child its own, so that the
// connections of all children fit the ephemeral ports of one destination).
// It answers the parent on stdin: "mark" remembers each site's revision
// ("marked"); "wait" waits until every site answered a newer one and
// answers "done", the CPU time the process used since the mark
// ("cpu=nanoseconds") and, per site, when it answered (Unix nanoseconds).
func runScaleFleet(spec string) error {
	p := strings.Split(spec, "|")
	url, org := p[0], p[1]
	first, _ := strconv.Atoi(p[2])
	n, _ := strconv.Atoi(p[3])
	perConn, _ := strconv.Atoi(p[4])
	key, err := keys.Load(p[5])
	if err != nil {
		return err
	}
	source := p[6]
	var (
		mu   sync.Mutex
		cond = sync.NewCond(&mu)
		rev  = make([]uint64, n) // newest revision answered, by site
		at   = make([]int64, n)  // when
		base = make([]uint64, n)
		news int // sites whose revision passed base
	)
	root := protocol.DefaultTopicRoot
	revKey, epochKey := []byte(`"revision":`), []byte(`"epoch":"`)
	answer := func(c paho.Client, i int, payload []byte) {
		// The revision and epoch without decoding the whole document, so
		// the fleet's CPU goes to MQTT, not JSON.
		j := bytes.Index(payload, revKey)
		e := bytes.Index(payload, epochKey)
		if j < 0 || e < 0 {
			return
		}
		rp := payload[j+len(revKey):]
		r, err := strconv.ParseUint(string(rp[:bytes.IndexAny(rp, ",}")]), 10, 64)
		if err != nil {
			return
		}
		ep := payload[e+len(epochKey):]
		epoch := string(ep[:bytes.IndexByte(ep, '"')])
		// As an agent: a revision it already has is a duplicate (several
		// replicas may publish the same document), not to be reported.
		mu.Lock()
		dup := r <= rev[i]
		mu.Unlock()
		if dup {
			return
		}
		site := scaleSite + strconv.Itoa(first+i)
		now := time.Now()
		st, _ := json.Marshal(protocol.SiteStatus{Schema: protocol.SchemaVersion, OrgID: org, SiteID: site, Epoch: epoch, Revision: r,
			State: protocol.StateApplied, AppliedAt: now.UTC(), AgentVersion: "scale-bench"})
		c.Publish(protocol.StatusTopic(root, org, site), 1, true, st)
		mu.Lock()
		if r > rev[i] {
			if rev[i] <= base[i] && r > base[i] {
				news++
				cond.Broadcast()
			}
			rev[i], at[i] = r, now.UnixNano()
		}
		mu.Unlock()
	}
	conns := (n + perConn - 1) / perConn
	clients := make([]paho.Client, conns)
	var connect errgroup.Group
	connect.SetLimit(32)
	for ci := range conns {
		connect.Go(func() error {
			lo, hi := ci*perConn, min((ci+1)*perConn, n)
			o := paho.NewClientOptions().AddBroker(url).SetProtocolVersion(4).SetCleanSession(true).
				SetClientID(fmt.Sprintf("scale-%s-%d-%d", org, first, ci)).SetConnectTimeout(2 * time.Minute).
				SetKeepAlive(10 * time.Minute).SetAutoReconnect(false).SetOrderMatters(false).
				SetWriteTimeout(time.Minute).
				SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: time.Minute})
			if perConn == 1 {
				site := scaleSite + strconv.Itoa(first+lo)
				o.SetUsername(protocol.SiteMQTTUser(org, site)).SetPassword(key.SiteSecret(org, site))
			}
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(5*time.Minute) || tok.Error() != nil {
				return fmt.Errorf("connect %d: %v", ci, tok.Error())
			}
			clients[ci] = c
			filters := map[string]byte{}
			for i := lo; i < hi; i++ {
				filters[protocol.DesiredTopic(root, org, scaleSite+strconv.Itoa(first+i))] = 1
			}
			tok := c.SubscribeMultiple(filters, func(c paho.Client, m paho.Message) {
				_, site, _, ok := protocol.ParseTopic(root, m.Topic())
				if !ok {
					return
				}
				num, err := strconv.Atoi(strings.TrimPrefix(site, scaleSite))
				if err != nil || num < first+lo || num >= first+hi {
					return
				}
				answer(c, num-first, m.Payload())
			})
			if !tok.WaitTimeout(5*time.Minute) || tok.Error() != nil {
				return fmt.Errorf("subscribe %d: %v", ci, tok.Error())
			}
			return nil
		})
	}
	if err := connect.Wait(); err != nil {
		return err
	}
	fmt.Println(benchproc.Ready)
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	var cpu0 time.Duration
	for in.Scan() {
		switch in.Text() {
		case "mark":
			mu.Lock()
			copy(base, rev)
			news = 0
			mu.Unlock()
			cpu0 = processCPU()
			fmt.Fprintln(out, "marked")
		case "wait":
			mu.Lock()
			for news < n {
				cond.Wait()
			}
			fmt.Fprintf(out, "done cpu=%d", processCPU()-cpu0)
			for i := range n {
				fmt.Fprintf(out, " %d", at[i])
			}
			mu.Unlock()
			fmt.Fprintln(out)
		default:
			return fmt.Errorf("unknown command %q", in.Text())
		}
		out.Flush()
	}
	for _, c := range clients {
		c.Disconnect(0)
	}
	return nil
}

// BenchmarkScale: one iteration is one PUT of a prefix list that every
// site's group uses (its CIDR changes), timed from the request to each
// site answering the new revision, and to the control plane showing the
// list active (every site's report taken).
//
//	RAMPART_TEST_MQTT_URL=tcp://127.0.0.1:PORT RAMPART_BENCH_SITES=100000 go test -run '^$' -bench 'Scale/external' -benchtime 3x -timeout 60m ./cmd/rampart-controlplane
//	RAMPART_BENCH_SITES=15000 go test -run '^$' -bench 'Scale/embedded' -benchtime 3x -timeout 60m ./cmd/rampart-controlplane
//
//	RAMPART_BENCH_STORE=postgres RAMPART_BENCH_REPLICAS=3 RAMPART_TEST_MQTT_URL=... go test -run '^$' -bench 'Scale/external' ...
//
// RAMPART_BENCH_SITES picks the sizes (default 1000,10000,100000);
// RAMPART_BENCH_PER_CONN the sites per connection with an external broker
// (default 50); RAMPART_BENCH_CPUPROFILE=file profiles the control plane's
// process over the measured writes. Give Mosquitto "max_queued_messages 0"
// (BENCHMARKS.md, "End to end").
func BenchmarkScale(b *testing.B) {
	benchEachTarget(b, []string{"embedded", "external"}, benchSizes(b, 1000, 10000, 100000), benchScale)
}

// scaleShard bounds the connections of one fleet process (its file
// descriptors).
const scaleShard = 15000

func startScaleShards(b *testing.B, url, org, keyDir string, n, perConn int) []*benchproc.Proc {
	var shards []*benchproc.Proc
	// Sites per process: at most scaleShard connections, and at least two
	// processes past 10,000 sites so that the fleet uses both cores.
	per := min(scaleShard*perConn, max(10000, (n+3)/4))
	for first, k := 1, 0; first <= n; first, k = first+per, k+1 {
		size := min(per, n-first+1)
		source := fmt.Sprintf("127.0.%d.%d", 1+k/200, 2+k%200)
		shards = append(shards, benchproc.Start(b, scaleFleetEnv, fmt.Sprintf("%s|%s|%d|%d|%d|%s|%s", url, org, first, size, perConn, keyDir, source)))
	}
	benchproc.WaitReady(b, shards...)
	return shards
}

// serversCPU is the CPU time used so far by every process named comm
// (Mosquitto, PostgreSQL's server and backends), from /proc: what the
// control plane's work costs outside its own process. With ours set, only
// the processes this one started count (pgtest's server, not another
// test's). A process that ends meanwhile takes its time with it; the
// benchmark's keep their connections, so their backends live throughout.
func serversCPU(comm string, ours bool) time.Duration {
	type proc struct {
		ppid  int
		comm  string
		ticks int64
	}
	procs := map[int]proc{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		raw, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
		if open < 0 || end < open {
			continue
		}
		// After the name: state, ppid, ...; utime and stime are the 14th
		// and 15th fields of the line.
		f := strings.Fields(string(raw[end+1:]))
		if len(f) < 13 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(raw[:open])))
		ppid, _ := strconv.Atoi(f[1])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		procs[pid] = proc{ppid: ppid, comm: string(raw[open+1 : end]), ticks: u + st}
	}
	self := os.Getpid()
	var ticks int64
	for pid, p := range procs {
		if p.comm != comm {
			continue
		}
		mine := !ours
		for up := p.ppid; !mine && up > 1; up = procs[up].ppid {
			mine = up == self
		}
		if mine || pid == self {
			ticks += p.ticks
		}
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ
}

// rss is the resident set of this process, from /proc.
func rss() uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func benchScale(b *testing.B, target string, n int) {
	// The control plane is configured as an operator would, with flags:
	// the PostgreSQL store is a flag (--store-url) of the same Config.
	args := []string{"--http-addr", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--sync-timeout", "30m", "--log-level", "warn",
		"--quota-sites", strconv.Itoa(max(n, cp.DefaultQuotas.Sites))}
	perConn := 1
	if target == "external" {
		url := os.Getenv("RAMPART_TEST_MQTT_URL")
		if url == "" {
			b.Skip("RAMPART_TEST_MQTT_URL is not set")
		}
		args = append(args, "--mqtt-url", url)
		perConn = 50
		if v, err := strconv.Atoi(os.Getenv("RAMPART_BENCH_PER_CONN")); err == nil && v > 0 {
			perConn = v
		}
	} else if n > 18000 {
		b.Skipf("%d sites: the embedded broker holds one connection per site, and this process has %d file descriptors at most", n, 20000)
	}
	// RAMPART_BENCH_STORE=postgres keeps the policy in PostgreSQL
	// (pgtest's server); RAMPART_BENCH_REPLICAS=3 runs that many control
	// planes on it, in this process (their CPU and memory are summed),
	// each ingesting every report; writes go through the first.
	replicas := 1
	if os.Getenv("RAMPART_BENCH_STORE") == "postgres" {
		args = append(args, "--store-url", pgtest.DSN(b))
		if v, err := strconv.Atoi(os.Getenv("RAMPART_BENCH_REPLICAS")); err == nil && v > 1 {
			if target != "external" {
				b.Skip("replicas need an external broker (each would start its own embedded one)")
			}
			replicas = v
		}
	}
	var r [4]byte
	rand.Read(r[:])
	org := "org_scale" + hex.EncodeToString(r[:])
	ctx := context.Background()
	var mains []*Main
	for i := range replicas {
		rdir := b.TempDir()
		if i > 0 {
			copyKey(b, mains[0].Config.DataDir, rdir)
		}
		rargs := append(slices.Clone(args), "--data-dir", rdir)
		if replicas > 1 {
			rargs = append(rargs, "--replica-id", fmt.Sprintf("bench-%d", i+1))
		}
		var cfg Config
		fs := newFlagSet()
		bindConfig(fs, &cfg)
		if err := parseFlags(fs, rargs, func(string) string { return "" }); err != nil {
			b.Fatal(err)
		}
		m := &Main{Config: cfg, Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Registry: prometheus.NewRegistry()}
		if err := m.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		mains = append(mains, m)
	}
	m, dir := mains[0], mains[0].Config.DataDir
	idleHeap, idleRSS := e2eHeap(), rss()
	shards := startScaleShards(b, m.MQTT.AgentURL, org, dir, n, perConn)
	connHeap := e2eHeap()

	tok := mintToken(b, dir, org)
	api := "http://" + m.Addr.String()
	sites := make([]string, n)
	for i := range sites {
		sites[i] = scaleSite + strconv.Itoa(i+1)
	}
	list := func(v int) string { return benchListBody("scale benchmark", v) }
	group := func(sites []string, list string) string {
		return benchGroupBody("Scale", "scale benchmark", sites, list)
	}
	hc := &http.Client{Timeout: 10 * time.Minute}
	do := func(method, path, body string) map[string]any {
		return benchDo(b, hc, api+path, tok, method, body)
	}
	var id string
	var cpCPU, fleetCPU, brokerCPU, dbCPU, puts []float64
	write := func(v int) (lat []int64, active time.Duration) {
		for _, s := range shards {
			s.Ask(b, "mark", "marked")
		}
		cpu0, broker0, db0 := processCPU(), serversCPU("mosquitto", false), serversCPU("postgres", true)
		t0 := time.Now()
		var watch []string
		if id == "" { // the warm-up: the list, then the groups
			id, _ = do("POST", "/vpc/prefix-lists", list(v))["id"].(string)
			for i := 0; i < n; i += cp.MaxSitesPerResource {
				gid, _ := do("POST", "/vpc/security-groups", group(sites[i:min(i+cp.MaxSitesPerResource, n)], id))["id"].(string)
				watch = append(watch, "/vpc/security-groups/"+gid)
			}
		} else {
			do("PUT", "/vpc/prefix-lists/"+id, list(v))
			// The list awaits every site: active once all confirmed.
			watch = []string{"/vpc/prefix-lists/" + id}
		}
		puts = append(puts, float64(time.Since(t0)))
		awaitActive(b, do, watch, n, 30*time.Minute)
		active = time.Since(t0)
		cpCPU = append(cpCPU, float64(processCPU()-cpu0))
		brokerCPU = append(brokerCPU, float64(serversCPU("mosquitto", false)-broker0))
		dbCPU = append(dbCPU, float64(serversCPU("postgres", true)-db0))
		var fcpu time.Duration
		for _, s := range shards {
			for _, f := range strings.Fields(strings.TrimPrefix(s.Ask(b, "wait", "done"), "done")) {
				if v, ok := strings.CutPrefix(f, "cpu="); ok {
					ns, _ := strconv.ParseInt(v, 10, 64)
					fcpu += time.Duration(ns)
					continue
				}
				at, _ := strconv.ParseInt(f, 10, 64)
				lat = append(lat, at-t0.UnixNano())
			}
		}
		fleetCPU = append(fleetCPU, float64(fcpu))
		slices.Sort(lat)
		return lat, active
	}
	write(1) // warm-up: every site's first revision
	appliedHeap, appliedRSS := e2eHeap(), rss()
	if f := os.Getenv("RAMPART_BENCH_CPUPROFILE"); f != "" {
		pf, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			b.Fatal(err)
		}
		defer pf.Close()
		defer pprof.StopCPUProfile()
	}
	var p50s, p99s, maxs, actives []float64
	b.ResetTimer()
	for i := range b.N {
		lat, active := write(2 + i)
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
	b.ReportMetric(med(puts[1:])/1e6, "put-ms")
	// CPU per site update, in microseconds: the control plane's process
	// from the request until the list is active; the fleet's processes
	// (for comparison; they share the machine's cores).
	b.ReportMetric(med(cpCPU[1:])/1e3/float64(n), "cp-cpu-us/site")
	b.ReportMetric(med(fleetCPU[1:])/1e3/float64(n), "fleet-cpu-us/site")
	// Mosquitto's processes (any: a Mosquitto shared with other work
	// counts that too) and this benchmark's PostgreSQL's over the same
	// time.
	b.ReportMetric(med(brokerCPU[1:])/1e3/float64(n), "mosquitto-cpu-us/site")
	b.ReportMetric(med(dbCPU[1:])/1e3/float64(n), "postgres-cpu-us/site")
	// The control plane's memory per site: heap and stacks with the
	// connections only (the embedded broker's), with every site known and
	// applied, and the resident set.
	b.ReportMetric((float64(connHeap)-float64(idleHeap))/float64(n), "conn-B/site")
	b.ReportMetric((float64(appliedHeap)-float64(idleHeap))/float64(n), "cp-B/site")
	b.ReportMetric((float64(appliedRSS)-float64(idleRSS))/float64(n), "rss-B/site")
	runtime.KeepAlive(mains)
}
