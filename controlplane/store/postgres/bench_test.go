package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/internal/pgtest"
	"github.com/rampart-fw/rampart/protocol"
)

// cpuMeter measures the CPU time of this process and of the database
// server (its postmaster and every process it started), so a benchmark
// says what a write costs on a machine busy with other work, where the
// time per operation says mostly how busy it was.
type cpuMeter struct {
	postmaster int
	self, db   time.Duration
}

func startCPU(b *testing.B, s *Store) *cpuMeter {
	var backend int
	if err := s.pool.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		b.Fatal(err)
	}
	m := &cpuMeter{postmaster: parentPID(b, backend)}
	m.self, m.db = selfCPU(b), m.serverCPU(b)
	return m
}

func (m *cpuMeter) report(b *testing.B) {
	self, db := selfCPU(b)-m.self, m.serverCPU(b)-m.db
	b.ReportMetric(float64(self.Microseconds())/float64(b.N), "client-cpu-µs/op")
	b.ReportMetric(float64(db.Microseconds())/float64(b.N), "server-cpu-µs/op")
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU sums utime and stime of the postmaster and its children
// (/proc/<pid>/stat, in clock ticks: USER_HZ is 100 on Linux).
func (m *cpuMeter) serverCPU(b *testing.B) time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var ticks int64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := procStat(pid)
		if len(f) < 15 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[3]); pid != m.postmaster && ppid != m.postmaster {
			continue
		}
		u, _ := strconv.ParseInt(f[13], 10, 64)
		st, _ := strconv.ParseInt(f[14], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// procStat is /proc/<pid>/stat's fields, the command name (which may hold
// spaces) as one.
func procStat(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return nil
	}
	return append([]string{"pid", "comm"}, strings.Fields(string(raw[i+1:]))...)
}

func parentPID(b *testing.B, pid int) int {
	f := procStat(pid)
	if len(f) < 4 {
		b.Fatalf("read /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[3])
	return ppid
}

// BenchmarkReplace250 replaces a 250-rule group again and again, one
// writer, as store/bolt's benchmark of the same name: with no site (the
// store's own work: read and decode the stored group, keep rule ids,
// encode, store, the audit event) and on one site with the Revisioner
// (compile the site, its revision, the sync). The clock moves past the
// sync deadline between writes, so the group is never locked. pgtest's
// server runs with fsync off: this is CPU and round trips, not the disk.
//
//	go test -run '^$' -bench BenchmarkReplace250 -benchtime 500x ./controlplane/store/postgres
func BenchmarkReplace250(b *testing.B) {
	for _, sites := range []int{0, 1} {
		b.Run(fmt.Sprintf("sites=%d", sites), func(b *testing.B) {
			ctx := context.Background()
			clk := newClock()
			s := openStore(b, pgtest.DSN(b), Options{Now: clk.Now, Revisioner: compile.Revisioner{}})
			writes := make([]*cp.SecurityGroupWrite, 2)
			for v := range writes {
				w := &cp.SecurityGroupWrite{Name: "big", Sites: []string{}}
				for i := range sites {
					w.Sites = append(w.Sites, fmt.Sprintf("site-%d", i))
				}
				for i := range 250 {
					w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + i + v), Address: "10.0.0.0/8", Description: "a rule of a large group, described at some length"})
				}
				writes[v] = w
			}
			st, err := s.CreateSecurityGroup(ctx, "org_a", writes[0])
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := startCPU(b, s)
			b.ResetTimer()
			for i := range b.N {
				clk.Add(cp.DefaultTimeout + time.Second)
				if _, err := s.ReplaceSecurityGroup(ctx, "org_a", st.ID, writes[(i+1)%2]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu.report(b)
		})
	}
}

// BenchmarkIngest: every site of a group confirms it, in batches as the
// syncer sends them (batch=4096) or one report per transaction (batch=1),
// as store/bolt's benchmark of the same name. One iteration is the whole
// fleet's confirmations. The sites' quota is raised for the 10,000.
//
//	go test -run '^$' -bench BenchmarkIngest -benchtime 3x ./controlplane/store/postgres
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct{ sites, batch int }{{2000, 1}, {2000, 4096}, {10000, 4096}} {
		b.Run(fmt.Sprintf("sites=%d/batch=%d", c.sites, c.batch), func(b *testing.B) {
			ctx := context.Background()
			var sites []string
			for i := range c.sites {
				sites = append(sites, fmt.Sprintf("site_%d", i))
			}
			var cpu time.Duration
			var server time.Duration
			for range b.N {
				b.StopTimer()
				s := openStore(b, pgtest.DSN(b), Options{Revisioner: compile.Revisioner{}, Quotas: cp.Quotas{Sites: c.sites}})
				w := &cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(1, "10.0.0.0/8")}}
				// MaxSitesPerResource bounds one group's sites.
				for chunk := range slices.Chunk(sites, cp.MaxSitesPerResource) {
					w.Sites = chunk
					if _, err := s.CreateSecurityGroup(ctx, "org", w); err != nil {
						b.Fatal(err)
					}
				}
				var reports []cp.Report
				for _, site := range sites {
					st := protocol.SiteStatus{Schema: 1, OrgID: "org", SiteID: site, Epoch: s.Epoch(), Revision: 1, State: protocol.StateApplied}
					reports = append(reports, cp.Report{OrgID: "org", SiteID: site, Status: &st})
				}
				m := startCPU(b, s)
				b.StartTimer()
				for len(reports) > 0 {
					n := min(len(reports), c.batch)
					if _, err := s.Ingest(ctx, reports[:n]); err != nil {
						b.Fatal(err)
					}
					reports = reports[n:]
				}
				b.StopTimer()
				cpu += selfCPU(b) - m.self
				server += m.serverCPU(b) - m.db
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*c.sites), "client-cpu-µs/report")
			b.ReportMetric(float64(server.Microseconds())/float64(b.N*c.sites), "server-cpu-µs/report")
		})
	}
}

