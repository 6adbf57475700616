// Command rampart-controlplane serves the Security Groups REST API, stores
// policy in bbolt (or, with --store-url, in PostgreSQL shared by several
// control planes), publishes each site's desired state over MQTT (an
// embedded broker or an external one) and takes the sites' status back.
//
// Usage:
//
//	rampart-controlplane [flags]                         serve (the default)
//	rampart-controlplane token --data-dir D --org ORG    print a bearer token
//	rampart-controlplane enroll --org ORG --site SITE    print a site's agent environment
//	rampart-controlplane login-url --org ORG             print a one-time console login link
//	rampart-controlplane migrate --from-bolt F --store-url U   copy a bbolt store into PostgreSQL
//	rampart-controlplane <subcommand> -h                 help of a subcommand
//
// Every flag can also be set in the environment as RAMPART_<FLAG_IN_CAPS>
// (RAMPART_HTTP_ADDR for --http-addr); a flag on the command line wins. Flags
// and the environment are read only in this package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/internal/buildinfo"
)

// subcommands maps the first argument to a subcommand. No argument, a first
// argument that starts with "-", or "serve" serves.
var subcommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"token":     runToken,
	"enroll":    runEnroll,
	"login-url": runLoginURL,
	"migrate":   runMigrate,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return // the usage was printed
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rampart-controlplane:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if buildinfo.VersionRequested(args) {
		_, err := fmt.Fprintln(stdout, buildinfo.Line("rampart-controlplane"))
		return err
	}
	if len(args) > 0 && args[0] == "serve" {
		return runServe(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, ok := subcommands[args[0]]
		if !ok {
			return fmt.Errorf("unknown subcommand %q (known: %s)", args[0], strings.Join(subcommandNames(), ", "))
		}
		return cmd(ctx, args[1:], stdout, stderr)
	}
	return runServe(ctx, args, stdout, stderr)
}

func subcommandNames() []string {
	names := []string{"serve"}
	for n := range subcommands {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Config is everything the serve path is configured with; the flags of
// DESIGN.md section 9 fill it.
type Config struct {
	HTTPAddr string
	DataDir  string
	// StoreURL is a PostgreSQL URL; empty means the bbolt file in DataDir.
	StoreURL string
	// ReplicaID names this control plane among those sharing StoreURL's
	// database (the holder of its leases); empty means host name and pid.
	ReplicaID string
	// MQTTURL is the external broker, or the nodes of a clustered one
	// separated by commas; empty means embedded.
	MQTTURL string
	// MQTTListen is the embedded broker's plain listener; empty means
	// broker.DefaultListen, or its loopback only with TLS.
	MQTTListen string
	// MQTTSListen is the embedded broker's ssl:// listener, used with TLS;
	// empty means broker.DefaultTLSListen.
	MQTTSListen string
	// MQTTCA is a PEM file of CAs the control plane trusts for an external
	// ssl:// broker, beside the system's.
	MQTTCA string
	// TLSCert and TLSKey (PEM files) turn on HTTPS for the API and the
	// embedded broker's ssl:// listener.
	TLSCert, TLSKey string
	// AgentMQTTURL is the broker URL enrollment hands to agents (how routers
	// reach the broker); empty means DefaultAgentMQTTURL of the above.
	AgentMQTTURL string
	JWKSURL      string
	JWTIssuer    string
	JWTAudience  string
	JWTOrgClaim  string
	SyncTimeout  time.Duration
	Demo         int // simulated routers to start in-process
	LogLevel     string
	// Quotas bound each organisation (--quota-*).
	Quotas cp.Quotas
	// AuditRetention is how long audit events are kept.
	AuditRetention time.Duration
}

// DefaultDataDir is where data lives unless --data-dir says otherwise.
const DefaultDataDir = "./rampart-data"

// bindConfig registers the serve flags on fs.
func bindConfig(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.HTTPAddr, "http-addr", ":8080", "address of the REST API, /metrics and health checks")
	fs.StringVar(&c.DataDir, "data-dir", DefaultDataDir, "directory of the bbolt database and the key file rampart.key")
	fs.StringVar(&c.StoreURL, "store-url", "", "PostgreSQL URL (postgres://user@host:5432/db?sslmode=verify-full) to keep the policy in, shared by every control plane that names it; empty keeps it in the bbolt file in --data-dir")
	fs.StringVar(&c.ReplicaID, "replica-id", "", "name of this control plane among those sharing --store-url, unique to each (default: host name and process id)")
	fs.StringVar(&c.MQTTURL, "mqtt-url", "", "external MQTT broker (tcp://host:1883, ssl://host:8883), or the nodes of a cluster separated by commas; empty starts the embedded broker")
	fs.StringVar(&c.MQTTListen, "mqtt-listen", "", "plain (tcp://) listen address of the embedded MQTT broker (default :1883, or 127.0.0.1:1883 with --tls-cert)")
	fs.StringVar(&c.MQTTSListen, "mqtts-listen", broker.DefaultTLSListen, "ssl:// listen address of the embedded MQTT broker, with --tls-cert")
	fs.StringVar(&c.MQTTCA, "mqtt-ca", "", "PEM file of CAs to trust for an ssl:// --mqtt-url, beside the system's (a private CA)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) for HTTPS on --http-addr and ssl:// on --mqtts-listen; with --tls-key")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.AgentMQTTURL, "agent-mqtt-url", "", "broker URL as agents on routers reach it, handed out by enrollment (default: --mqtt-url, or this host's name and the --mqtt-listen port)")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "JWKS URL of an Auth0-style issuer; set to accept only its RS256 tokens instead of embedded tokens")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "required iss claim (with --jwks-url)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "required aud claim (with --jwks-url)")
	fs.StringVar(&c.JWTOrgClaim, "jwt-org-claim", "org_id", "claim that names the organisation")
	fs.DurationVar(&c.SyncTimeout, "sync-timeout", 2*time.Minute, "how long a group or prefix list may stay syncing before it is failed")
	fs.IntVar(&c.Demo, "demo", 0, "also start N simulated routers with their agents in-process")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&c.Quotas.Sites, "quota-sites", cp.DefaultQuotas.Sites, "sites each organisation may have (named by its groups and prefix lists, or enrolled)")
	fs.IntVar(&c.Quotas.SecurityGroups, "quota-security-groups", cp.DefaultQuotas.SecurityGroups, "security groups each organisation may have")
	fs.IntVar(&c.Quotas.PrefixLists, "quota-prefix-lists", cp.DefaultQuotas.PrefixLists, "prefix lists each organisation may have")
	fs.IntVar(&c.Quotas.Decommissioned, "quota-decommissioned-sites", cp.DefaultQuotas.Decommissioned, "decommissioned sites each organisation may have whose credentials stay refused (re-enrolling one lifts its refusal)")
	fs.DurationVar(&c.AuditRetention, "audit-retention", cp.DefaultAuditRetention, "how long audit events (GET /vpc/audit-events, versions) are kept")
}

// parseFlags parses args, then fills every flag not given on the command
// line from RAMPART_<FLAG_IN_CAPS>.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := "RAMPART_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("environment %s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("parse log level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
