package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
)

// TestJWKSWithoutIssuerAudienceRefusesToStart: --jwks-url alone would let
// in any token the identity provider signed for any other API, so the
// control plane refuses to start and says which flags are missing, before
// it ever fetches the keys.
func TestJWKSWithoutIssuerAudienceRefusesToStart(t *testing.T) {
	fetched := make(chan struct{}, 10)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched <- struct{}{}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"keys":[]}`)
	}))
	defer jwks.Close()
	for _, extra := range [][]string{nil, {"--jwt-issuer", "https://tenant.example/"}, {"--jwt-audience", "https://rampart.example/api"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		args := append([]string{"--jwks-url", jwks.URL, "--http-addr", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, extra...)
		var stderr strings.Builder
		err := runServe(ctx, args, io.Discard, &stderr)
		cancel()
		if !errors.Is(err, auth.ErrJWKSNeedsIssuerAudience) {
			t.Errorf("runServe(%q) = %v; want ErrJWKSNeedsIssuerAudience", extra, err)
			continue
		}
		if !strings.Contains(err.Error(), "--jwt-issuer") || !strings.Contains(err.Error(), "--jwt-audience") {
			t.Errorf("error %q does not name the flags to set", err)
		}
	}
	if n := len(fetched); n != 0 {
		t.Errorf("the JWKS was fetched %d times before refusing", n)
	}
}

// TestQuotaFlags: --quota-sites reaches the store; a write over it is a
// 422 naming the quota and the flag.
func TestQuotaFlags(t *testing.T) {
	fs := newFlagSet()
	var c Config
	bindConfig(fs, &c)
	dir := t.TempDir()
	if err := parseFlags(fs, []string{"--quota-sites", "2", "--http-addr", "127.0.0.1:0", "--data-dir", dir}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if c.Quotas.SecurityGroups != 1000 || c.Quotas.PrefixLists != 1000 {
		t.Errorf("default quotas %+v", c.Quotas)
	}
	c.MQTTListen = "127.0.0.1:0"
	m := &Main{Config: c, Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := auth.Mint(auth.MintOptions{Key: m.Key.JWTSigningKey(), Org: "org_q", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	post := func(sites string) (int, api.ErrorResponse) {
		t.Helper()
		st, _, b := apiRequest(t, http.DefaultClient, "http://"+m.Addr.String()+"/vpc/security-groups", tok,
			"POST", `{"name":"quota","rules":[],"sites":[`+sites+`]}`)
		var er api.ErrorResponse
		json.Unmarshal(b, &er)
		return st, er
	}
	if st, er := post(`"site_a","site_b"`); st != http.StatusCreated {
		t.Fatalf("two sites: %d %+v", st, er)
	}
	if st, er := post(`"site_c"`); st != 422 || er.Code != "quota_exceeded" || !strings.Contains(er.Message, "quota is 2 sites") || !strings.Contains(er.Message, "--quota-sites") {
		t.Errorf("third site: %d %+v; want 422 quota_exceeded naming 2 and --quota-sites", st, er)
	}
}
