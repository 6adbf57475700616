package container_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/container"
)

// rosNames is, per menu, the argument and property names the script may
// write on each RouterOS minor version: an oracle written from the sources
// (routeros.md section 8), independent of the generator's table. A name
// missing here for a version fails TestScriptNamesPerVersion, as it would
// fail to load on that router.
func rosNames(minor int) map[string][]string {
	n := map[string][]string{
		"/container":             {"file", "interface", "root-dir", "envlists", "start-on-boot", "logging", "comment", "user"},
		"/container/envs":        {"list", "key", "value"},
		"/container/mounts":      {"src", "dst"},
		"/ip/service":            {"name", "dynamic", "disabled"},
		"/interface/veth":        {"name", "address", "gateway", "comment"},
		"/ip/address":            {"address", "interface", "comment", "network", "dynamic"},
		"/interface/list":        {"name"},
		"/interface/list/member": {"list", "interface", "comment", "dynamic"},
		"/ip/firewall/nat":       {"chain", "action", "src-address", "comment", "dynamic"},
		"/user/group":            {"name", "policy", "comment"},
		"/user":                  {"name", "group", "password", "address", "comment"},
		"/file":                  {"name"},
		"/system/resource":       nil,
		"/ip/dns":                nil,
	}
	// 7.21 changelog: "convert container mounts setting to mountlists, old
	// mount name becomes list name".
	if minor < 21 {
		n["/container"] = append(n["/container"], "mounts")
		n["/container/mounts"] = append(n["/container/mounts"], "name")
	} else {
		n["/container"] = append(n["/container"], "mountlists")
		n["/container/mounts"] = append(n["/container/mounts"], "list")
	}
	// 7.24 changelog: "console - renamed "address" to "available-from"".
	if minor < 24 {
		n["/ip/service"] = append(n["/ip/service"], "address")
	} else {
		n["/ip/service"] = append(n["/ip/service"], "available-from")
	}
	return n
}

var (
	rosCommand = regexp.MustCompile(`(?:^|[\s\[{;])(/[a-z][a-z0-9/-]*)`)
	rosArg     = regexp.MustCompile(`(?:^|\s)([a-z][a-z0-9-]*)!?=`)
)

// commandArgs finds every absolute command in code (string literals already
// emptied by rosScan) and returns, per menu, the names given to it with =
// or != (its arguments, and the properties of a nested [find where ...]).
// A command ends at a `;`, a newline or a bracket it did not open.
func commandArgs(code string) map[string][]string {
	got := map[string][]string{}
	for _, m := range rosCommand.FindAllStringSubmatchIndex(code, -1) {
		path := code[m[2]:m[3]]
		menu := path[:strings.LastIndexByte(path, '/')]
		if menu == "" {
			menu = path
		}
		depth, end := 0, m[3]
	scan:
		for ; end < len(code); end++ {
			switch code[end] {
			case '[', '(', '{':
				depth++
			case ']', ')', '}':
				if depth == 0 {
					break scan
				}
				depth--
			case ';', '\n':
				if depth == 0 {
					break scan
				}
			}
		}
		for _, a := range rosArg.FindAllStringSubmatch(code[m[3]:end], -1) {
			got[menu] = append(got[menu], a[1])
		}
		if _, ok := got[menu]; !ok {
			got[menu] = nil
		}
	}
	return got
}

