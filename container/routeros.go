package container

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// Why the script is generated for one RouterOS version, and not written once
// with the version-dependent commands built at run time by [:parse "..."]:
//
//   - RouterOS parses a whole script before it runs any of it, and an
//     argument name the running version lacks is a load-time syntax error
//     ("expected end of command (line L column C)") that neither
//     `:do {} on-error={}` nor an untaken `:if` branch catches (routeros.md
//     section 8; DESIGN.md section 8). So a script may name, literally, only
//     what its router has.
//   - Generated for a version, every name in the script is literal: what an
//     operator reads is what runs, the simulator checks every name against
//     its version table when it imports the script, and the tests below check
//     the text per version. With :parse, the names hide inside strings that
//     only a run on each version would check.
//   - :parse would put the secrets (the RouterOS password) inside a string
//     inside a string: quoting twice, for no gain.
//
// The cost is that the operator states the router's version
// (`enroll --rsc --routeros-version 7.22`, or routeros_version= on the
// enrollment route). The script checks it when it runs: on a router whose
// version uses other names it stops, before changing anything, with an error
// saying which version to generate for. That check can only run if the
// script loads; on a router whose version refuses a name at load time, the
// comment above that line (which RouterOS's error points at) says the same.

// The RouterOS versions Script supports, by minor version of 7.x: 7.20 is
// the first with container environment lists (/container/envs list=,
// envlists=); 7.24 is the newest whose names are known (routeros.md
// section 8) and the newest the simulator models.
const (
	minMinor = 20
	maxMinor = 24
)

// dialect is what one range of RouterOS 7.x minor versions calls the things
// the script writes whose names changed across 7.x. Sources: routeros.md
// section 8.
type dialect struct {
	from, to int // 7.from to 7.to, inclusive
	// serviceAllow is the /ip/service property that limits where a service
	// accepts clients from: `address` until 7.23, renamed `available-from`
	// in 7.24 (7.24 changelog: "console - renamed "address" to
	// "available-from"", quoted in nasnet-community/nasnet-panel PR #794).
	serviceAllow string
	// mountKey is the /container/mounts property that names a mount (or,
	// from 7.21, the mount list it belongs to), and mountRef the
	// /container/add property that refers to it: `name=` and `mounts=` on
	// 7.20, `list=` and `mountlists=` from 7.21 (7.21 changelog, "convert
	// container mounts setting to mountlists, old mount name becomes list
	// name"; SecOps-7/MikroDash docs/routeros-container-install.md; an
	// Ansible playbook tested on CHR 7.21.4: "Pre-7.21 CHRs treat list= as
	// unknown"). Whether 7.21+ still accepts name=/mounts= is unknown [I],
	// so no script relies on it.
	mountKey, mountRef string
}

var dialects = []dialect{
	{from: 20, to: 20, serviceAllow: "address", mountKey: "name", mountRef: "mounts"},
	{from: 21, to: 23, serviceAllow: "address", mountKey: "list", mountRef: "mountlists"},
	{from: 24, to: 24, serviceAllow: "available-from", mountKey: "list", mountRef: "mountlists"},
}

// ErrRouterOSVersion is wrapped by the error for a RouterOS version that
// Script does not support, or that is not a version at all.
var ErrRouterOSVersion = errors.New("unsupported RouterOS version")

// RouterOSVersions lists the RouterOS versions (7.x, any patch level) that
// Script generates for, oldest first: "7.20" ... "7.24".
func RouterOSVersions() []string {
	v := make([]string, 0, maxMinor-minMinor+1)
	for m := minMinor; m <= maxMinor; m++ {
		v = append(v, "7."+strconv.Itoa(m))
	}
	return v
}

// SupportedRouterOS names the supported range for error messages and usage
// text: "7.20 to 7.24".
var SupportedRouterOS = fmt.Sprintf("7.%d to 7.%d", minMinor, maxMinor)

// RouterOS version as /system/resource prints it, less the channel: 7.22,
// 7.22.1, 7.22beta3 or 7.22rc1.
var rosVersionRE = regexp.MustCompile(`^7\.([0-9]{1,3})(\.[0-9]{1,3}|(beta|rc)[0-9]{1,3})?$`)

// CheckRouterOSVersion reports whether Script supports version v, e.g. 7.22
// or 7.22.1. The error wraps ErrRouterOSVersion and names the supported
// range; it does not name a flag or parameter, so callers can add theirs.
func CheckRouterOSVersion(v string) error {
	_, err := routerOSMinor(v)
	return err
}

func routerOSMinor(v string) (int, error) {
	m := rosVersionRE.FindStringSubmatch(v)
	if m == nil {
		if hasControl(v) || len(v) > 32 {
			v = "(not printable)"
		}
		return 0, fmt.Errorf("%w: %q is not a RouterOS 7.x version; want %s, e.g. 7.22 or 7.22.1 (/system/resource/print shows it)", ErrRouterOSVersion, v, SupportedRouterOS)
	}
	minor, _ := strconv.Atoi(m[1])
	if minor < minMinor || minor > maxMinor {
		return 0, fmt.Errorf("%w %s; Rampart supports %s", ErrRouterOSVersion, v, SupportedRouterOS)
	}
	return minor, nil
}

func dialectOf(minor int) dialect {
	for _, d := range dialects {
		if minor >= d.from && minor <= d.to {
			return d
		}
	}
	// routerOSMinor admits only minors that dialects covers;
	// TestScriptNamesPerVersion generates for each of them.
	panic(fmt.Sprintf("container: no dialect for RouterOS 7.%d", minor))
}
