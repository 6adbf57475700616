package main

// Onboarding end to end (issue #11): for every RouterOS version the
// enrollment script supports, the script is pasted (/import over the API)
// into a simulated router of that version; the router's container runs
// the real agent (internal/simagent) with exactly the environment, mounts
// and RouterOS user the script created; the site goes in_sync through the
// real control plane and a group change reaches the router.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/agent"
	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/container/image"
	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/internal/simagent"
	"github.com/rampart-fw/rampart/rossim"
)

// operatorBrokerURL is the broker URL as an operator would enroll it; the
// container runner maps it to the test's broker.
const operatorBrokerURL = "tcp://rampart.example.net:1883"

const scriptFile = "rampart.rsc"

// onboardRouter is a simulated router of version v whose containers run
// the real agent against l's broker, with the agent tarball uploaded.
func onboardRouter(t *testing.T, l *loop, v string) *rossim.Router {
	t.Helper()
	r, err := rossim.Listen("127.0.0.1:0", rossim.Options{ROSVersion: v, Password: "admin-pw",
		ExtractTime: 100 * time.Millisecond,
		ContainerRunner: simagent.Runner(simagent.Options{BrokerURL: l.m.MQTT.AgentURL,
			Agent: agent.Options{RetryBase: 200 * time.Millisecond, RetryMax: time.Second, MQTTMaxReconnect: 2 * time.Second}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("router %s log:\n%s", v, strings.Join(r.Log(), "\n"))
		}
		r.Close()
	})
	if err := r.PutFile(container.DefaultTarball, agentTarball(t)); err != nil {
		t.Fatal(err)
	}
	return r
}

// agentTarball is the arm64 image as rampart-image writes it, around a
// stand-in binary: the simulator checks the tarball (one image, its
// architecture) but runs the real agent in-process, never the binary.
func agentTarball(t *testing.T) []byte {
	t.Helper()
	tarballOnce.Do(func() {
		// A bare ELF header: static, 64-bit, little-endian, AArch64.
		h := make([]byte, 64)
		copy(h, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
		binary.LittleEndian.PutUint16(h[16:], uint16(elf.ET_EXEC))
		binary.LittleEndian.PutUint16(h[18:], uint16(elf.EM_AARCH64))
		binary.LittleEndian.PutUint32(h[20:], 1)
		binary.LittleEndian.PutUint16(h[52:], 64)
		binary.LittleEndian.PutUint16(h[54:], 56)
		binary.LittleEndian.PutUint16(h[58:], 64)
		bin := filepath.Join(t.TempDir(), "rampart-agent")
		if tarballErr = os.WriteFile(bin, h, 0o755); tarballErr != nil {
			return
		}
		img, err := image.Build(context.Background(), image.Options{Arch: "arm64", Binary: bin})
		if err != nil {
			tarballErr = err
			return
		}
		var buf bytes.Buffer
		tarballErr = image.WriteTarball(img, "", &buf)
		tarball = buf.Bytes()
	})
	if tarballErr != nil {
		t.Fatal(tarballErr)
	}
	return tarball
}

var (
	tarballOnce sync.Once
	tarball     []byte
	tarballErr  error
)

// onboardScript is the enrollment script for site on version v; the API
// stays reachable from this host (--api-allow 127.0.0.1/32) so the test
// can paste it again.
func onboardScript(t *testing.T, l *loop, site, v string) string {
	t.Helper()
	s := container.ForSite(l.m.Key, l.org, site, operatorBrokerURL)
	script, err := s.Script(container.ScriptOptions{RouterOSVersion: v,
		APIAllowFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err != nil {
		t.Fatal(err)
	}
	return script
}

// paste uploads script and runs /import over the API as admin; it
// returns the trap message, or "".
func paste(t *testing.T, r *rossim.Router, script string) string {
	t.Helper()
	if err := r.PutFile(scriptFile, []byte(script)); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", r.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(converge))
	c, err := routeros.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("admin", "admin-pw"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Run("/import", "=file-name="+scriptFile)
	var de *routeros.DeviceError
	if errors.As(err, &de) {
		return de.Sentence.Map["message"]
	} else if err != nil {
		t.Fatal(err)
	}
	return ""
}

// routerConfig prints what the script manages, without ids, run-time
// state and per-connection rows, for comparing two pastes.
func routerConfig(t *testing.T, r *rossim.Router) map[string][]rossim.Item {
	t.Helper()
	out := map[string][]rossim.Item{}
	for _, m := range []string{"/interface/veth", "/ip/address", "/ip/firewall/nat", "/interface/list/member",
		"/user/group", "/user", "/ip/service", "/container", "/container/envs", "/container/mounts", "/ip/firewall/filter"} {
		items, err := r.Exec(m + "/print")
		if err != nil {
			t.Fatalf("%s/print: %v", m, err)
		}
		for _, it := range items {
			if it["dynamic"] == "true" && m == "/ip/service" {
				continue
			}
			delete(it, ".id")
			delete(it, "actual-interface")
			out[m] = append(out[m], it)
		}
	}
	return out
}

// tagged returns the rows of menu whose comment is the script's tag.
func tagged(t *testing.T, r *rossim.Router, menu string) []rossim.Item {
	t.Helper()
	items, err := r.Exec(menu + "/print")
	if err != nil {
		t.Fatal(err)
	}
	var out []rossim.Item
	for _, it := range items {
		if it["comment"] == container.Tag || it["list"] == container.Tag || it["name"] == container.Tag {
			out = append(out, it)
		}
	}
	return out
}

func containerRunning(r *rossim.Router) string {
	items, err := r.Exec("/container/print")
	if err != nil {
		return err.Error()
	}
	if len(items) != 1 || items[0]["status"] != "running" {
		return fmt.Sprintf("containers %v", items)
	}
	return ""
}

func (l *loop) site(id string) (cp.Site, bool) {
	var sites []cp.Site
	if st := l.call("GET", "/vpc/sites", "", &sites); st != 200 {
		return cp.Site{}, false
	}
	for _, s := range sites {
		if s.ID == id {
			return s, true
		}
	}
	return cp.Site{}, false
}

// TestOnboardScript: paste -> container running -> agent connected ->
// site in_sync -> a group change reaches the router, on every supported
// version; pasting again gives the same state and the site comes back.
func TestOnboardScript(t *testing.T) {
	bothBrokers(t, func(t *testing.T, external bool) {
		l := newLoop(t, external, time.Minute)
		for _, v := range container.RouterOSVersions() {
			t.Run(v, func(t *testing.T) {
				t.Parallel()
				lt := *l
				lt.t = t
				testOnboard(t, &lt, v)
			})
		}
	})
}

func testOnboard(t *testing.T, l *loop, v string) {
	site := "site_onb" + strings.ReplaceAll(v, ".", "")
	r := onboardRouter(t, l, v)
	script := onboardScript(t, l, site, v)
	if msg := paste(t, r, script); msg != "" {
		t.Fatalf("import on %s: %s", v, msg)
	}
	// Exactly the documented objects.
	env, err := container.ForSite(l.m.Key, l.org, site, operatorBrokerURL).Env()
	if err != nil {
		t.Fatal(err)
	}
	for menu, n := range map[string]int{"/interface/veth": 1, "/ip/address": 1, "/ip/firewall/nat": 1,
		"/interface/list/member": 1, "/user/group": 1, "/user": 1, "/container/envs": len(env),
		"/container/mounts": 1, "/container": 1} {
		if got := tagged(t, r, menu); len(got) != n {
			t.Errorf("%s: %d rows of the script, want %d: %v", menu, len(got), n, got)
		}
	}
	svc, _ := r.Exec("/ip/service/print")
	key := "address"
	if v >= "7.24" {
		key = "available-from"
	}
	if i := slices.IndexFunc(svc, func(it rossim.Item) bool { return it["name"] == "api" && it["dynamic"] == "false" }); i < 0 ||
		svc[i][key] != "172.17.0.0/24,127.0.0.1/32" {
		t.Errorf("api service %s: %v", key, svc)
	}
	eventually(t, "container running", func() string { return containerRunning(r) })

	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "203.0.113.0/24", site), &g)
	gpath := "/vpc/security-groups/" + g.ID
	l.waitStatus(gpath, cp.StatusActive)
	if !hasRule(r, "443", "0.0.0.0/0") {
		fl, _ := managed(r)
		t.Fatalf("router after the group is active: %v", fl)
	}
	if s, _ := l.site(site); s.State != cp.SiteInSync || !s.Online || s.RouterOSVersion == "" {
		t.Errorf("site: %+v", s)
	}
	// The agent's API sessions come from the container's veth address,
	// the only one its user's address= allows.
	conns, _ := r.Exec("/ip/service/print", "?dynamic=true")
	if !slices.ContainsFunc(conns, func(it rossim.Item) bool { return it["remote"] == "172.17.0.2" }) {
		t.Errorf("no API session from the container: %v", conns)
	}
	l.must(200, "PUT", gpath, groupBody("8443", "203.0.113.0/24", site), nil)
	l.waitStatus(gpath, cp.StatusActive)
	if !hasRule(r, "8443", "0.0.0.0/0") || hasRule(r, "443", "0.0.0.0/0") {
		fl, _ := managed(r)
		t.Fatalf("router after the group change: %v", fl)
	}

	// Pasting again replaces what the first paste made: same state, and
	// the new container's agent brings the site back in sync.
	before := routerConfig(t, r)
	if msg := paste(t, r, script); msg != "" {
		t.Fatalf("second import on %s: %s", v, msg)
	}
	eventually(t, "container running after the second paste", func() string { return containerRunning(r) })
	if d := cmp.Diff(before, routerConfig(t, r)); d != "" {
		t.Errorf("state after the second paste (-first +second):\n%s", d)
	}
	l.must(200, "PUT", gpath, groupBody("9443", "203.0.113.0/24", site), nil)
	l.waitStatus(gpath, cp.StatusActive)
	if !hasRule(r, "9443", "0.0.0.0/0") {
		fl, _ := managed(r)
		t.Fatalf("router after the re-pasted agent's change: %v", fl)
	}
}

// positionOf is the "(line L column C)" of name (e.g. "available-from=")
// on the first line of script that holds command and name.
func positionOf(t *testing.T, script, command, name string) string {
	t.Helper()
	for i, line := range strings.Split(script, "\n") {
		if c := strings.Index(line, command); c >= 0 {
			if j := strings.Index(line[c:], name); j >= 0 {
				return fmt.Sprintf("(line %d column %d)", i+1, c+j+1)
			}
		}
	}
	t.Fatalf("no %q with %q in the script", command, name)
	return ""
}

// TestOnboardScriptWrongVersion: a script naming an argument the router's
// version lacks fails to import with RouterOS's message at that name, and
// changes nothing: available-from (7.24) on 7.23, and the mount list
// (7.21+) on 7.20.
func TestOnboardScriptWrongVersion(t *testing.T) {
	l := newLoop(t, false, time.Minute)
	for _, tc := range []struct{ scriptFor, router, command, name string }{
		{"7.24", "7.23", "/ip/service/set", "available-from="},
		{"7.21", "7.20", "/container/mounts/add", "list="},
		{"7.20", "7.21", "/container/mounts/add", "name="},
	} {
		t.Run(tc.scriptFor+" on "+tc.router, func(t *testing.T) {
			r := onboardRouter(t, l, tc.router)
			script := onboardScript(t, l, "site_wrong", tc.scriptFor)
			before := routerConfig(t, r)
			want := "expected end of command " + positionOf(t, script, tc.command, tc.name)
			if msg := paste(t, r, script); msg != want {
				t.Errorf("import: %q, want %q", msg, want)
			}
			if d := cmp.Diff(before, routerConfig(t, r)); d != "" {
				t.Errorf("a script that failed to load changed the router:\n%s", d)
			}
		})
	}
}

// TestOnboardWithoutWritePolicy: with the agent's group lacking the write
// policy, the agent logs in but cannot add a rule: RouterOS's "not enough
// permissions (9)" reaches the agent's log and the site's last error.
func TestOnboardWithoutWritePolicy(t *testing.T) {
	l := newLoop(t, false, time.Minute)
	const v, site = "7.21", "site_ro"
	r := onboardRouter(t, l, v)
	script := onboardScript(t, l, site, v)
	re := regexp.MustCompile(`policy=api,read,write`)
	if len(re.FindAllString(script, -1)) != 1 {
		t.Fatalf("the script no longer creates the group with policy=api,read,write:\n%s", script)
	}
	if msg := paste(t, r, re.ReplaceAllString(script, "policy=api,read")); msg != "" {
		t.Fatal(msg)
	}
	eventually(t, "container running", func() string { return containerRunning(r) })
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "203.0.113.0/24", site), &g)
	eventually(t, "site failed with the permission error", func() string {
		s, ok := l.site(site)
		if !ok || s.State != cp.SiteFailed || !strings.Contains(s.LastError, "not enough permissions (9)") {
			return fmt.Sprintf("site %+v", s)
		}
		return ""
	})
	if fl, _ := managed(r); len(fl) != 0 {
		t.Errorf("a user without write changed the firewall: %v", fl)
	}
	eventually(t, "the agent's log names the error", func() string {
		for _, line := range r.Log() {
			if strings.Contains(line, "not enough permissions (9)") {
				return ""
			}
		}
		return "no log line"
	})
}
