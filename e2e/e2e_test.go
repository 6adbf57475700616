// Package e2e runs Rampart's loop across processes, as an operator would:
// the built rampart-controlplane (embedded broker, or Mosquitto when
// RAMPART_TEST_MQTT_URL is set), routeros-sim and rampart-agent binaries,
// talking HTTP, MQTT and the RouterOS API to each other. TestMain builds the
// binaries once into a temporary directory.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3"

	"github.com/rampart-fw/rampart/internal/pgtest"
	"github.com/rampart-fw/rampart/internal/syncbuf"
	"github.com/rampart-fw/rampart/internal/wait"
)

// converge bounds each wait: far more than the loop takes, so a loaded
// 2-core machine does not fail the test. A broker restart adds the agents'
// reconnect backoff, so waits after one get twice as long.
const converge = 30 * time.Second

var bin string // directory of the built binaries

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rampart-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = dir
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/rampart-fw/rampart/cmd/rampart-controlplane",
		"github.com/rampart-fw/rampart/cmd/rampart-agent",
		"github.com/rampart-fw/rampart/cmd/routeros-sim")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the binaries:", err)
		return 1
	}
	// PostgreSQL, for the failover test, is started on first use and
	// stopped here.
	return pgtest.Main(m)
}

// proc is a started binary; its output goes to a buffer shown on failure.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
}

func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(bin, strings.Fields(name)[0]), args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("--- output of %s (last 4 KiB):\n%s", name, tail(p.out.String(), 4096))
		}
	})
	return p
}

// stop ends the process gracefully (SIGTERM), then for sure.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop within 15 s of SIGTERM", p.name)
		p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// cleanEnv is the test's environment without RAMPART_ variables, so that a
// developer's settings cannot change what the binaries do.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAMPART_") {
			out = append(out, kv)
		}
	}
	return out
}

// logged waits for the process to log msg (JSON logs) and returns the
// line's field: how the test learns the ports chosen for 127.0.0.1:0.
func (p *proc) logged(t *testing.T, msg, field string) string {
	t.Helper()
	var v string
	eventually(t, converge, p.name+" logs "+msg, func() string {
		select {
		case <-p.done:
			t.Fatalf("%s exited:\n%s", p.name, tail(p.out.String(), 4096))
		default:
		}
		for _, line := range strings.Split(p.out.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
				if s, ok := m[field].(string); ok && s != "" {
					v = s
					return ""
				}
			}
		}
		return "not yet"
	})
	return v
}

func output(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "rampart-controlplane"), args...)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rampart-controlplane %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func eventually(t *testing.T, within time.Duration, what string, cond func() string) {
	t.Helper()
	wait.Until(t, within, what, cond)
}

// controlPlane is a rampart-controlplane process and its API.
type controlPlane struct {
	t        *testing.T
	dir      string
	httpAddr string
	// mqttURL is the external broker, or mqttListen the embedded one's.
	mqttURL, mqttListen string
	p                   *proc
	token               string
}

func startControlPlane(t *testing.T, org, mqttURL string) *controlPlane {
	c := &controlPlane{t: t, dir: t.TempDir(), httpAddr: "127.0.0.1:0", mqttURL: mqttURL, mqttListen: "127.0.0.1:0"}
	c.start()
	c.token = strings.TrimSpace(output(t, "token", "--data-dir", c.dir, "--org", org))
	return c
}

// start runs the control plane; the first start picks free ports, a
// restart takes the same ones again (the agents know the broker's).
func (c *controlPlane) start() {
	c.t.Helper()
	args := []string{"--data-dir", c.dir, "--http-addr", c.httpAddr, "--sync-timeout", "2m", "--log-level", "debug"}
	if c.mqttURL != "" {
		args = append(args, "--mqtt-url", c.mqttURL)
	} else {
		args = append(args, "--mqtt-listen", c.mqttListen)
	}
	c.p = start(c.t, "rampart-controlplane", nil, args...)
	c.httpAddr = c.p.logged(c.t, "control plane serving", "http_addr")
	if c.mqttURL == "" {
		c.mqttListen = strings.TrimPrefix(c.p.logged(c.t, "mqtt started", "broker"), "tcp://")
	}
	c.p.waitReady(c.t, "control plane", c.httpAddr)
}

