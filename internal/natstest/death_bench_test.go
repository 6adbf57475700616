package natstest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// deadWindow is how long after a node's death the probes run: well past
// the 10–15 s of leader elections reported for nats-server 2.9.10.
// restartWindow is how long they run after its restart.
const (
	deadWindow    = 60 * time.Second
	restartWindow = 20 * time.Second
)

// attempt is one probe operation, on a fresh connection.
type attempt struct {
	at, took time.Duration // start since the kill; duration
	err      error
}

// probe is what one client saw after the kill, attempt after attempt.
type probe struct {
	what      string
	subscribe bool
	attempts  []attempt
}

// runProbe repeats op, 200 ms apart, from since until window has passed.
func runProbe(p *probe, since time.Time, window time.Duration, op func() error) {
	for time.Since(since) < window {
		start := time.Now()
		err := op()
		p.attempts = append(p.attempts, attempt{at: start.Sub(since), took: time.Since(start), err: err})
		time.Sleep(200 * time.Millisecond)
	}
}

// summary: failed attempts by operation, when the last failure ended, the
// slowest success after it, and the last error.
func (p *probe) summary() (failed map[string]int, lastFailEnd, slowest time.Duration, lastErr error) {
	failed = map[string]int{}
	for _, a := range p.attempts {
		if a.err != nil {
			op := "other"
			if oe := (*opError)(nil); errors.As(a.err, &oe) {
				op = oe.Op
			}
			failed[op]++
			lastFailEnd, lastErr = a.at+a.took, a.err
		}
	}
	for _, a := range p.attempts {
		if a.err == nil && a.at >= lastFailEnd {
			slowest = max(slowest, a.took)
		}
	}
	return
}

// timeline is the failed/total attempts started in each 10 s since the
// kill, e.g. "3/5 2/6 …".
func (p *probe) timeline() string {
	var failed, total []int
	for _, a := range p.attempts {
		i := int(a.at / (10 * time.Second))
		for len(total) <= i {
			failed, total = append(failed, 0), append(total, 0)
		}
		total[i]++
		if a.err != nil {
			failed[i]++
		}
	}
	var out []string
	for i := range total {
		out = append(out, fmt.Sprintf("%d/%d", failed[i], total[i]))
	}
	return strings.Join(out, " ")
}

// probeAll probes subscribes and retained publishes on each of nodes, from
// start for window, and returns the probes.
func probeAll(c *Cluster, nodes []int, topic string, start time.Time, window time.Duration) []*probe {
	var probes []*probe
	var wg sync.WaitGroup
	for _, i := range nodes {
		url := c.Node(i).MQTTURL
		sub := &probe{what: "subscribe on " + c.Node(i).Name, subscribe: true}
		pub := &probe{what: "retained publish on " + c.Node(i).Name}
		probes = append(probes, sub, pub)
		wg.Go(func() {
			runProbe(sub, start, window, func() error {
				_, err := readRetained(url, topic)
				return err
			})
		})
		wg.Go(func() {
			n := 0
			runProbe(pub, start, window, func() error {
				n++
				return publishRetained(url, fmt.Sprintf("%s/%s", topic, c.Node(i).Name), fmt.Sprint(n))
			})
		})
	}
	wg.Wait()
	return probes
}

// BenchmarkNodeDeathRefusal measures how QoS 1 subscriptions (a fresh
// client subscribing where a retained message waits) and retained QoS 1
// publishes fail on a 3-node NATS cluster after kill -9 of the node leading
// the retained-message stream ($MQTT_rmsgs) and after its restart. The
// survivors are probed for subscribes and for publishes, each attempt on a
// fresh connection, for 60 s after the kill; then the node is restarted and
// all three are probed for 20 s. Sub-benchmark "none" runs the probes
// without a kill, as the control. Metrics, worst of the probes:
// sub_failed_until_s and pub_failed_until_s are the end of the last failed
// attempt in seconds after the kill (0: none failed; about 60: still
// failing when the window closed); *_failed_after_restart count failed
// attempts after the restart.
//
//	go test -run '^$' -bench NodeDeathRefusal -benchtime 1x -timeout 30m ./internal/natstest
func BenchmarkNodeDeathRefusal(b *testing.B) {
	b.Run("kill-rmsgs-leader", func(b *testing.B) { benchDeath(b, Options{}, true) })
	b.Run("kill-rmsgs-leader/consumer_replicas=1", func(b *testing.B) { benchDeath(b, Options{ConsumerReplicas: 1}, true) })
	b.Run("none", func(b *testing.B) { benchDeath(b, Options{}, false) })
}

