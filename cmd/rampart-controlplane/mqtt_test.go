package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/broker"
	"github.com/rampart-fw/rampart/controlplane/keys"
	"github.com/rampart-fw/rampart/internal/fleet"
	"github.com/rampart-fw/rampart/internal/freeport"
	"github.com/rampart-fw/rampart/internal/testcert"
	"github.com/rampart-fw/rampart/protocol"
)

func TestBrokerURLs(t *testing.T) {
	tests := []struct {
		raw             string
		urls            []string
		user, pass, err string
	}{
		{raw: "tcp://broker:1883", urls: []string{"tcp://broker:1883"}},
		{raw: "ssl://u:p@a:8883, ssl://b:8883,ssl://u:p@c:8883", urls: []string{"ssl://a:8883", "ssl://b:8883", "ssl://c:8883"}, user: "u", pass: "p"},
		{raw: "tcp://u:p@a:1883,tcp://v:p@b:1883", err: "carry different credentials"},
		{raw: "tcp://a:1883,http://b", err: `scheme "http" is not one of`},
		{raw: "tcp://a:1883,", err: "want a broker URL"},
	}
	for _, tc := range tests {
		urls, user, pass, err := brokerURLs(tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("brokerURLs(%q) error = %v, want one containing %q", tc.raw, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("brokerURLs(%q): %v", tc.raw, err)
			continue
		}
		if diff := cmp.Diff([]string{tc.user, tc.pass, strings.Join(tc.urls, " ")}, []string{user, pass, strings.Join(urls, " ")}); diff != "" {
			t.Errorf("brokerURLs(%q) (-want +got):\n%s", tc.raw, diff)
		}
	}
}

// siteClient is a paho connection as a site, recording the desired state
// documents it receives.
type siteClient struct {
	paho.Client
	mu   sync.Mutex
	docs []protocol.DesiredState
}

func (c *siteClient) received() []protocol.DesiredState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]protocol.DesiredState(nil), c.docs...)
}

func dialSite(t *testing.T, url string, k keys.Key, org, site string, tlsConf *tls.Config) (*siteClient, error) {
	t.Helper()
	c := &siteClient{}
	o := paho.NewClientOptions().AddBroker(url).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetUsername(protocol.SiteMQTTUser(org, site)).SetPassword(k.SiteSecret(org, site))
	if tlsConf != nil {
		o.SetTLSConfig(tlsConf)
	}
	c.Client = paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(protocol.DesiredTopic(protocol.DefaultTopicRoot, org, site), 1, func(_ paho.Client, m paho.Message) {
		var d protocol.DesiredState
		if json.Unmarshal(m.Payload(), &d) == nil {
			c.mu.Lock()
			c.docs = append(c.docs, d)
			c.mu.Unlock()
		}
	})
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return c, nil
}

// apiClient calls the API with a token for org.
func apiClient(t *testing.T, base string, k keys.Key, org string, hc *http.Client) func(method, path, body string) (int, string) {
	tok, err := auth.Mint(auth.MintOptions{Key: k.JWTSigningKey(), Org: org, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return func(method, path, body string) (int, string) {
		t.Helper()
		st, _, b := apiRequest(t, hc, base+path, tok, method, body)
		return st, string(b)
	}
}

const oneGroup = `{"name":"Web","rules":[{"direction":"inbound","order":10,"protocol":6,"port":"443","address":"0.0.0.0/0","description":"https"}],"sites":["site_a"]}`

// TestStartsWithoutExternalBroker reproduces #13 item 9: with the external
// broker down the control plane starts, serves the API and says in /readyz
// that the broker is not ready; once the broker is up it connects, /readyz
// turns ready and the write made meanwhile reaches the site.
func TestStartsWithoutExternalBroker(t *testing.T) {
	dir := t.TempDir()
	k, err := keys.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeport.Addr(t)
	m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, SyncTimeout: time.Minute, JWTOrgClaim: "org_id",
		MQTTURL: "tcp://" + keys.ControlPlaneMQTTUser + ":" + k.ControlPlaneMQTTPassword() + "@" + addr},
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start with the broker down: %v", err)
	}
	defer m.Close()
	base := "http://" + m.Addr.String()
	readyz := func() (int, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := readyz(); st != http.StatusServiceUnavailable || body != "broker not ready\n" {
		t.Errorf("/readyz with the broker down: %d %q, want 503 \"broker not ready\"", st, body)
	}
	call := apiClient(t, base, k, "org_x", http.DefaultClient)
	if st, body := call("POST", "/vpc/security-groups", oneGroup); st != http.StatusCreated {
		t.Fatalf("create a group with the broker down: %d %s", st, body)
	}

	brk, err := broker.Start(broker.Options{Listen: addr, Key: k, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	eventually(t, "/readyz ready once the broker is up", func() string {
		if st, body := readyz(); st != http.StatusOK {
			return body
		}
		return ""
	})
	site, err := dialSite(t, brk.URL(), k, "org_x", "site_a", nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group's document at the site", func() string {
		for _, d := range site.received() {
			if len(d.SecurityGroups) == 1 {
				return ""
			}
		}
		return "nothing yet"
	})
}

// TestTLS: with --tls-cert and --tls-key the API answers HTTPS, the
// embedded broker serves ssl:// (which enrollment hands out), a site that
// trusts the CA receives its policy over it, and one given another CA
// refuses the certificate.
func TestTLS(t *testing.T) {
	certs := testcert.New(t)
	dir := t.TempDir()
	m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, SyncTimeout: time.Minute, JWTOrgClaim: "org_id",
		MQTTListen: "127.0.0.1:0", MQTTSListen: "127.0.0.1:0", TLSCert: certs.CertFile, TLSKey: certs.KeyFile},
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.HasPrefix(m.MQTT.EnrollURL, "ssl://") {
		t.Errorf("enrollment hands out %q, want an ssl:// URL", m.MQTT.EnrollURL)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.CAPool}}}
	call := apiClient(t, "https://"+m.Addr.String(), m.Key, "org_x", hc)
	if st, body := call("POST", "/vpc/security-groups", oneGroup); st != http.StatusCreated {
		t.Fatalf("create over HTTPS: %d %s", st, body)
	}
	if resp, err := http.Get("http://" + m.Addr.String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the API answered plain HTTP with TLS on")
		}
	}

	sslURL := m.MQTT.Broker.TLSURL()
	site, err := dialSite(t, sslURL, m.Key, "org_x", "site_a", &tls.Config{RootCAs: certs.CAPool})
	if err != nil {
		t.Fatalf("a site with the CA over %s: %v", sslURL, err)
	}
	eventually(t, "the group's document over ssl://", func() string {
		if len(site.received()) == 0 {
			return "nothing yet"
		}
		return ""
	})
	_, err = dialSite(t, sslURL, m.Key, "org_x", "site_a", &tls.Config{RootCAs: testcert.New(t).CAPool})
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok {
		t.Errorf("a site with another CA: %v, want x509.UnknownAuthorityError", err)
	}
}

