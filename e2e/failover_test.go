package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/internal/fleet"
	"github.com/rampart-fw/rampart/internal/natstest"
	"github.com/rampart-fw/rampart/internal/pgtest"
)

// Sizes of the failover test (issue #15 item 4).
const (
	foReplicas = 3
	foSites    = 50
	foWrites   = 1000
	foClients  = 24
	// foKillReplicaAt and foKillNodeAt are the acknowledged writes after
	// which a replica, then a NATS node, is killed (kill -9).
	foKillReplicaAt = 300
	foKillNodeAt    = 500
	// foConverge bounds the wait, after the last write, for every group
	// to be active and every site in sync: JetStream's leader election
	// after a node's death alone takes 10-15 s (natstest).
	foConverge = 2 * time.Minute
)

// replica is one rampart-controlplane process of the failover test.
type replica struct {
	name, dir, httpAddr string
	p                   *proc
	dead                atomic.Bool
}

// TestFailover is issue #15 item 4: three control planes (the real binary)
// on one PostgreSQL database and a 3-node NATS cluster (MQTT and
// JetStream), 50 sites (the real agent on a simulated router each, as
// --demo runs them), and 1,000 writes from 24 concurrent clients spread
// over the replicas; a client whose replica dies retries on another. A
// replica and a NATS node are killed (SIGKILL) mid-way. At the end no
// acknowledged write is lost, every group is active and every site in
// sync. The times are logged.
func TestFailover(t *testing.T) {
	if !strings.Contains(usage(t), "-store-url") {
		t.Skip("this rampart-controlplane has no --store-url (the PostgreSQL store): nothing to fail over between")
	}
	t0 := time.Now()
	dsn := pgtest.DSN(t)
	nats := natstest.Start(t)
	urls := nats.MQTTURLs()
	org := randomOrg()
	t.Logf("PostgreSQL and a 3-node NATS cluster up: %s", time.Since(t0).Round(time.Millisecond))

	reps := make([]*replica, foReplicas)
	for i := range reps {
		r := &replica{name: fmt.Sprintf("replica-%d", i+1), dir: t.TempDir(), httpAddr: "127.0.0.1:0"}
		if i > 0 {
			// Every replica holds the same key, copied as an operator
			// would.
			key, err := os.ReadFile(filepath.Join(reps[0].dir, keys.KeyFile))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(r.dir, keys.KeyFile), key, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// Each replica's URL list starts at another node, so they spread
		// over the cluster.
		rot := append(slices.Clone(urls[i%len(urls):]), urls[:i%len(urls)]...)
		r.p = start(t, "rampart-controlplane "+r.name, nil, "--data-dir", r.dir, "--http-addr", r.httpAddr,
			"--store-url", dsn, "--replica-id", r.name, "--mqtt-url", strings.Join(rot, ","),
			"--sync-timeout", "5m", "--quota-security-groups", "2000", "--log-level", "info")
		r.httpAddr = r.p.logged(t, "control plane serving", "http_addr")
		reps[i] = r
	}
	for _, r := range reps {
		r.p.waitReady(t, r.name, r.httpAddr)
	}
	key, err := keys.Load(reps[0].dir)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(output(t, "token", "--data-dir", reps[0].dir, "--org", org))
	t.Logf("3 replicas ready: %s", time.Since(t0).Round(time.Millisecond))

	f, err := fleet.Start(context.Background(), fleet.Options{N: foSites, Org: org, SitePrefix: "site_fo", BrokerURL: strings.Join(urls, ","),
		Key: key, DataDir: t.TempDir(), ResyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	sites := f.SiteIDs()
	t.Logf("%d sites started: %s", len(sites), time.Since(t0).Round(time.Millisecond))

	c := &foClient{reps: reps, token: tok, hc: &http.Client{Timeout: 30 * time.Second}}
	type ack struct {
		id, port string
		replica  int
		members  []int // site indexes
	}
	var (
		mu     sync.Mutex
		acks   []ack
		next   atomic.Int64
		killed = map[string]time.Duration{}
		errs   []error
	)
	faults := func(n int) {
		switch n {
		case foKillReplicaAt:
			reps[1].dead.Store(true)
			reps[1].p.cmd.Process.Kill()
			killed["replica"] = time.Since(t0)
		case foKillNodeAt:
			nats.Kill(0)
			killed["nats node"] = time.Since(t0)
		}
	}
	writeStart := time.Now()
	var wg sync.WaitGroup
	for range foClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= foWrites {
					return
				}
				port := fmt.Sprint(10000 + k)
				idx := []int{k % foSites, (k + 17) % foSites, (k + 33) % foSites}
				members := []string{sites[idx[0]], sites[idx[1]], sites[idx[2]]}
				body := fmt.Sprintf(`{"name":"fo-%d","description":"failover","sites":%s,"rules":[{"direction":"inbound","order":10,"protocol":6,"port":%q,"address":"0.0.0.0/0","description":"write %d"}]}`,
					k, mustJSON(members), port, k)
				st, resp, used, err := c.do(k%foReplicas, "POST", "/vpc/security-groups", body)
				if err == nil && st != http.StatusCreated {
					err = fmt.Errorf("write %d through %s: %d %s", k, reps[used].name, st, resp)
				}
				var g struct {
					ID string `json:"id"`
				}
				if err == nil {
					err = json.Unmarshal(resp, &g)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					acks = append(acks, ack{id: g.ID, port: port, replica: used, members: idx})
					faults(len(acks))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	writes := time.Since(writeStart)
	if len(errs) > 0 {
		t.Fatalf("%d writes failed, first: %v", len(errs), errors.Join(errs[:min(5, len(errs))]...))
	}
	t.Logf("%d writes acknowledged in %s (replica killed at %s, NATS node at %s, since the start); retried on another replica: %d",
		len(acks), writes.Round(time.Millisecond), killed["replica"].Round(time.Millisecond), killed["nats node"].Round(time.Millisecond), c.retries.Load())

	// Every acknowledged write is there, as written, and active; every
	// site in sync.
	converged := time.Now()
	eventually(t, foConverge, "every site in sync", func() string {
		var list []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		st, b, _, err := c.do(0, "GET", "/vpc/sites?limit=1000", "")
		if err != nil || st != 200 {
			return fmt.Sprintf("GET /vpc/sites: %d %v", st, err)
		}
		if err := json.Unmarshal(b, &list); err != nil {
			return err.Error()
		}
		var behind []string
		for _, s := range list {
			if s.State != "in_sync" {
				behind = append(behind, s.ID+" "+s.State)
			}
		}
		if len(list) != foSites || len(behind) > 0 {
			return fmt.Sprintf("%d sites, not in sync: %v", len(list), behind)
		}
		return ""
	})
	inSync := time.Since(converged)
	pending := slices.Clone(acks)
	eventually(t, foConverge, "every acknowledged group active, as written", func() string {
		var left []ack
		for _, a := range pending {
			var g struct {
				Status string `json:"status"`
				Rules  []struct {
					Port string `json:"port"`
				} `json:"rules"`
			}
			st, b, _, err := c.do(0, "GET", "/vpc/security-groups/"+a.id, "")
			if err != nil {
				return err.Error()
			}
			if st == http.StatusNotFound {
				t.Fatalf("acknowledged write lost: group %s (port %s, through %s) is not found", a.id, a.port, reps[a.replica].name)
			}
			if st != 200 || json.Unmarshal(b, &g) != nil {
				return fmt.Sprintf("GET %s: %d %s", a.id, st, b)
			}
			if len(g.Rules) != 1 || g.Rules[0].Port != a.port {
				t.Fatalf("acknowledged write lost: group %s (through %s) has rules %s, want port %s", a.id, reps[a.replica].name, b, a.port)
			}
			if g.Status != "active" {
				left = append(left, a)
			}
		}
		pending = left
		if len(left) > 0 {
			return fmt.Sprintf("%d groups not active, e.g. %s", len(left), left[0].id)
		}
		return ""
	})
	active := time.Since(converged)
	// Every group, acknowledged or not (a write whose replica died before
	// answering may have committed), is active.
	groups := 0
	for after := ""; ; {
		path := "/vpc/security-groups?limit=1000"
		if after != "" {
			path += "&starting_after=" + after
		}
		st, b, _, err := c.do(0, "GET", path, "")
		var page []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if err != nil || st != 200 || json.Unmarshal(b, &page) != nil {
			t.Fatalf("GET %s: %d %v %.200s", path, st, err, b)
		}
		for _, g := range page {
			if g.Status != "active" {
				t.Errorf("group %s is %s, want active", g.ID, g.Status)
			}
		}
		groups += len(page)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	if groups < len(acks) {
		t.Errorf("%d groups listed, fewer than the %d acknowledged", groups, len(acks))
	}
	// And on the routers: each site's router accepts the port of every
	// acknowledged write that names the site.
	want := make([]map[string]bool, foSites)
	for _, a := range acks {
		for _, i := range a.members {
			if want[i] == nil {
				want[i] = map[string]bool{}
			}
			want[i][a.port] = true
		}
	}
	for i := range foSites {
		have := map[string]bool{}
		for _, row := range f.Router(i).Snapshot().Filter {
			if row["chain"] == "rampart-in" && row["action"] == "accept" {
				have[row["dst-port"]] = true
			}
		}
		for port := range want[i] {
			if !have[port] {
				t.Errorf("router of %s does not accept port %s, written and acknowledged", sites[i], port)
			}
		}
	}
	t.Logf("after the last write: every site in sync in %s, every acknowledged group active in %s; %d groups in all; whole test %s",
		inSync.Round(time.Millisecond), active.Round(time.Millisecond), groups, time.Since(t0).Round(time.Millisecond))
}

// usage is rampart-controlplane's flag summary.
func usage(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "rampart-controlplane"), "-h")
	cmd.Env = cleanEnv()
	out, _ := cmd.CombinedOutput() // -h exits 2 after printing
	return string(out)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// foClient calls the API of the replicas: a request goes to one replica
// and, when that one cannot answer (its connection fails, or it says it is
// unavailable), to the next, as a client behind a load balancer would.
type foClient struct {
	reps    []*replica
	token   string
	hc      *http.Client
	retries atomic.Int64
}

// do sends the request to replica first, or the next that answers, and
// returns the answer and which replica gave it.
func (c *foClient) do(first int, method, path, body string) (int, []byte, int, error) {
	var errs []error
	for round := range 3 {
		for k := range c.reps {
			i := (first + k) % len(c.reps)
			if c.reps[i].dead.Load() && round == 0 {
				continue // known dead: a load balancer's health check took it out
			}
			st, b, err := c.try(c.reps[i], method, path, body)
			if err == nil && st != http.StatusServiceUnavailable {
				if k > 0 || round > 0 {
					c.retries.Add(1)
				}
				return st, b, i, nil
			}
			if err == nil {
				err = fmt.Errorf("%s: %d %s", c.reps[i].name, st, b)
			}
			errs = append(errs, err)
		}
		time.Sleep(time.Second)
	}
	return 0, nil, 0, fmt.Errorf("%s %s on every replica: %w", method, path, errors.Join(errs...))
}

func (c *foClient) try(r *replica, method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+r.httpAddr+path, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", r.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: read the answer: %w", r.name, err)
	}
	return resp.StatusCode, b, nil
}
