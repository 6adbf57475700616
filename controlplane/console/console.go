// Package console serves the operator console: a page at / and its assets
// (embedded, plain HTML, CSS and one JavaScript module, nothing from other
// hosts), the login, session and logout endpoints under /console/, and, in
// front of the REST API, the session cookie as an alternative to the
// bearer header. The page uses the same REST API as any script: whatever
// it shows, a script can get too.
//
// # Sessions
//
// Logging in (POST /console/login) takes a bearer token, or a one-time
// login link's token (loginlink.go), and answers with a cookie that names a
// server-side session: HttpOnly (no script reads it), SameSite=Strict (no
// other site's page sends it), Path=/, Secure when the request came over
// TLS. A session maps to a bearer token: the one pasted, or for a link an
// embedded token minted for the session's lifetime. An API request with
// the cookie and no Authorization header is passed to the API with that
// token, so the API's own verifier still judges every request and a
// session ends no later than its token.
//
// # CSRF
//
// Writes (any method but GET, HEAD and OPTIONS) made with the cookie must
// carry the session's synchronizer token in the X-CSRF-Token header; the
// page learns it from GET /console/session, which only same-origin script
// can read. Together with SameSite=Strict, and the Origin check on every
// cookie write and on login (a cross-site form cannot set that header nor
// post JSON), a page of another site can neither write with the
// operator's session nor log the operator in to another organisation.
// Requests with an Authorization header are not affected: they carry no
// ambient credential.
package console

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
)

//go:embed assets
var assets embed.FS

// CookieName is the session cookie's name.
const CookieName = "rampart_session"

// CSRFHeader carries the session's synchronizer token on writes.
const CSRFHeader = "X-CSRF-Token"

// Defaults of Options.
const (
	DefaultSessionTTL  = 12 * time.Hour
	DefaultIdleTimeout = time.Hour
	DefaultMaxSessions = 10_000
)

// DocBaseURL prefixes the console's own error codes in doc_url.
const DocBaseURL = "https://github.com/rampart-fw/rampart/blob/main/controlplane/console/README.md#"

// TokenVerifier checks a bearer token (auth.Verifier).
type TokenVerifier interface {
	Verify(token string) (org string, err error)
}

// Options configures New.
type Options struct {
	// API is the REST API; requests that are not the console's go there.
	API http.Handler
	// Verifier checks pasted tokens at login (the API's own).
	Verifier TokenVerifier
	// LinkKey is the embedded mode's HS256 key, which signs login links;
	// nil refuses login links (an external issuer's tokens are the only
	// way in, so the data directory's key must not be one).
	LinkKey []byte
	// MintToken makes the embedded token that a session opened by a link
	// calls the API with. Required with LinkKey.
	MintToken func(org string, ttl time.Duration) (string, error)
	// SessionTTL, IdleTimeout and MaxSessions default to the constants
	// above.
	SessionTTL  time.Duration
	IdleTimeout time.Duration
	MaxSessions int
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Registry receives rampart_console_logins_total and
	// rampart_console_sessions; nil means a private one.
	Registry prometheus.Registerer
}

// Assets are the page's files (index.html, app.js, api.js, app.css).
func Assets() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // a constant, valid path
	}
	return sub
}

// Console is the console and the API behind it, as one http.Handler.
type Console struct {
	opts     Options
	log      *slog.Logger
	sessions *sessions
	links    *links // nil without LinkKey
	static   http.Handler
	mux      *http.ServeMux
	logins   *prometheus.CounterVec // by method (token, link) and result (ok, refused)
}

