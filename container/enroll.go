package container

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-fw/rampart/protocol"
)

// Defaults of an enrollment. The container network is the one MikroTik's
// container manual uses (routeros.md section 4, "Network"): the container
// at .2, the router at .1 on the veth, which is also where the agent finds
// the router's API.
const (
	DefaultGateway          = "172.17.0.1"
	DefaultContainerAddress = "172.17.0.2/24"
	DefaultVeth             = "veth-rampart"
	DefaultRouterOSUser     = "rampart-agent"
	DefaultWANList          = "WAN"
	DefaultLANList          = "LAN"
	DefaultTarball          = "rampart-agent-arm64.tar"
	DefaultDir              = "rampart-agent"
	// Tag is the comment on every RouterOS item Script creates, and the name
	// of its user group, environment list and mount: what a second run
	// finds and replaces.
	Tag = "rampart-agent"
)

// ErrInvalid wraps every validation error of Site and ScriptOptions.
var ErrInvalid = errors.New("invalid enrollment")

// Secrets derives a site's credentials; controlplane/keys.Key implements it.
type Secrets interface {
	SiteSecret(org, site string) string
	RouterOSPassword(org, site string) string
}

// Site is one site's agent: everything its environment and its RouterOS
// script need. Zero optional fields take the defaults above.
type Site struct {
	OrgID, SiteID string
	// MQTTURL is the broker URL as the agent (on the router) must use it,
	// e.g. ssl://rampart.example.net:8883: the control plane cannot guess
	// how routers reach it.
	MQTTURL    string
	SiteSecret string

	// RouterOSAddr is host:port of the router's API as seen from the
	// container. Empty: the veth gateway, port 8728 (8729 with TLS).
	RouterOSAddr     string
	RouterOSUser     string
	RouterOSPassword string
	RouterOSTLS      bool

	// StateDir empty: StateDir (/data, the image's volume).
	StateDir string
	// WANList empty: WAN.
	WANList string
	// MetricsAddr and ResyncInterval are left to the agent's defaults when
	// zero.
	MetricsAddr    string
	ResyncInterval time.Duration
}

// ForSite is the Site of org/site with its credentials derived from sec and
// every other field at its default.
func ForSite(sec Secrets, org, site, mqttURL string) Site {
	return Site{
		OrgID:            org,
		SiteID:           site,
		MQTTURL:          mqttURL,
		SiteSecret:       sec.SiteSecret(org, site),
		RouterOSUser:     DefaultRouterOSUser,
		RouterOSPassword: sec.RouterOSPassword(org, site),
	}
}

// EnvVar is one variable of the agent's environment.
type EnvVar struct{ Key, Value string }

// Env validates s and returns the agent's environment, in a fixed order. The
// agent would reject what Env rejects; catching it here tells the operator
// before anything reaches a router.
func (s Site) Env() ([]EnvVar, error) {
	return s.env(netip.MustParseAddr(DefaultGateway))
}

