package container_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/controlplane/keys"
)

// rosScan splits a RouterOS script into code (everything outside string
// literals, with comment lines dropped) and the decoded string literals, and
// fails on anything RouterOS would read differently from what Quote meant:
// an unterminated string, an unknown escape, or a bare `$`, `?` or control
// byte inside a string (variable substitution, terminal help, a broken
// line). The escapes are those of the RouterOS scripting manual, "Constant
// Escape Sequences".
func rosScan(script string) (code string, literals []string, err error) {
	var c strings.Builder
	lineStart := true
	for i := 0; i < len(script); i++ {
		ch := script[i]
		if lineStart {
			j := i
			for j < len(script) && (script[j] == ' ' || script[j] == '\t') {
				j++
			}
			if j < len(script) && script[j] == '#' {
				for i < len(script) && script[i] != '\n' {
					i++
				}
				c.WriteByte('\n')
				continue
			}
		}
		lineStart = ch == '\n'
		if ch != '"' {
			c.WriteByte(ch)
			continue
		}
		var lit strings.Builder
		i++
		for ; ; i++ {
			if i >= len(script) {
				return "", nil, errors.New("unterminated string")
			}
			ch := script[i]
			if ch == '"' {
				break
			}
			if ch == '$' || ch == '?' || ch < 0x20 || ch >= 0x7f {
				return "", nil, fmt.Errorf("bare %q inside a string at byte %d", ch, i)
			}
			if ch != '\\' {
				lit.WriteByte(ch)
				continue
			}
			i++
			if i >= len(script) {
				return "", nil, errors.New("escape at end of script")
			}
			simple := map[byte]byte{'"': '"', '\\': '\\', '$': '$', '?': '?', '_': ' ', 'n': '\n', 'r': '\r', 't': '\t', 'a': 7, 'b': 8, 'f': 12, 'v': 11}
			if r, ok := simple[script[i]]; ok {
				lit.WriteByte(r)
				continue
			}
			if i+1 < len(script) && strings.IndexByte("0123456789ABCDEF", script[i]) >= 0 && strings.IndexByte("0123456789ABCDEF", script[i+1]) >= 0 {
				v, _ := strconv.ParseUint(script[i:i+2], 16, 8)
				lit.WriteByte(byte(v))
				i++
				continue
			}
			return "", nil, fmt.Errorf("unknown escape \\%c at byte %d", script[i], i)
		}
		literals = append(literals, lit.String())
		c.WriteString(`""`)
	}
	return c.String(), literals, nil
}