func benchDeath(b *testing.B, opts Options, kill bool) {
	var subWorst, pubWorst time.Duration
	var subAfter, pubAfter int
	for range b.N {
		c := StartWith(b, opts)
		topic := "rampart/v1/org_bench/site_a/desired"
		seedRetained(b, c, topic, "before")
		victim := c.StreamLeader(0, "$MQTT_rmsgs")
		if victim < 0 {
			b.Fatal("no leader known for $MQTT_rmsgs")
		}
		meta := c.MetaLeader(0)
		all := []int{0, 1, 2}
		survivors := all
		if kill {
			c.Kill(victim)
			b.Logf("killed %s (leader of $MQTT_rmsgs; meta leader too: %v)", c.Node(victim).Name, meta == victim)
			survivors = slices.DeleteFunc(slices.Clone(all), func(i int) bool { return i == victim })
		}
		killed := time.Now()
		for _, p := range probeAll(c, survivors, topic, killed, deadWindow) {
			failed, end, slowest, lastErr := p.summary()
			b.Logf("%-24s %3d attempts, failed %v (per 10 s: %s), the last ending %5.1fs after the kill; slowest success after: %5.2fs; last error: %v",
				p.what, len(p.attempts), failed, p.timeline(), end.Seconds(), slowest.Seconds(), lastErr)
			if p.subscribe {
				subWorst = max(subWorst, end)
			} else {
				pubWorst = max(pubWorst, end)
			}
		}
		if !kill {
			continue
		}
		c.Restart(victim)
		b.Logf("restarted %s, healthy %.1fs after the kill", c.Node(victim).Name, time.Since(killed).Seconds())
		restarted := time.Now()
		for _, p := range probeAll(c, all, topic, restarted, restartWindow) {
			failed, _, _, lastErr := p.summary()
			n := 0
			for _, k := range failed {
				n += k
			}
			b.Logf("after restart: %-24s %3d attempts, failed %v; last error: %v", p.what, len(p.attempts), failed, lastErr)
			if p.subscribe {
				subAfter += n
			} else {
				pubAfter += n
			}
		}
	}
	b.ReportMetric(subWorst.Seconds(), "sub_failed_until_s")
	b.ReportMetric(pubWorst.Seconds(), "pub_failed_until_s")
	b.ReportMetric(float64(subAfter), "sub_failed_after_restart")
	b.ReportMetric(float64(pubAfter), "pub_failed_after_restart")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRetainedPublishAfterDeath counts, over iterations, what becomes
// of one retained QoS 1 publish made on n2 right after kill -9 of n1 (which
// took the previous retained message): whether it was acknowledged
// (PUBACK), and whether a fresh subscription then gets it on n2, on n3,
// and on n1 once restarted. Metrics are counts of iterations:
// acked_everywhere (PUBACK and every node serves it), acked_but_stale
// (PUBACK, yet some node serves the previous message: a lost update as far
// as that node's subscribers know), failed_but_stored and failed_not_stored
// (no PUBACK; the client must retry either way).
//
//	go test -run '^$' -bench RetainedPublishAfterDeath -benchtime 10x -timeout 30m ./internal/natstest
func BenchmarkRetainedPublishAfterDeath(b *testing.B) {
	counts := map[string]int{}
	for iter := range b.N {
		c := Start(b)
		topic := fmt.Sprintf("rampart/v1/org_bench/site_%d/desired", iter)
		seedRetained(b, c, topic, "before")
		c.Kill(0)
		start := time.Now()
		pubErr := publishRetained(c.Node(1).MQTTURL, topic, "after")
		took := time.Since(start)
		serves := func(i int) string {
			var got string
			retry(b, 60*time.Second, "read on "+c.Node(i).Name, func() (err error) {
				got, err = readRetained(c.Node(i).MQTTURL, topic)
				return err
			})
			return got
		}
		n2, n3 := serves(1), serves(2)
		c.Restart(0)
		n1 := serves(0)
		stale := n1 != "after" || n2 != "after" || n3 != "after"
		outcome := "acked_everywhere"
		switch {
		case pubErr == nil && stale:
			outcome = "acked_but_stale"
		case pubErr != nil && !stale:
			outcome = "failed_but_stored"
		case pubErr != nil:
			outcome = "failed_not_stored"
		}
		counts[outcome]++
		b.Logf("%-18s publish %v in %.1fs; fresh subscriptions get n1 %q, n2 %q, n3 %q", outcome, pubErr, took.Seconds(), n1, n2, n3)
	}
	for _, k := range []string{"acked_everywhere", "acked_but_stale", "failed_but_stored", "failed_not_stored"} {
		b.ReportMetric(float64(counts[k]), k)
	}
	b.ReportMetric(0, "ns/op")
}