// BenchmarkUnpublished: the republisher's query (once a second on one
// replica) over 100,000 sites, all published but 1,000.
//
//	go test -run '^$' -bench BenchmarkUnpublished -benchtime 20x ./controlplane/store/postgres
func BenchmarkUnpublished(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, pgtest.DSN(b), Options{})
	if _, err := s.pool.Exec(ctx, `INSERT INTO sites (org_id, id, desired_revision, revised_at)
		SELECT 'org_' || (i % 50), 'site_' || i, 3, now() - interval '1 minute' FROM generate_series(1, 100000) i`); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO site_published (org_id, site_id, revision)
		SELECT org_id, id, 3 FROM sites WHERE id > 'site_1000' OR length(id) > 9; ANALYZE`); err != nil {
		b.Fatal(err)
	}
	m := startCPU(b, s)
	b.ResetTimer()
	for range b.N {
		got, err := s.Unpublished(ctx, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, sites := range got {
			n += len(sites)
		}
		if n == 0 || n > 2000 {
			b.Fatalf("%d unpublished; want the 1,000 or so left out", n)
		}
	}
	b.StopTimer()
	m.report(b)
}

// BenchmarkCountSites: the metrics scrape's count of sites by state over
// 100,000 sites (bbolt keeps running counts instead; here it is a GROUP
// BY, by state and sync deadline).
//
//	go test -run '^$' -bench BenchmarkCountSites -benchtime 20x ./controlplane/store/postgres
func BenchmarkCountSites(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, pgtest.DSN(b), Options{})
	if _, err := s.pool.Exec(ctx, `INSERT INTO sites (org_id, id, state, sync_deadline)
		SELECT 'org_' || (i % 50), 'site_' || i, (ARRAY['in_sync', 'syncing', 'failed', 'offline'])[1 + i % 4],
			now() + (i % 7) * interval '1 minute' FROM generate_series(1, 100000) i; ANALYZE`); err != nil {
		b.Fatal(err)
	}
	m := startCPU(b, s)
	b.ResetTimer()
	for range b.N {
		counts, err := s.CountSites(ctx)
		if err != nil || counts[cp.SiteInSync] != 25000 {
			b.Fatalf("counts %v (%v); want 25,000 in sync", counts, err)
		}
	}
	b.StopTimer()
	m.report(b)
}
