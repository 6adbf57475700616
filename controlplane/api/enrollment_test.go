package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
)

// TestEnrollment: the route hands a site its agent's environment with the
// secret derived from the key, as JSON (validated against openapi.yaml),
// KEY=value lines or the RouterOS script; it needs a token, and a site id
// that is not topic-safe is refused.
func TestEnrollment(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "rampart.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, err := auth.New(context.Background(), auth.Options{HMACKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Options{Store: st, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	key := keys.FromBytes([]byte("enrollment test key, 32 bytes or more"))
	const brokerURL = "tcp://rampart.example.net:1883"
	a.EnableEnrollment(api.EnrollerFunc(func(org, site string) container.Site {
		return container.ForSite(key, org, site, brokerURL)
	}))
	srv := httptest.NewServer(a)
	defer srv.Close()
	tok, err := auth.Mint(auth.MintOptions{Key: testKey, Org: "org_demo", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, accept string, authz bool) response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if authz {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r := response{status: resp.StatusCode, header: resp.Header, body: b}
		validateResponse(t, router(t), req, r)
		return r
	}

	r := get("/vpc/sites/site_hq/enrollment", "", true)
	if r.status != 200 {
		t.Fatalf("enrollment: %d %s", r.status, r.body)
	}
	var e api.Enrollment
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range e.Env {
		env[kv.Name] = kv.Value
	}
	if e.OrgID != "org_demo" || e.SiteID != "site_hq" || e.MQTTURL != brokerURL ||
		env["RAMPART_SITE_SECRET"] != key.SiteSecret("org_demo", "site_hq") || env["RAMPART_MQTT_URL"] != brokerURL ||
		env["RAMPART_ORG_ID"] != "org_demo" || env["RAMPART_SITE_ID"] != "site_hq" {
		t.Errorf("enrollment: %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("a secret may be cached: Cache-Control %q", r.header.Get("Cache-Control"))
	}

	for _, c := range []struct{ path, accept, want string }{
		{"/vpc/sites/site_hq/enrollment?format=env", "", "RAMPART_SITE_SECRET=" + key.SiteSecret("org_demo", "site_hq")},
		{"/sites/site_hq/enrollment", "text/plain", "RAMPART_SITE_ID=site_hq"},
		{"/vpc/sites/site_hq/enrollment?format=rsc&routeros_version=7.22", "", "/ip/service/set $svc disabled=no address=172.17.0.0/24\n"},
		{"/vpc/sites/site_hq/enrollment?format=rsc&routeros_version=7.24.2", "", "/ip/service/set $svc disabled=no available-from=172.17.0.0/24\n"},
		{"/vpc/sites/site_hq/enrollment?format=rsc&routeros_version=7.20", "", "/container/mounts/add name=$tag"},
	} {
		r := get(c.path, c.accept, true)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s (Accept %q): %d %s", c.path, c.accept, r.status, r.body)
		}
	}

	if r := get("/vpc/sites/site_hq/enrollment", "", false); r.status != 401 {
		t.Errorf("without a token: %d", r.status)
	}
	if r := get("/vpc/sites/site_bad-id/enrollment", "", true); r.status != 422 || !strings.Contains(string(r.body), "invalid_site") {
		t.Errorf("bad site id: %d %s", r.status, r.body)
	}
	if r := get("/vpc/sites/site_hq/enrollment?format=xml", "", true); r.status != 422 {
		t.Errorf("bad format: %d %s", r.status, r.body)
	}
	for _, c := range []struct{ query, want string }{
		{"format=rsc", `"code":"parameter_missing"`},
		{"format=rsc&routeros_version=7.19", `unsupported RouterOS version 7.19; Rampart supports 7.20 to 7.24`},
		{"format=rsc&routeros_version=7.25", `unsupported RouterOS version 7.25; Rampart supports 7.20 to 7.24`},
		{"format=json&routeros_version=latest", `\"latest\" is not a RouterOS 7.x version; want 7.20 to 7.24`},
	} {
		r := get("/vpc/sites/site_hq/enrollment?"+c.query, "", true)
		if r.status != 422 || !strings.Contains(string(r.body), c.want) || !strings.Contains(string(r.body), "routeros_version") {
			t.Errorf("%s: %d %s, want 422 naming routeros_version and %s", c.query, r.status, r.body, c.want)
		}
	}
}
