package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
)

// bigGroup is a 250-rule group, the API's limit.
func bigGroup(variant int) cp.SecurityGroupWrite {
	w := cp.SecurityGroupWrite{Name: "Big group", Description: ptr(fmt.Sprintf("variant %d", variant)), Sites: []string{}}
	for i := range cp.MaxRules {
		w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6,
			Port: fmt.Sprint(1000 + i), Address: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Description: "benchmark rule with a description"})
	}
	return w
}

// benchServer is the API over a real bbolt file, with a real HTTP client
// that keeps enough connections for 64 clients.
func benchServer(b *testing.B, noBatch bool, groups int) (url, token string, client *http.Client, ids []string) {
	b.Helper()
	url, token, client, ids, _ = benchServerRegistry(b, noBatch, groups)
	return url, token, client, ids
}

// benchServerRegistry is benchServer that also returns the API's metrics
// registry, for the server's own view of its latency.
func benchServerRegistry(b *testing.B, noBatch bool, groups int) (url, token string, client *http.Client, ids []string, reg *prometheus.Registry) {
	b.Helper()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), bolt.Options{NoBatch: noBatch})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	v, err := auth.New(context.Background(), auth.Options{HMACKey: testKey})
	if err != nil {
		b.Fatal(err)
	}
	reg = prometheus.NewRegistry()
	a, err := api.New(api.Options{Store: st, Verifier: v, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(a)
	b.Cleanup(srv.Close)
	// Enough idle connections that 64 clients never redial, and buffers
	// that take a 44 KB answer in one read instead of eleven.
	client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxIdleConns: 128,
		ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}}
	b.Cleanup(client.CloseIdleConnections)
	token, err = auth.Mint(auth.MintOptions{Key: testKey, Org: orgA, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	for range groups {
		created, err := st.CreateSecurityGroup(context.Background(), orgA, ptr(bigGroup(0)))
		id := created.ID
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	return srv.URL, token, client, ids, reg
}

// runClients sends b.N requests from n concurrent clients and reports
// latency percentiles and throughput. do gets the request's index and the
// client's.
func runClients(b *testing.B, n int, do func(i, client int) error) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := do(i, c); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	// CPU of the whole process (server, store and clients) per request:
	// unlike req/s it hardly depends on what else the machine runs, and
	// 2 cores / cpu-µs/op bounds the throughput.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func send(client *http.Client, method, url, token string, body []byte, want int) error {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s: %d", method, resp.StatusCode)
	}
	return nil
}

// BenchmarkAPI measures GET and PUT of a 250-rule group over HTTP with 1
// and 64 concurrent clients. In PUT250 each client replaces its own group
// (many operators, many groups); PUT250-onegroup has all clients replace
// the same group, the worst case for the optimistic write path. "batch" is
// the default (group commit, store/bolt/commit.go), "update" one Update per
// write. The clients are Go's net/http in this process, so cpu-µs/op is
// server and clients together; BenchmarkAPIWrk measures the server alone
// with wrk.
//
//	go test -run '^$' -bench 'BenchmarkAPI$' -benchtime 3s ./controlplane/api
func BenchmarkAPI(b *testing.B) {
	bodies := make([][]byte, 2)
	for i := range bodies {
		bodies[i], _ = json.Marshal(bigGroup(i))
	}
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("GET250/clients=%d", clients), func(b *testing.B) {
			url, tok, client, ids := benchServer(b, false, 1)
			runClients(b, clients, func(int, int) error {
				return send(client, "GET", url+"/vpc/security-groups/"+ids[0], tok, nil, 200)
			})
		})
		for _, mode := range []string{"batch", "update"} {
			b.Run(fmt.Sprintf("PUT250/%s/clients=%d", mode, clients), func(b *testing.B) {
				url, tok, client, ids := benchServer(b, mode == "update", clients)
				b.SetBytes(int64(len(bodies[0])))
				runClients(b, clients, func(i, c int) error {
					return send(client, "PUT", url+"/vpc/security-groups/"+ids[c], tok, bodies[i%2], 200)
				})
			})
		}
	}
	b.Run("PUT250-onegroup/batch/clients=64", func(b *testing.B) {
		url, tok, client, ids := benchServer(b, false, 1)
		runClients(b, 64, func(i, _ int) error {
			return send(client, "PUT", url+"/vpc/security-groups/"+ids[0], tok, bodies[i%2], 200)
		})
	})
}

// BenchmarkBoltLimit is bbolt's own write throughput on this machine for a
// value the size of a 250-rule PUT body, from 1 and 64 goroutines: one
// Update (one fsync) per write versus Batch, with bbolt's default 10 ms
// MaxBatchDelay and with the store's 2 ms. The API's PUT throughput is
// compared against it in BENCHMARKS.md.
//
//	go test -run '^$' -bench BenchmarkBoltLimit -benchtime 3s ./controlplane/api
func BenchmarkBoltLimit(b *testing.B) {
	g := bigGroup(0)
	value, _ := json.Marshal(g)
	for _, mode := range []string{"update", "batch", "batch-2ms"} {
		for _, clients := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", mode, clients), func(b *testing.B) {
				db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bbolt.Options{Timeout: time.Second})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
				write := db.Update
				switch mode {
				case "batch":
					write = db.Batch
				case "batch-2ms":
					db.MaxBatchDelay = 2 * time.Millisecond
					write = db.Batch
				}
				b.SetBytes(int64(len(value)))
				runClients(b, clients, func(i, _ int) error {
					return write(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint(i%64)), value) })
				})
			})
		}
	}
}
