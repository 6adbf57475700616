package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/agent/cache"
	"github.com/rampart-fw/rampart/agent/internal/fsfault"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// The cache faults of issue 12, each reproduced with a real file or a real
// file system: in every case the agent runs on, enforces the newest policy
// it knows and repairs drift.

// put stores d in c as accept does: with its JSON as received.
func put(t testing.TB, c *cache.Cache, d protocol.DesiredState) (bool, error) {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return c.Put(d, raw)
}

// cacheOptions are testOptions with a quick cache retry.
func cacheOptions() Options {
	o := testOptions()
	o.CacheRetry = 100 * time.Millisecond
	return o
}

// repairsDrift removes a managed rule by hand and waits for it to come
// back (the resync is 100 ms in these tests).
func repairsDrift(t *testing.T, r *rossim.Router, rules int) {
	t.Helper()
	ids := managedIDs(r.Snapshot())
	mustExec(t, r, "/ip/firewall/filter/remove", "=.id="+ids["in/drop"])
	eventually(t, "the drift repaired", func() bool { return managedRows(r) == rules })
}

func cachedRevision(t *testing.T, dir string) uint64 {
	t.Helper()
	c, err := cache.Open(dir, cache.Options{})
	if err != nil {
		t.Fatalf("open the cache to check it: %v", err)
	}
	defer c.Close()
	d, err := c.Get()
	if err != nil {
		t.Fatalf("read the cache to check it: %v", err)
	}
	return d.Revision
}

func TestCorruptCacheIsMovedAsideAndTheAgentRunsOn(t *testing.T) {
	for name, corrupt := range map[string]func(t *testing.T, path string){
		"good meta pages, garbage elsewhere": func(t *testing.T, path string) { fsfault.CorruptPastMeta(t, path) },
		"all garbage": func(t *testing.T, path string) {
			if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := startBroker(t)
			r, cfg := simSite(t, b)
			cfg.ResyncInterval = 100 * time.Millisecond
			c, _ := cache.Open(cfg.StateDir, cache.Options{})
			if _, err := put(t, c, sampleDoc(1)); err != nil {
				t.Fatal(err)
			}
			c.Close()
			corrupt(t, filepath.Join(cfg.StateDir, cache.FileName))

			b.publish(t, marshal(t, sampleDoc(2)), true)
			opts, logs := logged(cacheOptions())
			_, stop := runAgentWith(t, cfg, opts)
			eventually(t, "revision 2 applied", appliedOn(b, 2))
			repairsDrift(t, r, 13)
			stop()
			if len(logs.lines("cache repaired")) != 1 {
				t.Errorf("the repair was not logged:\n%s", logs)
			}
			aside, _ := filepath.Glob(filepath.Join(cfg.StateDir, cache.FileName+".corrupt-*"))
			if len(aside) != 1 {
				t.Errorf("corrupt files kept: %v, want 1", aside)
			}
			if rev := cachedRevision(t, cfg.StateDir); rev != 2 {
				t.Errorf("the new cache holds revision %d, want 2", rev)
			}
		})
	}
}

func TestUnusableStateDirectoryWorksFromMemory(t *testing.T) {
	b := startBroker(t)
	r, cfg := simSite(t, b)
	cfg.ResyncInterval = 100 * time.Millisecond
	cfg.StateDir = filepath.Join(fsfault.ReadOnlyDir(t), "state")
	b.publish(t, marshal(t, sampleDoc(1)), true)
	opts, logs := logged(cacheOptions())
	runAgentWith(t, cfg, opts)
	explainsWithin(t, logs, 5*time.Second, "working from memory", protocol.EnvStateDir)
	eventually(t, "revision 1 applied", appliedOn(b, 1))
	repairsDrift(t, r, 13)
	d2 := sampleDoc(2)
	d2.SecurityGroups[0].Rules = d2.SecurityGroups[0].Rules[1:] // drops the outbound DNS rule
	d2.Seal()
	b.publish(t, marshal(t, d2), true)
	eventually(t, "revision 2 applied", appliedOn(b, 2))
	repairsDrift(t, r, 7)
}

