// Package api serves the control plane's REST API over HTTP: security
// groups and prefix lists (with ETags, If-Match and their versions),
// reference data, sites and their published policy, and the audit trail,
// under /vpc/ and, as an alias, without it, plus /openapi.yaml, /healthz,
// /readyz and /metrics.
//
// # Contract
//
// openapi.yaml (embedded, served at /openapi.yaml) is the one description of
// the API: request bodies are validated against it before the domain checks
// of the controlplane package, and the tests validate every response against
// it. Group writes, the hot path, are decoded by encoding/json into their
// typed value with the schema's structural checks (decode.go); what that
// refuses goes through the schema, which words every error, and tests hold
// the two to the same answers. Domain errors (*controlplane.Error) become
// HTTP responses through one table, errorTable; anything else is a 500
// that shows the client only the request id, which every response carries
// in X-Request-Id.
//
// # Dependencies
//
// Storage is the Store interface below, declared here where it is used;
// authentication is a TokenVerifier; metrics go to the registry passed in.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// Store is what the API needs from storage. Groups and prefix lists come
// and go as the API's JSON, which the store keeps as it answers it: a read
// costs a copy, not a decode and an encode. kind is cp.KindSecurityGroup
// or cp.KindPrefixList. The bytes returned may be shared (bolt.Store
// caches GET answers): the API only writes them, never modifies them.
type Store interface {
	// ListJSONPage answers at most limit resources of a kind after the id
	// after ("" for the first), as a JSON array, the id of the last, and
	// whether more follow (paging.go).
	ListJSONPage(ctx context.Context, org, kind, after string, limit int) (body []byte, last string, more bool, err error)
	GetJSON(ctx context.Context, org, kind, id string) (cp.Stored, error)
	// Writes answer with the resource as stored, its id and version. The
	// context carries the cp.WriteRequest (author, request id, If-Match),
	// which a replace or delete checks inside its transaction and every
	// write records in the audit trail.
	CreateSecurityGroup(ctx context.Context, org string, w *cp.SecurityGroupWrite) (cp.Stored, error)
	ReplaceSecurityGroup(ctx context.Context, org, id string, w *cp.SecurityGroupWrite) (cp.Stored, error)
	DeleteSecurityGroup(ctx context.Context, org, id string) error
	CreatePrefixList(ctx context.Context, org string, w *cp.PrefixListWrite) (cp.Stored, error)
	ReplacePrefixList(ctx context.Context, org, id string, w *cp.PrefixListWrite) (cp.Stored, error)
	DeletePrefixList(ctx context.Context, org, id string) error

	// ListSitesPage is ListJSONPage for sites, decoded.
	ListSitesPage(ctx context.Context, org, after string, limit int) ([]cp.Site, bool, error)
	GetSite(ctx context.Context, org, id string) (cp.Site, error)
	// SiteHistory answers a page of a site's state transitions, newest
	// first, and whether more follow; NotFound when the organisation has
	// no such site.
	SiteHistory(ctx context.Context, org, site string, q cp.SiteHistoryQuery) ([]cp.SiteTransition, bool, error)
	// DecommissionSite starts a site's decommission (DELETE
	// /vpc/sites/{siteId}) and answers with the site, decommissioning.
	// The context carries the cp.WriteRequest, as for every write.
	DecommissionSite(ctx context.Context, org, site string) (cp.Site, error)
	// ReserveSite makes a site known within the organisation's site quota:
	// enrollment reserves a site before handing out its credentials, so an
	// organisation gets credentials for at most its quota of sites.
	ReserveSite(ctx context.Context, org, site string) error

	// AuditEvents answers the organisation's audit events q selects,
	// newest first, each as its JSON (cp.AuditEvent), and whether more
	// follow.
	AuditEvents(ctx context.Context, org string, q cp.AuditQuery) ([]json.RawMessage, bool, error)

	// Epoch and ViewPolicy give a site's document as the syncer publishes
	// it (compile.Published).
	Epoch() string
	ViewPolicy(ctx context.Context, org string, fn func(cp.PolicyTx) error) error

	CountByStatus(ctx context.Context) (map[string]map[cp.Status]int, error)
	Ping(ctx context.Context) error
}

// TokenVerifier checks a bearer token and returns its organisation and
// subject (auth.Verifier).
type TokenVerifier interface {
	Identify(token string) (org, subject string, err error)
}