// New builds the console in front of opts.API.
func New(opts Options) (*Console, error) {
	if opts.API == nil || opts.Verifier == nil {
		return nil, errors.New("create console: API and Verifier are required")
	}
	if opts.LinkKey != nil && opts.MintToken == nil {
		return nil, errors.New("create console: LinkKey needs MintToken")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	c := &Console{opts: opts, log: opts.Logger, sessions: newSessions(opts.MaxSessions, opts.IdleTimeout),
		static: http.StripPrefix("/console/assets/", http.FileServerFS(Assets())), mux: http.NewServeMux()}
	if opts.LinkKey != nil {
		c.links = newLinks(opts.LinkKey, opts.Now(), opts.Now)
	}
	c.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rampart_console_logins_total",
		Help: "Console logins by method (token, link) and result (ok, refused)."}, []string{"method", "result"})
	for _, m := range []string{"token", "link"} {
		for _, r := range []string{"ok", "refused"} {
			c.logins.WithLabelValues(m, r)
		}
	}
	sessions := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rampart_console_sessions",
		Help: "Console sessions held in memory (live, or expired and not yet swept)."}, func() float64 { return float64(c.sessions.len()) })
	for _, col := range []prometheus.Collector{c.logins, sessions} {
		if err := opts.Registry.Register(col); err != nil {
			return nil, fmt.Errorf("create console: register metrics: %w", err)
		}
	}
	c.mux.HandleFunc("GET /{$}", c.index)
	c.mux.HandleFunc("GET /console/assets/", c.asset)
	c.mux.HandleFunc("POST /console/login", c.login)
	c.mux.HandleFunc("GET /console/session", c.session)
	c.mux.HandleFunc("POST /console/logout", c.logout)
	return c, nil
}

// ServeHTTP serves the console's own paths and hands everything else to
// the API, with the session's token when the request came with the cookie
// instead of an Authorization header.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/console/") {
		c.mux.ServeHTTP(w, r)
		return
	}
	if r.Header.Get("Authorization") == "" {
		if ck, err := r.Cookie(CookieName); err == nil {
			s, ok := c.sessions.get(ck.Value, c.opts.Now())
			if !ok {
				clearCookie(w, r)
				writeError(w, http.StatusUnauthorized, "authentication_error", "session_expired",
					"Your console session has ended (logged out, expired, or the control plane restarted); log in again.")
				return
			}
			if !safeMethod(r.Method) {
				if msg := c.checkWrite(r, s); msg != "" {
					writeError(w, http.StatusForbidden, "invalid_request_error", "csrf_failed", msg)
					return
				}
			}
			r2 := *r
			r2.Header = r.Header.Clone()
			r2.Header.Set("Authorization", "Bearer "+s.token)
			r = &r2
		}
	}
	c.opts.API.ServeHTTP(w, r)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// checkWrite returns why a write made with the session's cookie is refused,
// or "".
func (c *Console) checkWrite(r *http.Request, s session) string {
	if msg := checkOrigin(r); msg != "" {
		return msg
	}
	if !csrfMatches(s, r.Header.Get(CSRFHeader)) {
		return "A write made with the console's session cookie must carry the session's token in the " + CSRFHeader +
			" header (from GET /console/session); scripts should send Authorization: Bearer instead."
	}
	return ""
}

// checkOrigin refuses a request whose Origin header names another site.
// Browsers send Origin on every POST, PUT and DELETE; its absence means a
// client that is not a browser, which carries no ambient cookie of the
// operator's.
func checkOrigin(r *http.Request) string {
	o := r.Header.Get("Origin")
	if o == "" {
		return ""
	}
	u, err := url.Parse(o)
	if err != nil || !strings.EqualFold(u.Host, r.Host) {
		return fmt.Sprintf("The request comes from the page of another site (Origin %q, this is %q).", o, r.Host)
	}
	return ""
}

// securityHeaders keeps the page to its own assets: no script, style,
// frame or connection to another host, and no framing by another site.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func (c *Console) index(w http.ResponseWriter, r *http.Request) {
	b, err := assets.ReadFile("assets/index.html")
	if err != nil {
		http.Error(w, "console missing from this build", http.StatusInternalServerError)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

func (c *Console) asset(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	// Embedded files have no modification time, so nothing could
	// revalidate a cached copy: the browser fetches these few small files
	// again on each load, and never runs an old script after an upgrade.
	w.Header().Set("Cache-Control", "no-cache")
	if ct := mime.TypeByExtension(pathExt(r.URL.Path)); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	c.static.ServeHTTP(w, r)
}

func pathExt(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[i:]
	}
	return ""
}

// loginRequest is POST /console/login's body: one of the two.
type loginRequest struct {
	Token string `json:"token"`
	Link  string `json:"link"`
}

