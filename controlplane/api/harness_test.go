package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/protocol"
)

// clock is an injectable clock for deadlines.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var testKey = bytes.Repeat([]byte("k"), 32)

// env is a real API server over a real bbolt file.
type env struct {
	t      testing.TB
	path   string
	clock  *clock
	store  *bolt.Store
	srv    *httptest.Server
	reg    *prometheus.Registry
	router routers.Router
	// wrap, when set before start, wraps the store given to the API.
	wrap func(api.Store) api.Store
	// realAuthClock makes tokens expire by the real clock, not the fake
	// one (for the fuzz test, which moves the fake clock without bound).
	realAuthClock bool
	// quotas are the store's (zero: the defaults).
	quotas cp.Quotas
	// revise gives the store the compiler's Revisioner, so writes compile
	// documents and give sites revisions (sites' policy, decommission).
	revise bool
}

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

func router(t testing.TB) routers.Router {
	specOnce.Do(func() {
		var doc *openapi3.T
		doc, specErr = api.LoadSpec(context.Background())
		if specErr == nil {
			specRouter, specErr = legacy.NewRouter(doc)
		}
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	return specRouter
}

func newEnv(t testing.TB, opts ...func(*env)) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "rampart.db"), clock: &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}, router: router(t)}
	for _, o := range opts {
		o(e)
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	e.t.Helper()
	bo := bolt.Options{Now: e.clock.Now, SyncTimeout: 2 * time.Minute, MaxBatchDelay: time.Millisecond, Quotas: e.quotas}
	if e.revise {
		bo.Revisioner = compile.Revisioner{}
	}
	st, err := bolt.Open(e.path, bo)
	if err != nil {
		e.t.Fatal(err)
	}
	e.store = st
	authNow := e.clock.Now
	if e.realAuthClock {
		authNow = time.Now
	}
	v, err := auth.New(context.Background(), auth.Options{HMACKey: testKey, Now: authNow})
	if err != nil {
		e.t.Fatal(err)
	}
	var s api.Store = st
	if e.wrap != nil {
		s = e.wrap(st)
	}
	e.reg = prometheus.NewRegistry()
	a, err := api.New(api.Options{Store: s, Verifier: v, Registry: e.reg})
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = httptest.NewServer(a)
}

// confirm reports, through the store's Ingest as the MQTT side does, that
// site applied revision (or failed to, with errMsg).
func (e *env) confirm(ctx context.Context, org, site string, revision uint64, applied bool, errMsg string) error {
	st := protocol.SiteStatus{Schema: 1, OrgID: org, SiteID: site, Epoch: e.store.Epoch(), Revision: revision, State: protocol.StateApplied}
	if !applied {
		st.State, st.Error = protocol.StateFailed, errMsg
	}
	_, err := e.store.Ingest(ctx, []cp.Report{{OrgID: org, SiteID: site, Status: &st}})
	return err
}

func (e *env) stop() {
	if e.srv != nil {
		e.srv.Close()
		e.srv = nil
	}
	if e.store != nil {
		e.store.Close()
		e.store = nil
	}
}

// restart closes the server and the database and opens both again.
func (e *env) restart() {
	e.stop()
	e.start()
}

func (e *env) token(org string) string {
	e.t.Helper()
	return e.tokenFor(org, "")
}

// tokenFor is a token of org whose sub claim is subject ("" for the
// default).
func (e *env) tokenFor(org, subject string) string {
	e.t.Helper()
	now := e.clock.Now()
	if e.realAuthClock {
		now = time.Now()
	}
	tok, err := auth.Mint(auth.MintOptions{Key: testKey, Org: org, Subject: subject, TTL: time.Hour, Now: now})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) errorResponse(t testing.TB) api.ErrorResponse {
	t.Helper()
	var er api.ErrorResponse
	r.decode(t, &er)
	return er
}

// do sends a request as org (no token when org is "") and validates the
// response against openapi.yaml.
func (e *env) do(method, path, org string, body any) response {
	e.t.Helper()
	return e.doRaw(method, path, e.bearer(org), body)
}

func (e *env) bearer(org string) string {
	if org == "" {
		return ""
	}
	return "Bearer " + e.token(org)
}

func (e *env) doRaw(method, path, authz string, body any) response {
	e.t.Helper()
	return e.doWith(method, path, authz, nil, body)
}

// doWith is doRaw with extra request headers.
func (e *env) doWith(method, path, authz string, hdr map[string]string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: data}
	if resp.Header.Get("X-Request-Id") == "" {
		e.t.Errorf("%s %s: no X-Request-Id", method, path)
	}
	validateResponse(e.t, e.router, req, r)
	return r
}

// validateResponse checks a response against openapi.yaml: its status must
// be documented for the operation and its body must match the schema.
func validateResponse(t testing.TB, rt routers.Router, req *http.Request, r response) {
	t.Helper()
	vreq := req.Clone(context.Background())
	if !strings.HasPrefix(vreq.URL.Path, "/vpc/") && isAPIPath(vreq.URL.Path) {
		vreq.URL.Path = "/vpc" + vreq.URL.Path // the alias routes
	}
	vreq.URL.Host, vreq.URL.Scheme, vreq.Host = "", "", ""
	route, params, err := rt.FindRoute(vreq)
	if err != nil {
		// Unknown routes and methods answer a JSON error; check its shape.
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: no route in openapi.yaml (%v) but status %d", req.Method, req.URL.Path, err, r.status)
		}
		var er api.ErrorResponse
		if err := json.Unmarshal(r.body, &er); err != nil || er.Code == "" || er.Type == "" || er.Message == "" || er.DocURL == "" {
			t.Errorf("%s %s: unrouted answer is not an ErrorResponse: %s", req.Method, req.URL.Path, r.body)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route},
		Status:                 r.status,
		Header:                 r.header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(r.body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s: response %d does not match openapi.yaml: %v\nbody: %s", req.Method, req.URL.Path, r.status, err, r.body)
	}
}

func isAPIPath(p string) bool {
	for _, pre := range []string{"/security-groups", "/prefix-lists", "/reference/", "/sites", "/audit-events"} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// Fixtures.

func ptr[T any](v T) *T { return &v }

func rule(order int, port, addr string) cp.FilterRuleWrite {
	return cp.FilterRuleWrite{Direction: "inbound", Order: order, Protocol: 6, Port: port, Address: addr, Description: "rule"}
}

func (e *env) createList(org string, cidrs ...string) cp.PrefixList {
	e.t.Helper()
	w := cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{}}
	for _, c := range cidrs {
		w.Prefixes = append(w.Prefixes, cp.PrefixWrite{CIDR: c, Description: "d"})
	}
	r := e.do("POST", "/vpc/prefix-lists", org, w)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create prefix list: %d %s", r.status, r.body)
	}
	var l cp.PrefixList
	r.decode(e.t, &l)
	return l
}

func (e *env) createGroup(org string, w cp.SecurityGroupWrite) cp.SecurityGroup {
	e.t.Helper()
	r := e.do("POST", "/vpc/security-groups", org, w)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create security group: %d %s", r.status, r.body)
	}
	var g cp.SecurityGroup
	r.decode(e.t, &g)
	return g
}
