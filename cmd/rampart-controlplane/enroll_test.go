package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-fw/rampart/controlplane/keys"
)

func enroll(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"enroll"}, args...), &out, &errOut)
	return out.String(), err
}

func TestEnrollEnv(t *testing.T) {
	dir := t.TempDir()
	k, err := keys.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	before := listDir(t, dir)
	out, err := enroll(t, "--data-dir", dir, "--org", "org_demo", "--site", "site_hq", "--mqtt-url", "ssl://rampart.example.net:8883")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"RAMPART_MQTT_URL=ssl://rampart.example.net:8883",
		"RAMPART_ORG_ID=org_demo",
		"RAMPART_SITE_ID=site_hq",
		"RAMPART_SITE_SECRET=" + k.SiteSecret("org_demo", "site_hq"),
		"RAMPART_ROUTEROS_ADDR=172.17.0.1:8728",
		"RAMPART_ROUTEROS_USER=rampart-agent",
		"RAMPART_ROUTEROS_PASSWORD=" + k.RouterOSPassword("org_demo", "site_hq"),
		"RAMPART_ROUTEROS_TLS=false",
		"RAMPART_STATE_DIR=/data",
		"RAMPART_WAN_LIST=WAN",
	} {
		if !strings.Contains("\n"+out, "\n"+line+"\n") {
			t.Errorf("enroll output lacks the line %q:\n%s", line, out)
		}
	}
	// enroll reads the key file and nothing else: it never touches the
	// database the server holds locked.
	if after := listDir(t, dir); after != before {
		t.Errorf("enroll changed the data directory: %s -> %s", before, after)
	}
}

func TestEnrollScript(t *testing.T) {
	dir := t.TempDir()
	k, err := keys.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--data-dir", dir, "--org", "org_demo", "--site", "site_hq", "--mqtt-url", "tcp://10.0.0.5:1883",
		"--rsc", "--routeros-version", "7.24.1", "--arch", "arm", "--dir", "usb1/rampart", "--api-allow", "192.168.88.0/24,10.10.0.0/16"}
	out, err := enroll(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`:local tarball "rampart-agent-arm.tar"`,
		`:local rootDir "usb1/rampart/root"`,
		`:local apiPassword "` + k.RouterOSPassword("org_demo", "site_hq") + `"`,
		`value="` + k.SiteSecret("org_demo", "site_hq") + `"`,
		"available-from=172.17.0.0/24,192.168.88.0/24,10.10.0.0/16\n",
		"for RouterOS 7.24.1",
		"/container/start $c",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	again, err := enroll(t, args...)
	if err != nil || again != out {
		t.Errorf("a second enroll printed a different script (err %v)", err)
	}
	// The same site for a 7.21 router: its names, not 7.24's.
	args[10] = "7.21"
	old, err := enroll(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(old, "/ip/service/set $svc disabled=no address=172.17.0.0/24,192.168.88.0/24,10.10.0.0/16\n") || strings.Contains(old, "available-from=172") ||
		!strings.Contains(old, "mountlists=$tag") {
		t.Errorf("script for 7.21 does not use 7.21's names:\n%s", old)
	}
}

func TestEnrollErrors(t *testing.T) {
	initialised := t.TempDir()
	if _, err := keys.LoadOrCreate(initialised); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "never-started")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"uninitialised data dir", []string{"--data-dir", missing, "--org", "o", "--site", "site_a", "--mqtt-url", "tcp://b:1883"}, "never run on this data directory"},
		{"required flags", []string{"--data-dir", initialised}, "--org, --site required"},
		{"bad site", []string{"--data-dir", initialised, "--org", "o", "--site", "hq", "--mqtt-url", "tcp://b:1883"}, "site:"},
		{"bad url", []string{"--data-dir", initialised, "--org", "o", "--site", "site_a", "--mqtt-url", "http://b"}, "mqtt-url:"},
		{"bad arch", []string{"--data-dir", initialised, "--org", "o", "--site", "site_a", "--mqtt-url", "tcp://b:1883", "--arch", "mips"}, "arm64, arm or amd64"},
		{"bad gateway", []string{"--data-dir", initialised, "--org", "o", "--site", "site_a", "--mqtt-url", "tcp://b:1883", "--rsc", "--routeros-version", "7.22", "--gateway", "10.0.0.1"}, "gateway:"},
		{"bad api-allow", []string{"--data-dir", initialised, "--org", "o", "--site", "site_a", "--mqtt-url", "tcp://b:1883", "--rsc", "--api-allow", "lan"}, "not a prefix"},
		{"rsc without version", []string{"--data-dir", initialised, "--org", "o", "--site", "site_a", "--mqtt-url", "tcp://b:1883", "--rsc"}, "--rsc needs --routeros-version: the script names what exists on one RouterOS version (7.20 to 7.24)"},
		{"old version", []string{"--data-dir", initialised, "--org", "o", "--site", "site_a", "--mqtt-url", "tcp://b:1883", "--rsc", "--routeros-version", "7.19"}, "--routeros-version: unsupported RouterOS version 7.19; Rampart supports 7.20 to 7.24"},
		{"not a version", []string{"--data-dir", initialised, "--org", "o", "--site", "site_a", "--mqtt-url", "tcp://b:1883", "--rsc", "--routeros-version", "stable"}, `"stable" is not a RouterOS 7.x version; want 7.20 to 7.24`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := enroll(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
			if out != "" {
				t.Errorf("printed %q on error", out)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("enroll created the data directory it was pointed at")
	}
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + info.ModTime().String() + ";")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestEnrollDefaultBrokerURL: without --agent-mqtt-url, enroll hands out
// what serve does: the external broker, else this host and the embedded
// broker's port.
func TestEnrollDefaultBrokerURL(t *testing.T) {
	dir := t.TempDir()
	if _, err := keys.LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "RAMPART_MQTT_URL=tcp://" + host + ":1883\n"},
		{[]string{"--mqtt-listen", "10.1.2.3:11883"}, "RAMPART_MQTT_URL=tcp://10.1.2.3:11883\n"},
		{[]string{"--mqtt-url", "tcp://user:pw@mosquitto.example.net:1883"}, "RAMPART_MQTT_URL=tcp://mosquitto.example.net:1883\n"},
		{[]string{"--mqtt-url", "tcp://mosquitto:1883", "--agent-mqtt-url", "ssl://rampart.example.net:8883"}, "RAMPART_MQTT_URL=ssl://rampart.example.net:8883\n"},
	} {
		out, err := enroll(t, append([]string{"--data-dir", dir, "--org", "org_demo", "--site", "site_hq"}, tc.args...)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("enroll %v: %v\n%s\nwant a line %q", tc.args, err, out, tc.want)
		}
	}
}
