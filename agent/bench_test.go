package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/agent/cache"
	"github.com/rampart-fw/rampart/agent/reconcile"
	"github.com/rampart-fw/rampart/agent/render"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// benchService is the simulator's write service time in the benchmarks:
// each write holds the router's configuration lock this long. 1 ms because
// the simulator sleeps for it and sleeps shorter than ~1 ms overshoot to
// ~1.1 ms on the CI machine (so a smaller setting would not be what it says).
const benchService = time.Millisecond

// bigPolicy is the benchmark policy: 250 rules in 5 groups (a fifth
// outbound, a fifth using prefix lists) and 20 prefix lists of 500 CIDRs,
// 10,000 address-list entries. variant 1 changes one rule, variant 2 moves
// one rule to another place in the order, variant 3 adds one entry to a
// list.
func bigPolicy(rev uint64, variant int) protocol.DesiredState {
	var groups []protocol.SecurityGroup
	for g := range 5 {
		grp := protocol.SecurityGroup{ID: fmt.Sprintf("sec_grp_%d", g), Name: fmt.Sprintf("G%d", g)}
		for i := range 50 {
			n := g*50 + i
			r := protocol.Rule{ID: fmt.Sprintf("fltr_%03d", n), Direction: protocol.Inbound, Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + n), Address: fmt.Sprintf("10.%d.%d.0/24", g, i)}
			if n%5 == 1 {
				r.Direction = protocol.Outbound
			}
			if n%5 == 2 {
				r.Address = fmt.Sprintf("prfx_lst_%02d", n%20)
			}
			grp.Rules = append(grp.Rules, r)
		}
		groups = append(groups, grp)
	}
	switch variant {
	case 1:
		groups[2].Rules[7] = protocol.Rule{ID: "fltr_changed", Direction: protocol.Inbound, Order: 8, Protocol: 17, Port: "5353", Address: "192.0.2.0/24"}
	case 2:
		groups[2].Rules[7].Order = 51
	}
	var lists []protocol.PrefixList
	for l := range 20 {
		pl := protocol.PrefixList{ID: fmt.Sprintf("prfx_lst_%02d", l), Name: fmt.Sprintf("L%d", l)}
		for i := range 500 {
			pl.CIDRs = append(pl.CIDRs, fmt.Sprintf("100.%d.%d.%d/32", 64+l, i/250, i%250))
		}
		lists = append(lists, pl)
	}
	if variant == 3 {
		// One entry more in one list.
		lists[7].CIDRs = append(lists[7].CIDRs, "100.71.3.1/32")
	}
	return doc(rev, groups, lists)
}

