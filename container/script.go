package container

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/rampart-fw/rampart/protocol"
)

// ScriptOptions describes the router side of an enrollment. Every field but
// RouterOSVersion has a default for its zero value.
type ScriptOptions struct {
	// RouterOSVersion is the version the router runs, e.g. 7.22 or 7.22.1
	// (required; RouterOSVersions lists the supported ones). The script
	// names only what exists on that version and refuses, when it runs, a
	// router whose version uses other names.
	RouterOSVersion string
	// Tarball is the image tarball's path in the router's /file list, e.g.
	// usb1/rampart-agent-arm64.tar. Empty: DefaultTarball.
	Tarball string
	// Dir is the router directory for the container's root and its /data
	// mount (Dir/root, Dir/data), e.g. usb1/rampart-agent. Empty:
	// DefaultDir, on the internal flash: the agent writes only its small
	// cache, and only when the desired state changes.
	Dir string
	// Veth is the veth interface's name. Empty: DefaultVeth.
	Veth string
	// ContainerAddress is the container's address and prefix on the veth;
	// Gateway is the router's address on it, where the agent reaches the
	// API. Zero: DefaultContainerAddress and DefaultGateway.
	ContainerAddress netip.Prefix
	Gateway          netip.Addr
	// LANList is the interface list the veth joins so that defconf's input
	// rule ("drop all not coming from LAN") lets the agent reach the API.
	// Empty: DefaultLANList.
	LANList string
	// APIAllowFrom are prefixes, besides the container's subnet, from which
	// the api (or api-ssl) service stays reachable after the script
	// restricts it.
	APIAllowFrom []netip.Prefix
	// Arch is the tarball's platform (arm64, arm or amd64). When set, the
	// script warns if the router's architecture-name differs: the container
	// would then fail with an exec format error.
	Arch string
	// NoDataMount keeps the agent's cache inside the container instead of
	// a /data mount. The container then runs as the image's unprivileged
	// user; with the mount it runs as root, because RouterOS creates a
	// mount's source directory owned by root and has no chown.
	NoDataMount bool
}

func (o ScriptOptions) withDefaults() ScriptOptions {
	if o.Tarball == "" {
		o.Tarball = DefaultTarball
	}
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	o.Dir = strings.TrimRight(o.Dir, "/")
	if o.Veth == "" {
		o.Veth = DefaultVeth
	}
	if !o.ContainerAddress.IsValid() {
		o.ContainerAddress = netip.MustParsePrefix(DefaultContainerAddress)
	}
	if !o.Gateway.IsValid() {
		o.Gateway = netip.MustParseAddr(DefaultGateway)
	}
	if o.LANList == "" {
		o.LANList = DefaultLANList
	}
	return o
}