// Options configures New.
type Options struct {
	Store    Store
	Verifier TokenVerifier
	// Logger receives request errors; nil discards.
	Logger *slog.Logger
	// Registry receives the API's metrics; nil means a private registry
	// (metrics still served at /metrics). Gatherer serves /metrics; nil
	// means Registry.
	Registry *prometheus.Registry
	// DocBaseURL prefixes error codes in doc_url.
	DocBaseURL string
	// Ready are /readyz's checks beyond Store.Ping (ready.go).
	Ready []ReadyCheck
}

// DefaultDocBaseURL is where error codes are documented (errors.md beside
// this file, one anchor per code).
const DefaultDocBaseURL = "https://github.com/rampart-fw/rampart/blob/main/controlplane/api/errors.md#"

// Server is the REST API as an http.Handler.
type Server struct {
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	schemas bodySchemas
	metrics *metrics
}

// New builds the API. It loads and checks the embedded OpenAPI document.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.Verifier == nil {
		return nil, errors.New("create api: Store and Verifier are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.DocBaseURL == "" {
		opts.DocBaseURL = DefaultDocBaseURL
	}
	doc, err := LoadSpec(context.Background())
	if err != nil {
		return nil, fmt.Errorf("create api: %w", err)
	}
	schemas, err := newBodySchemas(doc)
	if err != nil {
		return nil, fmt.Errorf("create api: %w", err)
	}
	m, err := newMetrics(opts.Registry, opts.Store)
	if err != nil {
		return nil, fmt.Errorf("create api: %w", err)
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(), schemas: schemas, metrics: m}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	for _, base := range []string{"/vpc", ""} {
		s.handle("GET "+base+"/security-groups", s.list(cp.KindSecurityGroup))
		s.handle("POST "+base+"/security-groups", s.createGroup)
		s.handle("GET "+base+"/security-groups/{securityGroupId}", s.get(cp.KindSecurityGroup, "securityGroupId"))
		s.handle("PUT "+base+"/security-groups/{securityGroupId}", s.replaceGroup)
		s.handle("DELETE "+base+"/security-groups/{securityGroupId}", s.deleteGroup)
		s.handle("GET "+base+"/prefix-lists", s.list(cp.KindPrefixList))
		s.handle("POST "+base+"/prefix-lists", s.createList)
		s.handle("GET "+base+"/prefix-lists/{prefixListId}", s.get(cp.KindPrefixList, "prefixListId"))
		s.handle("PUT "+base+"/prefix-lists/{prefixListId}", s.replaceList)
		s.handle("DELETE "+base+"/prefix-lists/{prefixListId}", s.deleteList)
		s.handle("GET "+base+"/reference/protocols", func(w http.ResponseWriter, r *http.Request, _ string) error {
			return writeJSON(w, http.StatusOK, protocols)
		})
		s.handle("GET "+base+"/reference/services", func(w http.ResponseWriter, r *http.Request, _ string) error {
			return writeJSON(w, http.StatusOK, services)
		})
		s.handle("GET "+base+"/sites", s.listSites)
		s.handle("GET "+base+"/sites/{siteId}", s.getSite)
		s.handle("DELETE "+base+"/sites/{siteId}", s.decommissionSite)
		s.handle("GET "+base+"/sites/{siteId}/policy", s.sitePolicy)
		s.handle("GET "+base+"/sites/{siteId}/history", s.siteHistory)
		s.handle("GET "+base+"/audit-events", s.auditEvents)
		s.handle("GET "+base+"/security-groups/{securityGroupId}/versions", s.versions(cp.KindSecurityGroup, "securityGroupId"))
		s.handle("GET "+base+"/prefix-lists/{prefixListId}/versions", s.versions(cp.KindPrefixList, "prefixListId"))
	}
	s.mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(OpenAPI)
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{Registry: s.opts.Registry}))
	s.mux.HandleFunc(noRoutePattern, s.noRoute)
}

// noRoutePattern matches every request no other route matches.
const noRoutePattern = "/"

// handlerFunc is an authenticated handler: it gets the caller's
// organisation and returns an error instead of writing one. A write's
// request carries the cp.WriteRequest in its context.
type handlerFunc func(w http.ResponseWriter, r *http.Request, org string) error

