package console_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/console"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
)

var jwtKey = []byte("0123456789abcdef0123456789abcdef-console-test")

// clock is a settable clock shared by the verifier and the console.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	t       *testing.T
	clock   *clock
	console *console.Console
	srv     *httptest.Server
	reg     *prometheus.Registry
}

// newEnv serves the console in front of the real API on a real bbolt
// store, over real HTTP (TLS when tls is set).
func newEnv(t *testing.T, tls bool, mod func(*console.Options)) *env {
	t.Helper()
	clk := &clock{now: time.Now().Truncate(time.Second)}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "rampart.db"), bolt.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v, err := auth.New(context.Background(), auth.Options{HMACKey: jwtKey, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Options{Store: st, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	opts := console.Options{API: a, Verifier: v, LinkKey: jwtKey, Now: clk.Now, Registry: prometheus.NewRegistry(),
		MintToken: func(org string, ttl time.Duration) (string, error) {
			return auth.Mint(auth.MintOptions{Key: jwtKey, Org: org, TTL: ttl, Now: clk.Now()})
		}}
	if mod != nil {
		mod(&opts)
	}
	c, err := console.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clock: clk, console: c, reg: opts.Registry.(*prometheus.Registry)}
	if tls {
		e.srv = httptest.NewTLSServer(c)
	} else {
		e.srv = httptest.NewServer(c)
	}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) token(org string) string {
	tok, err := auth.Mint(auth.MintOptions{Key: jwtKey, Org: org, TTL: time.Hour, Now: e.clock.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) link(org string, ttl time.Duration) string {
	l, err := console.LoginURL(console.LinkOptions{JWTKey: jwtKey, Org: org, BaseURL: e.srv.URL, TTL: ttl, Now: e.clock.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

type answer struct {
	status int
	code   string // ErrorResponse code
	body   string
	resp   *http.Response
}

// do sends a request; hdr holds headers as "Name: value" pairs.
func (e *env) do(method, path, body string, cookie *http.Cookie, hdr ...string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var er struct{ Code string }
	json.Unmarshal(b, &er)
	return answer{status: resp.StatusCode, code: er.Code, body: string(b), resp: resp}
}

type info struct {
	Org       string `json:"org"`
	CSRFToken string `json:"csrf_token"`
}

// login logs in with a JSON body and returns the cookie and session.
func (e *env) login(body string) (*http.Cookie, info) {
	e.t.Helper()
	a := e.do("POST", "/console/login", body, nil)
	if a.status != http.StatusOK {
		e.t.Fatalf("login: %d %s", a.status, a.body)
	}
	var in info
	json.Unmarshal([]byte(a.body), &in)
	for _, c := range a.resp.Cookies() {
		if c.Name == console.CookieName {
			return c, in
		}
	}
	e.t.Fatalf("login set no %s cookie", console.CookieName)
	return nil, in
}

const listBody = `{"name": "Office", "prefixes": [{"cidr": "203.0.113.0/24", "description": "HQ"}]}`

func TestTokenLoginCookieAndCSRF(t *testing.T) {
	e := newEnv(t, false, nil)
	ck, s := e.login(`{"token": "` + e.token("org_a") + `"}`)
	if s.Org != "org_a" || s.CSRFToken == "" {
		t.Fatalf("session %+v", s)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure {
		t.Errorf("cookie %+v; want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", ck)
	}
	origin := "Origin: " + e.srv.URL
	for _, c := range []struct {
		name       string
		method     string
		cookie     *http.Cookie
		hdr        []string
		wantStatus int
		wantCode   string
	}{
		{"read with the cookie", "GET", ck, nil, 200, ""},
		{"write without the CSRF token", "POST", ck, []string{origin}, 403, "csrf_failed"},
		{"write with another CSRF token", "POST", ck, []string{origin, "X-CSRF-Token: " + strings.Repeat("A", 43)}, 403, "csrf_failed"},
		{"write from another site's page", "POST", ck, []string{"Origin: https://evil.example", "X-CSRF-Token: " + s.CSRFToken}, 403, "csrf_failed"},
		{"write with the CSRF token", "POST", ck, []string{origin, "X-CSRF-Token: " + s.CSRFToken}, 201, ""},
		{"write by a script with a bearer token", "POST", nil, []string{"Authorization: Bearer " + e.token("org_a")}, 201, ""},
		{"an unknown cookie", "GET", &http.Cookie{Name: console.CookieName, Value: "forged"}, nil, 401, "session_expired"},
		{"a bearer token beside a stale cookie", "POST", &http.Cookie{Name: console.CookieName, Value: "forged"},
			[]string{"Authorization: Bearer " + e.token("org_a")}, 201, ""},
		{"no credential at all", "GET", nil, nil, 401, "unauthenticated"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := ""
			if c.method == "POST" {
				body = listBody
			}
			a := e.do(c.method, "/vpc/prefix-lists", body, c.cookie, c.hdr...)
			if a.status != c.wantStatus || a.code != c.wantCode {
				t.Errorf("%d %q; want %d %q (%s)", a.status, a.code, c.wantStatus, c.wantCode, a.body)
			}
		})
	}
	// Refused writes wrote nothing: three lists, from the three accepted.
	var lists []struct{ Name string }
	json.Unmarshal([]byte(e.do("GET", "/vpc/prefix-lists", "", ck).body), &lists)
	if len(lists) != 3 {
		t.Errorf("%d lists stored; want 3", len(lists))
	}
	// The session is the organisation's, and only its.
	e.do("POST", "/vpc/prefix-lists", listBody, nil, "Authorization: Bearer "+e.token("org_b"))
	json.Unmarshal([]byte(e.do("GET", "/vpc/prefix-lists", "", ck).body), &lists)
	if len(lists) != 3 {
		t.Errorf("the session sees %d lists; want its organisation's 3", len(lists))
	}
}

func TestLoginRefusals(t *testing.T) {
	e := newEnv(t, false, nil)
	other, _ := auth.Mint(auth.MintOptions{Key: []byte("another key, 32 bytes or more long"), Org: "org_a", TTL: time.Hour})
	for _, c := range []struct {
		name, body string
		hdr        []string
		wantStatus int
		wantCode   string
	}{
		{"a token signed with another key", `{"token": "` + other + `"}`, nil, 401, "unauthenticated"},
		{"not a token", `{"token": "hello"}`, nil, 401, "unauthenticated"},
		{"both token and link", `{"token": "a", "link": "b"}`, nil, 400, "invalid_login"},
		{"neither", `{}`, nil, 400, "invalid_login"},
		{"an unknown field", `{"token": "a", "password": "b"}`, nil, 400, "invalid_login"},
		{"a form, not JSON", `token=a`, []string{"Content-Type: application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"from another site's page", `{"token": "` + e.token("org_a") + `"}`, []string{"Origin: https://evil.example"}, 403, "csrf_failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := e.do("POST", "/console/login", c.body, nil, c.hdr...)
			if a.status != c.wantStatus || a.code != c.wantCode {
				t.Errorf("%d %q; want %d %q (%s)", a.status, a.code, c.wantStatus, c.wantCode, a.body)
			}
			if len(a.resp.Cookies()) != 0 {
				t.Errorf("a refused login set cookies %v", a.resp.Cookies())
			}
		})
	}
	if n := e.console.Sessions(); n != 0 {
		t.Errorf("%d sessions after refused logins", n)
	}
}

func TestLoginLinkLogsInOnce(t *testing.T) {
	e := newEnv(t, false, nil)
	link := e.link("org_a", 0)
	if !strings.HasPrefix(link, e.srv.URL+"/#login=") {
		t.Fatalf("link %q: want the token in the fragment, which browsers never send", link)
	}
	tok := strings.TrimPrefix(link, e.srv.URL+"/#login=")
	ck, s := e.login(`{"link": "` + tok + `"}`)
	if s.Org != "org_a" {
		t.Errorf("org %q", s.Org)
	}
	if a := e.do("GET", "/vpc/sites", "", ck); a.status != 200 {
		t.Errorf("API with the link's session: %d %s", a.status, a.body)
	}
	// The whole link works as well as its token, but only once.
	if a := e.do("POST", "/console/login", `{"link": "`+link+`"}`, nil); a.status != 401 || !strings.Contains(a.body, "already used") {
		t.Errorf("replayed link: %d %s", a.status, a.body)
	}
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP rampart_console_logins_total Console logins by method (token, link) and result (ok, refused).
# TYPE rampart_console_logins_total counter
rampart_console_logins_total{method="link",result="ok"} 1
rampart_console_logins_total{method="link",result="refused"} 1
rampart_console_logins_total{method="token",result="ok"} 0
rampart_console_logins_total{method="token",result="refused"} 0
# HELP rampart_console_sessions Console sessions held in memory (live, or expired and not yet swept).
# TYPE rampart_console_sessions gauge
rampart_console_sessions 1
`)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(e.reg); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}
	// A link is not a bearer token.
	if a := e.do("GET", "/vpc/sites", "", nil, "Authorization: Bearer "+tok); a.status != 401 {
		t.Errorf("the link's token as a bearer token: %d %s", a.status, a.body)
	}
}

func TestLoginLinkRefusals(t *testing.T) {
	e := newEnv(t, false, nil)
	tokenOf := func(l string) string { return l[strings.Index(l, "#login=")+len("#login="):] }
	old, err := console.LoginURL(console.LinkOptions{JWTKey: jwtKey, Org: "org_a", BaseURL: e.srv.URL, Now: e.clock.Now().Add(-2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	expiring := e.link("org_a", time.Minute)
	otherKey, _ := console.LoginURL(console.LinkOptions{JWTKey: []byte("another key, 32 bytes or more long"), Org: "org_a", BaseURL: e.srv.URL})
	e.clock.Advance(2 * time.Minute)
	for _, c := range []struct{ name, token, want string }{
		{"made before the control plane started", tokenOf(old), "before the control plane last started"},
		{"expired", tokenOf(expiring), "expired"},
		{"signed with another key", tokenOf(otherKey), "not a login link of this control plane"},
		{"an API token", e.token("org_a"), "not a login link of this control plane"},
		{"cut short", tokenOf(e.link("org_a", 0))[:40], "not a login link of this control plane"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := e.do("POST", "/console/login", `{"link": "`+c.token+`"}`, nil)
			if a.status != 401 || a.code != "login_link_refused" || !strings.Contains(a.body, c.want) {
				t.Errorf("%d %s; want 401 login_link_refused saying %q", a.status, a.body, c.want)
			}
		})
	}
	for _, ttl := range []time.Duration{-time.Second, console.MaxLinkTTL + time.Second} {
		if _, err := console.LoginURL(console.LinkOptions{JWTKey: jwtKey, Org: "org_a", BaseURL: e.srv.URL, TTL: ttl}); err == nil {
			t.Errorf("LoginURL took lifetime %s", ttl)
		}
	}
	for _, base := range []string{"", "localhost:8080", "ftp://x"} {
		if _, err := console.LoginURL(console.LinkOptions{JWTKey: jwtKey, Org: "org_a", BaseURL: base}); err == nil {
			t.Errorf("LoginURL took base URL %q", base)
		}
	}
}

func TestLoginLinksOffWithoutKey(t *testing.T) {
	e := newEnv(t, false, func(o *console.Options) { o.LinkKey, o.MintToken = nil, nil })
	tok := strings.TrimPrefix(e.link("org_a", 0), e.srv.URL+"/#login=")
	if a := e.do("POST", "/console/login", `{"link": "`+tok+`"}`, nil); a.status != 401 || a.code != "login_link_disabled" {
		t.Errorf("%d %s; want 401 login_link_disabled", a.status, a.body)
	}
}

func TestLogoutEndsTheSessionOnTheServer(t *testing.T) {
	e := newEnv(t, false, nil)
	ck, s := e.login(`{"token": "` + e.token("org_a") + `"}`)
	if a := e.do("POST", "/console/logout", "", ck); a.status != 403 || e.console.Sessions() != 1 {
		t.Errorf("logout without the CSRF token: %d, %d sessions; want 403 and the session kept", a.status, e.console.Sessions())
	}
	a := e.do("POST", "/console/logout", "", ck, "X-CSRF-Token: "+s.CSRFToken)
	if a.status != 204 {
		t.Fatalf("logout: %d %s", a.status, a.body)
	}
	cleared := false
	for _, c := range a.resp.Cookies() {
		cleared = cleared || (c.Name == console.CookieName && c.MaxAge < 0)
	}
	if !cleared || e.console.Sessions() != 0 {
		t.Errorf("after logout: cookie cleared %v, %d sessions", cleared, e.console.Sessions())
	}
	// A copy of the cookie is worthless now.
	if a := e.do("GET", "/vpc/sites", "", ck); a.status != 401 || a.code != "session_expired" {
		t.Errorf("old cookie: %d %s", a.status, a.body)
	}
	if a := e.do("GET", "/console/session", "", ck); a.status != 401 {
		t.Errorf("old cookie's session: %d %s", a.status, a.body)
	}
}

func TestSessionLifetime(t *testing.T) {
	e := newEnv(t, false, func(o *console.Options) { o.IdleTimeout, o.SessionTTL = 10*time.Minute, 30*time.Minute })
	ck, _ := e.login(`{"token": "` + e.token("org_a") + `"}`)
	for i := 0; i < 2; i++ { // used every 9 minutes: alive
		e.clock.Advance(9 * time.Minute)
		if a := e.do("GET", "/vpc/sites", "", ck); a.status != 200 {
			t.Fatalf("after %d min: %d %s", 9*(i+1), a.status, a.body)
		}
	}
	e.clock.Advance(9 * time.Minute) // 27 minutes
	if a := e.do("GET", "/console/session", "", ck); a.status != 200 {
		t.Fatalf("after 27 min: %d", a.status)
	}
	e.clock.Advance(4 * time.Minute) // 31 minutes: past the lifetime
	if a := e.do("GET", "/vpc/sites", "", ck); a.status != 401 || a.code != "session_expired" {
		t.Errorf("past the session's lifetime: %d %s", a.status, a.body)
	}
	ck, _ = e.login(`{"token": "` + e.token("org_a") + `"}`)
	e.clock.Advance(11 * time.Minute)
	if a := e.do("GET", "/vpc/sites", "", ck); a.status != 401 || a.code != "session_expired" {
		t.Errorf("idle 11 min: %d %s", a.status, a.body)
	}
	// A session ends with the token it was opened with.
	short, _ := auth.Mint(auth.MintOptions{Key: jwtKey, Org: "org_a", TTL: 5 * time.Minute, Now: e.clock.Now()})
	ck, _ = e.login(`{"token": "` + short + `"}`)
	e.clock.Advance(6 * time.Minute)
	if a := e.do("GET", "/vpc/sites", "", ck); a.status != 401 {
		t.Errorf("past the token's exp: %d %s", a.status, a.body)
	}
}

func TestCookieIsSecureUnderTLS(t *testing.T) {
	e := newEnv(t, true, nil)
	ck, _ := e.login(`{"token": "` + e.token("org_a") + `"}`)
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie over TLS %+v; want Secure, HttpOnly, SameSite=Strict", ck)
	}
}

// TestPageIsSelfContained: the page and everything it loads come from
// this server, and the policy header forbids anything else.
func TestPageIsSelfContained(t *testing.T) {
	e := newEnv(t, false, nil)
	a := e.do("GET", "/", "", nil)
	if a.status != 200 || !strings.HasPrefix(a.resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", a.status, a.resp.Header.Get("Content-Type"))
	}
	csp := a.resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(a.body, -1)
	var got []string
	for _, r := range refs {
		if strings.HasPrefix(r[1], "data:") {
			continue // inline, no request
		}
		got = append(got, r[1])
		if b := e.do("GET", r[1], "", nil); b.status != 200 {
			t.Errorf("GET %s: %d", r[1], b.status)
		}
	}
	if diff := cmp.Diff([]string{"/console/assets/app.css", "/console/assets/app.js"}, got); diff != "" {
		t.Errorf("the page loads (-want +got):\n%s", diff)
	}
	foreign := regexp.MustCompile(`(?i)(?:src|href)\s*=\s*["']?(?:https?:)?//|@import|\bfrom\s+['"](?:https?:)?//|url\(\s*['"]?(?:https?:)?//`)
	fs.WalkDir(console.Assets(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(console.Assets(), p)
		if m := foreign.Find(b); m != nil {
			t.Errorf("%s refers to another host: %q", p, m)
		}
		return nil
	})
	for path, want := range map[string]string{"/console/assets/app.js": "text/javascript", "/console/assets/api.js": "text/javascript", "/console/assets/app.css": "text/css"} {
		if ct := e.do("GET", path, "", nil).resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, want) {
			t.Errorf("%s: Content-Type %q; want %s", path, ct, want)
		}
	}
	if a := e.do("GET", "/console/assets/nope.js", "", nil); a.status != 404 {
		t.Errorf("missing asset: %d", a.status)
	}
}

// TestSessionTableIsBounded: past MaxSessions the session used least
// recently goes.
func TestSessionTableIsBounded(t *testing.T) {
	e := newEnv(t, false, func(o *console.Options) { o.MaxSessions = 2 })
	login := func() *http.Cookie {
		e.clock.Advance(time.Second)
		ck, _ := e.login(`{"token": "` + e.token("org_a") + `"}`)
		return ck
	}
	first, second := login(), login()
	e.clock.Advance(time.Second)
	if a := e.do("GET", "/vpc/sites", "", first); a.status != 200 { // first is now the more recent
		t.Fatalf("first: %d", a.status)
	}
	third := login()
	for _, c := range []struct {
		name   string
		cookie *http.Cookie
		want   int
	}{{"first", first, 200}, {"second", second, 401}, {"third", third, 200}} {
		if a := e.do("GET", "/vpc/sites", "", c.cookie); a.status != c.want {
			t.Errorf("%s session: %d; want %d", c.name, a.status, c.want)
		}
	}
	if n := e.console.Sessions(); n != 2 {
		t.Errorf("%d sessions; want 2", n)
	}
}
