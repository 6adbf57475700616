package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-fw/rampart/internal/wait"
)

// TestDemo is the README's --demo 3: start the control plane with three
// simulated routers, run the commands it prints (the curl lines, over
// HTTP), and see the group go from syncing to active, the sites in sync,
// and the rules on a simulated router.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	demoStdout = &out
	defer func() { demoStdout = os.Stdout }()
	m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), MQTTListen: "127.0.0.1:0", JWTOrgClaim: "org_id",
		SyncTimeout: time.Minute, Demo: 3, LogLevel: "info"},
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), SweepInterval: 100 * time.Millisecond}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	printed := out.String()
	t.Log(printed)

	// The console's one-time link comes first, and it logs in.
	first := regexp.MustCompile(`https?://\S+`).FindString(printed)
	if !strings.Contains(first, "/#login=") {
		t.Errorf("the first link printed is %q; want the console's login link", first)
	} else if code, body := postJSON(t, first[:strings.Index(first, "/#")]+"/console/login", `{"link": "`+first+`"}`); code != http.StatusOK {
		t.Errorf("console login with the demo's link: %d %s", code, body)
	}
	tok := regexp.MustCompile(`export TOKEN=(\S+)`).FindStringSubmatch(printed)
	if tok == nil {
		t.Fatalf("no token in:\n%s", printed)
	}
	curls := regexp.MustCompile(`(?m)^    curl -s (\S+)([^'\n]*(?:'[^']*'[^\n]*)?)$`).FindAllStringSubmatch(printed, -1)
	if len(curls) != 4 {
		t.Fatalf("want 4 curl commands (create, watch, sites, router), got %d in:\n%s", len(curls), printed)
	}
	// Run a printed curl line as curl would: its URL, its --data, the
	// token from $TOKEN.
	do := func(c []string) (int, []byte) {
		method, body := "GET", ""
		if d := regexp.MustCompile(`--data '([^']*)'`).FindStringSubmatch(c[2]); d != nil {
			method, body = "POST", d[1]
		}
		req, err := http.NewRequest(method, c[1], strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(c[2], "Bearer $TOKEN") {
			req.Header.Set("Authorization", "Bearer "+tok[1])
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := do(curls[0])
	var g struct {
		ID, Status string
		Sites      []string
	}
	if err := json.Unmarshal(body, &g); err != nil || code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	if g.Status != "syncing" || len(g.Sites) != 3 {
		t.Errorf("created group: status %q, sites %v; want syncing on 3 sites", g.Status, g.Sites)
	}
	var groups []struct{ ID, Status string }
	waitFor(t, 30*time.Second, "the group to turn active", func() bool {
		code, body := do(curls[1])
		groups = nil
		json.Unmarshal(body, &groups)
		return code == http.StatusOK && len(groups) == 1 && groups[0].Status == "active"
	})
	var sites []struct {
		ID, State string
		Online    bool
	}
	waitFor(t, 30*time.Second, "every site in sync", func() bool {
		code, body := do(curls[2])
		sites = nil
		json.Unmarshal(body, &sites)
		ok := code == http.StatusOK && len(sites) == 3
		for _, s := range sites {
			ok = ok && s.State == "in_sync" && s.Online
		}
		return ok
	})
	code, body = do(curls[3])
	fw := string(body)
	t.Log(fw)
	if code != http.StatusOK {
		t.Fatalf("router page: %d %s", code, fw)
	}
	for _, want := range []string{"dst-port=443", "dst-port=80", "dst-port=22", "203.0.113.0/24", `agent status "applied"`,
		// Both families' tables, the IPv6 one as defconf left it.
		"/ipv6 firewall filter", `comment="defconf: accept ICMPv6"`} {
		if !strings.Contains(fw, want) {
			t.Errorf("router page lacks %q:\n%s", want, fw)
		}
	}
	if _, err := exec.LookPath("curl"); err == nil {
		// The printed create line is valid shell: run the watch line with
		// the real curl too.
		cmd := exec.Command("sh", "-c", "TOKEN="+tok[1]+"; curl -s "+curls[1][1]+curls[1][2])
		b, err := cmd.Output()
		if err != nil || !strings.Contains(string(b), `"status":"active"`) {
			t.Errorf("curl: %v %s", err, b)
		}
	}
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	wait.For(t, within, what, ok)
}
