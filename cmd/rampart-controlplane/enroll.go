package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/controlplane/keys"
)

// runEnroll prints a site's agent environment, or with --rsc the RouterOS
// script that installs the agent on the router. The credentials in both are
// derived from the key file beside the database, so enroll reads only that
// file and works while the server runs on the same data directory.
//
// It uses keys.Load, not LoadOrCreate: credentials derived from a key that
// enroll had just invented (a mistyped --data-dir, or a control plane that
// never started there) would be printed as if valid and fail on every
// router. An uninitialised data directory is an error that says so.
func runEnroll(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fset := subcommandFlags("enroll", stderr, fmt.Sprintf(`Usage: rampart-controlplane enroll --data-dir D --org ORG --site SITE [--agent-mqtt-url URL] [--rsc --routeros-version V] [flags]

Prints the agent's environment for the site (KEY=value lines), or with --rsc
the RouterOS script that installs the agent container on a router running
RouterOS V (%s; /system/resource/print shows it). The script names only
what exists on that version. The output contains the site's secrets.

`, container.SupportedRouterOS))
	dataDir := fset.String("data-dir", DefaultDataDir, "data directory of the control plane (holds rampart.key)")
	org := fset.String("org", "", "organisation id (required)")
	site := fset.String("site", "", "site id, e.g. site_hq (required)")
	mqttURL := fset.String("mqtt-url", "", "the control plane's --mqtt-url (external broker); the agent's default broker URL")
	agentURL := fset.String("agent-mqtt-url", "", "broker URL as the agent on the router reaches it, e.g. ssl://rampart.example.net:8883 (default, as for serve: --mqtt-url, or this host's name and the --mqtt-listen port)")
	mqttListen := fset.String("mqtt-listen", ":1883", "the control plane's --mqtt-listen (embedded broker), for the default broker URL")
	tlsCert := fset.String("tls-cert", "", "the control plane's --tls-cert: with it the default broker URL is ssl:// on --mqtts-listen")
	mqttsListen := fset.String("mqtts-listen", broker.DefaultTLSListen, "the control plane's --mqtts-listen, for the default broker URL with --tls-cert")
	rsc := fset.Bool("rsc", false, "print the RouterOS script instead of the environment")
	rosVersion := fset.String("routeros-version", "", "with --rsc (required): the router's RouterOS version, "+container.SupportedRouterOS+", e.g. 7.22")

	rosUser := fset.String("routeros-user", container.DefaultRouterOSUser, "RouterOS user the agent logs in as (the script creates it)")
	rosAddr := fset.String("routeros-addr", "", "router API address as seen from the container (default: the gateway, port 8728, or 8729 with --routeros-tls)")
	rosTLS := fset.Bool("routeros-tls", false, "use api-ssl (the service needs a certificate; the script does not create one)")
	wanList := fset.String("wan-list", container.DefaultWANList, "interface list that faces the Internet")
	metricsAddr := fset.String("metrics-addr", "", "agent's /metrics listener (default: the agent's, :9273)")
	resync := fset.Duration("resync-interval", 0, "how often the agent re-reads the firewall (default: the agent's, 60s)")

	arch := fset.String("arch", "arm64", "router platform, names the default tarball (arm64, arm or amd64)")
	tarball := fset.String("tarball", "", "path of the uploaded image tarball on the router (default rampart-agent-<arch>.tar)")
	dir := fset.String("dir", container.DefaultDir, "router directory for the container's root and data, e.g. usb1/rampart-agent")
	veth := fset.String("veth", container.DefaultVeth, "name of the container's veth interface")
	containerAddr := fset.String("container-address", container.DefaultContainerAddress, "container's address/prefix on the veth")
	gateway := fset.String("gateway", container.DefaultGateway, "router's address on the veth, where the agent reaches the API")
	lanList := fset.String("lan-list", container.DefaultLANList, "interface list the veth joins so defconf's input rule lets the agent in")
	var apiAllow prefixList
	fset.Var(&apiAllow, "api-allow", "prefix that keeps access to the API service besides the container (repeatable or comma-separated)")
	noMount := fset.Bool("no-data-mount", false, "keep the agent's cache inside the container (no /data mount); the agent then runs unprivileged")

	if err := parseFlags(fset, args, os.Getenv); err != nil {
		return err
	}
	if *agentURL == "" {
		tlsListen := ""
		if *tlsCert != "" {
			tlsListen = *mqttsListen
		}
		*agentURL = DefaultAgentMQTTURL(*mqttURL, *mqttListen, tlsListen)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--org", *org}, {"--site", *site}, {"--agent-mqtt-url", *agentURL}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("enroll: %s required (see enroll -h)", strings.Join(missing, ", "))
	}
	if _, err := container.PlatformOf(*arch); err != nil {
		return fmt.Errorf("enroll: --arch %w", err)
	}
	if *rsc && *rosVersion == "" {
		return fmt.Errorf("enroll: --rsc needs --routeros-version: the script names what exists on one RouterOS version (%s); /system/resource/print on the router shows it", container.SupportedRouterOS)
	}
	if *rosVersion != "" {
		if err := container.CheckRouterOSVersion(*rosVersion); err != nil {
			return fmt.Errorf("enroll: --routeros-version: %w", err)
		}
	}

	k, err := keys.Load(*dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("enroll: %s has no %s: the control plane has never run on this data directory (start it once, or check --data-dir)", *dataDir, keys.KeyFile)
	} else if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}

	s := container.ForSite(k, *org, *site, *agentURL)
	s.RouterOSUser = *rosUser
	s.RouterOSAddr = *rosAddr
	s.RouterOSTLS = *rosTLS
	s.WANList = *wanList
	s.MetricsAddr = *metricsAddr
	s.ResyncInterval = *resync

	if !*rsc {
		lines, err := s.EnvLines()
		if err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
		_, err = io.WriteString(stdout, lines)
		return err
	}

	o := container.ScriptOptions{
		RouterOSVersion: *rosVersion,
		Tarball:         *tarball,
		Dir:             *dir,
		Veth:            *veth,
		LANList:         *lanList,
		APIAllowFrom:    apiAllow,
		NoDataMount:     *noMount,
		Arch:            *arch,
	}
	if o.Tarball == "" {
		o.Tarball = "rampart-agent-" + *arch + ".tar"
	}
	if o.ContainerAddress, err = netip.ParsePrefix(*containerAddr); err != nil {
		return fmt.Errorf("enroll: --container-address %q: want an address with a prefix length, e.g. %s", *containerAddr, container.DefaultContainerAddress)
	}
	if o.Gateway, err = netip.ParseAddr(*gateway); err != nil {
		return fmt.Errorf("enroll: --gateway %q: want an IPv4 address, e.g. %s", *gateway, container.DefaultGateway)
	}
	script, err := s.Script(o)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	_, err = io.WriteString(stdout, script)
	return err
}

// prefixList is a repeatable flag of comma-separated prefixes.
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = v.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(part)
		if err != nil {
			return fmt.Errorf("%q is not a prefix; want e.g. 192.168.88.0/24", part)
		}
		*p = append(*p, pfx)
	}
	return nil
}
