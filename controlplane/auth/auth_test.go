package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rampart-fw/rampart/controlplane/auth"
)

var (
	key   = bytes.Repeat([]byte("s"), 32)
	other = bytes.Repeat([]byte("o"), 32)
	now   = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
)

func hs256(t *testing.T, k []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"iss": auth.DefaultIssuer, "aud": auth.DefaultAudience, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "org_id": "org_a"}
	if mod != nil {
		mod(c)
	}
	return c
}

func noneToken(t *testing.T) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEmbeddedHS256(t *testing.T) {
	v, err := auth.New(context.Background(), auth.Options{HMACKey: key, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	minted, err := auth.Mint(auth.MintOptions{Key: key, Org: "org_minted", TTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		token   string
		wantOrg string // "" means rejected
	}{
		{"minted by token subcommand", minted, "org_minted"},
		{"valid", hs256(t, key, claims(nil)), "org_a"},
		{"alg none", noneToken(t), ""},
		{"wrong key", hs256(t, other, claims(nil)), ""},
		{"expired", hs256(t, key, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), ""},
		{"no exp", hs256(t, key, claims(func(c jwt.MapClaims) { delete(c, "exp") })), ""},
		{"wrong audience", hs256(t, key, claims(func(c jwt.MapClaims) { c["aud"] = "someone-else" })), ""},
		{"wrong issuer", hs256(t, key, claims(func(c jwt.MapClaims) { c["iss"] = "evil" })), ""},
		{"no org claim", hs256(t, key, claims(func(c jwt.MapClaims) { delete(c, "org_id") })), ""},
		{"org with topic wildcard", hs256(t, key, claims(func(c jwt.MapClaims) { c["org_id"] = "org/#" })), ""},
		{"org not a string", hs256(t, key, claims(func(c jwt.MapClaims) { c["org_id"] = 7 })), ""},
		{"garbage", "not.a.jwt", ""},
		{"empty", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			org, err := v.Verify(c.token)
			if c.wantOrg == "" {
				if err == nil || !errors.Is(err, auth.ErrUnauthenticated) {
					t.Errorf("Verify = %q, %v; want ErrUnauthenticated", org, err)
				}
				return
			}
			if err != nil || org != c.wantOrg {
				t.Errorf("Verify = %q, %v; want %q", org, err, c.wantOrg)
			}
		})
	}
}

func TestCustomOrgClaim(t *testing.T) {
	v, err := auth.New(context.Background(), auth.Options{HMACKey: key, OrgClaim: "https://example.com/org", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok := hs256(t, key, claims(func(c jwt.MapClaims) { delete(c, "org_id"); c["https://example.com/org"] = "org_x" }))
	if org, err := v.Verify(tok); err != nil || org != "org_x" {
		t.Errorf("Verify = %q, %v", org, err)
	}
	if _, err := v.Verify(hs256(t, key, claims(nil))); err == nil {
		t.Error("org_id accepted although the claim is configured otherwise")
	}
}

func TestMintRejectsBadOrg(t *testing.T) {
	if _, err := auth.Mint(auth.MintOptions{Key: key, Org: "a/b", TTL: time.Hour}); err == nil {
		t.Error("Mint accepted org a/b")
	}
}

// jwksServer serves the public half of k as a JWKS, as Auth0 does at
// /.well-known/jwks.json.
func jwksServer(t *testing.T, kid string, k *rsa.PublicKey) *httptest.Server {
	t.Helper()
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	body, _ := json.Marshal(map[string]any{"keys": []any{map[string]string{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes()),
	}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func rs256(t *testing.T, kid string, k *rsa.PrivateKey, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRS256FromJWKS(t *testing.T) {
	signer, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := jwksServer(t, "k1", &signer.PublicKey)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const iss, aud = "https://tenant.auth0.example/", "https://rampart.example/api"
	v, err := auth.New(ctx, auth.Options{JWKSURL: srv.URL, Issuer: iss, Audience: aud, HMACKey: key, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	good := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": iss, "aud": []string{aud, "https://tenant.auth0.example/userinfo"}, "exp": now.Add(time.Hour).Unix(), "org_id": "org_auth0"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	cases := []struct {
		name    string
		token   string
		wantOrg string
	}{
		{"valid", rs256(t, "k1", signer, good(nil)), "org_auth0"},
		{"signed by another key", rs256(t, "k1", stranger, good(nil)), ""},
		{"unknown kid", rs256(t, "k2", stranger, good(nil)), ""},
		{"wrong audience", rs256(t, "k1", signer, good(func(c jwt.MapClaims) { c["aud"] = "https://other.example" })), ""},
		{"wrong issuer", rs256(t, "k1", signer, good(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" })), ""},
		{"expired", rs256(t, "k1", signer, good(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), ""},
		// Embedded tokens are refused in production mode, even with the
		// right HMAC key.
		{"embedded HS256 token", hs256(t, key, claims(nil)), ""},
		{"alg none", noneToken(t), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			org, err := v.Verify(c.token)
			if c.wantOrg == "" {
				if !errors.Is(err, auth.ErrUnauthenticated) {
					t.Errorf("Verify = %q, %v; want ErrUnauthenticated", org, err)
				}
				return
			}
			if err != nil || org != c.wantOrg {
				t.Errorf("Verify = %q, %v; want %q", org, err, c.wantOrg)
			}
		})
	}
}

// TestCachedTokenExpires: a token verified once is served from the cache,
// but only while its own claims keep it valid: past exp (plus the 30 s
// leeway) it gets the same refusal as a token never seen, and before nbf
// (minus the leeway) too.
func TestCachedTokenExpires(t *testing.T) {
	clock := now
	v, err := auth.New(context.Background(), auth.Options{HMACKey: key, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	tok := hs256(t, key, claims(func(c jwt.MapClaims) {
		c["exp"] = now.Add(time.Minute).Unix()
		c["nbf"] = now.Add(-time.Minute).Unix()
	}))
	fresh := func() error { // the answer without the cache
		t.Helper()
		v2, err := auth.New(context.Background(), auth.Options{HMACKey: key, Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v2.Verify(tok)
		return err
	}
	steps := []struct {
		at     time.Duration // from now
		wantOK bool
	}{
		{0, true},
		{0, true}, // cached
		{time.Minute + 29*time.Second, true},
		{time.Minute + 30*time.Second, false}, // exp + leeway
		{time.Hour, false},
		{-time.Minute - 30*time.Second, true}, // nbf - leeway
		{-time.Minute - 31*time.Second, false},
		{0, true},
	}
	for _, s := range steps {
		clock = now.Add(s.at)
		org, err := v.Verify(tok)
		want := fresh()
		if s.wantOK != (want == nil) {
			t.Fatalf("at %v: the uncached verifier says %v, the test expects ok=%v", s.at, want, s.wantOK)
		}
		if s.wantOK {
			if err != nil || org != "org_a" {
				t.Errorf("at %v: Verify = %q, %v; want org_a", s.at, org, err)
			}
			continue
		}
		if err == nil || err.Error() != want.Error() {
			t.Errorf("at %v: Verify = %q, %v; want the uncached refusal %v", s.at, org, err, want)
		}
	}
	// The refusal's wording is the expired one.
	clock = now.Add(time.Hour)
	if _, err := v.Verify(tok); err == nil || !errors.Is(err, auth.ErrUnauthenticated) || !bytes.Contains([]byte(err.Error()), []byte("expired")) {
		t.Errorf("expired token: %v", err)
	}
}

// TestCacheIsBounded: many distinct tokens all verify, and a token that
// fell out of the bounded cache still verifies.
func TestCacheIsBounded(t *testing.T) {
	v, err := auth.New(context.Background(), auth.Options{HMACKey: key, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	first := hs256(t, key, claims(func(c jwt.MapClaims) { c["jti"] = "first" }))
	for i := range 5000 {
		tok := hs256(t, key, claims(func(c jwt.MapClaims) { c["jti"] = i }))
		if org, err := v.Verify(tok); err != nil || org != "org_a" {
			t.Fatalf("token %d: Verify = %q, %v", i, org, err)
		}
	}
	if org, err := v.Verify(first); err != nil || org != "org_a" {
		t.Errorf("Verify = %q, %v", org, err)
	}
	if _, err := v.Verify(hs256(t, other, claims(func(c jwt.MapClaims) { c["jti"] = "first" }))); err == nil {
		t.Error("a token signed with another key verified")
	}
}

// TestJWKSNeedsIssuerAndAudience: a JWKS URL alone would accept any token
// the identity provider signed for any of its APIs, so New refuses it (and
// the control plane does not start) unless both claims are pinned. The
// JWKS server counts fetches: the refusal comes before any network use.
func TestJWKSNeedsIssuerAndAudience(t *testing.T) {
	signer, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := jwksServer(t, "k1", &signer.PublicKey)
	for _, c := range []struct{ name, iss, aud string }{
		{"neither", "", ""},
		{"issuer only", "https://tenant.auth0.example/", ""},
		{"audience only", "", "https://rampart.example/api"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := auth.New(t.Context(), auth.Options{JWKSURL: srv.URL, Issuer: c.iss, Audience: c.aud})
			if !errors.Is(err, auth.ErrJWKSNeedsIssuerAudience) {
				t.Fatalf("New = %v, %v; want ErrJWKSNeedsIssuerAudience", v, err)
			}
		})
	}
	// A token for another API of the same tenant (same keys, other
	// audience) is what the check is for: with both pinned it is refused.
	const iss, aud = "https://tenant.auth0.example/", "https://rampart.example/api"
	v, err := auth.New(t.Context(), auth.Options{JWKSURL: srv.URL, Issuer: iss, Audience: aud, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	other := rs256(t, "k1", signer, jwt.MapClaims{"iss": iss, "aud": "https://billing.example/api", "exp": now.Add(time.Hour).Unix(), "org_id": "org_a"})
	if org, err := v.Verify(other); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Verify(token for another API) = %q, %v; want ErrUnauthenticated", org, err)
	}
	noAud := rs256(t, "k1", signer, jwt.MapClaims{"iss": iss, "exp": now.Add(time.Hour).Unix(), "org_id": "org_a"})
	if org, err := v.Verify(noAud); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Verify(token without aud) = %q, %v; want ErrUnauthenticated", org, err)
	}
}