// waitReady waits for the control plane p, serving HTTP on httpAddr, to
// answer /readyz; it fails the test at once should p exit meanwhile.
func (p *proc) waitReady(t *testing.T, name, httpAddr string) {
	t.Helper()
	eventually(t, converge, name+" ready", func() string {
		select {
		case <-p.done:
			t.Fatalf("%s exited:\n%s", name, tail(p.out.String(), 4096))
		default:
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return resp.Status
		}
		return ""
	})
}

func (c *controlPlane) restart() {
	c.t.Helper()
	c.p.stop(c.t)
	if c.p.cmd.ProcessState == nil || !c.p.cmd.ProcessState.Success() {
		c.t.Errorf("control plane did not exit cleanly on SIGTERM: %v\n%s", c.p.cmd.ProcessState, tail(c.p.out.String(), 4096))
	}
	c.start()
}

func (c *controlPlane) call(method, path, body string, out any) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, "http://"+c.httpAddr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if out == nil {
		req.Header.Set("Accept", "text/plain")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func (c *controlPlane) must(want int, method, path, body string, out any) string {
	c.t.Helper()
	st, b := c.call(method, path, body, out)
	if st != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
	}
	return b
}

func (c *controlPlane) waitStatus(within time.Duration, path, want string) {
	c.t.Helper()
	eventually(c.t, within, path+" "+want, func() string {
		var r struct {
			Status string `json:"status"`
		}
		if st, b := c.call("GET", path, "", &r); st != 200 {
			return b
		}
		if r.Status != want {
			return "status " + r.Status
		}
		return ""
	})
}

// site is a routeros-sim process and the rampart-agent process on it.
type site struct {
	id, router string
	sim, agent *proc
}

const routerUser, routerPassword = "admin", "e2e-pw"

// startSite runs a simulated router and an agent whose environment is env
// (enrollment's KEY=value lines) plus the router's address.
func startSite(t *testing.T, id, envLines string) *site {
	s := &site{id: id}
	s.sim = start(t, "routeros-sim "+id, nil, "--listen", "127.0.0.1:0", "--user", routerUser, "--password", routerPassword)
	s.router = s.sim.logged(t, "routeros-sim serving", "addr")
	env := []string{
		"RAMPART_ROUTEROS_ADDR=" + s.router, "RAMPART_ROUTEROS_USER=" + routerUser, "RAMPART_ROUTEROS_PASSWORD=" + routerPassword,
		"RAMPART_STATE_DIR=" + t.TempDir(), "RAMPART_METRICS_ADDR=127.0.0.1:0", "RAMPART_RESYNC_INTERVAL=5s",
	}
	sc := bufio.NewScanner(strings.NewReader(envLines))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _ := strings.Cut(line, "=")
		switch k {
		case "RAMPART_ROUTEROS_ADDR", "RAMPART_ROUTEROS_USER", "RAMPART_ROUTEROS_PASSWORD", "RAMPART_STATE_DIR", "RAMPART_METRICS_ADDR", "RAMPART_RESYNC_INTERVAL":
			continue // this machine's, above
		}
		env = append(env, line)
	}
	s.agent = start(t, "rampart-agent "+id, env)
	return s
}

// filter prints the router's firewall filter and address lists through the
// RouterOS API.
func (s *site) filter(t *testing.T) []map[string]string {
	t.Helper()
	return s.print(t, "/ip/firewall/filter/print", "/ip/firewall/address-list/print")
}

// print runs each print command on the router through the RouterOS API and
// returns their rows, in order.
func (s *site) print(t *testing.T, menus ...string) []map[string]string {
	t.Helper()
	c, err := routeros.DialTimeout(s.router, routerUser, routerPassword, 10*time.Second)
	if err != nil {
		t.Fatalf("dial router of %s: %v", s.id, err)
	}
	defer c.Close()
	var rows []map[string]string
	for _, menu := range menus {
		r, err := c.RunArgs([]string{menu})
		if err != nil {
			t.Fatalf("%s on %s: %v", menu, s.id, err)
		}
		for _, re := range r.Re {
			rows = append(rows, re.Map)
		}
	}
	return rows
}

// accepts reports whether the router's rampart-in chain accepts tcp to port.
func (s *site) accepts(t *testing.T, port string) bool {
	for _, row := range s.filter(t) {
		if row["chain"] == "rampart-in" && row["action"] == "accept" && row["dst-port"] == port {
			return true
		}
	}
	return false
}

