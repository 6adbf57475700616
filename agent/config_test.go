package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/protocol"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func validEnv() map[string]string {
	return map[string]string{
		protocol.EnvMQTTURL: "tcp://127.0.0.1:1883", protocol.EnvOrgID: "org_demo", protocol.EnvSiteID: "site_hq",
		protocol.EnvSiteSecret: "s3cret", protocol.EnvRouterOSUser: "rampart",
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(env(validEnv()))
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.MQTTURLs[0].String(), c.MQTTUser(), c.RouterOSAddr, c.RouterOSTLS, c.StateDir, c.MetricsAddr, c.ResyncInterval, c.WANList, c.TopicRoot}
	want := []any{"tcp://127.0.0.1:1883", "org_demo/site_hq", "172.17.0.1:8728", false, DefaultStateDir, DefaultMetricsAddr, 60 * time.Second, "WAN", "rampart/v1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestLoadConfigTLSDefaultPort(t *testing.T) {
	e := validEnv()
	e[protocol.EnvRouterOSTLS] = "true"
	c, err := LoadConfig(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.RouterOSAddr != "172.17.0.1:8729" || !c.RouterOSTLS {
		t.Errorf("TLS: addr %q tls %v", c.RouterOSAddr, c.RouterOSTLS)
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{"empty", map[string]string{}, []string{protocol.EnvMQTTURL + ": is not set", protocol.EnvOrgID + ": is not set", protocol.EnvSiteID + ": is not set", protocol.EnvSiteSecret + ": is not set", protocol.EnvRouterOSUser + ": is not set"}},
		{"malformed", map[string]string{
			protocol.EnvMQTTURL: "http://x", protocol.EnvOrgID: "org/x", protocol.EnvSiteID: "hq", protocol.EnvSiteSecret: "s", protocol.EnvRouterOSUser: "u",
			protocol.EnvRouterOSAddr: "nohost", protocol.EnvRouterOSTLS: "maybe", protocol.EnvResyncInterval: "soon", protocol.EnvWANList: "a,b", protocol.EnvMetricsAddr: "x",
		}, []string{
			protocol.EnvMQTTURL + `: scheme "http"`, protocol.EnvOrgID + `: "org/x"`, protocol.EnvSiteID + `: "hq"`, protocol.EnvRouterOSAddr + `: "nohost"`,
			protocol.EnvRouterOSTLS + `: "maybe"`, protocol.EnvResyncInterval + `: "soon"`, protocol.EnvWANList + `: "a,b"`, protocol.EnvMetricsAddr + `: "x"`,
		}},
		{"short resync", func() map[string]string { e := validEnv(); e[protocol.EnvResyncInterval] = "10ms"; return e }(), []string{protocol.EnvResyncInterval + ": 10ms is too short"}},
		{"bad URL among several", func() map[string]string {
			e := validEnv()
			e[protocol.EnvMQTTURL] = "ssl://a:8883,,ws://b"
			return e
		}(), []string{protocol.EnvMQTTURL + `: "ssl://a:8883,,ws://b" has an empty entry`, protocol.EnvMQTTURL + `: scheme "ws"`}},
		{"CA file missing", func() map[string]string { e := validEnv(); e[protocol.EnvMQTTCA] = "/nonexistent/ca.pem"; return e }(), []string{protocol.EnvMQTTCA + ": read CA file"}},
		{"CA file without a certificate", func() map[string]string { e := validEnv(); e[protocol.EnvMQTTCA] = "config_test.go"; return e }(), []string{protocol.EnvMQTTCA + ": config_test.go holds no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(env(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if ce, ok := err.(*ConfigError); !ok || len(ce.Problems) != len(tt.want) {
				t.Errorf("want %d problems, got %v", len(tt.want), err)
			}
		})
	}
}

func TestLoadConfigSeveralBrokersAndACA(t *testing.T) {
	caPEM, _ := tlsPair(t, "test")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e := validEnv()
	e[protocol.EnvMQTTURL] = " ssl://a.example.net:8883, tls://b.example.net ,tcp://c:1883"
	e[protocol.EnvMQTTCA] = ca
	c, err := LoadConfig(env(e))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range c.MQTTURLs {
		got = append(got, u.String())
	}
	if diff := cmp.Diff([]string{"ssl://a.example.net:8883", "tls://b.example.net", "tcp://c:1883"}, got); diff != "" {
		t.Errorf("URLs (-want +got):\n%s", diff)
	}
	cfg, err := c.MQTTTLSConfig()
	if err != nil || cfg.RootCAs == nil {
		t.Fatalf("TLS config: %v", err)
	}
}

func TestMainWithoutConfigurationExits2NamingVariables(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), nil, env(nil), &out, &errb)
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, v := range []string{protocol.EnvMQTTURL, protocol.EnvOrgID, protocol.EnvSiteID, protocol.EnvSiteSecret, protocol.EnvRouterOSUser} {
		if !strings.Contains(errb.String(), v+": is not set") {
			t.Errorf("stderr does not name %s:\n%s", v, errb.String())
		}
	}
}

func TestMainRejectsArguments(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"--help"}, env(validEnv()), &out, &errb); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "takes no arguments") {
		t.Errorf("stderr: %s", errb.String())
	}
}
