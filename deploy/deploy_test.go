package deploy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/internal/natstest"
)

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// TestNATSConfigsValid: the three node configurations under nats/ are
// accepted by the real nats-server (-t checks a configuration and exits),
// and the same check fails on a key nats-server does not know, so a
// misspelt option cannot pass unnoticed.
func TestNATSConfigsValid(t *testing.T) {
	bin, err := natstest.Binary()
	if err != nil {
		t.Skip(err)
	}
	confs, _ := filepath.Glob("nats/*.conf")
	if len(confs) != natstest.Size {
		t.Fatalf("found %d configurations under nats/; want one per node (%d)", len(confs), natstest.Size)
	}
	// nats-server -t loads the TLS files: point the configurations at a
	// certificate made here instead of /etc/nats/tls.
	tlsDir := t.TempDir()
	writeTestCert(t, tlsDir)
	for _, conf := range confs {
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "/etc/nats/tls/") {
			t.Errorf("%s: no TLS files under /etc/nats/tls/; MQTT must be served over TLS", conf)
		}
		local := filepath.Join(t.TempDir(), filepath.Base(conf))
		if err := os.WriteFile(local, []byte(strings.ReplaceAll(string(b), "/etc/nats/tls/", tlsDir+"/")), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := run(t, bin, "-t", "-c", local); err != nil {
			t.Errorf("nats-server -t -c %s: %v\n%s", conf, err, out)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(bad, []byte("mqtt {\n  listen: 127.0.0.1:0\n  stream_replica: 3\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, bin, "-t", "-c", bad)
	if err == nil || !strings.Contains(out, "stream_replica") {
		t.Errorf("nats-server -t on a misspelt key: err %v, output %q; want a failure naming the key", err, out)
	}
}

// writeTestCert writes server.pem and server-key.pem, a self-signed ECDSA
// certificate for localhost, into dir.
func writeTestCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"server.pem":     {Type: "CERTIFICATE", Bytes: der},
		"server-key.pem": {Type: "EC PRIVATE KEY", Bytes: kder},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// buildControlPlane builds cmd/rampart-controlplane into a temporary
// directory and returns its path.
func buildControlPlane(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rampart-controlplane")
	if out, err := run(t, "go", "build", "-o", bin, "../cmd/rampart-controlplane"); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// awaited are flags the examples use that the control plane does not have
// yet, each with what brings it; README.md's status table says the same.
// One that lands is only logged: this test must not break the build of
// whoever lands it without touching deploy/.
var awaited = map[string]string{}

// TestExamplesUseRealFlags: every RAMPART_* setting of the environment
// file and every flag of the unit's ExecStart is a flag of the control
// plane (as its -h lists them), or one listed as awaited.
func TestExamplesUseRealFlags(t *testing.T) {
	out, err := run(t, buildControlPlane(t), "-h")
	if err != nil && !strings.Contains(out, "Usage") {
		t.Fatalf("rampart-controlplane -h: %v\n%s", err, out)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(out, -1) {
		known[m[1]] = true
	}
	if !known["mqtt-url"] || !known["data-dir"] {
		t.Fatalf("could not read the flags from -h:\n%s", out)
	}
	for name, why := range awaited {
		if known[name] {
			t.Logf("--%s exists now (it awaited %s): remove it from awaited and update README.md's status table", name, why)
		}
	}
	used := map[string]string{} // flag → where
	env, err := os.Open("systemd/controlplane.env")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	sc := bufio.NewScanner(env)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		flag, isRampart := strings.CutPrefix(name, "RAMPART_")
		if !ok || !isRampart {
			t.Errorf("controlplane.env: %q is not RAMPART_<FLAG>=value", line)
			continue
		}
		used[strings.ReplaceAll(strings.ToLower(flag), "_", "-")] = "systemd/controlplane.env"
	}
	unit, err := os.ReadFile("systemd/rampart-controlplane.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^ExecStart=.*$`).FindAllString(string(unit), -1) {
		for _, f := range regexp.MustCompile(`--([a-z0-9-]+)`).FindAllStringSubmatch(m, -1) {
			used[f[1]] = "systemd/rampart-controlplane.service"
		}
	}
	if len(used) < 4 {
		t.Fatalf("found %d flags in the examples; the files are not what this test expects", len(used))
	}
	for flag, where := range used {
		if !known[flag] && awaited[flag] == "" {
			t.Errorf("%s: --%s is not a flag of rampart-controlplane", where, flag)
		}
	}
}

// TestSystemdUnitVerifies: systemd accepts the unit without a warning
// (systemd-analyze verify prints, and carries on, on an unknown key or a
// bad value).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (it comes with systemd)")
	}
	b, err := os.ReadFile("systemd/rampart-controlplane.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants ExecStart's program to exist.
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/rampart-controlplane", buildControlPlane(t))
	path := filepath.Join(t.TempDir(), "rampart-controlplane.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, analyze, "verify", path)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The same check on a unit with a misspelt key must complain.
	bad := filepath.Join(t.TempDir(), "bad.service")
	if err := os.WriteFile(bad, []byte(strings.Replace(unit, "RestartSec=", "RestartSecs=", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, analyze, "verify", bad); !strings.Contains(out, "RestartSecs") {
		t.Errorf("systemd-analyze verify says nothing of a misspelt key: %q", out)
	}
}
