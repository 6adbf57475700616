package bus

// The fan-out benchmark publishes one new revision to every site and measures,
// per site, the time from the start of PublishDesired to the site's paho
// client receiving it. The sites' clients run in a child process (this test
// binary re-executed, see TestMain): the broker process then holds only the
// broker and the bus, so its memory per connected site can be measured, and
// 10,000 connections fit the file descriptor limit (both ends of every
// connection would not, in one process).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/internal/benchproc"
	"github.com/rampart-fw/rampart/protocol"
)

const fleetEnv = "RAMPART_BENCH_FLEET" // "url|root|sites|anon"

func TestMain(m *testing.M) {
	benchproc.Serve(fleetEnv, runFleet)
	os.Exit(m.Run())
}

func fleetSite(i int) string { return fmt.Sprintf("site_%d", i) }

// runFleet connects one paho client per site, each subscribed to its own
// desired topic, prints "ready", then answers each "rev R T0" line on stdin
// with "done R p50 p99 max" (nanoseconds since T0) once every site has
// received revision R.
func runFleet(spec string) error {
	parts := strings.Split(spec, "|")
	url, root, anon := parts[0], parts[1], parts[3] == "anon"
	n, _ := strconv.Atoi(parts[2])
	var (
		mu    sync.Mutex
		times = map[uint64][]int64{} // revision -> receipt times by site
		count = map[uint64]int{}
		last  = make([]uint64, n)
		cond  = sync.NewCond(&mu)
	)
	revKey := []byte(`"revision":`)
	var connect errgroup.Group
	connect.SetLimit(64)
	clients := make([]paho.Client, n)
	for i := range n {
		connect.Go(func() error {
			site := fleetSite(i)
			o := paho.NewClientOptions().AddBroker(url).SetProtocolVersion(4).
				SetClientID("bench-" + site).SetConnectTimeout(60 * time.Second).SetKeepAlive(5 * time.Minute).
				SetAutoReconnect(false)
			if !anon {
				o.SetUsername(protocol.SiteMQTTUser("org_bench", site)).SetPassword(testKey.SiteSecret("org_bench", site))
			}
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(2*time.Minute) || tok.Error() != nil {
				return fmt.Errorf("connect %s: %v", site, tok.Error())
			}
			clients[i] = c
			tok := c.Subscribe(protocol.DesiredTopic(root, "org_bench", site), 1, func(_ paho.Client, m paho.Message) {
				now := time.Now().UnixNano()
				p := m.Payload()
				// Find the revision without decoding the whole document, so
				// the fleet's CPU goes to receiving, not to JSON.
				j := bytes.Index(p, revKey)
				if j < 0 {
					return
				}
				p = p[j+len(revKey):]
				k := bytes.IndexAny(p, ",}")
				rev, err := strconv.ParseUint(string(p[:k]), 10, 64)
				if err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if rev <= last[i] {
					return
				}
				last[i] = rev
				if times[rev] == nil {
					times[rev] = make([]int64, n)
				}
				times[rev][i] = now
				count[rev]++
				if count[rev] == n {
					cond.Broadcast()
				}
			})
			if !tok.WaitTimeout(2*time.Minute) || tok.Error() != nil {
				return fmt.Errorf("subscribe %s: %v", site, tok.Error())
			}
			return nil
		})
	}
	if err := connect.Wait(); err != nil {
		return err
	}
	fmt.Println(benchproc.Ready)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var rev uint64
		var t0 int64
		if _, err := fmt.Sscanf(in.Text(), "rev %d %d", &rev, &t0); err != nil {
			return fmt.Errorf("bad command %q: %w", in.Text(), err)
		}
		mu.Lock()
		for count[rev] < n {
			cond.Wait()
		}
		lat := make([]int64, n)
		for i, t := range times[rev] {
			lat[i] = t - t0
		}
		delete(times, rev)
		mu.Unlock()
		slices.Sort(lat)
		fmt.Printf("done %d %d %d %d\n", rev, lat[n/2], lat[(n*99)/100], lat[n-1])
	}
	for _, c := range clients {
		c.Disconnect(0)
	}
	return nil
}

func startFleet(b *testing.B, url, root string, sites int, anon bool) *benchproc.Proc {
	b.Helper()
	mode := "auth"
	if anon {
		mode = "anon"
	}
	f := benchproc.Start(b, fleetEnv, fmt.Sprintf("%s|%s|%d|%s", url, root, sites, mode))
	benchproc.WaitReady(b, f)
	return f
}