// naive is the baseline: remove every managed row and entry, then add
// everything again, one write and one round trip at a time.
func naive(ctx context.Context, s *simAgent, d *protocol.DesiredState) error {
	st, err := s.read(ctx)
	if err != nil {
		return err
	}
	for _, it := range st[render.IPv4].Filter {
		if strings.HasPrefix(it["comment"], render.CommentPrefix) || strings.HasPrefix(it["chain"], "rampart-") {
			if _, _, err := s.router.Run(ctx, reconcile.FilterPath+"/remove", "=.id="+it[".id"]); err != nil {
				return err
			}
		}
	}
	for _, it := range st[render.IPv4].Entries {
		if strings.HasPrefix(it.Comment, render.CommentPrefix) {
			if _, _, err := s.router.Run(ctx, reconcile.AddressListPath+"/remove", "=.id="+it.ID); err != nil {
				return err
			}
		}
	}
	// The benchmark's policies are IPv4 only.
	w := render.Render(d, render.Options{WANList: "WAN", Guards: s.guard(st)})[render.IPv4]
	if st, err = s.read(ctx); err != nil {
		return err
	}
	for _, e := range w.Entries {
		if _, _, err := s.router.Run(ctx, reconcile.AddressListPath+"/add", "=list="+e.List, "=address="+e.Address, "=comment="+e.Comment); err != nil {
			return err
		}
	}
	for _, r := range append(w.In, w.Out...) {
		words := []string{reconcile.FilterPath + "/add", "=comment=" + r.Comment}
		for k, v := range r.Props {
			words = append(words, "="+k+"="+v)
		}
		if _, _, err := s.router.Run(ctx, words...); err != nil {
			return err
		}
	}
	for _, j := range w.Jumps {
		words := []string{reconcile.FilterPath + "/add", "=comment=" + j.Comment}
		for k, v := range j.Props {
			words = append(words, "="+k+"="+v)
		}
		first := ""
		for _, it := range st[render.IPv4].Filter {
			if it["dynamic"] != "true" {
				first = it[".id"]
				break
			}
		}
		if first != "" {
			words = append(words, "=place-before="+first)
		}
		if _, _, err := s.router.Run(ctx, words...); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkApply measures writes and wall time of the agent against the
// naive baseline; run it with -benchtime 1x (the naive runs take minutes at
// 2 ms latency):
//
//	go test -run XXX -bench Apply -benchtime 1x ./agent/
func BenchmarkApply(b *testing.B) {
	for _, lat := range []time.Duration{0, 2 * time.Millisecond} {
		for _, scenario := range []string{"first", "one-rule", "reorder"} {
			for _, how := range []string{"agent", "naive"} {
				b.Run(fmt.Sprintf("latency=%s/%s/%s", lat, scenario, how), func(b *testing.B) {
					benchApply(b, lat, benchService, scenario, how)
				})
			}
		}
	}
}

// BenchmarkFirstApply is the first apply of the benchmark policy at 2 ms
// latency and a write service time of 1 ms and of 5 ms (the issue's
// measurement); the target is wall ≤ 1.2 × writes × service time:
//
//	go test -run XXX -bench FirstApply -benchtime 1x ./agent/
func BenchmarkFirstApply(b *testing.B) {
	for _, svc := range []time.Duration{time.Millisecond, 5 * time.Millisecond} {
		b.Run(fmt.Sprintf("service=%s", svc), func(b *testing.B) {
			benchApply(b, 2*time.Millisecond, svc, "first", "agent")
		})
	}
}

func benchApply(b *testing.B, lat, svc time.Duration, scenario, how string) {
	ctx := context.Background()
	var totalWrites int
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := newSim(b, rossim.Options{HistoryLimit: -1})
		s := newSimAgent(b, r)
		from, to := bigPolicy(1, 0), bigPolicy(2, 0)
		switch scenario {
		case "one-rule":
			to = bigPolicy(2, 1)
		case "reorder":
			to = bigPolicy(2, 2)
		}
		if scenario != "first" {
			s.apply(b, from)
		}
		r.SetLatency(lat)
		r.SetWriteServiceTime(svc)
		r.ResetStats()
		b.StartTimer()
		start := time.Now()
		var err error
		if how == "agent" {
			// As the Run loop applies a new document: planned from what
			// the previous apply read back (if there was one).
			s.desired = &to
			err = s.update(ctx)
		} else {
			err = naive(ctx, s, &to)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		r.SetLatency(0)
		s.desired = &to
		if rest := s.remaining(b); len(rest) > 0 {
			b.Fatalf("not converged: %d ops left, first %s", len(rest), rest[0])
		}
		totalWrites += writes(r.Stats())
		r.Close()
	}
	w := float64(totalWrites) / float64(b.N)
	b.ReportMetric(w, "writes/op")
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "wall-s/op")
	if w > 0 {
		// The target for the first apply: wall ≤ 2 × writes × service time.
		b.ReportMetric(elapsed.Seconds()/float64(b.N)/(w*svc.Seconds()), "wall/(writes×service)")
	}
}

// TestAgentRSS runs the real agent binary against a simulated router holding
// the benchmark policy (250 rules, 10,000 entries; the policy comes from the
// agent's cache, the broker is down) and reports its resident memory. It runs
// only when RAMPART_AGENT_RSS=1:
//
//	RAMPART_AGENT_RSS=1 go test -run TestAgentRSS -v ./agent/
func TestAgentRSS(t *testing.T) {
	if os.Getenv("RAMPART_AGENT_RSS") != "1" {
		t.Skip("set RAMPART_AGENT_RSS=1 to measure the agent's memory")
	}
	bin := filepath.Join(t.TempDir(), "rampart-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rampart-fw/rampart/cmd/rampart-agent").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	r := newSim(t, rossim.Options{HistoryLimit: -1})
	state := t.TempDir()
	c, err := cache.Open(state, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, bigPolicy(1, 0)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"RAMPART_MQTT_URL=tcp://127.0.0.1:1", "RAMPART_ORG_ID=org_demo", "RAMPART_SITE_ID=site_hq",
		"RAMPART_SITE_SECRET=x", "RAMPART_ROUTEROS_ADDR=" + r.Addr(), "RAMPART_ROUTEROS_USER=admin",
		"RAMPART_STATE_DIR=" + state, "RAMPART_METRICS_ADDR=127.0.0.1:0", "RAMPART_RESYNC_INTERVAL=1s",
	}
	if os.Getenv("RAMPART_AGENT_GCTRACE") != "" {
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	eventually(t, "the policy on the router", func() bool { return len(r.Snapshot().AddressList) >= 10000 })
	// Sample while it resyncs every second (each resync reads the 10,000
	// entries again).
	var rss []int
	hwm := 0
	for range 20 {
		time.Sleep(500 * time.Millisecond)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			var kb int
			if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
				rss = append(rss, kb)
			}
			if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
				hwm = kb
			}
		}
	}
	slices.Sort(rss)
	t.Logf("VmRSS over 10 s: min %d kB, median %d kB, max %d kB; VmHWM %d kB", rss[0], rss[len(rss)/2], rss[len(rss)-1], hwm)
}