// TestScriptNamesPerVersion generates the script for every supported
// version, with and without the /data mount and with api-ssl, and checks
// that every menu and name it writes exists on that version: what RouterOS
// checks when it loads a script, before running any of it.
func TestScriptNamesPerVersion(t *testing.T) {
	versions := container.RouterOSVersions()
	if d := cmp.Diff([]string{"7.20", "7.21", "7.22", "7.23", "7.24"}, versions); d != "" {
		t.Errorf("RouterOSVersions (-want +got):\n%s", d)
	}
	for _, v := range append(versions, "7.20.3", "7.21beta2", "7.24rc1") {
		var minor int
		fmt.Sscanf(v, "7.%d", &minor)
		for _, variant := range []struct {
			name    string
			noMount bool
			tls     bool
		}{{"mount", false, false}, {"nomount", true, false}, {"tls", false, true}} {
			t.Run(v+"/"+variant.name, func(t *testing.T) {
				s := demoSite()
				s.RouterOSTLS = variant.tls
				script, err := s.Script(container.ScriptOptions{RouterOSVersion: v, NoDataMount: variant.noMount, Arch: "arm64"})
				if err != nil {
					t.Fatal(err)
				}
				code, _, err := rosScan(script)
				if err != nil {
					t.Fatalf("script does not scan: %v", err)
				}
				allowed := rosNames(minor)
				for menu, args := range commandArgs(code) {
					known, ok := allowed[menu]
					if !ok {
						t.Errorf("menu %s is not in the test's table for 7.%d; add it with its source", menu, minor)
						continue
					}
					for _, a := range args {
						if !slices.Contains(known, a) {
							t.Errorf("%s %s= does not exist on RouterOS 7.%d", menu, a, minor)
						}
					}
				}
				// The version-dependent lines, literally.
				service := `name="api" dynamic=no`
				if variant.tls {
					service = `name="api-ssl" dynamic=no`
				}
				want := []string{
					"/ip/service/find where " + service,
					"/ip/firewall/nat/remove [find where comment=$tag dynamic=no]",
					"/interface/list/member/remove [find where comment=$tag dynamic=no]",
					"/ip/address/remove [find where comment=$tag dynamic=no]",
				}
				absent := []string{"on-error={ /ip/service", "on-error={ /container/mounts"}
				if minor < 24 {
					want = append(want, "/ip/service/set $svc disabled=no address=172.17.0.0/24\n")
					absent = append(absent, "available-from")
				} else {
					want = append(want, "/ip/service/set $svc disabled=no available-from=172.17.0.0/24\n")
					absent = append(absent, " address=172.17.0.0/24")
				}
				if minor < 21 {
					want = append(want, "/container/mounts/remove [find where name=$tag]")
					if !variant.noMount {
						want = append(want, `/container/mounts/add name=$tag src=$dataDir dst="/data"`, " mounts=$tag ")
					}
					absent = append(absent, "mountlists", "list=$tag src=")
				} else {
					want = append(want, "/container/mounts/remove [find where list=$tag]")
					if !variant.noMount {
						want = append(want, `/container/mounts/add list=$tag src=$dataDir dst="/data"`, " mountlists=$tag ")
					}
					absent = append(absent, " mounts=", "name=$tag src=")
				}
				band := map[int]string{20: "($minor < 20 || $minor > 20)", 21: "($minor < 21 || $minor > 23)", 22: "($minor < 21 || $minor > 23)",
					23: "($minor < 21 || $minor > 23)", 24: "($minor < 24 || $minor > 24)"}[minor]
				want = append(want, ":if "+band+" do={\n  :error")
				for _, w := range want {
					if !strings.Contains(script, w) {
						t.Errorf("script for %s lacks %q", v, w)
					}
				}
				var codeLines []string
				for _, l := range strings.Split(script, "\n") {
					if !strings.HasPrefix(strings.TrimSpace(l), "#") {
						codeLines = append(codeLines, l)
					}
				}
				// Everything the script adds carries the tag, so that a
				// second run finds and replaces it.
				for _, l := range codeLines {
					if strings.Contains(l, "/add ") && !strings.Contains(l, "comment=$tag") && !strings.Contains(l, "list=$tag ") &&
						!strings.Contains(l, "mounts/add name=$tag ") {
						t.Errorf("an add without the tag: %s", strings.TrimSpace(l))
					}
				}
				for _, a := range absent {
					if strings.Contains(strings.Join(codeLines, "\n"), a) {
						t.Errorf("script for %s contains %q", v, a)
					}
				}
			})
		}
	}
}

// TestScriptVersionRejected: a missing, malformed or unsupported version
// gives no script and an error naming the supported range.
func TestScriptVersionRejected(t *testing.T) {
	if _, err := demoSite().Script(container.ScriptOptions{}); !errors.Is(err, container.ErrInvalid) ||
		!strings.Contains(err.Error(), "routeros-version: required") || !strings.Contains(err.Error(), "7.20 to 7.24") {
		t.Errorf("no RouterOSVersion: got %v, want ErrInvalid saying it is required and naming 7.20 to 7.24", err)
	}
	for _, v := range []string{"7.19", "7.19.9", "7.25", "6.49", "8.0", "7", "7.x", " 7.22", "7.22\n/system/reset-configuration", "latest"} {
		script, err := demoSite().Script(container.ScriptOptions{RouterOSVersion: v})
		if script != "" || !errors.Is(err, container.ErrInvalid) || !errors.Is(err, container.ErrRouterOSVersion) ||
			!strings.Contains(err.Error(), "routeros-version") || !strings.Contains(err.Error(), "7.20 to 7.24") {
			t.Errorf("RouterOSVersion %q: got %v and %d bytes, want ErrInvalid and ErrRouterOSVersion naming 7.20 to 7.24", v, err, len(script))
		}
		if container.CheckRouterOSVersion(v) == nil {
			t.Errorf("CheckRouterOSVersion(%q) accepted it", v)
		}
	}
	if strings.Contains(fmt.Sprint(container.CheckRouterOSVersion("7.22\n/system/reset-configuration")), "\n") {
		t.Error("the error repeats a newline from its input")
	}
	for _, v := range []string{"7.20", "7.22.1", "7.23rc3", "7.24beta1"} {
		if err := container.CheckRouterOSVersion(v); err != nil {
			t.Errorf("CheckRouterOSVersion(%q): %v", v, err)
		}
	}
}