func (o ScriptOptions) validate() error {
	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	ca, gw := o.ContainerAddress, o.Gateway
	net := ca.Masked()
	switch {
	case !ca.Addr().Is4() || ca.Bits() < 8 || ca.Bits() > 30:
		bad("container-address", "%s: want an IPv4 address with a prefix length of 8 to 30, e.g. %s", ca, DefaultContainerAddress)
	case !gw.Is4() || !net.Contains(gw):
		bad("gateway", "%s is not in the container's subnet %s", gw, net)
	case gw == ca.Addr():
		bad("gateway", "%s is the container's own address", gw)
	case ca.Addr() == net.Addr() || gw == net.Addr():
		bad("container-address", "%s or %s is the subnet's network address", ca.Addr(), gw)
	}
	for _, p := range o.APIAllowFrom {
		if !p.IsValid() || !p.Addr().Is4() || p != p.Masked() {
			bad("api-allow", "%s: want an IPv4 prefix without host bits, e.g. 192.168.88.0/24", p)
		}
	}
	if o.Arch != "" {
		if _, err := PlatformOf(o.Arch); err != nil {
			bad("arch", "%v", err)
		}
	}
	for field, v := range map[string]string{"tarball": o.Tarball, "dir": o.Dir, "veth": o.Veth, "lan-list": o.LANList} {
		if v == "" || hasControl(v) {
			bad(field, "%q: want a non-empty name without control characters", v)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// Script returns the RouterOS script that installs s's agent on a router
// that runs o.RouterOSVersion, has containers enabled and the tarball
// uploaded. It is one `{...}` block, so RouterOS parses all of it before
// running any of it, and it stops at the first error. Running it again
// replaces everything an earlier run created (found by Tag). Every value from
// s or o is written with Quote or is a formatted IP address, so no input can
// end a string early or be evaluated.
//
// The script names only what exists on o.RouterOSVersion (see routeros.go
// for why it is generated per version); its first step stops it on a router
// whose version uses other names. A missing version is an error wrapping
// ErrInvalid; an unsupported one wraps ErrRouterOSVersion too.
//
// Tests call it as the control plane does:
//
//	s := container.ForSite(key, "org_demo", "site_hq", "tcp://broker:1883")
//	script, err := s.Script(container.ScriptOptions{RouterOSVersion: "7.21"})
func (s Site) Script(o ScriptOptions) (string, error) {
	if o.RouterOSVersion == "" {
		return "", fmt.Errorf("%w: routeros-version: required: the script names only what exists on one RouterOS version; give the router's, %s (/system/resource/print shows it)", ErrInvalid, SupportedRouterOS)
	}
	minor, err := routerOSMinor(o.RouterOSVersion)
	if err != nil {
		return "", fmt.Errorf("%w: routeros-version: %w", ErrInvalid, err)
	}
	d := dialectOf(minor)
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return "", err
	}
	env, err := s.env(o.Gateway)
	if err != nil {
		return "", err
	}
	if s.RouterOSPassword == "" {
		return "", fmt.Errorf("%w: routeros-password: the script creates the agent's RouterOS user and needs its password", ErrInvalid)
	}
	var user string
	var tls bool
	for _, e := range env {
		switch e.Key {
		case protocol.EnvRouterOSUser:
			user = e.Value
		case protocol.EnvRouterOSTLS:
			tls = e.Value == "true"
		}
	}
	service := "api"
	if tls {
		service = "api-ssl"
	}
	subnet := o.ContainerAddress.Masked()
	allow := []string{subnet.String()}
	for _, p := range o.APIAllowFrom {
		allow = append(allow, p.String())
	}
	band := fmt.Sprintf("7.%d", d.from)
	if d.to != d.from {
		band = fmt.Sprintf("7.%d to 7.%d", d.from, d.to)
	}
	// versionNote goes above each line whose names depend on the version:
	// it is where RouterOS's load-time error points on a router of another
	// version, before the version check can run.
	versionNote := fmt.Sprintf("# (RouterOS %s names; a syntax error here means the router runs another\n# version: generate the script for it with --routeros-version.)", band)
	q := Quote
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	line("# Rampart agent for site %s of organisation %s.", s.SiteID, s.OrgID)
	line("# Generated by `rampart-controlplane enroll --rsc` for RouterOS %s: it", o.RouterOSVersion)
	line("# uses names that exist on RouterOS %s only, and stops on any other.", band)
	line("# It needs the container package, device-mode container=yes, and the image")
	line("# tarball uploaded to the path in tarball below.")
	line("# Paste it into a terminal, or upload it and run: /import file-name=<this file>")
	line("# Running it again replaces everything it created (comment %q).", Tag)
	line("#")
	line("# NOTE: it restricts the /ip/service %s to %s: API clients", service, strings.Join(allow, ","))
	line("# elsewhere lose access to it (rerun enroll with --api-allow CIDR to keep them).")
	line("# Nothing else (winbox, ssh, www, api-ssl or api) is touched, and no")
	line("# address-list entry or timeout is created.")
	line("{")
	line(":local tag %s", q(Tag))
	line(":local tarball %s", q(o.Tarball))
	line(":local rootDir %s", q(o.Dir+"/root"))
	line(":local dataDir %s", q(o.Dir+"/data"))
	line(":local veth %s", q(o.Veth))
	line(":local lanList %s", q(o.LANList))
	line(":local apiUser %s", q(user))
	line(":local apiPassword %s", q(s.RouterOSPassword))
	line("")
	line("# State of a container: running, stopped, extracting, error... RouterOS")
	line("# has reported it as a status property (\"created\" once extracted on some")
	line("# releases) and as running/stopped flags; read whichever this one has.")
	line("# get's property name is a value, checked when it runs, so on-error")
	line("# covers a release without one of them [I].")
	line(":local ctState do={")
	line("  :local st \"\"")
	line("  :do { :set st [/container/get $1 status] } on-error={}")
	line("  :do { :if ([/container/get $1 stopped]) do={ :set st \"stopped\" } } on-error={}")
	line("  :do { :if ([/container/get $1 running]) do={ :set st \"running\" } } on-error={}")
	line("  :if ($st = \"created\") do={ :set st \"stopped\" }")
	line("  :return $st")
	line("}")
	line("")
	line("# 1. Check before changing anything, the version first: the names below")
	line("# are those of RouterOS %s.", band)
	line(":local ver [/system/resource/get version]")
	line(":local minor [:tonum [:pick $ver 2 4]]")
	line(":if ([:pick $ver 0 2] != \"7.\" || [:typeof $minor] != \"num\") do={ :set minor 0 }")
	line(":if ($minor < %d || $minor > %d) do={", d.from, d.to)
	line("  :error (\"rampart: this script was generated for RouterOS %s and uses names that exist on %s only; this router runs \" . $ver . \". Generate the script for this version (enroll --rsc --routeros-version, or routeros_version= on the enrollment route); Rampart supports %s.\")", o.RouterOSVersion, band, SupportedRouterOS)
	line("}")
	line("# Whether /system/device-mode has get is not known for every release [I]:")
	line("# :parse makes the command a value checked when it runs, so a release")
	line("# without it cannot make the whole script fail to load.")
	line(":local dm \"\"")
	line(":do { :local getDM [:parse \":return [/system/device-mode/get container]\"]; :set dm [$getDM] } on-error={}")
	line(":if ([:tostr $dm] = \"false\" || [:tostr $dm] = \"no\") do={")
	line("  :error \"rampart: containers are disabled; run /system/device-mode/update container=yes and confirm it on the device first\"")
	line("}")
	line(":if ([:len [/file/find where name=$tarball]] = 0) do={")
	line("  :error (\"rampart: no file \" . $tarball . \"; upload the image tarball first (see the README)\")")
	line("}")
	if o.Arch != "" {
		// architecture-name as /system/resource prints it [I: x86_64 on
		// CHR and x86; arm64 and arm on MikroTik's ARM boards]; a warning,
		// not an error, in case a release names it otherwise.
		rosArch := map[string]string{"arm64": "arm64", "arm": "arm", "amd64": "x86_64"}[o.Arch]
		line(":local arch \"\"")
		line(":do { :set arch [/system/resource/get architecture-name] } on-error={}")
		line(":if ($arch != \"\" && $arch != %s) do={", q(rosArch))
		line("  :put (\"rampart: warning: this router is \" . $arch . \" but the tarball is for %s; build it with rampart-image --arch to match\")", o.Arch)
		line("}")
	}
	line(":local dns \"\"")
	line(":do { :set dns ([:tostr [/ip/dns/get servers]] . [:tostr [/ip/dns/get dynamic-servers]]) } on-error={ :set dns \"unknown\" }")
	line(":if ($dns = \"\") do={")
	line("  :put \"rampart: warning: /ip/dns has no servers; RouterOS does not start a container without DNS (set /ip/dns servers=...)\"")
	line("}")
	line("# Dynamic addresses (a DHCP client's) count here: they use the subnet too.")
	line(":if ([:len [/ip/address/find where network=%s interface!=$veth]] > 0) do={", subnet.Addr())
	line("  :error \"rampart: %s is already used by another interface; rerun enroll with --container-address and --gateway in a free subnet\"", subnet)
	line("}")
	line("")
	line("# 2. Remove what an earlier run created, the old container first.")
	line("# dynamic=no: a dynamic row (a DHCP address, a UPnP or hotspot rule, a")
	line("# dynamic list member) cannot be removed, and none of them is ours.")
	line(":foreach c in=[/container/find where comment=$tag] do={")
	line("  :local st [$ctState $c]")
	line("  :if ($st != \"stopped\" && $st != \"error\") do={ :do { /container/stop $c } on-error={} }")
	line("  :local n 0")
	line("  :while ($st != \"stopped\" && $st != \"error\" && $n < 60) do={ :delay 1s; :set n ($n + 1); :set st [$ctState $c] }")
	line("  /container/remove $c")
	line("}")
	line(":local n 0")
	line(":while ([:len [/container/find where comment=$tag]] > 0 && $n < 60) do={ :delay 1s; :set n ($n + 1) }")
	line("/container/envs/remove [find where list=$tag]")
	// Also with NoDataMount: an earlier run may have made the mount. 7.21
	// turned every 7.20 mount into a list of the same name, so list=$tag
	// also finds what a 7.20 script made before an upgrade.
	line(versionNote)
	line("/container/mounts/remove [find where %s=$tag]", d.mountKey)
	line("/ip/firewall/nat/remove [find where comment=$tag dynamic=no]")
	line("/interface/list/member/remove [find where comment=$tag dynamic=no]")
	line("/ip/address/remove [find where comment=$tag dynamic=no]")
	line("/interface/veth/remove [find where name=$veth]")
	line("/user/remove [find where name=$apiUser]")
	line("/user/group/remove [find where name=$tag]")
	line("")
	line("# 3. The container's network: a veth with the router at %s. A bare veth", o.Gateway)
	line("# rather than a bridge: one container needs no L2 segment, and its subnet")
	line("# stays off every LAN bridge. Joining the LAN list lets defconf's input")
	line("# rule pass the agent's API connection; the masquerade lets it reach the")
	line("# broker whatever the routes back to %s are.", subnet)
	line("/interface/veth/add name=$veth address=%s gateway=%s comment=$tag", o.ContainerAddress, o.Gateway)
	line("/ip/address/add address=%s interface=$veth comment=$tag", netip.PrefixFrom(o.Gateway, o.ContainerAddress.Bits()))
	line(":if ([:len [/interface/list/find where name=$lanList]] > 0) do={")
	line("  /interface/list/member/add list=$lanList interface=$veth comment=$tag")
	line("} else={")
	line("  :put (\"rampart: no interface list \" . $lanList . \"; make sure the input chain accepts %s to %s port %s\")", o.ContainerAddress.Addr(), o.Gateway, map[bool]string{false: "8728", true: "8729"}[tls])
	line("}")
	line("/ip/firewall/nat/add chain=srcnat action=masquerade src-address=%s comment=$tag", subnet)
	line("")
	line("# 4. The agent's RouterOS user: a group with only the api, read and write")
	line("# policies, and a login allowed only from the container's address.")
	line("/user/group/add name=$tag policy=api,read,write comment=$tag")
	line("/user/add name=$apiUser group=$tag password=$apiPassword address=%s comment=$tag", netip.PrefixFrom(o.ContainerAddress.Addr(), 32))
	line("")
	line("# 5. Restrict the %s service to the container's subnet (DESIGN.md section 8).", service)
	line("# API clients from any other address are refused from now on. Since 7.19")
	line("# /ip/service also lists a dynamic row per active connection, under the")
	line("# service's name: dynamic=no finds the service itself.")
	line(":local svc [/ip/service/find where name=%s dynamic=no]", q(service))
	line(":if ([:len $svc] != 1) do={")
	line("  :error \"rampart: found no single /ip/service named %s\"", service)
	line("}")
	line("# The property is address= until 7.23 and available-from= from 7.24.")
	line(versionNote)
	line("/ip/service/set $svc disabled=no %s=%s", d.serviceAllow, strings.Join(allow, ","))
	line("")
	line("# 6. The agent's environment.")
	for _, e := range env {
		value := q(e.Value)
		switch e.Key {
		case protocol.EnvRouterOSUser:
			value = "$apiUser"
		case protocol.EnvRouterOSPassword:
			value = "$apiPassword"
		}
		line("/container/envs/add list=$tag key=%s value=%s", q(e.Key), value)
	}
	line("")
	line("# 7. The container, from the tarball.")
	common := "file=$tarball interface=$veth root-dir=$rootDir envlists=$tag start-on-boot=yes logging=yes comment=$tag"
	if o.NoDataMount {
		line("/container/add %s", common)
	} else {
		line("# The agent runs as root here: RouterOS creates the mount's directory")
		line("# owned by root and cannot chown it, so the image's unprivileged user")
		line("# could not write its cache there. Mounts are named (name=, mounts=)")
		line("# on 7.20 and are lists (list=, mountlists=) from 7.21.")
		line(versionNote)
		line("/container/mounts/add %s=$tag src=$dataDir dst=%s", d.mountKey, q(StateDir))
		line("/container/add %s %s=$tag user=\"0:0\"", common, d.mountRef)
	}
	line("")
	line("# 8. RouterOS extracts the image in the background: wait (up to 5 minutes)")
	line("# until the container is stopped, then start it.")
	line(":local c [/container/find where comment=$tag]")
	line(":local st [$ctState $c]")
	line(":set n 0")
	line(":while ($st != \"stopped\" && $st != \"error\" && $n < 300) do={ :delay 1s; :set n ($n + 1); :set st [$ctState $c] }")
	line(":if ($st != \"stopped\") do={")
	line("  :error (\"rampart: the container is \" . $st . \" after \" . $n . \" s instead of extracted and stopped; see /log/print where topics~\\\"container\\\"\")")
	line("}")
	line("/container/start $c")
	line(":put \"rampart: agent started; check /container/print and /log/print where topics~\\\"container\\\"\"")
	line("}")
	return b.String(), nil
}