func (s *Server) handle(pattern string, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		org, sub, err := s.authenticate(r)
		if err == nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			r, err = withWriteRequest(w, r, sub)
		}
		if err == nil {
			err = h(w, r, org)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// withWriteRequest gives a write's store call what it needs of the
// request: its author, id and If-Match (reads skip the request copy).
func withWriteRequest(w http.ResponseWriter, r *http.Request, sub string) (*http.Request, error) {
	pre, err := cp.ParseIfMatch(r.Header.Get("If-Match"))
	if err != nil {
		return r, err
	}
	wr := cp.WriteRequest{Subject: sub, RequestID: requestID(w), Method: r.Method, IfMatch: pre}
	return r.WithContext(cp.WithWriteRequest(r.Context(), wr)), nil
}

func (s *Server) authenticate(r *http.Request) (org, sub string, err error) {
	tok, err := bearerToken(r)
	if err != nil {
		return "", "", err
	}
	org, sub, err = s.opts.Verifier.Identify(tok)
	if err != nil {
		return "", "", &cp.Error{Code: cp.CodeUnauthenticated, Message: cp.Sentence(err)}
	}
	return org, sub, nil
}

func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", cp.Errorf(cp.CodeUnauthenticated, "", "Send the header Authorization: Bearer <token> (mint one with `rampart-controlplane token --org ORG`).")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", cp.Errorf(cp.CodeUnauthenticated, "", "The Authorization header must be \"Bearer <token>\".")
	}
	return strings.TrimSpace(tok), nil
}

var requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID is the request's id, which ServeHTTP puts in the response's
// X-Request-Id header before anything else runs (carrying it in the
// request's context instead cost a copy of the request every time).
func requestID(w http.ResponseWriter) string {
	if h := w.Header()["X-Request-Id"]; len(h) > 0 {
		return h[0]
	}
	return ""
}

// jsonContentType is the Content-Type of every JSON answer, one slice
// shared by all responses (net/http copies header values, never modifies
// them; Add would append to a copy since the slice is full).
var jsonContentType = []string{"application/json"}

// ServeHTTP adds the request id, answers unknown routes with JSON errors,
// and records metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if !requestIDRe.MatchString(id) {
		var b [12]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	w.Header()["X-Request-Id"] = []string{id} // canonical already: no Set
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "request_id", id, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
			if !sw.wrote {
				s.writeError(sw, r, fmt.Errorf("panic: %v", p))
			}
		}
		d := time.Since(start)
		pattern := r.Pattern
		if pattern == noRoutePattern {
			pattern = ""
		}
		s.metrics.observe(pattern, sw.status, d)
		if !s.log.Enabled(r.Context(), slog.LevelDebug) { // spare building the record
			return
		}
		s.log.Debug("request", "request_id", id, "method", r.Method, "path", r.URL.Path, "route", pattern,
			"status", sw.status, "duration_ms", float64(d.Microseconds())/1000)
	}()
	s.mux.ServeHTTP(sw, r)
}

// noRoute answers a request no route matches as the mux would (404, or
// 405 with Allow when the path has routes for other methods), but with an
// ErrorResponse. It runs only for such requests: a matched request is
// matched once.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodPost, http.MethodPut} {
		probe := *r
		probe.Method = m
		if _, p := s.mux.Handler(&probe); p != noRoutePattern {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, cp.Errorf(cp.CodeMethodNotAllowed, "", "%s is not allowed on %s; allowed: %s.", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	s.writeError(w, r, cp.Errorf(cp.CodeRouteNotFound, "", "No route %s %s; see /openapi.yaml for the API.", r.Method, r.URL.Path))
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	DocURL  string `json:"doc_url"`
}

// Error types.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typeAPI            = "api_error"
)