// TestTLSFlagsGoTogether: one of --tls-cert and --tls-key alone is refused
// with a message that says what is needed.
func TestTLSFlagsGoTogether(t *testing.T) {
	startRefused(t, Config{HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), TLSCert: "cert.pem"}, "--tls-cert and --tls-key go together")
}

// TestEnrollPrintsSSLWithTLS: enroll hands out ssl:// on --mqtts-listen
// when --tls-cert is set (also from RAMPART_TLS_CERT), tcp:// otherwise,
// and every URL of a clustered --mqtt-url.
func TestEnrollPrintsSSLWithTLS(t *testing.T) {
	dir := t.TempDir()
	if _, err := keys.LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--tls-cert", "cert.pem", "--mqtts-listen", "rampart.example.net:8883"}, "RAMPART_MQTT_URL=ssl://rampart.example.net:8883"},
		{[]string{"--mqtt-listen", "rampart.example.net:1883"}, "RAMPART_MQTT_URL=tcp://rampart.example.net:1883"},
		// Every node of a cluster, without the control plane's credentials.
		{[]string{"--mqtt-url", "ssl://cp:secret@a.example.net:8883,ssl://b.example.net:8883"}, "RAMPART_MQTT_URL=ssl://a.example.net:8883,ssl://b.example.net:8883"},
	} {
		var out bytes.Buffer
		args := append([]string{"enroll", "--data-dir", dir, "--org", "org_x", "--site", "site_a"}, tc.flags...)
		if err := run(context.Background(), args, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), tc.want+"\n") {
			t.Errorf("enroll %v printed:\n%s\nwant a line %s", tc.flags, out.String(), tc.want)
		}
	}
}

// TestWarnsOfCleartextBroker: the control plane warns at start when its
// broker listens beyond loopback without TLS, and not on loopback.
func TestWarnsOfCleartextBroker(t *testing.T) {
	for _, tc := range []struct {
		listen string
		warn   bool
	}{{"0.0.0.0:0", true}, {"127.0.0.1:0", false}} {
		var logs bytes.Buffer
		m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), MQTTListen: tc.listen, SyncTimeout: time.Minute},
			Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Registry: prometheus.NewRegistry()}
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		m.Close()
		got := strings.Contains(logs.String(), "embedded MQTT broker's plain listener is beyond loopback without TLS")
		if got != tc.warn {
			t.Errorf("--mqtt-listen %s: warned %v, want %v; log:\n%s", tc.listen, got, tc.warn, logs.String())
		}
	}
}

// TestProbeDisk: the disk check writes a new file, so it fails where one
// cannot be written.
func TestProbeDisk(t *testing.T) {
	dir := t.TempDir()
	if err := probeDisk(dir); err != nil {
		t.Fatalf("probe a writable directory: %v", err)
	}
	if err := probeDisk(filepath.Join(dir, "gone")); err == nil {
		t.Fatal("probe of a missing directory succeeded")
	}
	if err := probeDisk("/proc"); err == nil {
		t.Fatal("probe of /proc succeeded")
	}
}