func (s Site) env(gateway netip.Addr) ([]EnvVar, error) {
	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	if !protocol.ValidOrgID(s.OrgID) {
		bad("org", "%q is not an organisation id; want 1-128 of [A-Za-z0-9_.-] starting with a letter or digit", s.OrgID)
	}
	if !protocol.ValidSiteID(s.SiteID) {
		bad("site", "%q is not a site id; want site_ followed by 1-64 letters or digits", s.SiteID)
	}
	if s.MQTTURL == "" {
		bad("mqtt-url", "is required: the broker URL as routers reach it, e.g. ssl://rampart.example.net:8883")
	} else if u, err := url.Parse(s.MQTTURL); err != nil || hasControl(s.MQTTURL) {
		bad("mqtt-url", "%q is not a URL; want e.g. tcp://rampart.example.net:1883", s.MQTTURL)
	} else if !validMQTTScheme(u.Scheme) {
		bad("mqtt-url", "scheme %q is not supported by the agent; want tcp, mqtt, ssl, tls or mqtts", u.Scheme)
	} else if u.Hostname() == "" {
		bad("mqtt-url", "%q has no host; want e.g. tcp://rampart.example.net:1883", s.MQTTURL)
	} else if p := u.Port(); p != "" && !validPort(p) {
		bad("mqtt-url", "port %q is not a TCP port (1-65535)", p)
	}
	if s.SiteSecret == "" || hasControl(s.SiteSecret) {
		bad("site secret", "must be non-empty, without control characters")
	}
	addr := s.RouterOSAddr
	if addr == "" {
		port := "8728"
		if s.RouterOSTLS {
			port = "8729"
		}
		addr = net.JoinHostPort(gateway.String(), port)
	} else if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || !validPort(port) || hasControl(addr) {
		bad("routeros-addr", "%q is not host:port; want e.g. %s:8728", addr, gateway)
	}
	user := s.RouterOSUser
	if user == "" {
		user = DefaultRouterOSUser
	}
	if hasControl(user) {
		bad("routeros-user", "%q contains control characters", user)
	}
	if hasControl(s.RouterOSPassword) {
		bad("routeros-password", "contains control characters")
	}
	stateDir := s.StateDir
	if stateDir == "" {
		stateDir = StateDir
	} else if !strings.HasPrefix(stateDir, "/") || hasControl(stateDir) {
		bad("state-dir", "%q is not an absolute path inside the container; want e.g. %s", stateDir, StateDir)
	}
	wan := s.WANList
	if wan == "" {
		wan = DefaultWANList
	}
	// The agent's config loader refuses the same characters.
	if strings.ContainsAny(wan, ", \t=!") || hasControl(wan) {
		bad("wan-list", "%q is not an interface list name; want one name such as WAN", wan)
	}
	if s.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(s.MetricsAddr); err != nil || (port != "0" && !validPort(port)) || hasControl(s.MetricsAddr) {
			bad("metrics-addr", "%q is not [host]:port; want e.g. :9273", s.MetricsAddr)
		}
	}
	if s.ResyncInterval != 0 && s.ResyncInterval < time.Second {
		bad("resync-interval", "%s is too short; want at least 1s", s.ResyncInterval)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}

	env := []EnvVar{
		{protocol.EnvMQTTURL, s.MQTTURL},
		{protocol.EnvOrgID, s.OrgID},
		{protocol.EnvSiteID, s.SiteID},
		{protocol.EnvSiteSecret, s.SiteSecret},
		{protocol.EnvRouterOSAddr, addr},
		{protocol.EnvRouterOSUser, user},
		{protocol.EnvRouterOSPassword, s.RouterOSPassword},
		{protocol.EnvRouterOSTLS, strconv.FormatBool(s.RouterOSTLS)},
		{protocol.EnvStateDir, stateDir},
		{protocol.EnvWANList, wan},
	}
	if s.MetricsAddr != "" {
		env = append(env, EnvVar{protocol.EnvMetricsAddr, s.MetricsAddr})
	}
	if s.ResyncInterval != 0 {
		env = append(env, EnvVar{protocol.EnvResyncInterval, s.ResyncInterval.String()})
	}
	return env, nil
}

// EnvLines validates s and returns its environment as KEY=value lines, the
// format of `docker run --env-file`: values are literal, unquoted, and
// cannot contain a newline (Env refuses control characters).
func (s Site) EnvLines() (string, error) {
	env, err := s.Env()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range env {
		b.WriteString(e.Key + "=" + e.Value + "\n")
	}
	return b.String(), nil
}

func validMQTTScheme(s string) bool {
	switch s {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
		return true
	}
	return false
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// Quote returns s as a RouterOS script string literal. Inside double quotes
// RouterOS gives meaning to `"` and `\`, to `$` (variable substitution, and
// `$[...]`/`$(...)` command and expression substitution) and, in the
// terminal, to `?` (help). Each of those is escaped with a backslash, and
// every control or non-ASCII byte is written as \XX, two upper-case hex
// digits, so the literal is one line of plain ASCII and decodes to exactly
// the bytes of s. Source: the RouterOS scripting manual, "Constant Escape
// Sequences" (\" \\ \n \r \t \$ \? \_ \a \b \f \v and \xx "from hex value,
// hex number should use capital letters"), wiki.mikrotik.com Manual:Scripting
// and help.mikrotik.com Scripting.
func Quote(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\' || c == '$' || c == '?':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			b.WriteByte('\\')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