// errorTable maps every domain error code to its HTTP status and type: the
// one place where the domain meets HTTP.
var errorTable = map[string]struct {
	status int
	typ    string
}{
	cp.CodeInvalidJSON:          {http.StatusBadRequest, typeInvalidRequest},
	cp.CodeInvalidType:          {http.StatusBadRequest, typeInvalidRequest},
	cp.CodeUnauthenticated:      {http.StatusUnauthorized, typeAuthentication},
	cp.CodeNotFound:             {http.StatusNotFound, typeInvalidRequest},
	cp.CodeRouteNotFound:        {http.StatusNotFound, typeInvalidRequest},
	cp.CodeMethodNotAllowed:     {http.StatusMethodNotAllowed, typeInvalidRequest},
	cp.CodePrefixListInUse:      {http.StatusConflict, typeInvalidRequest},
	cp.CodeResourceLocked:       {http.StatusConflict, typeInvalidRequest},
	cp.CodeSiteDecommissioning:  {http.StatusConflict, typeInvalidRequest},
	cp.CodePreconditionFailed:   {http.StatusPreconditionFailed, typeInvalidRequest},
	cp.CodeBodyTooLarge:         {http.StatusRequestEntityTooLarge, typeInvalidRequest},
	cp.CodeUnsupportedMediaType: {http.StatusUnsupportedMediaType, typeInvalidRequest},
	cp.CodeParameterMissing:     {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeUnknownField:         {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeInvalidValue:         {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeInvalidPort:          {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeInvalidAddress:       {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodePrefixListNotFound:   {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeInvalidSite:          {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeDuplicateSite:        {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeDuplicateOrder:       {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeDuplicatePrefix:      {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeTooManyRules:         {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeTooManyPrefixes:      {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeTooManySites:         {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeQuotaExceeded:        {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeDocumentTooLarge:     {http.StatusUnprocessableEntity, typeInvalidRequest},
	cp.CodeInternal:             {http.StatusInternalServerError, typeAPI},
	cp.CodeStorageUnavailable:   {http.StatusServiceUnavailable, typeAPI},
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	de, ok := errors.AsType[*cp.Error](err)
	entry, known := errorTable[cp.ErrorCode(err)]
	if se, storage := errors.AsType[*cp.StorageError](err); storage && !ok { // apisec: #13.10
		s.log.Error("storage unavailable", "request_id", requestID(w), "method", r.Method, "path", r.URL.Path, "op", se.Op, "cause", se.Err)
		de, ok = cp.StorageUnavailable(), true
	}
	if !ok || !known {
		id := requestID(w)
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			s.log.Info("request cancelled by client", "request_id", id, "method", r.Method, "path", r.URL.Path)
		} else {
			s.log.Error("internal error", "request_id", id, "method", r.Method, "path", r.URL.Path, "error", err)
		}
		de = &cp.Error{Code: cp.CodeInternal, Message: "An internal error occurred; report request id " + id + " to the operator."}
		entry = errorTable[cp.CodeInternal]
	}
	if de.Code == cp.CodeResourceLocked {
		w.Header().Set("Retry-After", strconv.Itoa(int((de.RetryAfter+time.Second-1)/time.Second)))
	}
	if de.Code == cp.CodeStorageUnavailable {
		w.Header().Set("Retry-After", "30") // the operator has to act first
	}
	if entry.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rampart"`)
	}
	writeJSON(w, entry.status, ErrorResponse{Type: entry.typ, Code: de.Code, Message: de.Message, DocURL: s.opts.DocBaseURL + de.Code})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}

// writeRaw returns a function that writes already encoded JSON, or passes
// the store's error on.
func writeRaw(w http.ResponseWriter, status int) func([]byte, error) error {
	return func(b []byte, err error) error {
		if err != nil {
			return err
		}
		// b may be shared with the store's cache: never modify it. A store
		// may leave the newline just past b's end, within its capacity
		// (bolt.Store does), so body and newline go out in one write
		// instead of a last one-byte write. With the length known the
		// body goes out unchunked.
		h := w.Header()
		h["Content-Type"] = jsonContentType
		h["Content-Length"] = []string{strconv.Itoa(len(b) + 1)}
		w.WriteHeader(status)
		if n := len(b); cap(b) > n && b[:n+1][n] == '\n' {
			w.Write(b[:n+1])
			return nil
		}
		w.Write(b)
		w.Write(newline)
		return nil
	}
}

var newline = []byte{'\n'}

// base is the prefix the client used (/vpc or the alias), for Location.
func base(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/vpc/") {
		return "/vpc"
	}
	return ""
}

// --- handlers ---

// list answers the resources of a kind of the organisation, a page at a
// time (paging.go).
func (s *Server) list(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, org string) error {
		return s.listPage(w, r, org, kind)
	}
}

// get answers one resource of a kind, its id in the path parameter param.
func (s *Server) get(kind, param string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, org string) error {
		return writeStored(w, http.StatusOK)(s.opts.Store.GetJSON(r.Context(), org, kind, r.PathValue(param)))
	}
}

// writeStored answers a resource as stored, with its ETag, or passes the
// store's error on.
func writeStored(w http.ResponseWriter, status int) func(cp.Stored, error) error {
	return func(st cp.Stored, err error) error {
		if err != nil {
			return err
		}
		w.Header()["Etag"] = []string{st.ETag()}
		return writeRaw(w, status)(st.Body, nil)
	}
}

// created answers a create: 201 with the new resource at path/id.
func created(w http.ResponseWriter, r *http.Request, path string, st cp.Stored, err error) error {
	if err != nil {
		return err
	}
	w.Header().Set("Location", base(r)+path+st.ID)
	return writeStored(w, http.StatusCreated)(st, nil)
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, org string) error {
	var in cp.SecurityGroupWrite
	if err := s.decode(w, r, "SecurityGroupWrite", &in); err != nil {
		return err
	}
	st, err := s.opts.Store.CreateSecurityGroup(r.Context(), org, &in)
	return created(w, r, "/security-groups/", st, err)
}

func (s *Server) replaceGroup(w http.ResponseWriter, r *http.Request, org string) error {
	id := r.PathValue("securityGroupId")
	if !cp.ValidID(cp.SecurityGroupIDPrefix, id) {
		return cp.NotFound(cp.KindSecurityGroup, id)
	}
	var in cp.SecurityGroupWrite
	if err := s.decode(w, r, "SecurityGroupWrite", &in); err != nil {
		return err
	}
	return writeStored(w, http.StatusOK)(s.opts.Store.ReplaceSecurityGroup(r.Context(), org, id, &in))
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, org string) error {
	return noContent(w, s.opts.Store.DeleteSecurityGroup(r.Context(), org, r.PathValue("securityGroupId")))
}

func (s *Server) createList(w http.ResponseWriter, r *http.Request, org string) error {
	var in cp.PrefixListWrite
	if err := s.decode(w, r, "PrefixListWrite", &in); err != nil {
		return err
	}
	st, err := s.opts.Store.CreatePrefixList(r.Context(), org, &in)
	return created(w, r, "/prefix-lists/", st, err)
}

func (s *Server) replaceList(w http.ResponseWriter, r *http.Request, org string) error {
	id := r.PathValue("prefixListId")
	if !cp.ValidID(cp.PrefixListIDPrefix, id) {
		return cp.NotFound(cp.KindPrefixList, id)
	}
	var in cp.PrefixListWrite
	if err := s.decode(w, r, "PrefixListWrite", &in); err != nil {
		return err
	}
	return writeStored(w, http.StatusOK)(s.opts.Store.ReplacePrefixList(r.Context(), org, id, &in))
}

func (s *Server) deleteList(w http.ResponseWriter, r *http.Request, org string) error {
	return noContent(w, s.opts.Store.DeletePrefixList(r.Context(), org, r.PathValue("prefixListId")))
}

// noContent answers a delete: 204, or the store's error.
func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listSites(w http.ResponseWriter, r *http.Request, org string) error {
	return s.listSitesPage(w, r, org) // apisec #13.2: paged, paging.go
}

func (s *Server) getSite(w http.ResponseWriter, r *http.Request, org string) error {
	site, err := s.opts.Store.GetSite(r.Context(), org, r.PathValue("siteId"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, site)
}

// decommissionSite answers DELETE /vpc/sites/{siteId}: 202 with the site,
// decommissioning. What follows (the agent removes everything, then the
// site is forgotten) happens after the answer (controlplane/decommission.go).
func (s *Server) decommissionSite(w http.ResponseWriter, r *http.Request, org string) error {
	id := r.PathValue("siteId")
	if !protocol.ValidSiteID(id) {
		return cp.NotFound(cp.KindSite, id)
	}
	if pre := cp.WriteRequestFrom(r.Context()).IfMatch; pre.Versions != nil {
		return cp.Errorf(cp.CodeInvalidValue, "If-Match", "A site has no versions (no ETag): send DELETE /vpc/sites/%s without If-Match, or with If-Match: *.", id)
	}
	site, err := s.opts.Store.DecommissionSite(r.Context(), org, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, site)
}

func sortStrings(s []string) { sort.Strings(s) }
