package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/keys"
)

func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"RAMPART_HTTP_ADDR": "127.0.0.1:9", "RAMPART_SYNC_TIMEOUT": "45s", "RAMPART_DEMO": "3", "RAMPART_MQTT_URL": "tcp://broker:1883", "RAMPART_DATA_DIR": "/from/env",
		"RAMPART_TLS_CERT": "/etc/rampart/cert.pem", "RAMPART_TLS_KEY": "/etc/rampart/key.pem"}
	parse := func(args ...string) (Config, error) {
		fs := newFlagSet()
		var c Config
		bindConfig(fs, &c)
		err := parseFlags(fs, args, func(k string) string { return env[k] })
		return c, err
	}
	c, err := parse("--data-dir", "/from/flag")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{HTTPAddr: "127.0.0.1:9", DataDir: "/from/flag", MQTTURL: "tcp://broker:1883", MQTTSListen: ":8883", JWTOrgClaim: "org_id",
		TLSCert: "/etc/rampart/cert.pem", TLSKey: "/etc/rampart/key.pem",
		SyncTimeout: 45 * time.Second, Demo: 3, LogLevel: "info", Quotas: cp.DefaultQuotas, AuditRetention: cp.DefaultAuditRetention}
	if c != want {
		t.Errorf("config = %+v\nwant     %+v", c, want)
	}
	env["RAMPART_SYNC_TIMEOUT"] = "soon"
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "RAMPART_SYNC_TIMEOUT") {
		t.Errorf("bad environment value: %v", err)
	}
	if _, err := parse("extra"); err == nil {
		t.Error("stray argument accepted")
	}
}

func TestUnknownSubcommand(t *testing.T) {
	err := run(context.Background(), []string{"tokn"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("err = %v, want one listing the known subcommands", err)
	}
}

// TestServeTokenCreateUpdate is the README's walk-through: start the
// control plane, mint a token while it runs, create a prefix list and the
// seed's group, see the update refused while syncing and accepted once the
// sync deadline has passed, restart, and find everything again.
func TestServeTokenCreateUpdate(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	start := func() *Main {
		m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, SyncTimeout: 3 * time.Second, JWTOrgClaim: "org_id", MQTTListen: "127.0.0.1:0"},
			Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), SweepInterval: 50 * time.Millisecond}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// The sync deadline is long enough for the PUT right after the create
	// to meet a syncing group even on a loaded machine, short enough to wait.
	m := start()
	defer func() { m.Close() }()

	var out bytes.Buffer
	if err := run(ctx, []string{"token", "--data-dir", dir, "--org", "org_demo"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	k, err := keys.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(ctx, auth.Options{HMACKey: k.JWTSigningKey()})
	if err != nil {
		t.Fatal(err)
	}
	if org, err := v.Verify(tok); err != nil || org != "org_demo" {
		t.Fatalf("token verifies as %q, %v", org, err)
	}

	base := "http://" + m.Addr.String()
	call := func(method, path, body string) (int, http.Header, []byte) {
		t.Helper()
		return apiRequest(t, http.DefaultClient, base+path, tok, method, body)
	}
	st, _, b := call("POST", "/vpc/prefix-lists", `{"name":"Office","prefixes":[{"cidr":"203.0.113.0/24","description":"HQ"}]}`)
	var list cp.PrefixList
	json.Unmarshal(b, &list)
	if st != 201 {
		t.Fatalf("create prefix list: %d %s", st, b)
	}
	body := `{"name":"Web Application Servers","description":"Allows HTTP/S from the world and SSH from the office.",
	  "rules":[{"direction":"inbound","order":10,"protocol":6,"port":"443","address":"0.0.0.0/0","description":"Allow HTTPS"},
	           {"direction":"inbound","order":20,"protocol":6,"port":"80","address":"0.0.0.0/0","description":"Allow HTTP"},
	           {"direction":"inbound","order":30,"protocol":6,"port":"22","address":"` + list.ID + `","description":"Allow SSH from Office"}],
	  "sites":["site_0ujsswThIGTUYm2K8FjOOfxcYpw","site_0ujsswThIGTUYm2K8FjOOfxcYpz"]}`
	st, h, b := call("POST", "/security-groups", body)
	var g cp.SecurityGroup
	json.Unmarshal(b, &g)
	if st != 201 || g.Status != cp.StatusSyncing || h.Get("Location") != "/security-groups/"+g.ID {
		t.Fatalf("create group: %d %s (Location %q)", st, b, h.Get("Location"))
	}
	update := strings.Replace(body, `"port":"80"`, `"port":"8080"`, 1)
	if st, h, b = call("PUT", "/vpc/security-groups/"+g.ID, update); st != 409 || h.Get("Retry-After") == "" {
		t.Fatalf("PUT while syncing: %d %s", st, b)
	}
	// No agent confirms (the MQTT side is not in this test): the sweeper
	// fails the group at its deadline, and it is writable again.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, _, b = call("GET", "/vpc/security-groups/"+g.ID, "")
		var cur cp.SecurityGroup
		json.Unmarshal(b, &cur)
		if cur.Status == cp.StatusFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %q after 20 s", cur.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, _, b = call("PUT", "/vpc/security-groups/"+g.ID, update)
	var upd cp.SecurityGroup
	json.Unmarshal(b, &upd)
	if st != 200 || upd.Rules[1].Port != "8080" || upd.Rules[0].ID != g.Rules[0].ID || upd.Status != cp.StatusSyncing {
		t.Fatalf("PUT after the deadline: %d %s", st, b)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = start()
	base = "http://" + m.Addr.String()
	_, _, b = call("GET", "/vpc/security-groups/"+g.ID, "")
	var again cp.SecurityGroup
	json.Unmarshal(b, &again)
	if again.Name != upd.Name || len(again.Rules) != 3 || again.Rules[1].ID != upd.Rules[1].ID {
		t.Errorf("after restart: %s", b)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		if st, _, _ := call("GET", p, ""); st != 200 {
			t.Errorf("GET %s: %d", p, st)
		}
	}
}
