// Package auth verifies the bearer tokens of the REST API and mints the
// embedded mode's tokens.
//
// # Modes
//
// Embedded (the default): HS256 tokens signed with keys.Key.JWTSigningKey, a
// key derived from the rampart.key file beside the database, minted by the
// `token` subcommand (Mint). Production: RS256 (or other asymmetric) tokens
// from an Auth0-style issuer, verified against its JWKS URL with the issuer
// and audience given by flags; embedded tokens are then refused.
//
// Either way the organisation is a claim (org_id unless configured), checked
// with protocol.ValidOrgID so that it is safe in MQTT topics. Every failure is
// ErrUnauthenticated wrapped with a reason a person can act on; the reason
// never includes the token.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/rampart-fw/rampart/protocol"
)

// ErrUnauthenticated wraps every verification failure.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrJWKSNeedsIssuerAudience is New's error for a JWKS URL given without
// both an issuer and an audience.
var ErrJWKSNeedsIssuerAudience = errors.New("a JWKS URL needs both an issuer and an audience (--jwt-issuer and --jwt-audience): the identity provider signs tokens for other APIs with the same keys")

// Defaults of the embedded mode's tokens.
const (
	DefaultOrgClaim = "org_id"
	// DefaultIssuer and DefaultAudience are used by embedded tokens when no
	// --jwt-issuer / --jwt-audience is given.
	DefaultIssuer   = "rampart-controlplane"
	DefaultAudience = "rampart"
)

// Options configures a Verifier. The zero value plus HMACKey is the embedded
// mode.
type Options struct {
	// HMACKey verifies HS256 tokens (embedded mode). Ignored when JWKSURL
	// is set.
	HMACKey []byte
	// JWKSURL, when set, selects production mode: tokens are verified with
	// the keys published there (refreshed in the background until the
	// context given to New ends).
	JWKSURL string
	// Issuer and Audience are required claims; empty means DefaultIssuer and
	// DefaultAudience in embedded mode. With JWKSURL both must be set (New
	// fails otherwise).
	Issuer   string
	Audience string
	// OrgClaim names the organisation claim; empty means DefaultOrgClaim.
	OrgClaim string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient fetches the JWKS; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
}

// Verifier checks bearer tokens.
type Verifier struct {
	opts    Options
	keyfunc jwt.Keyfunc
	parser  *jwt.Parser
	leeway  time.Duration
	maxAge  time.Duration // how long a verified token is trusted without checking its signature again

	// verified caches tokens that verified, keyed by the raw token: a
	// client sends the same token with every request, and checking it
	// (base64, JSON, HMAC or RSA) was the largest CPU cost of a cached GET
	// after the network. An entry is used only within the time the token's
	// own claims are valid (exp and nbf, with the parser's leeway), so an
	// expired token gets the same refusal as without the cache; failures
	// are never cached.
	verified   sync.Map // raw token -> *verifiedToken
	numEntries atomic.Int64
}

type verifiedToken struct {
	org, sub    string
	from, until time.Time // valid while from <= now < until, as the parser judges
}

// maxCachedTokens bounds the cache (a few hundred bytes each); past it the
// cache starts over.
const maxCachedTokens = 4096

// jwksMaxAge bounds how long a production (JWKS) token is trusted
// without verifying its signature again, so a key withdrawn from the JWKS
// stops being honoured as it would be after the next refresh. Embedded
// tokens are signed with a key that never changes while the process runs:
// they are trusted until they expire.
const jwksMaxAge = 5 * time.Minute