func TestQuoteRoundTrips(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"; /system reset-configuration; "`, `$x`, `$[/system/reset-configuration]`,
		`$(1+1)`, `a?b`, `back\slash`, "tab\tnew\nline\r", "\x00\x01\x7f", "héllo ✓", `\"`, `\`, `"`, "\\_",
	} {
		q := container.Quote(s)
		code, lits, err := rosScan(q)
		if err != nil {
			t.Errorf("Quote(%q) = %s: %v", s, q, err)
			continue
		}
		if code != `""` || len(lits) != 1 || lits[0] != s {
			t.Errorf("Quote(%q) = %s decodes to code %q, literals %q", s, q, code, lits)
		}
		for i := 0; i < len(q); i++ {
			if q[i] < 0x20 || q[i] >= 0x7f {
				t.Errorf("Quote(%q) = %q has a non-printable byte", s, q)
				break
			}
		}
	}
}

func demoSite() container.Site {
	k := keys.FromBytes([]byte("0123456789abcdef0123456789abcdef"))
	return container.ForSite(k, "org_demo", "site_hq", "ssl://rampart.example.net:8883")
}

func TestEnv(t *testing.T) {
	s := demoSite()
	s.ResyncInterval = 0
	env, err := s.Env()
	if err != nil {
		t.Fatal(err)
	}
	k := keys.FromBytes([]byte("0123456789abcdef0123456789abcdef"))
	want := []container.EnvVar{
		{"RAMPART_MQTT_URL", "ssl://rampart.example.net:8883"},
		{"RAMPART_ORG_ID", "org_demo"},
		{"RAMPART_SITE_ID", "site_hq"},
		{"RAMPART_SITE_SECRET", k.SiteSecret("org_demo", "site_hq")},
		{"RAMPART_ROUTEROS_ADDR", "172.17.0.1:8728"},
		{"RAMPART_ROUTEROS_USER", "rampart-agent"},
		{"RAMPART_ROUTEROS_PASSWORD", k.RouterOSPassword("org_demo", "site_hq")},
		{"RAMPART_ROUTEROS_TLS", "false"},
		{"RAMPART_STATE_DIR", "/data"},
		{"RAMPART_WAN_LIST", "WAN"},
	}
	if d := cmp.Diff(want, env); d != "" {
		t.Errorf("Env (-want +got):\n%s", d)
	}

	s.RouterOSTLS = true
	s.MetricsAddr = ":9273"
	lines, err := s.EnvLines()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"RAMPART_ROUTEROS_ADDR=172.17.0.1:8729\n", "RAMPART_ROUTEROS_TLS=true\n", "RAMPART_METRICS_ADDR=:9273\n"} {
		if !strings.Contains(lines, l) {
			t.Errorf("EnvLines with TLS lacks %q:\n%s", l, lines)
		}
	}
}

func TestEnvRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*container.Site)
		field string
	}{
		{"org", func(s *container.Site) { s.OrgID = `org"; /system reset-configuration` }, "org:"},
		{"site", func(s *container.Site) { s.SiteID = "hq" }, "site:"},
		{"no mqtt url", func(s *container.Site) { s.MQTTURL = "" }, "mqtt-url:"},
		{"mqtt scheme", func(s *container.Site) { s.MQTTURL = "http://broker:1883" }, "mqtt-url:"},
		{"mqtt host with spaces", func(s *container.Site) { s.MQTTURL = `tcp://b"; /system reset-configuration; ":1883` }, "mqtt-url:"},
		{"mqtt newline", func(s *container.Site) { s.MQTTURL = "tcp://b:1883/\n/system/reset-configuration" }, "mqtt-url:"},
		{"wan list with space", func(s *container.Site) { s.WANList = `"; /system reset-configuration; "` }, "wan-list:"},
		{"secret newline", func(s *container.Site) { s.SiteSecret = "a\nRAMPART_ORG_ID=evil" }, "site secret:"},
		{"routeros addr", func(s *container.Site) { s.RouterOSAddr = "172.17.0.1" }, "routeros-addr:"},
		{"resync", func(s *container.Site) { s.ResyncInterval = 1 }, "resync-interval:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := demoSite()
			tc.edit(&s)
			_, err := s.Env()
			if !errors.Is(err, container.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("Env: got %v, want ErrInvalid naming %q", err, tc.field)
			}
			if _, err := s.Script(container.ScriptOptions{RouterOSVersion: "7.22"}); !errors.Is(err, container.ErrInvalid) {
				t.Errorf("Script: got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestScriptOptionsRejected(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     container.ScriptOptions
		field string
	}{
		{"gateway outside", container.ScriptOptions{ContainerAddress: netip.MustParsePrefix("10.9.0.2/24"), Gateway: netip.MustParseAddr("10.8.0.1")}, "gateway:"},
		{"gateway is container", container.ScriptOptions{ContainerAddress: netip.MustParsePrefix("10.9.0.2/24"), Gateway: netip.MustParseAddr("10.9.0.2")}, "gateway:"},
		{"ipv6", container.ScriptOptions{ContainerAddress: netip.MustParsePrefix("fd00::2/64"), Gateway: netip.MustParseAddr("fd00::1")}, "container-address:"},
		{"/32", container.ScriptOptions{ContainerAddress: netip.MustParsePrefix("10.9.0.2/32"), Gateway: netip.MustParseAddr("10.9.0.1")}, "container-address:"},
		{"api-allow host bits", container.ScriptOptions{APIAllowFrom: []netip.Prefix{netip.MustParsePrefix("192.168.88.1/24")}}, "api-allow:"},
		{"tarball newline", container.ScriptOptions{Tarball: "a.tar\n/system/reset-configuration"}, "tarball:"},
		{"arch", container.ScriptOptions{Arch: "mips"}, "arch:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.RouterOSVersion == "" {
				tc.o.RouterOSVersion = "7.22"
			}
			_, err := demoSite().Script(tc.o)
			if !errors.Is(err, container.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("got %v, want ErrInvalid naming %q", err, tc.field)
			}
		})
	}
}

// step finds the first code line at or after from that contains every part,
// and returns its index, so tests can check both presence and order.
func step(t *testing.T, lines []string, from int, parts ...string) int {
	t.Helper()
	for i := from; i < len(lines); i++ {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(lines[i], p)
		}
		if ok {
			return i
		}
	}
	t.Fatalf("no line after %d with %q in:\n%s", from, parts, strings.Join(lines, "\n"))
	return -1
}

