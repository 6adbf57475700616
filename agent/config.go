package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-fw/rampart/protocol"
)

// EnvTopicRoot is read besides the section 9 variables (protocol.Env*).
// It is optional and not part of the section 9 contract; it exists for
// control planes configured with another topic root.
const EnvTopicRoot = "RAMPART_TOPIC_ROOT"

// Defaults for optional settings.
const (
	DefaultRouterOSAddr    = "172.17.0.1:8728"
	DefaultRouterOSTLSAddr = "172.17.0.1:8729"
	DefaultStateDir        = "/var/lib/rampart-agent"
	DefaultMetricsAddr     = ":9273"
	DefaultResyncInterval  = 60 * time.Second
	DefaultWANList         = "WAN"
)

// Config is everything the agent needs to run. LoadConfig is the only place
// that builds one from the environment; tests build it directly.
type Config struct {
	// MQTTURLs are the broker's URLs, tried in order (a clustered broker
	// has several).
	MQTTURLs []*url.URL
	// MQTTCA is the path of a PEM file with a CA the agent trusts for
	// ssl:// brokers besides the system's; empty: the system's only.
	MQTTCA     string
	OrgID      string
	SiteID     string
	SiteSecret string
	TopicRoot  string

	RouterOSAddr     string
	RouterOSUser     string
	RouterOSPassword string
	RouterOSTLS      bool

	StateDir string
	// MetricsAddr is where /metrics and /healthz are served; empty disables
	// the listener.
	MetricsAddr    string
	ResyncInterval time.Duration
	WANList        string
}

// MQTTUser is the broker username of this site, "org/site".
func (c Config) MQTTUser() string { return protocol.SiteMQTTUser(c.OrgID, c.SiteID) }