// fanoutDoc is a realistic document: 3 groups of 10 rules, 2 prefix lists of
// 20 CIDRs (about 4 KiB of JSON).
func fanoutDoc(site string, rev uint64) protocol.DesiredState {
	d := protocol.DesiredState{OrgID: "org_bench", SiteID: site, Epoch: "bench", Revision: rev}
	for l := range 2 {
		pl := protocol.PrefixList{ID: fmt.Sprintf("prfx_lst_%d", l), Name: fmt.Sprintf("List %d", l)}
		for c := range 20 {
			pl.CIDRs = append(pl.CIDRs, fmt.Sprintf("10.%d.%d.0/24", l, c))
		}
		d.PrefixLists = append(d.PrefixLists, pl)
	}
	for g := range 3 {
		sg := protocol.SecurityGroup{ID: fmt.Sprintf("sec_grp_%d", g), Name: fmt.Sprintf("Group %d", g)}
		for r := range 10 {
			addr := "0.0.0.0/0"
			if r%3 == 0 {
				addr = fmt.Sprintf("prfx_lst_%d", r%2)
			}
			sg.Rules = append(sg.Rules, protocol.Rule{ID: fmt.Sprintf("fltr_%d_%d", g, r), Direction: protocol.Inbound,
				Order: r + 1, Protocol: 6, Port: strconv.Itoa(8000 + int(rev%1000) + r), Address: addr, Description: "benchmark rule"})
		}
		d.SecurityGroups = append(d.SecurityGroups, sg)
	}
	d.Seal()
	return d
}

func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// BenchmarkFanOut: one iteration is one new revision for every site, from
// the start of PublishDesired to the last site's receipt.
//
//	go test -run '^$' -bench FanOut -benchtime 5x ./controlplane/bus
//	RAMPART_TEST_MQTT_URL=tcp://127.0.0.1:1883 go test -run '^$' -bench FanOut/external -benchtime 5x ./controlplane/bus
//	RAMPART_BENCH_PENDING=64 go test -run '^$' -bench FanOut/embedded -benchtime 5x ./controlplane/bus
func BenchmarkFanOut(b *testing.B) {
	sizes := []int{100, 1000, 10000}
	for _, target := range []string{"embedded", "external"} {
		b.Run(target, func(b *testing.B) {
			for _, n := range sizes {
				b.Run(fmt.Sprintf("sites=%d", n), func(b *testing.B) { benchFanOut(b, target, n) })
			}
		})
	}
}

func benchFanOut(b *testing.B, target string, n int) {
	var (
		url, root, user, pass = "", protocol.DefaultTopicRoot, "", ""
		anon                  bool
		brk                   *broker.Broker
	)
	switch target {
	case "embedded":
		var err error
		// RAMPART_BENCH_PENDING sets broker.Options.MaxPendingWrites, whose
		// queue is allocated up front for every connection.
		pending, _ := strconv.Atoi(os.Getenv("RAMPART_BENCH_PENDING"))
		brk, err = broker.Start(broker.Options{Listen: "127.0.0.1:0", Key: testKey, Logger: quietLogger(), MaxPendingWrites: pending})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { brk.Close() })
		url, user, pass = brk.URL(), keys.ControlPlaneMQTTUser, testKey.ControlPlaneMQTTPassword()
	default:
		url = os.Getenv("RAMPART_TEST_MQTT_URL")
		if url == "" {
			b.Skip("RAMPART_TEST_MQTT_URL is not set")
		}
		var r [4]byte
		_, _ = rand.Read(r[:])
		root, anon = "rampart-bench/"+hex.EncodeToString(r[:])+"/v1", true
	}
	ctx := context.Background()
	bus, err := Connect(ctx, Options{URLs: []string{url}, Username: user, Password: pass, TopicRoot: root, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bus.Close)
	idle := heapAndStacks()
	f := startFleet(b, url, root, n, anon)
	if brk != nil {
		// Wait for the broker to count every client before measuring.
		for deadline := time.Now().Add(time.Minute); brk.Clients() < int64(n)+1 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	perSite := (float64(heapAndStacks()) - float64(idle)) / float64(n)

	var p50s, p99s, maxs []float64
	b.ResetTimer()
	for i := range b.N {
		rev := uint64(i + 1)
		b.StopTimer()
		docs := make([]protocol.DesiredState, n)
		for s := range n {
			docs[s] = fanoutDoc(fleetSite(s), rev)
		}
		b.StartTimer()
		t0 := time.Now()
		f.Send(b, fmt.Sprintf("rev %d %d", rev, t0.UnixNano()))
		if err := bus.PublishDesired(ctx, docs...); err != nil {
			b.Fatal(err)
		}
		answer := f.Receive(b, "done")
		var gotRev uint64
		var p50, p99, mx int64
		if _, err := fmt.Sscanf(answer, "done %d %d %d %d", &gotRev, &p50, &p99, &mx); err != nil || gotRev != rev {
			b.Fatalf("fleet said %q", answer)
		}
		p50s, p99s, maxs = append(p50s, float64(p50)), append(p99s, float64(p99)), append(maxs, float64(mx))
	}
	b.StopTimer()
	slices.Sort(p50s)
	slices.Sort(p99s)
	b.ReportMetric(p50s[len(p50s)/2]/1e6, "p50-ms")
	b.ReportMetric(p99s[len(p99s)/2]/1e6, "p99-ms")
	b.ReportMetric(slices.Max(maxs)/1e6, "max-ms")
	if brk != nil {
		// Heap and stacks of this process (broker and bus) per connected
		// site, measured before the first publish.
		b.ReportMetric(perSite, "broker-B/site")
	}
}