// managed counts the rows the agent owns.
func (s *site) managed(t *testing.T) int {
	n := 0
	for _, row := range s.filter(t) {
		if strings.HasPrefix(row["comment"], "rampart:") {
			n++
		}
	}
	return n
}

func randomOrg() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "org_e" + hex.EncodeToString(b)
}

func group(port string, sites ...string) string {
	ss, _ := json.Marshal(sites)
	return `{"name":"Web","description":"cross-process","rules":[
	  {"direction":"inbound","order":10,"protocol":6,"port":"` + port + `","address":"0.0.0.0/0","description":"Allow HTTPS"}],
	  "sites":` + string(ss) + `}`
}

func TestAcrossProcessesEmbedded(t *testing.T) { testAcrossProcesses(t, "") }

func TestAcrossProcessesMosquitto(t *testing.T) {
	u := os.Getenv("RAMPART_TEST_MQTT_URL")
	if u == "" {
		t.Skip("RAMPART_TEST_MQTT_URL is not set (.ci/run starts Mosquitto and sets it)")
	}
	testAcrossProcesses(t, u)
}

// testAcrossProcesses: two sites, one enrolled with the enroll subcommand,
// one through the API; a group reaches both routers and turns active; a PUT
// followed at once by a control plane restart (and with the embedded broker,
// a broker restart under the agents) still converges; DELETE removes the
// rules from the routers.
func testAcrossProcesses(t *testing.T, mqttURL string) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	org := randomOrg()
	cp := startControlPlane(t, org, mqttURL)

	env1 := output(t, append([]string{"enroll", "--data-dir", cp.dir, "--org", org, "--site", "site_p1"}, enrollURL(cp, mqttURL)...)...)
	env2 := cp.must(200, "GET", "/vpc/sites/site_p2/enrollment?format=env", "", nil)
	if env1 == "" || !strings.Contains(env2, "RAMPART_SITE_SECRET=") {
		t.Fatalf("enrollment: %q, %q", env1, env2)
	}
	sites := []*site{startSite(t, "site_p1", env1), startSite(t, "site_p2", env2)}

	var g struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	cp.must(201, "POST", "/vpc/security-groups", group("443", "site_p1", "site_p2"), &g)
	if g.Status != "syncing" {
		t.Errorf("new group: %q, want syncing", g.Status)
	}
	gpath := "/vpc/security-groups/" + g.ID
	cp.waitStatus(converge, gpath, "active")
	for _, s := range sites {
		if !s.accepts(t, "443") {
			t.Errorf("%s: no rule for 443 once active: %v", s.id, s.filter(t))
		}
	}
	var view []struct {
		ID              string `json:"id"`
		Online          bool   `json:"online"`
		State           string `json:"state"`
		AppliedRevision uint64 `json:"applied_revision"`
		DesiredRevision uint64 `json:"desired_revision"`
	}
	cp.must(200, "GET", "/vpc/sites", "", &view)
	for _, v := range view {
		if !v.Online || v.State != "in_sync" || v.AppliedRevision != v.DesiredRevision || v.DesiredRevision == 0 {
			t.Errorf("site %+v", v)
		}
	}

	// A PUT, and the control plane stops at once: after the restart the
	// group still ends active and the routers hold the new rule.
	cp.must(200, "PUT", gpath, group("8443", "site_p1", "site_p2"), nil)
	cp.restart()
	cp.waitStatus(2*converge, gpath, "active")
	for _, s := range sites {
		if !s.accepts(t, "8443") || s.accepts(t, "443") {
			t.Errorf("%s after PUT and restart: %v", s.id, s.filter(t))
		}
	}

	// DELETE removes the rules from the routers.
	cp.must(204, "DELETE", gpath, "", nil)
	for _, s := range sites {
		eventually(t, 2*converge, "rules leave "+s.id, func() string {
			if n := s.managed(t); n > 0 {
				return fmt.Sprintf("%d managed rows left", n)
			}
			return ""
		})
	}
}

// enrollURL is what enroll needs to hand out the URL the agents here can
// dial.
func enrollURL(cp *controlPlane, mqttURL string) []string {
	if mqttURL != "" {
		return []string{"--mqtt-url", mqttURL}
	}
	return []string{"--mqtt-listen", cp.mqttListen}
}
