package api

import (
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/rampart-fw/rampart/container"
	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// Enroller gives a site of an organisation its agent's settings: MQTT
// credentials derived from the control plane's key and the broker URL as
// routers reach it (the serve path builds one from keys.Key and
// --agent-mqtt-url). It writes nothing: enrolling the same site twice gives
// the same answer.
type Enroller interface {
	Enroll(org, site string) container.Site
}

// Enrollment is the JSON answer of GET /vpc/sites/{siteId}/enrollment.
type Enrollment struct {
	OrgID   string `json:"org_id"`
	SiteID  string `json:"site_id"`
	MQTTURL string `json:"mqtt_url"`
	// Env is the agent's environment, in the order the agent documents it.
	Env []EnvVar `json:"env"`
}

// EnvVar is one variable of the agent's environment.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// EnableEnrollment serves GET /vpc/sites/{siteId}/enrollment (and its alias
// without /vpc): the site's agent environment as JSON, or with
// ?format=env or Accept: text/plain the KEY=value lines that `enroll`
// prints, or with ?format=rsc&routeros_version=V the RouterOS script for a
// router running V, with the default options.
// The answer holds the site's secret, so like every /vpc/ route it needs
// the organisation's token. A site the store does not know yet is first
// reserved within the organisation's site quota (Store.ReserveSite), so
// credentials exist for at most that many sites. It may be called while
// serving.
func (s *Server) EnableEnrollment(e Enroller) {
	h := func(w http.ResponseWriter, r *http.Request, org string) error {
		site := r.PathValue("siteId")
		if !protocol.ValidSiteID(site) {
			return cp.Errorf(cp.CodeInvalidSite, "siteId", "siteId %q is not a site id; use site_ followed by 1 to 64 letters and digits, such as site_hq1.", site)
		}
		format := r.URL.Query().Get("format")
		if format == "" {
			format = "json"
			if accepts(r, "text/plain") {
				format = "env"
			}
		}
		// routeros_version is checked whenever it is given, so a bad one is
		// reported even where it would not be used.
		rosVersion := r.URL.Query().Get("routeros_version")
		if rosVersion != "" {
			if err := container.CheckRouterOSVersion(rosVersion); err != nil {
				return cp.Errorf(cp.CodeInvalidValue, "routeros_version", "routeros_version: %v.", err)
			}
		}
		if err := s.opts.Store.ReserveSite(r.Context(), org, site); err != nil { // within the site quota (#13.5)
			return err
		}
		cs := e.Enroll(org, site)
		switch format {
		case "json":
			env, err := cs.Env()
			if err != nil {
				return err
			}
			out := Enrollment{OrgID: org, SiteID: site, MQTTURL: cs.MQTTURL, Env: make([]EnvVar, len(env))}
			for i, v := range env {
				out.Env[i] = EnvVar{Name: v.Key, Value: v.Value}
			}
			w.Header().Set("Cache-Control", "no-store")
			return writeJSON(w, http.StatusOK, out)
		case "env":
			lines, err := cs.EnvLines()
			if err != nil {
				return err
			}
			return writeText(w, lines)
		case "rsc":
			if rosVersion == "" {
				return cp.Errorf(cp.CodeParameterMissing, "routeros_version", "format=rsc needs routeros_version, the RouterOS version of the router (%s, e.g. routeros_version=7.22): the script names only what exists on that version.", container.SupportedRouterOS)
			}
			script, err := cs.Script(container.ScriptOptions{RouterOSVersion: rosVersion})
			if err != nil {
				return err
			}
			return writeText(w, script)
		}
		return cp.Errorf(cp.CodeInvalidValue, "format", "format %q is not one of json, env, rsc.", format)
	}
	for _, base := range []string{"/vpc", ""} {
		s.handle("GET "+base+"/sites/{siteId}/enrollment", h)
	}
}

// accepts reports whether the request prefers mediaType to JSON: it names
// it and does not name application/json.
func accepts(r *http.Request, mediaType string) bool {
	want, json := false, false
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		want = want || mt == mediaType
		json = json || mt == "application/json"
	}
	return want && !json
}

func writeText(w http.ResponseWriter, text string) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err := io.WriteString(w, text)
	return err
}

// EnrollerFunc adapts a function to Enroller.
type EnrollerFunc func(org, site string) container.Site

// Enroll calls f.
func (f EnrollerFunc) Enroll(org, site string) container.Site { return f(org, site) }
