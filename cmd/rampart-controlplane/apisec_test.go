package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
