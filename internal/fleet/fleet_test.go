package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/controlplane/bus"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/protocol"
)

var testKey = keys.FromBytes([]byte("fleet test key, 32 bytes or more...."))

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func doc(org, site string, rev uint64, port string) protocol.DesiredState {
	d := protocol.DesiredState{OrgID: org, SiteID: site, Epoch: "e1", Revision: rev,
		SecurityGroups: []protocol.SecurityGroup{{ID: "sec_grp_1", Name: "Web", Rules: []protocol.Rule{
			{ID: "fltr_1", Direction: protocol.Inbound, Order: 10, Protocol: 6, Port: port, Address: "0.0.0.0/0", Description: "Allow HTTPS"},
			{ID: "fltr_2", Direction: protocol.Inbound, Order: 20, Protocol: 6, Port: "22", Address: "prfx_lst_1", Description: "SSH from office"},
		}}},
		PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_1", Name: "Office", CIDRs: []string{"203.0.113.0/24"}}}}
	d.Seal()
	return d
}

func publisher(t *testing.T, url string, key keys.Key) *bus.Bus {
	t.Helper()
	b, err := bus.Connect(context.Background(), bus.Options{URLs: []string{url}, Username: keys.ControlPlaneMQTTUser,
		Password: key.ControlPlaneMQTTPassword(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestFleetAppliesOverEmbeddedBroker: three real agents, each on its own
// simulated router and with its own credentials, apply what the control
// plane's bus publishes, then a second revision; the routers hold the rules.
func TestFleetAppliesOverEmbeddedBroker(t *testing.T) {
	brk, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	ctx := context.Background()
	f, err := Start(ctx, Options{N: 3, BrokerURL: brk.URL(), Key: testKey, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}()
	if got, want := strings.Join(f.SiteIDs(), ","), "site_demo1,site_demo2,site_demo3"; got != want {
		t.Errorf("sites = %s, want %s", got, want)
	}
	b := publisher(t, brk.URL(), testKey)
	for _, step := range []struct {
		rev  uint64
		port string
	}{{1, "443"}, {2, "8443"}} {
		var docs []protocol.DesiredState
		for _, id := range f.SiteIDs() {
			docs = append(docs, doc(DefaultOrg, id, step.rev, step.port))
		}
		if err := b.PublishDesired(ctx, docs...); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := f.WaitApplied(wctx, func(int) uint64 { return step.rev })
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for i := range f.Len() {
			st := f.Site(i).Status()
			if st.State != protocol.StateApplied || st.Revision != step.rev || st.Rules == 0 {
				t.Errorf("%s status = %+v, want applied revision %d with rules", f.Site(i).ID, st, step.rev)
			}
			var ports []string
			for _, row := range f.Router(i).Snapshot().Filter {
				if strings.Contains(row["comment"], "Allow HTTPS") {
					ports = append(ports, row["dst-port"])
				}
			}
			if len(ports) != 1 || ports[0] != step.port {
				t.Errorf("%s: HTTPS rule ports = %v, want [%s]", f.Site(i).ID, ports, step.port)
			}
		}
	}
}

// TestWaitAppliedNamesSitesBehind: a fleet with no broker never applies, and
// the wait says which sites are behind.
func TestWaitAppliedNamesSitesBehind(t *testing.T) {
	f, err := Start(context.Background(), Options{N: 2, BrokerURL: "tcp://127.0.0.1:1", Key: testKey, SitePrefix: "site_x", First: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = f.WaitApplied(ctx, func(int) uint64 { return 1 })
	if err == nil || !strings.Contains(err.Error(), "site_x7") || !strings.Contains(err.Error(), "site_x8") {
		t.Errorf("err = %v, want one naming site_x7 and site_x8", err)
	}
}

func TestStartRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{
		{N: 0, BrokerURL: "tcp://127.0.0.1:1"},
		{N: 1},
		{N: 1, BrokerURL: "tcp://127.0.0.1:1", Org: "bad org"},
		{N: 1, BrokerURL: "tcp://127.0.0.1:1", SitePrefix: "host"},
	} {
		if f, err := Start(context.Background(), o); err == nil {
			f.Close()
			t.Errorf("Start(%+v) succeeded", o)
		}
	}
}

// TestCostPerSite logs goroutines and heap per site of a fleet of applied
// sites (the numbers in BENCHMARKS.md). Set RAMPART_FLEET_COST=N to run it.
//
//	RAMPART_FLEET_COST=1000 go test -run TestCostPerSite -v ./internal/fleet
func TestCostPerSite(t *testing.T) {
	var n int
	if _, err := fmt.Sscan(os.Getenv("RAMPART_FLEET_COST"), &n); err != nil || n <= 0 {
		t.Skip("set RAMPART_FLEET_COST=N to measure a fleet of N sites")
	}
	brk, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quiet(), MaxPendingWrites: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	ctx := context.Background()
	b := publisher(t, brk.URL(), testKey)
	g0, m0 := runtime.NumGoroutine(), heapAndStacks()
	f, err := Start(ctx, Options{N: n, BrokerURL: brk.URL(), Key: testKey, ResyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []protocol.DesiredState
	for _, id := range f.SiteIDs() {
		docs = append(docs, doc(DefaultOrg, id, 1, "443"))
	}
	start := time.Now()
	if err := b.PublishDesired(ctx, docs...); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := f.WaitApplied(wctx, func(int) uint64 { return 1 }); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// A second revision to connected, applied sites: the steady-state cost.
	docs = docs[:0]
	for _, id := range f.SiteIDs() {
		docs = append(docs, doc(DefaultOrg, id, 2, "8443"))
	}
	start = time.Now()
	if err := b.PublishDesired(ctx, docs...); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitApplied(wctx, func(int) uint64 { return 2 }); err != nil {
		t.Fatal(err)
	}
	took2 := time.Since(start)
	// More revisions, for the CPU one apply costs (agent and simulator;
	// the broker's side of the connections and the publisher are in this
	// process too). RAMPART_FLEET_CPUPROFILE=file profiles these rounds.
	const rounds = 10
	if p := os.Getenv("RAMPART_FLEET_CPUPROFILE"); p != "" {
		pf, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		defer pprof.StopCPUProfile()
	}
	// RAMPART_FLEET_MEMPROFILE=prefix writes prefix.0 and prefix.1, heap
	// profiles before and after these rounds: go tool pprof -base prefix.0
	// -sample_index=alloc_space prefix.1 shows what the rounds allocated.
	memProfile := func(suffix string) {
		if p := os.Getenv("RAMPART_FLEET_MEMPROFILE"); p != "" {
			pf, err := os.Create(p + suffix)
			if err != nil {
				t.Fatal(err)
			}
			defer pf.Close()
			if err := pprof.Lookup("allocs").WriteTo(pf, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	memProfile(".0")
	defer memProfile(".1")
	cpu0 := processCPU()
	for r := uint64(3); r < 3+rounds; r++ {
		docs = docs[:0]
		for _, id := range f.SiteIDs() {
			docs = append(docs, doc(DefaultOrg, id, r, fmt.Sprint(8000+r)))
		}
		if err := b.PublishDesired(ctx, docs...); err != nil {
			t.Fatal(err)
		}
		if err := f.WaitApplied(wctx, func(int) uint64 { return r }); err != nil {
			t.Fatal(err)
		}
	}
	cpu := processCPU() - cpu0
	t.Logf("CPU per apply (agent + simulator + broker side + publisher, %d rounds of %d sites): %.2f ms",
		rounds, n, float64(cpu.Microseconds())/1000/float64(rounds*n))
	docs = nil
	g1, m1 := runtime.NumGoroutine(), heapAndStacks()
	t.Logf("%d sites applied revision 2 in %s", n, took2.Round(time.Millisecond))
	t.Logf("%d sites applied in %s; per site (agent + router + the broker's side of its connection): %.1f goroutines, %.0f KiB heap+stacks",
		n, took.Round(time.Millisecond), float64(g1-g0)/float64(n), (float64(m1)-float64(m0))/float64(n)/1024)
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}