func TestScriptSteps(t *testing.T) {
	s := demoSite()
	script, err := s.Script(container.ScriptOptions{RouterOSVersion: "7.22", Tarball: "usb1/rampart-agent-arm64.tar", Dir: "usb1/rampart-agent", Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	code, lits, err := rosScan(script)
	if err != nil {
		t.Fatalf("script does not scan: %v\n%s", err, script)
	}
	if strings.Count(code, "{") != strings.Count(code, "}") || strings.Count(code, "[") != strings.Count(code, "]") || strings.Count(code, "(") != strings.Count(code, ")") {
		t.Errorf("unbalanced brackets in the script's code:\n%s", code)
	}
	// Lines of the script with literals restored, comments dropped, for
	// matching steps by content.
	lines := strings.Split(script, "\n")
	var codeLines []string
	for _, l := range lines {
		if tl := strings.TrimSpace(l); tl != "" && !strings.HasPrefix(tl, "#") {
			codeLines = append(codeLines, tl)
		}
	}
	// Every statement is a scripting command or an absolute menu path (a
	// relative one would depend on the terminal's current menu).
	for _, l := range codeLines {
		ok := l == "{" || l == "}" || l == "} else={"
		for _, p := range []string{":local ", ":set ", ":if ", ":do ", ":foreach ", ":while ", ":error ", ":put ", ":return ", "/container/", "/interface/", "/ip/", "/user/", "/system/", "/file/"} {
			ok = ok || strings.HasPrefix(l, p)
		}
		if !ok {
			t.Errorf("statement %q is neither a scripting command nor an absolute path", l)
		}
	}
	if codeLines[0] != "{" || codeLines[len(codeLines)-1] != "}" {
		t.Errorf("script is not one block: starts %q, ends %q", codeLines[0], codeLines[len(codeLines)-1])
	}
	k := keys.FromBytes([]byte("0123456789abcdef0123456789abcdef"))
	pw := k.RouterOSPassword("org_demo", "site_hq")

	i := step(t, codeLines, 0, ":local tarball", `"usb1/rampart-agent-arm64.tar"`)
	step(t, codeLines, 0, ":local apiPassword", `"`+pw+`"`)
	i = step(t, codeLines, i, "/system/resource/get version")
	i = step(t, codeLines, i, ":if ($minor < 21 || $minor > 23) do={")
	i = step(t, codeLines, i, ":error", "generated for RouterOS 7.22", "exist on 7.21 to 7.23 only")
	i = step(t, codeLines, i, "/file/find where name=$tarball")
	i = step(t, codeLines, i, "/system/resource/get architecture-name")
	i = step(t, codeLines, i, `$arch != "arm64"`)
	rm := step(t, codeLines, i, ":foreach c in=[/container/find where comment=$tag]")
	step(t, codeLines, rm, "/container/remove $c")
	i = step(t, codeLines, rm, "/interface/veth/remove")
	i = step(t, codeLines, i, "/interface/veth/add name=$veth address=172.17.0.2/24 gateway=172.17.0.1")
	i = step(t, codeLines, i, "/ip/address/add address=172.17.0.1/24 interface=$veth")
	i = step(t, codeLines, i, "/interface/list/member/add list=$lanList interface=$veth")
	step(t, codeLines, 0, `:local lanList "LAN"`)
	i = step(t, codeLines, i, "/ip/firewall/nat/add chain=srcnat action=masquerade src-address=172.17.0.0/24")
	i = step(t, codeLines, i, "/user/group/add name=$tag policy=api,read,write ")
	i = step(t, codeLines, i, "/user/add name=$apiUser group=$tag password=$apiPassword address=172.17.0.2/32")
	i = step(t, codeLines, i, `/ip/service/find where name="api" dynamic=no`)
	i = step(t, codeLines, i, "/ip/service/set $svc disabled=no address=172.17.0.0/24")
	env, _ := s.Env()
	for _, e := range env {
		value := container.Quote(e.Value)
		switch e.Key {
		case "RAMPART_ROUTEROS_USER":
			value = "$apiUser"
		case "RAMPART_ROUTEROS_PASSWORD":
			value = "$apiPassword"
		}
		i = step(t, codeLines, i, "/container/envs/add list=$tag key="+container.Quote(e.Key)+" value="+value)
	}
	add := step(t, codeLines, i, "/container/add file=$tarball interface=$veth root-dir=$rootDir envlists=$tag start-on-boot=yes logging=yes", "mountlists=$tag", `user="0:0"`)
	step(t, codeLines, i, "/container/mounts/add list=$tag src=$dataDir dst=\"/data\"")
	i = step(t, codeLines, add, ":while ($st != \"stopped\"", "$n < 300", ":delay 1s")
	i = step(t, codeLines, i, `:if ($st != "stopped")`)
	step(t, codeLines, i, ":error")
	step(t, codeLines, i, "/container/start $c")

	// Every literal is a value we put there; the secrets appear once each.
	for _, secret := range []string{pw, k.SiteSecret("org_demo", "site_hq")} {
		n := 0
		for _, l := range lits {
			if l == secret {
				n++
			}
		}
		if n != 1 {
			t.Errorf("secret appears in %d literals, want 1", n)
		}
	}
	if strings.Contains(strings.ToLower(code), "timeout") || strings.Contains(code, "address-list") {
		t.Error("the script mentions an address-list or a timeout; it must never set one")
	}

	again, _ := demoSite().Script(container.ScriptOptions{RouterOSVersion: "7.22", Tarball: "usb1/rampart-agent-arm64.tar", Dir: "usb1/rampart-agent", Arch: "arm64"})
	if again != script {
		t.Error("the same enrollment gave two different scripts")
	}
}

func TestScriptOptions(t *testing.T) {
	s := demoSite()
	s.RouterOSTLS = true
	script, err := s.Script(container.ScriptOptions{
		RouterOSVersion:  "7.24",
		ContainerAddress: netip.MustParsePrefix("10.200.0.10/29"),
		Gateway:          netip.MustParseAddr("10.200.0.9"),
		APIAllowFrom:     []netip.Prefix{netip.MustParsePrefix("192.168.88.0/24")},
		NoDataMount:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"/interface/veth/add name=$veth address=10.200.0.10/29 gateway=10.200.0.9 ",
		"/ip/address/add address=10.200.0.9/29 ",
		"src-address=10.200.0.8/29 ",
		"address=10.200.0.10/32 ",
		`/ip/service/find where name="api-ssl"`,
		"/ip/service/set $svc disabled=no available-from=10.200.0.8/29,192.168.88.0/24\n",
		`key="RAMPART_ROUTEROS_ADDR" value="10.200.0.9:8729"`,
		`key="RAMPART_ROUTEROS_TLS" value="true"`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	code, _, err := rosScan(script)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(code, "/container/mounts/add") || strings.Contains(code, "mountlists=") {
		t.Error("NoDataMount script still mounts /data")
	}
	if strings.Contains(script, `user="0:0"`) {
		t.Error("NoDataMount script runs the container as root")
	}
}

// TestScriptInjection feeds values that would break out of a naively quoted
// string and checks that they stay inside string literals, decoded intact.
func TestScriptInjection(t *testing.T) {
	const payload = `"; /system reset-configuration; "`
	s := demoSite()
	s.MQTTURL = `tcp://broker:1883/` + payload + `$x?[/system/reset-configuration]`
	s.WANList = `W"$x;[/system/reset-configuration]?\`
	s.SiteSecret = `se cret "quoted" ` + payload + ` $x $[:put 1] $(1) \n é`
	s.RouterOSPassword = payload + `$apiPassword\`
	s.RouterOSUser = `agent` + payload
	o := container.ScriptOptions{
		RouterOSVersion: "7.20",
		Tarball:         `usb1/x` + payload + `.tar`,
		Dir:             `usb1/$x` + payload,
		Veth:            `veth` + payload,
		LANList:         `LAN` + payload + `?`,
	}
	script, err := s.Script(o)
	if err != nil {
		t.Fatal(err)
	}
	code, lits, err := rosScan(script)
	if err != nil {
		t.Fatalf("script does not scan: %v\n%s", err, script)
	}
	if strings.Contains(code, "reset-configuration") || strings.Contains(code, "$x") || strings.Contains(code, ":put 1") {
		t.Errorf("an input escaped its string literal; code:\n%s", code)
	}
	env, err := s.Env()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		s.RouterOSPassword: false, o.Tarball: false, o.Dir + "/data": false, o.Dir + "/root": false,
		o.Veth: false, o.LANList: false, s.RouterOSUser: false,
	}
	for _, e := range env {
		want[e.Value] = false
	}
	for _, l := range lits {
		if _, ok := want[l]; ok {
			want[l] = true
		}
	}
	for v, found := range want {
		if !found {
			t.Errorf("value %q is not a literal of the script", v)
		}
	}
	lines, err := s.EnvLines()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(lines, "\n"); n != len(env) {
		t.Errorf("EnvLines has %d lines for %d variables", n, len(env))
	}
}