// TestExternalBrokerOverTLS: the control plane reaches an external ssl://
// broker whose certificate a private CA signed, given --mqtt-ca.
func TestExternalBrokerOverTLS(t *testing.T) {
	certs := testcert.New(t)
	dir := t.TempDir()
	k, err := keys.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	brk, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", TLS: certs.ServerConfig(t), Key: k, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	u := strings.Replace(brk.TLSURL(), "ssl://", "ssl://"+keys.ControlPlaneMQTTUser+":"+k.ControlPlaneMQTTPassword()+"@", 1)
	m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, SyncTimeout: time.Minute, MQTTURL: u, MQTTCA: certs.CAFile},
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	eventually(t, "the control plane connected over ssl://", func() string {
		if err := m.MQTT.Bus.Ready(); err != nil {
			return err.Error()
		}
		return ""
	})
	if m.MQTT.EnrollURL != brk.TLSURL() {
		t.Errorf("enrollment hands out %q, want %q (the --mqtt-url without credentials)", m.MQTT.EnrollURL, brk.TLSURL())
	}
}

func TestWarnsOfCleartextBrokerURLs(t *testing.T) {
	for _, tc := range []struct {
		url  string
		warn bool
	}{
		{"tcp://mosquitto.example.net:1883", true},
		{"mqtt://192.0.2.1", true},
		{"tcp://127.0.0.1:1883", false},
		{"tcp://localhost:1883", false},
		{"ssl://mosquitto.example.net:8883", false},
		{"wss://mosquitto.example.net/mqtt", false},
	} {
		var logs bytes.Buffer
		warnCleartextURLs(slog.New(slog.NewJSONHandler(&logs, nil)), []string{tc.url})
		if got := strings.Contains(logs.String(), "without TLS"); got != tc.warn {
			t.Errorf("%s: warned %v, want %v", tc.url, got, tc.warn)
		}
	}
}

func TestMQTTCAWithoutExternalBroker(t *testing.T) {
	startRefused(t, Config{HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), MQTTCA: "ca.pem"}, "--mqtt-ca is for an external ssl:// broker")
}

// TestReadyzFullDisk reproduces #13 item 9's other half: /readyz answered
// 200 while the disk was full. The data directory is a 2 MiB tmpfs (the
// test skips where it cannot mount one, e.g. without root); filling it
// turns /readyz to 503 naming the disk, and freeing it turns it back.
func TestReadyzFullDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (%v: %s)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, MQTTListen: "127.0.0.1:0", SyncTimeout: time.Minute},
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + m.Addr.String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := readyz(); st != http.StatusOK {
		t.Fatalf("/readyz before the disk fills: %d %q", st, body)
	}

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 64<<10); ; {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	f.Close()
	st, body := readyz()
	t.Logf("/readyz with the disk full: %d %q", st, body)
	if st != http.StatusServiceUnavailable || !strings.Contains(body, "disk not ready") {
		t.Errorf("/readyz with the disk full: %d %q, want 503 naming the disk", st, body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if st, body := readyz(); st != http.StatusOK {
		t.Errorf("/readyz once the disk has room again: %d %q", st, body)
	}
}

// TestTLSWholeLoop: the real agents reach the control plane's ssl://
// listener with the CA they were given (RAMPART_MQTT_CA), and a group
// reaches their routers and turns active.
func TestTLSWholeLoop(t *testing.T) {
	certs := testcert.New(t)
	m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), SyncTimeout: time.Minute, JWTOrgClaim: "org_id",
		MQTTListen: "127.0.0.1:0", MQTTSListen: "127.0.0.1:0", TLSCert: certs.CertFile, TLSKey: certs.KeyFile},
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), SweepInterval: 100 * time.Millisecond}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f, err := fleet.Start(context.Background(), fleet.Options{N: 2, Org: "org_x", SitePrefix: "site_t", BrokerURL: m.MQTT.Broker.TLSURL(),
		MQTTCA: certs.CAFile, Key: m.Key, DataDir: t.TempDir(), ResyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.CAPool}}}
	call := apiClient(t, "https://"+m.Addr.String(), m.Key, "org_x", hc)
	st, body := call("POST", "/vpc/security-groups", `{"name":"Web","rules":[{"direction":"inbound","order":10,"protocol":6,"port":"443","address":"0.0.0.0/0","description":"https"}],"sites":["site_t1","site_t2"]}`)
	if st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, body)
	}
	var g struct{ ID string }
	if err := json.Unmarshal([]byte(body), &g); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group active over TLS", func() string {
		_, body := call("GET", "/vpc/security-groups/"+g.ID, "")
		if !strings.Contains(body, `"status":"active"`) {
			return body
		}
		return ""
	})
	for i := range 2 {
		if !hasRule(f.Router(i), "443", "0.0.0.0/0") {
			t.Errorf("%s has no rule for 443", f.SiteIDs()[i])
		}
	}
}

// startRefused: a control plane with cfg does not start, and its error
// says want.
func startRefused(t *testing.T, cfg Config, want string) {
	t.Helper()
	m := &Main{Config: cfg, Logger: slog.New(slog.DiscardHandler)}
	if err := m.Start(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
		m.Close()
		t.Fatalf("start: %v; want an error saying %q", err, want)
	}
}
