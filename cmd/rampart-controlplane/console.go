package main

// The operator console (package console) in front of the API: the one
// place that decides how it logs in on this control plane.

import (
	"net/http"
	"time"

	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/console"
)

// newConsole wraps the API with the console. With --jwks-url the API takes
// only the identity provider's tokens, so the console does too: login
// links (signed with the data directory's key) are off.
func newConsole(m *Main, verifier *auth.Verifier) (http.Handler, error) {
	opts := console.Options{API: m.API, Verifier: verifier, Now: m.Now, Logger: m.Logger, Registry: m.Registry}
	if m.Config.JWKSURL == "" {
		key := m.Key.JWTSigningKey()
		opts.LinkKey = key
		opts.MintToken = func(org string, ttl time.Duration) (string, error) {
			var now time.Time
			if m.Now != nil {
				now = m.Now()
			}
			return auth.Mint(auth.MintOptions{Key: key, Org: org, OrgClaim: m.Config.JWTOrgClaim,
				Issuer: m.Config.JWTIssuer, Audience: m.Config.JWTAudience, TTL: ttl, Now: now})
		}
	}
	c, err := console.New(opts)
	if err != nil {
		return nil, err
	}
	m.Console = c
	return c, nil
}