// fullDiskSetup runs an agent whose state directory is on a small tmpfs,
// applies revision 1 (cached), fills the disk, and applies revision 2, a
// document too large for what is left: its cache write fails. The agent
// still enforces revision 2 and repairs drift.
func fullDiskSetup(t *testing.T) (b *broker, r *rossim.Router, cfg Config, stop func(), free func(), logs *logBuf) {
	t.Helper()
	dir := fsfault.SmallDisk(t, "1m")
	b = startBroker(t)
	r = newSim(t, rossim.Options{})
	cfg = testConfig(t, r.Addr())
	cfg.MQTTURLs = mustURLs(t, "tcp://"+b.addr)
	cfg.ResyncInterval = 100 * time.Millisecond
	cfg.StateDir = dir
	b.publish(t, marshal(t, sampleDoc(1)), true)
	opts, logs := logged(cacheOptions())
	_, stop = runAgentWith(t, cfg, opts)
	eventually(t, "revision 1 applied", appliedOn(b, 1))

	free = fsfault.Fill(t, dir)
	b.publish(t, marshal(t, bigDoc(2)), true)
	eventually(t, "revision 2 applied", appliedOn(b, 2))
	explainsWithin(t, logs, 5*time.Second, "cache write failed")
	repairsDrift(t, r, 13)
	return b, r, cfg, stop, free, logs
}

// bigDoc is sampleDoc with 2,000 more entries in its unused prefix list:
// about 60 KB of cache, more than a filled disk has left.
func bigDoc(rev uint64) protocol.DesiredState {
	d := sampleDoc(rev)
	for i := range 2000 {
		d.PrefixLists[1].CIDRs = append(d.PrefixLists[1].CIDRs, fmt.Sprintf("10.%d.%d.0/24", 100+i/250, i%250))
	}
	d.Seal()
	return d
}

// TestFullDiskThenRestartNeverGoesBack: the disk is full while revision 2
// arrives, and the agent restarts before any space comes back, with the
// broker down. It must not apply the cached revision 1 (260 writes
// backwards in the measurement): the failed write moved the older
// file aside, so the restarted agent knows no policy and leaves the
// router on revision 2.
func TestFullDiskThenRestartNeverGoesBack(t *testing.T) {
	b, r, cfg, stop, _, _ := fullDiskSetup(t)
	stop()
	b.stop()
	r.ResetStats()
	cfg.MQTTURLs = mustURLs(t, "tcp://"+deadAddr(t))
	opts, logs := logged(cacheOptions())
	runAgentWith(t, cfg, opts)
	explainsWithin(t, logs, 5*time.Second, "RouterOS API reachable")
	if got := logs.lines("enforcing cached desired state"); len(got) > 0 {
		t.Fatalf("the restarted agent enforced a cached document: %v", got)
	}
	if n := writes(r.Stats()); n != 0 {
		t.Fatalf("the restarted agent wrote %d times to the router", n)
	}
	if n := managedRows(r); n != 13 {
		t.Fatalf("%d managed rows, want revision 2's 13", n)
	}
}

// TestFullDiskThenSpaceThenRestart: the failed cache write is retried, and
// once space comes back revision 2 is cached: a restart with the broker
// down enforces revision 2 with no write, and repairs drift from it.
func TestFullDiskThenSpaceThenRestart(t *testing.T) {
	b, r, cfg, stop, free, logs := fullDiskSetup(t)
	free()
	explainsWithin(t, logs, 5*time.Second, "cache written after earlier failures")
	stop()
	b.stop()
	r.ResetStats()
	cfg.MQTTURLs = mustURLs(t, "tcp://"+deadAddr(t))
	opts, logs2 := logged(cacheOptions())
	a, _ := runAgentWith(t, cfg, opts)
	eventually(t, "revision 2 enforced from the cache", func() bool { return testutil.ToFloat64(a.m.appliedRevision) == 2 })
	if got := logs2.lines("enforcing cached desired state"); len(got) != 1 {
		t.Errorf("log: %v", got)
	}
	if n := writes(r.Stats()); n != 0 {
		t.Errorf("the restarted agent wrote %d times to a router already on revision 2", n)
	}
	repairsDrift(t, r, 13)
}
