package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rampart-fw/rampart/protocol"
)

// One-time login links.
//
// A link is BaseURL + "/#login=" + a JWT (HS256) with its own key, issuer
// and audience, a jti and a lifetime of at most MaxLinkTTL. It is made to
// be redeemed once:
//
//   - The token sits in the URL's fragment, which browsers never send to a
//     server: it stays out of access logs, proxies and Referer headers,
//     and a chat client that prefetches the link cannot spend it. The
//     page's script reads it, removes it from the address bar and history,
//     and POSTs it to /console/login.
//   - The server remembers every jti it redeemed, in memory, until the
//     token expires (which bounds the table by the logins of the last
//     MaxLinkTTL). Memory rather than the store because nothing else needs
//     it and it needs no migration; what memory forgets at a restart is
//     covered by the next rule.
//   - A link issued before the process started is refused. A restarted
//     control plane has forgotten what it redeemed, so it cannot tell an
//     unused old link from a replayed one; it refuses both, and
//     `login-url` makes a new one in a second.
//   - Its key is derived from the API's signing key under a label of its
//     own, and its audience is not the API's: a link is not a bearer
//     token, and an API token is not a link.
//
// Several replicas each keep their own table: a link could then be
// redeemed once per replica within its few minutes. Sharing the table
// through the store is the fix when that matters.

// MaxLinkTTL bounds a login link's lifetime; DefaultLinkTTL is what
// login-url uses.
const (
	MaxLinkTTL     = time.Hour
	DefaultLinkTTL = 5 * time.Minute
)

const (
	linkIssuer   = "rampart-controlplane"
	linkAudience = "rampart-console-login"
	linkSubject  = "console-login"
	// maxRedeemed bounds the table of spent links; with MaxLinkTTL it
	// allows 100,000 logins an hour before refusing new ones.
	maxRedeemed = 100_000
)

// ErrLink wraps every refusal of a login link; the message says why.
var ErrLink = errors.New("login link refused")

// linkKey derives the links' HMAC key from the API's HS256 key.
func linkKey(jwtKey []byte) []byte {
	m := hmac.New(sha256.New, jwtKey)
	m.Write([]byte("rampart/console-login-link"))
	return m.Sum(nil)
}

// LinkOptions configures LoginURL.
type LinkOptions struct {
	// JWTKey is the embedded mode's HS256 key (keys.Key.JWTSigningKey).
	JWTKey []byte
	Org    string
	// BaseURL is where the console is served, such as
	// http://localhost:8080.
	BaseURL string
	// TTL defaults to DefaultLinkTTL; at most MaxLinkTTL.
	TTL time.Duration
	Now time.Time
}

// LoginURL returns a one-time link that logs a browser in to the console
// for an organisation.
func LoginURL(o LinkOptions) (string, error) {
	if !protocol.ValidOrgID(o.Org) {
		return "", fmt.Errorf("make login link: %q is not a valid organisation id (1-128 of A-Z a-z 0-9 _ . -, starting with a letter or digit)", o.Org)
	}
	if o.TTL == 0 {
		o.TTL = DefaultLinkTTL
	}
	if o.TTL < 0 || o.TTL > MaxLinkTTL {
		return "", fmt.Errorf("make login link: lifetime %s is outside (0, %s]", o.TTL, MaxLinkTTL)
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("make login link: base URL %q is not an http:// or https:// URL with a host", o.BaseURL)
	}
	if len(o.JWTKey) < 32 {
		return "", errors.New("make login link: key shorter than 32 bytes")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	var jti [16]byte
	rand.Read(jti[:])
	claims := jwt.MapClaims{
		"iss": linkIssuer, "aud": linkAudience, "sub": linkSubject, "org": o.Org,
		"iat": now.Unix(), "exp": now.Add(o.TTL).Unix(), "jti": hex.EncodeToString(jti[:]),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(linkKey(o.JWTKey))
	if err != nil {
		return "", fmt.Errorf("make login link: %w", err)
	}
	return strings.TrimRight(o.BaseURL, "/") + "/#login=" + tok, nil
}

// links redeems login links.
type links struct {
	key     []byte
	started time.Time
	parser  *jwt.Parser

	mu       sync.Mutex
	redeemed map[string]time.Time // jti -> until when it must stay remembered
}

const linkLeeway = 5 * time.Second

func newLinks(jwtKey []byte, started time.Time, now func() time.Time) *links {
	return &links{
		key: linkKey(jwtKey), started: started, redeemed: map[string]time.Time{},
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(linkIssuer),
			jwt.WithAudience(linkAudience), jwt.WithSubject(linkSubject), jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(), jwt.WithLeeway(linkLeeway), jwt.WithTimeFunc(now)),
	}
}

// redeem checks a link's token and spends it, returning its organisation.
func (l *links) redeem(raw string, now time.Time) (string, error) {
	claims := jwt.MapClaims{}
	if _, err := l.parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return l.key, nil }); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return "", fmt.Errorf("%w: this login link has expired; run `rampart-controlplane login-url` for a new one", ErrLink)
		}
		return "", fmt.Errorf("%w: this is not a login link of this control plane (it may be cut short, or from another data directory)", ErrLink)
	}
	org, _ := claims["org"].(string)
	jti, _ := claims["jti"].(string)
	iat, _ := claims.GetIssuedAt()
	exp, _ := claims.GetExpirationTime()
	if !protocol.ValidOrgID(org) || jti == "" || iat == nil || exp == nil || exp.Sub(iat.Time) > MaxLinkTTL {
		return "", fmt.Errorf("%w: the link's claims are incomplete or its lifetime is longer than %s", ErrLink, MaxLinkTTL)
	}
	if iat.Unix() < l.started.Unix() {
		return "", fmt.Errorf("%w: this link was made before the control plane last started, which forgets the links it redeemed; run `rampart-controlplane login-url` for a new one", ErrLink)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, spent := l.redeemed[jti]; spent {
		return "", fmt.Errorf("%w: this login link was already used; each link logs in once (run `rampart-controlplane login-url` for another)", ErrLink)
	}
	if len(l.redeemed) >= maxRedeemed {
		for k, until := range l.redeemed {
			if now.After(until) {
				delete(l.redeemed, k)
			}
		}
		if len(l.redeemed) >= maxRedeemed {
			return "", fmt.Errorf("%w: too many login links were redeemed in the last hour; log in with a token instead", ErrLink)
		}
	}
	l.redeemed[jti] = exp.Add(linkLeeway)
	return org, nil
}