// New returns a Verifier. In production mode it fetches the JWKS once and
// keeps refreshing it until ctx ends.
func New(ctx context.Context, opts Options) (*Verifier, error) {
	if opts.OrgClaim == "" {
		opts.OrgClaim = DefaultOrgClaim
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	v := &Verifier{opts: opts, leeway: 30 * time.Second}
	popts := []jwt.ParserOption{jwt.WithTimeFunc(opts.Now), jwt.WithExpirationRequired(), jwt.WithLeeway(v.leeway)}
	if opts.JWKSURL != "" {
		// An identity provider signs tokens for every API of the tenant:
		// the key alone says nothing about which API a token is for, so
		// without both claims pinned any of them would be accepted here.
		if opts.Issuer == "" || opts.Audience == "" {
			return nil, fmt.Errorf("create verifier: %w", ErrJWKSNeedsIssuerAudience)
		}
		v.maxAge = jwksMaxAge
		client := opts.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{opts.JWKSURL}, keyfunc.Override{Client: client})
		if err != nil {
			return nil, fmt.Errorf("load jwks %s: %w", opts.JWKSURL, err)
		}
		v.keyfunc = kf.Keyfunc
		popts = append(popts, jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"}),
			jwt.WithIssuer(opts.Issuer), jwt.WithAudience(opts.Audience))
	} else {
		if len(opts.HMACKey) < 32 {
			return nil, errors.New("create verifier: HMAC key shorter than 32 bytes")
		}
		key := opts.HMACKey
		v.keyfunc = func(*jwt.Token) (any, error) { return key, nil }
		popts = append(popts, jwt.WithValidMethods([]string{"HS256"}),
			jwt.WithIssuer(or(opts.Issuer, DefaultIssuer)), jwt.WithAudience(or(opts.Audience, DefaultAudience)))
	}
	v.parser = jwt.NewParser(popts...)
	return v, nil
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// Verify checks a raw token and returns its organisation.
func (v *Verifier) Verify(raw string) (org string, err error) {
	org, _, err = v.Identify(raw)
	return org, err
}

// Identify checks a raw token and returns its organisation and its
// subject (the sub claim, empty when the token has none), which the audit
// trail records as the author of a write.
func (v *Verifier) Identify(raw string) (org, subject string, err error) {
	now := v.opts.Now()
	if e, ok := v.verified.Load(raw); ok {
		t := e.(*verifiedToken)
		if !now.Before(t.from) && now.Before(t.until) {
			return t.org, t.sub, nil
		}
		// Expired (or the clock went back): verify again, which words
		// the refusal.
		if _, deleted := v.verified.LoadAndDelete(raw); deleted {
			v.numEntries.Add(-1)
		}
	}
	org, claims, err := v.verify(raw)
	if err != nil {
		return "", "", err
	}
	sub, _ := claims["sub"].(string)
	v.remember(raw, org, sub, claims, now)
	return org, sub, nil
}

// remember caches a token that just verified, for the time its claims
// keep it valid (the parser's own rules: before exp + leeway, not
// before nbf - leeway).
func (v *Verifier) remember(raw, org, sub string, claims jwt.MapClaims, now time.Time) {
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return
	}
	t := &verifiedToken{org: org, sub: sub, until: exp.Add(v.leeway)}
	if nbf, err := claims.GetNotBefore(); err == nil && nbf != nil {
		t.from = nbf.Add(-v.leeway)
	}
	if v.maxAge > 0 && t.until.After(now.Add(v.maxAge)) {
		t.until = now.Add(v.maxAge)
	}
	if v.numEntries.Load() >= maxCachedTokens {
		v.verified.Clear()
		v.numEntries.Store(0)
	}
	if _, loaded := v.verified.Swap(raw, t); !loaded {
		v.numEntries.Add(1)
	}
}

func (v *Verifier) verify(raw string) (string, jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(raw, claims, v.keyfunc); err != nil {
		return "", nil, fmt.Errorf("%w: %s", ErrUnauthenticated, reason(err))
	}
	org, _ := claims[v.opts.OrgClaim].(string)
	if org == "" {
		return "", nil, fmt.Errorf("%w: the token has no %q claim naming the organisation", ErrUnauthenticated, v.opts.OrgClaim)
	}
	if !protocol.ValidOrgID(org) {
		return "", nil, fmt.Errorf("%w: the %q claim is not a valid organisation id (1-128 of A-Z a-z 0-9 _ . -, starting with a letter or digit)", ErrUnauthenticated, v.opts.OrgClaim)
	}
	return org, claims, nil
}

// reason turns a jwt error into a sentence without the token's content.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "the bearer token is not a well-formed JWT"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired; get a new one"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token is for another audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the token is from another issuer"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "the token lacks a required claim (exp, iss or aud)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the token's signature does not verify (wrong key or algorithm)"
	}
	return "the token is not valid"
}

// MintOptions configures Mint.
type MintOptions struct {
	Key      []byte
	Org      string
	OrgClaim string // empty means DefaultOrgClaim
	Issuer   string // empty means DefaultIssuer
	Audience string // empty means DefaultAudience
	// Subject is the sub claim, who the audit trail names; empty means
	// "rampart-token:" + Org.
	Subject string
	TTL     time.Duration
	Now     time.Time
}

// Mint returns an embedded-mode HS256 token for an organisation.
func Mint(o MintOptions) (string, error) {
	if !protocol.ValidOrgID(o.Org) {
		return "", fmt.Errorf("mint token: %q is not a valid organisation id (1-128 of A-Z a-z 0-9 _ . -, starting with a letter or digit)", o.Org)
	}
	if o.TTL <= 0 {
		return "", errors.New("mint token: the lifetime must be positive")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	claims := jwt.MapClaims{
		"iss":                           or(o.Issuer, DefaultIssuer),
		"aud":                           or(o.Audience, DefaultAudience),
		"sub":                           or(o.Subject, "rampart-token:"+o.Org),
		"iat":                           now.Unix(),
		"exp":                           now.Add(o.TTL).Unix(),
		or(o.OrgClaim, DefaultOrgClaim): o.Org,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(o.Key)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}