// sessionInfo is what the page learns about its session.
type sessionInfo struct {
	Org       string    `json:"org"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
	// LoginLinks says whether login links work on this control plane.
	LoginLinks bool `json:"login_links"`
}

const maxLoginBody = 64 << 10

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if msg := checkOrigin(r); msg != "" {
		writeError(w, http.StatusForbidden, "invalid_request_error", "csrf_failed", msg)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "invalid_request_error", "unsupported_media_type",
			`Send the login as JSON: {"token": "<bearer token>"} or {"link": "<the token of a login link>"}.`)
		return
	}
	var in loginRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxLoginBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || (in.Token == "") == (in.Link == "") {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_login",
			`Send exactly one of {"token": "<bearer token>"} and {"link": "<the token of a login link>"}.`)
		return
	}
	now := c.opts.Now()
	s := &session{expiresAt: now.Add(c.opts.SessionTTL)}
	var err error
	if in.Token != "" {
		tok := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(in.Token), "Bearer "))
		if s.org, err = c.opts.Verifier.Verify(tok); err != nil {
			c.logins.WithLabelValues("token", "refused").Inc()
			writeError(w, http.StatusUnauthorized, "authentication_error", "unauthenticated", cp.Sentence(err))
			return
		}
		s.token = tok
		if exp := tokenExpiry(tok); !exp.IsZero() && exp.Before(s.expiresAt) {
			s.expiresAt = exp // verified above: the claim can be read as is
		}
	} else {
		if c.links == nil {
			writeError(w, http.StatusUnauthorized, "authentication_error", "login_link_disabled",
				"This control plane accepts only its identity provider's tokens (--jwks-url), so login links are off; paste a token instead.")
			return
		}
		link := in.Link
		if _, frag, ok := strings.Cut(link, "#login="); ok {
			link = frag
		}
		if s.org, err = c.links.redeem(link, now); err != nil {
			c.logins.WithLabelValues("link", "refused").Inc()
			c.log.Info("console login refused", "by", "link", "reason", err.Error())
			writeError(w, http.StatusUnauthorized, "authentication_error", "login_link_refused", cp.Sentence(err))
			return
		}
		if s.token, err = c.opts.MintToken(s.org, c.opts.SessionTTL+time.Minute); err != nil {
			c.log.Error("mint session token", "error", err)
			writeError(w, http.StatusInternalServerError, "api_error", "internal_error", "The session could not be created; see the control plane's log.")
			return
		}
	}
	id := c.sessions.create(s, now)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, Expires: s.expiresAt})
	method := map[bool]string{true: "token", false: "link"}[in.Token != ""]
	c.logins.WithLabelValues(method, "ok").Inc()
	c.log.Info("console login", "org", s.org, "by", method)
	writeJSON(w, http.StatusOK, sessionInfo{Org: s.org, CSRFToken: s.csrf, ExpiresAt: s.expiresAt, LoginLinks: c.links != nil})
}

// tokenExpiry reads the exp claim of a token that already verified.
func tokenExpiry(tok string) time.Time {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		return time.Time{}
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		return exp.Time
	}
	return time.Time{}
}

func (c *Console) session(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ck, err := r.Cookie(CookieName)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "authentication_error", "unauthenticated", "Not logged in.")
		return
	}
	s, ok := c.sessions.get(ck.Value, c.opts.Now())
	if !ok {
		clearCookie(w, r)
		writeError(w, http.StatusUnauthorized, "authentication_error", "session_expired", "Your console session has ended; log in again.")
		return
	}
	writeJSON(w, http.StatusOK, sessionInfo{Org: s.org, CSRFToken: s.csrf, ExpiresAt: s.expiresAt, LoginLinks: c.links != nil})
}

// logout ends the session on the server, so the cookie is worthless even
// if a copy survives the browser's deleting it.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ck, err := r.Cookie(CookieName)
	if err != nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if s, ok := c.sessions.get(ck.Value, c.opts.Now()); ok {
		if msg := c.checkWrite(r, s); msg != "" {
			writeError(w, http.StatusForbidden, "invalid_request_error", "csrf_failed", msg)
			return
		}
		c.sessions.remove(ck.Value)
		c.log.Info("console logout", "org", s.org)
	}
	clearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// Sessions is the number of live or not yet swept sessions (for tests and
// metrics).
func (c *Console) Sessions() int { return c.sessions.len() }

// errorResponse has the API's ErrorResponse shape, so the page handles
// both alike.
type errorResponse struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	DocURL  string `json:"doc_url"`
}

func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rampart"`)
	}
	writeJSON(w, status, errorResponse{Type: typ, Code: code, Message: msg, DocURL: DocBaseURL + code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