// MQTTTLSConfig is the TLS configuration for ssl:// brokers: the system's
// roots (the image's CA bundle), plus the CA in MQTTCA if set.
func (c Config) MQTTTLSConfig() (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool() // an image without a bundle: only MQTTCA
	}
	if c.MQTTCA != "" {
		pem, err := os.ReadFile(c.MQTTCA)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", c.MQTTCA)
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// ConfigError lists every problem found in the environment, so an operator
// fixes them all in one round.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "invalid agent configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// LoadConfig reads the agent's configuration through lookup (os.LookupEnv in
// production). A missing or malformed setting is reported by variable name
// with what it expects; all problems are reported at once in a *ConfigError.
func LoadConfig(lookup func(string) (string, bool)) (Config, error) {
	var c Config
	var problems []string
	bad := func(name, format string, args ...any) {
		problems = append(problems, name+": "+fmt.Sprintf(format, args...))
	}
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	required := func(name, what string) string {
		v := get(name)
		if v == "" {
			bad(name, "is not set; want %s", what)
		}
		return v
	}

	if raw := required(protocol.EnvMQTTURL, "the broker URL, e.g. tcp://broker.example.net:1883 or ssl://broker.example.net:8883, or several separated by commas"); raw != "" {
		for _, one := range strings.Split(raw, ",") {
			one = strings.TrimSpace(one)
			u, err := url.Parse(one)
			switch {
			case one == "":
				bad(protocol.EnvMQTTURL, "%q has an empty entry; want URLs separated by single commas", raw)
			case err != nil:
				bad(protocol.EnvMQTTURL, "%q is not a URL; want e.g. tcp://broker.example.net:1883", one)
			case !validMQTTScheme(u.Scheme):
				bad(protocol.EnvMQTTURL, "scheme %q is not supported; want tcp, mqtt, ssl, tls or mqtts", u.Scheme)
			case u.Hostname() == "":
				bad(protocol.EnvMQTTURL, "%q has no host; want e.g. tcp://broker.example.net:1883", one)
			default:
				if u.Port() != "" {
					if _, err := parsePort(u.Port()); err != nil {
						bad(protocol.EnvMQTTURL, "port %q is not a TCP port (1-65535)", u.Port())
						continue
					}
				}
				c.MQTTURLs = append(c.MQTTURLs, u)
			}
		}
	}
	if v := get(protocol.EnvMQTTCA); v != "" {
		c.MQTTCA = v
		if _, err := c.MQTTTLSConfig(); err != nil {
			bad(protocol.EnvMQTTCA, "%v; want the path of a PEM file holding the CA certificate that signed the broker's", err)
		}
	}
	if c.OrgID = required(protocol.EnvOrgID, "the organisation id the control plane enrolled this site in"); c.OrgID != "" && !protocol.ValidOrgID(c.OrgID) {
		bad(protocol.EnvOrgID, "%q is not an organisation id; want 1-128 of [A-Za-z0-9_.-] starting with a letter or digit", c.OrgID)
	}
	if c.SiteID = required(protocol.EnvSiteID, "the site id, e.g. site_hq"); c.SiteID != "" && !protocol.ValidSiteID(c.SiteID) {
		bad(protocol.EnvSiteID, "%q is not a site id; want site_ followed by 1-64 letters or digits", c.SiteID)
	}
	c.SiteSecret = required(protocol.EnvSiteSecret, "the site's MQTT secret printed by `rampart-controlplane enroll`")

	c.TopicRoot = protocol.DefaultTopicRoot
	if v := get(EnvTopicRoot); v != "" {
		if strings.ContainsAny(v, "+#") || strings.HasPrefix(v, "/") || strings.HasSuffix(v, "/") {
			bad(EnvTopicRoot, "%q is not a topic root; want levels without wildcards, e.g. rampart/v1", v)
		}
		c.TopicRoot = v
	}

	if v := get(protocol.EnvRouterOSTLS); v != "" {
		b, err := parseBool(v)
		if err != nil {
			bad(protocol.EnvRouterOSTLS, "%q is not a boolean; want true or false", v)
		}
		c.RouterOSTLS = b
	}
	c.RouterOSAddr = DefaultRouterOSAddr
	if c.RouterOSTLS {
		c.RouterOSAddr = DefaultRouterOSTLSAddr
	}
	if v := get(protocol.EnvRouterOSAddr); v != "" {
		host, port, err := net.SplitHostPort(v)
		if err != nil || host == "" {
			bad(protocol.EnvRouterOSAddr, "%q is not host:port; want e.g. %s", v, DefaultRouterOSAddr)
		} else if _, err := parsePort(port); err != nil {
			bad(protocol.EnvRouterOSAddr, "port %q is not a TCP port (1-65535)", port)
		}
		c.RouterOSAddr = v
	}
	c.RouterOSUser = required(protocol.EnvRouterOSUser, "the RouterOS user the agent logs in as (a group with the api, read and write policies)")
	// The password may legitimately be empty (a lab router's admin).
	c.RouterOSPassword, _ = lookup(protocol.EnvRouterOSPassword)

	c.StateDir = DefaultStateDir
	if v, ok := lookup(protocol.EnvStateDir); ok {
		if strings.TrimSpace(v) == "" {
			bad(protocol.EnvStateDir, "is empty; want a writable directory for the agent's cache, e.g. %s", DefaultStateDir)
		}
		c.StateDir = v
	}
	c.MetricsAddr = DefaultMetricsAddr
	if v, ok := lookup(protocol.EnvMetricsAddr); ok {
		v = strings.TrimSpace(v)
		if v != "" {
			if _, port, err := net.SplitHostPort(v); err != nil {
				bad(protocol.EnvMetricsAddr, "%q is not [host]:port; want e.g. %s, or empty to disable metrics", v, DefaultMetricsAddr)
			} else if _, err := parsePort(port); err != nil && port != "0" {
				bad(protocol.EnvMetricsAddr, "port %q is not a TCP port (0-65535)", port)
			}
		}
		c.MetricsAddr = v
	}
	c.ResyncInterval = DefaultResyncInterval
	if v := get(protocol.EnvResyncInterval); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			bad(protocol.EnvResyncInterval, "%q is not a duration; want e.g. 60s or 5m", v)
		case d < time.Second:
			bad(protocol.EnvResyncInterval, "%s is too short; want at least 1s", d)
		default:
			c.ResyncInterval = d
		}
	}
	c.WANList = DefaultWANList
	if v, ok := lookup(protocol.EnvWANList); ok {
		v = strings.TrimSpace(v)
		if v == "" || strings.ContainsAny(v, ", \t=!") {
			bad(protocol.EnvWANList, "%q is not an interface list name; want one name such as WAN", v)
		}
		c.WANList = v
	}

	if len(problems) > 0 {
		return Config{}, &ConfigError{Problems: problems}
	}
	return c, nil
}

func validMQTTScheme(s string) bool {
	switch s {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
		return true
	}
	return false
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, errors.New("not a port")
	}
	return n, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, errors.New("not a boolean")
}
