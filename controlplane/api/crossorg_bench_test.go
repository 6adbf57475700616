package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
)

// BenchmarkCrossOrgWriteDelay (#13.2): how long organisation A's largest
// allowed write delays organisation B's small writes. A writes back to
// back (closed loop, one client) the largest group the API takes: 250
// rules with 200-character descriptions, attached to 1000 sites (new sites
// each time, so every write compiles and records 1000 sites). B sends a
// one-rule, one-site group open-loop at a fixed rate (20/s) over real HTTP,
// into the same bbolt file with the production Revisioner and group
// commit. Reported: B's latency distribution while A writes, B's alone,
// and A's time per write.
//
// Run: go test -run '^$' -bench CrossOrgWriteDelay -benchtime 20x ./controlplane/api
func BenchmarkCrossOrgWriteDelay(b *testing.B) {
	for _, sites := range []int{cp.MaxSitesPerResource, cp.MaxSitesPerResource / 2, cp.MaxSitesPerResource / 4} {
		b.Run(fmt.Sprintf("group/sites=%d", sites), func(b *testing.B) { benchCrossOrg(b, sites, false) })
	}
	// The widest write: a prefix list that groups covering the whole site
	// quota (10 groups of 1000 sites) refer to; a PUT of it recompiles
	// every site of the organisation.
	for _, sites := range []int{cp.DefaultQuotas.Sites, 10000} {
		b.Run(fmt.Sprintf("list/sites=%d", sites), func(b *testing.B) { benchCrossOrg(b, sites, true) })
	}
}

func benchCrossOrg(b *testing.B, sites int, fanout bool) {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "rampart.db"), bolt.Options{Revisioner: compile.Revisioner{},
		SyncTimeout: time.Millisecond, // no agents confirm: let the next PUT in at once
		Quotas:      cp.Quotas{Sites: 1 << 30, SecurityGroups: 1 << 30, PrefixLists: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv, toks := serveAPI(b, st, nil, "org_big", "org_small")
	tokA, tokB := toks[0], toks[1]
	send := func(tok, method, path string, body []byte) (time.Duration, []byte) {
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Error(err)
			return 0, nil
		}
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode/100 != 2 {
			b.Errorf("%s %s: %d %s", method, path, resp.StatusCode, buf.Bytes())
		}
		return d, buf.Bytes()
	}
	post := func(tok string, body []byte) time.Duration {
		d, _ := send(tok, "POST", "/vpc/security-groups", body)
		return d
	}
	big := func(n int) []byte {
		w := cp.SecurityGroupWrite{Name: fmt.Sprintf("largest %d", n), Sites: siteIDs(fmt.Sprintf("n%d", n), sites)}
		for i := range cp.MaxRules {
			w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + i), Address: "10.0.0.0/8", Description: string(bytes.Repeat([]byte("d"), 200))})
		}
		body, _ := json.Marshal(w)
		return body
	}
	small := func(n int) []byte {
		body, _ := json.Marshal(cp.SecurityGroupWrite{Name: fmt.Sprintf("small %d", n), Sites: []string{fmt.Sprintf("site_s%d", n)},
			Rules: []cp.FilterRuleWrite{{Direction: "inbound", Order: 1, Protocol: 6, Port: "443", Address: "0.0.0.0/0"}}})
		return body
	}
	const rate = 20 // B's writes per second
	// smallWrites sends B's writes open-loop until stop closes, and returns
	// their latencies.
	smallWrites := func(first int, stop <-chan struct{}) []time.Duration {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for n := first; ; n++ {
			select {
			case <-stop:
				wg.Wait()
				return lat
			case <-tick.C:
			}
			wg.Add(1)
			go func(n int) {
				defer wg.Done()
				d := post(tokB, small(n))
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}(n)
		}
	}
	pct := func(lat []time.Duration, p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		slices.Sort(lat)
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	// B alone, for comparison.
	stop := make(chan struct{})
	time.AfterFunc(2*time.Second, func() { close(stop) })
	alone := smallWrites(0, stop)

	bodies := make([][]byte, b.N)
	bigWrite := func(i int) time.Duration { return post(tokA, bodies[i]) }
	if fanout {
		body, _ := json.Marshal(cp.PrefixListWrite{Name: "everywhere", Prefixes: []cp.PrefixWrite{{CIDR: "10.0.0.0/8"}}})
		_, created := send(tokA, "POST", "/vpc/prefix-lists", body)
		var l cp.PrefixList
		if err := json.Unmarshal(created, &l); err != nil {
			b.Fatal(err)
		}
		for g := range sites / cp.MaxSitesPerResource {
			w := cp.SecurityGroupWrite{Name: fmt.Sprintf("uses the list %d", g), Sites: siteIDs(fmt.Sprintf("f%d", g), cp.MaxSitesPerResource),
				Rules: []cp.FilterRuleWrite{{Direction: "inbound", Order: 1, Protocol: 6, Port: "22", Address: l.ID}}}
			body, _ := json.Marshal(w)
			post(tokA, body)
		}
		for i := range bodies {
			bodies[i], _ = json.Marshal(cp.PrefixListWrite{Name: "everywhere", Prefixes: []cp.PrefixWrite{{CIDR: fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256)}}})
		}
		bigWrite = func(i int) time.Duration {
			time.Sleep(2 * time.Millisecond) // past the sync deadline: not locked
			d, _ := send(tokA, "PUT", "/vpc/prefix-lists/"+l.ID, bodies[i])
			return d
		}
	} else {
		for i := range bodies {
			bodies[i] = big(i)
		}
	}
	stop = make(chan struct{})
	done := make(chan []time.Duration)
	go func() { done <- smallWrites(1_000_000, stop) }()
	time.Sleep(200 * time.Millisecond)
	var bigTotal, bigMax time.Duration
	b.ResetTimer()
	for i := range b.N {
		d := bigWrite(i)
		bigTotal += d
		bigMax = max(bigMax, d)
	}
	b.StopTimer()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	loaded := <-done
	b.ReportMetric(float64(bigTotal.Microseconds())/1000/float64(b.N), "A-ms/write")
	b.ReportMetric(float64(bigMax.Microseconds())/1000, "A-max-ms")
	b.ReportMetric(pct(alone, 0.5), "B-alone-p50-ms")
	b.ReportMetric(pct(alone, 0.99), "B-alone-p99-ms")
	b.ReportMetric(pct(loaded, 0.5), "B-p50-ms")
	b.ReportMetric(pct(loaded, 0.9), "B-p90-ms")
	b.ReportMetric(pct(loaded, 0.99), "B-p99-ms")
	b.ReportMetric(pct(loaded, 1), "B-max-ms")
	b.ReportMetric(float64(len(loaded)), "B-writes")
	b.ReportMetric(0, "ns/op")
}
