package main

// End to end in one process (issue #5): the real control plane (Main with
// its MQTT extension and embedded broker, or Mosquitto when
// RAMPART_TEST_MQTT_URL is set), real agents on simulated routers (package
// fleet), over real HTTP and MQTT.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/internal/fleet"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"

	"github.com/rampart-fw/rampart/internal/wait"
)

// converge is how long a test waits for routers and status to converge: far
// more than it takes, so a loaded 2-core CI machine does not fail it.
const converge = 30 * time.Second

// loop is one control plane under test and the way to call its API.
type loop struct {
	t        *testing.T
	dir      string
	org      string
	mqttURL  string // external broker, or ""
	listen   string // embedded broker's address
	http     string
	timeout  time.Duration
	m        *Main
	reg      *prometheus.Registry
	token    string
	external bool
	// configure, if set, adjusts each Main before it starts.
	configure func(*Main)
}

func randomOrg(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "org_t" + hex.EncodeToString(b)
}

// newLoop starts a control plane; with external set it uses
// RAMPART_TEST_MQTT_URL (the test is skipped without it). configure, if
// given, adjusts the Main before each start.
func newLoop(t *testing.T, external bool, syncTimeout time.Duration, configure ...func(*Main)) *loop {
	t.Helper()
	l := &loop{t: t, dir: t.TempDir(), org: randomOrg(t), timeout: syncTimeout, http: "127.0.0.1:0", external: external}
	if len(configure) > 0 {
		l.configure = configure[0]
	}
	if external {
		l.mqttURL = os.Getenv("RAMPART_TEST_MQTT_URL")
		if l.mqttURL == "" {
			t.Skip("RAMPART_TEST_MQTT_URL is not set (.ci/run starts Mosquitto and sets it)")
		}
	} else {
		l.listen = "127.0.0.1:0"
	}
	l.start()
	t.Cleanup(func() {
		if l.m != nil {
			l.m.Close()
		}
	})
	tok, err := auth.Mint(auth.MintOptions{Key: l.m.Key.JWTSigningKey(), Org: l.org, OrgClaim: "org_id", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l.token = tok
	return l
}

func (l *loop) start() {
	l.t.Helper()
	l.reg = prometheus.NewRegistry()
	l.m = &Main{Config: Config{HTTPAddr: l.http, DataDir: l.dir, SyncTimeout: l.timeout, JWTOrgClaim: "org_id",
		MQTTURL: l.mqttURL, MQTTListen: l.listen},
		Logger: testLogger(l.t), Registry: l.reg, SweepInterval: 100 * time.Millisecond}
	if l.configure != nil {
		l.configure(l.m)
	}
	// After a restart the ports were free a moment ago; another test may
	// race for them, so retry a little.
	var err error
	for i := 0; i < 20; i++ {
		if err = l.m.Start(context.Background()); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
		l.m = &Main{Config: l.m.Config, Logger: l.m.Logger, Registry: prometheus.NewRegistry(), SweepInterval: l.m.SweepInterval,
			BehindInterval: l.m.BehindInterval}
		l.reg = l.m.Registry
	}
	l.t.Fatal(err)
}

// restart stops the control plane and starts it again on the same ports
// (the agents know the broker's), with the same data directory.
func (l *loop) restart() {
	l.t.Helper()
	l.http = l.m.Addr.String()
	if l.m.MQTT.Broker != nil {
		l.listen = l.m.MQTT.Broker.Addr()
	}
	if err := l.m.Close(); err != nil {
		l.t.Fatal(err)
	}
	l.m = nil
	l.start()
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RAMPART_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// fleet starts n agents on simulated routers for the loop's organisation.
func (l *loop) fleet(n int, prefix string) *fleet.Fleet {
	l.t.Helper()
	url := l.m.MQTT.AgentURL
	f, err := fleet.Start(context.Background(), fleet.Options{N: n, Org: l.org, SitePrefix: prefix, BrokerURL: url, Key: l.m.Key,
		DataDir: l.t.TempDir(), ResyncInterval: time.Hour})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { f.Close() })
	return f
}

func (l *loop) call(method, path, body string, out any) int {
	l.t.Helper()
	st, _, b := apiRequest(l.t, http.DefaultClient, "http://"+l.m.Addr.String()+path, l.token, method, body)
	if out != nil && st < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			l.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	} else if st >= 300 {
		l.t.Logf("%s %s: %d %s", method, path, st, b)
	}
	return st
}

// apiRequest sends one request to the API at url, with tok as bearer and
// body as JSON, through hc: the answer's status, headers and body.
func apiRequest(t testing.TB, hc *http.Client, url, tok, method, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, b
}

// must calls and fails the test unless the answer has status want.
func (l *loop) must(want int, method, path, body string, out any) {
	l.t.Helper()
	if st := l.call(method, path, body, out); st != want {
		l.t.Fatalf("%s %s: %d, want %d", method, path, st, want)
	}
}

// eventually polls cond until it returns "" or converge passes.
func eventually(t *testing.T, what string, cond func() string) {
	t.Helper()
	eventuallyFor(t, converge, what, cond)
}

func eventuallyFor(t *testing.T, within time.Duration, what string, cond func() string) {
	t.Helper()
	wait.Until(t, within, what, cond)
}

// waitGone waits for the API to forget path (404).
func (l *loop) waitGone(path string) {
	l.t.Helper()
	eventually(l.t, path+" gone", func() string {
		if st := l.call("GET", path, "", nil); st != 404 {
			return fmt.Sprintf("GET %d", st)
		}
		return ""
	})
}

// waitStatus waits for a group or prefix list (path) to reach status.
func (l *loop) waitStatus(path string, want cp.Status) {
	l.t.Helper()
	eventually(l.t, path+" "+string(want), func() string {
		var r struct {
			Status cp.Status `json:"status"`
		}
		if st := l.call("GET", path, "", &r); st != 200 {
			return fmt.Sprintf("GET %d", st)
		}
		if r.Status != want {
			return "status " + string(r.Status)
		}
		return ""
	})
}

func sitesJSON(ids ...string) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

func groupBody(port, office string, sites ...string) string {
	return `{"name":"Web","description":"e2e","rules":[
	  {"direction":"inbound","order":10,"protocol":6,"port":"` + port + `","address":"0.0.0.0/0","description":"Allow HTTPS"},
	  {"direction":"inbound","order":20,"protocol":6,"port":"22","address":"` + office + `","description":"SSH from office"}],
	  "sites":` + sitesJSON(sites...) + `}`
}

// managed returns the router's rows the agent owns: filter rows in its
// chains and address-list entries of its lists.
func managed(r *rossim.Router) (filter, addrs []rossim.Item) {
	fw := r.Snapshot()
	for _, row := range fw.Filter {
		if strings.HasPrefix(row["chain"], "rampart-") || row["jump-target"] != "" && strings.HasPrefix(row["jump-target"], "rampart-") {
			filter = append(filter, row)
		}
	}
	for _, row := range fw.AddressList {
		if strings.HasPrefix(row["list"], "rampart-") {
			addrs = append(addrs, row)
		}
	}
	return filter, addrs
}

// hasRule reports whether the router accepts tcp to port from source (a
// CIDR in src-address or a list in src-address-list; the agent leaves
// src-address out for 0.0.0.0/0).
func hasRule(r *rossim.Router, port, source string) bool {
	filter, _ := managed(r)
	for _, row := range filter {
		if row["chain"] == "rampart-in" && row["action"] == "accept" && row["dst-port"] == port &&
			(row["src-address"] == source || row["src-address-list"] == source ||
				source == "0.0.0.0/0" && row["src-address"] == "" && row["src-address-list"] == "") {
			return true
		}
	}
	return false
}

func listHas(r *rossim.Router, list, cidr string) bool {
	_, addrs := managed(r)
	for _, row := range addrs {
		if row["list"] == list && row["address"] == cidr {
			return true
		}
	}
	return false
}

// bothBrokers runs test with the embedded broker, and against Mosquitto
// when RAMPART_TEST_MQTT_URL is set.
func bothBrokers(t *testing.T, test func(t *testing.T, external bool)) {
	t.Run("embedded", func(t *testing.T) { test(t, false) })
	t.Run("mosquitto", func(t *testing.T) { test(t, true) })
}

// TestLoop: a REST write reaches every router and the API's status tells
// the truth about it.
func TestLoop(t *testing.T) { bothBrokers(t, testLoop) }

func testLoop(t *testing.T, external bool) {
	l := newLoop(t, external, 2*time.Minute) // longer than any wait: a wrong status cannot turn right by timing out
	f := l.fleet(2, "site_e")
	ids := f.SiteIDs()

	var list cp.PrefixList
	l.must(201, "POST", "/vpc/prefix-lists", `{"name":"Office","prefixes":[{"cidr":"203.0.113.0/24","description":"HQ"}]}`, &list)
	if list.Status != cp.StatusActive {
		t.Errorf("a prefix list no site uses is %q, want active", list.Status)
	}
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", list.ID, ids...), &g)
	if g.Status != cp.StatusSyncing {
		t.Errorf("new group attached to sites is %q, want syncing", g.Status)
	}
	gpath := "/vpc/security-groups/" + g.ID
	l.waitStatus(gpath, cp.StatusActive)
	addrList := "rampart-" + list.ID
	for i := range ids {
		r := f.Router(i)
		if !hasRule(r, "443", "0.0.0.0/0") || !hasRule(r, "22", addrList) || !listHas(r, addrList, "203.0.113.0/24") {
			fl, al := managed(r)
			t.Fatalf("%s once active: filter %v, address lists %v", ids[i], fl, al)
		}
	}
	var sites []cp.Site
	l.must(200, "GET", "/vpc/sites", "", &sites)
	if len(sites) != 2 {
		t.Fatalf("sites: %+v", sites)
	}
	for _, s := range sites {
		if s.State != cp.SiteInSync || !s.Online || s.LastSeen == nil || s.DesiredRevision == 0 ||
			s.AppliedRevision != s.DesiredRevision || s.AgentVersion == "" || s.RouterOSVersion == "" {
			t.Errorf("site after sync: %+v", s)
		}
	}
	rev1 := sites[0].DesiredRevision

	// A prefix list change reaches the routers through the group, and the
	// list's own status follows the sites of the groups that use it.
	var list2 cp.PrefixList
	l.must(200, "PUT", "/vpc/prefix-lists/"+list.ID, `{"name":"Office","prefixes":[{"cidr":"198.51.100.0/24","description":"new office"}]}`, &list2)
	if list2.Status != cp.StatusSyncing {
		t.Errorf("prefix list used by a group with sites is %q after PUT, want syncing", list2.Status)
	}
	l.waitStatus("/vpc/prefix-lists/"+list.ID, cp.StatusActive)
	for i := range ids {
		if r := f.Router(i); !listHas(r, addrList, "198.51.100.0/24") || listHas(r, addrList, "203.0.113.0/24") {
			_, al := managed(r)
			t.Errorf("%s after the list's PUT: %v", ids[i], al)
		}
	}

	// A PUT of the group converges.
	l.must(200, "PUT", gpath, groupBody("8443", list.ID, ids...), nil)
	l.waitStatus(gpath, cp.StatusActive)
	for i := range ids {
		if r := f.Router(i); !hasRule(r, "8443", "0.0.0.0/0") || hasRule(r, "443", "0.0.0.0/0") {
			fl, _ := managed(r)
			t.Errorf("%s after PUT: %v", ids[i], fl)
		}
	}

	// A PUT that changes nothing a router sees (the description) gives the
	// sites their current revision, which they applied already: active, not
	// failed at the deadline.
	var same cp.SecurityGroup
	l.must(200, "PUT", gpath, strings.Replace(groupBody("8443", list.ID, ids...), `"e2e"`, `"e2e, reworded"`, 1), &same)
	l.waitStatus(gpath, cp.StatusActive)

	// Detaching one site removes the rules there only.
	l.must(200, "PUT", gpath, groupBody("8443", list.ID, ids[0]), nil)
	l.waitStatus(gpath, cp.StatusActive)
	eventually(t, "rules leave "+ids[1], func() string {
		if fl, al := managed(f.Router(1)); len(fl)+len(al) > 0 {
			return fmt.Sprintf("%d filter rows, %d address-list entries left", len(fl), len(al))
		}
		return ""
	})
	if !hasRule(f.Router(0), "8443", "0.0.0.0/0") {
		t.Errorf("%s lost its rules when %s was detached", ids[0], ids[1])
	}

	// DELETE removes the rules from the routers.
	l.must(204, "DELETE", gpath, "", nil)
	eventually(t, "rules leave every router", func() string {
		for i := range ids {
			if fl, al := managed(f.Router(i)); len(fl)+len(al) > 0 {
				return fmt.Sprintf("%s: %d filter rows, %d address-list entries left", ids[i], len(fl), len(al))
			}
		}
		return ""
	})
	eventually(t, "sites in sync after the delete", func() string {
		var sites []cp.Site
		l.must(200, "GET", "/vpc/sites", "", &sites)
		for _, s := range sites {
			if s.State != cp.SiteInSync || s.AppliedRevision <= rev1 || s.AppliedRevision != s.DesiredRevision {
				return fmt.Sprintf("%+v", s)
			}
		}
		return ""
	})

	// Metrics: propagation observed, sites counted by state, publishes,
	// the build.
	if n := testutil.CollectAndCount(l.reg, "rampart_propagation_seconds"); n != 1 {
		t.Errorf("rampart_propagation_seconds: %d series", n)
	}
	if n := testutil.CollectAndCount(l.reg, "rampart_build_info"); n != 1 {
		t.Errorf("rampart_build_info: %d series, want 1", n)
	}
	mfs, err := l.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	var inSync float64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "rampart_propagation_seconds":
			observed = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		case "rampart_sites":
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "in_sync" {
					inSync = m.GetGauge().GetValue()
				}
			}
		}
	}
	if observed < 4 {
		t.Errorf("propagation observed %d writes, want at least 4", observed)
	}
	if inSync != 2 {
		var sites []cp.Site
		l.must(200, "GET", "/vpc/sites", "", &sites)
		t.Errorf("rampart_sites{state=in_sync} = %v, want 2; sites %+v", inSync, sites)
	}
}

// TestSiteWithoutAgentFails: a site whose agent never answers fails the
// group at the deadline; the group is writable again, and the site that
// answered is in sync.
func TestSiteWithoutAgentFails(t *testing.T) { bothBrokers(t, testSiteWithoutAgentFails) }

func testSiteWithoutAgentFails(t *testing.T, external bool) {
	l := newLoop(t, external, 3*time.Second)
	f := l.fleet(1, "site_f")
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", f.SiteIDs()[0], "site_ghost"), &g)
	gpath := "/vpc/security-groups/" + g.ID
	l.waitStatus(gpath, cp.StatusFailed)
	var cur cp.SecurityGroup
	l.must(200, "GET", gpath, "", &cur)
	l.must(200, "PUT", gpath, groupBody("443", "192.0.2.0/24", f.SiteIDs()[0]), nil)
	l.waitStatus(gpath, cp.StatusActive)
	var s cp.Site
	l.must(200, "GET", "/vpc/sites/site_ghost", "", &s)
	if s.Online || s.State == cp.SiteInSync || s.AppliedRevision != 0 {
		t.Errorf("ghost site: %+v", s)
	}
}

// TestRestartMidSync: the control plane stops while a group is syncing (no
// agent has run yet), comes back (with the embedded broker, a fresh one: no
// retained state), and the group still ends active once the agents run.
// Then it restarts again under running agents (with the embedded broker,
// the broker goes away under them) and a change still reaches them.
func TestRestartMidSync(t *testing.T) { bothBrokers(t, testRestartMidSync) }

func testRestartMidSync(t *testing.T, external bool) {
	l := newLoop(t, external, 2*time.Minute)
	ids := []string{"site_r1", "site_r2"}
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", ids...), &g)
	gpath := "/vpc/security-groups/" + g.ID
	l.restart()
	var cur cp.SecurityGroup
	l.must(200, "GET", gpath, "", &cur)
	if cur.Status != cp.StatusSyncing {
		t.Fatalf("after restart: %q, want still syncing", cur.Status)
	}
	f := l.fleet(2, "site_r")
	if !slices.Equal(f.SiteIDs(), ids) {
		t.Fatalf("fleet sites %v", f.SiteIDs())
	}
	l.waitStatus(gpath, cp.StatusActive)

	// Broker restart under running agents: they reconnect and converge.
	l.restart()
	l.must(200, "PUT", gpath, groupBody("9443", "192.0.2.0/24", ids...), nil)
	l.waitStatus(gpath, cp.StatusActive)
	for i := range ids {
		if !hasRule(f.Router(i), "9443", "0.0.0.0/0") {
			fl, _ := managed(f.Router(i))
			t.Errorf("%s after broker restart: %v", ids[i], fl)
		}
	}
}

// TestSiteCredentialsStayInTheirSite: with one site's credentials, an
// agent can neither read another site's desired state nor confirm for it,
// whether it writes to the other site's topic or names the other site in a
// report on its own.
func TestSiteCredentialsStayInTheirSite(t *testing.T) {
	l := newLoop(t, false, 2*time.Minute)
	var a, b cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", "site_a"), &a)
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", "site_b"), &b)
	var siteB cp.Site
	l.must(200, "GET", "/vpc/sites/site_b", "", &siteB)

	// site_a's credentials come from the enrollment route.
	var enr api.Enrollment
	l.must(200, "GET", "/vpc/sites/site_a/enrollment", "", &enr)
	env := map[string]string{}
	for _, kv := range enr.Env {
		env[kv.Name] = kv.Value
	}
	if env["RAMPART_MQTT_URL"] != l.m.MQTT.EnrollURL || env["RAMPART_SITE_SECRET"] == "" {
		t.Fatalf("enrollment: %+v", enr)
	}
	root := protocol.DefaultTopicRoot
	o := paho.NewClientOptions().AddBroker(env["RAMPART_MQTT_URL"]).SetClientID("e2e-site-a").
		SetUsername(protocol.SiteMQTTUser(l.org, "site_a")).SetPassword(env["RAMPART_SITE_SECRET"]).
		SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(converge) || tok.Error() != nil {
		t.Fatalf("connect with site_a's credentials: %v", tok.Error())
	}
	defer c.Disconnect(100)

	got := make(chan string, 10)
	for _, filter := range []string{protocol.DesiredTopic(root, l.org, "site_b"), root + "/" + l.org + "/+/desired", "#"} {
		tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() })
		if !tok.WaitTimeout(converge) {
			t.Fatalf("subscribe %s timed out", filter)
		}
		for _, code := range tok.(*paho.SubscribeToken).Result() {
			if code <= 2 {
				t.Errorf("site_a was granted %s (code %d)", filter, code)
			}
		}
	}
	own := protocol.DesiredTopic(root, l.org, "site_a")
	tok := c.Subscribe(own, 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() })
	if !tok.WaitTimeout(converge) || tok.(*paho.SubscribeToken).Result()[own] > 2 {
		t.Fatalf("site_a refused its own desired topic")
	}
	select {
	case topic := <-got:
		if topic != own {
			t.Fatalf("site_a received %s", topic)
		}
	case <-time.After(converge):
		t.Fatal("site_a did not receive its own retained desired state")
	}

	// Forged confirmations for site_b (QoS 0: the broker drops a refused
	// publish silently; QoS 1 would end the connection), then site_a's own
	// truthful one. One connection's messages are handled in order, so once
	// site_a is in sync the forgeries have been dealt with.
	forged := func(site string) string {
		st := protocol.SiteStatus{Schema: 1, OrgID: l.org, SiteID: site, Epoch: l.m.Store.Epoch(), Revision: siteB.DesiredRevision,
			State: protocol.StateApplied, AppliedAt: time.Now()}
		j, _ := json.Marshal(st)
		return string(j)
	}
	c.Publish(protocol.StatusTopic(root, l.org, "site_b"), 0, true, forged("site_b")).WaitTimeout(converge)
	c.Publish(protocol.StatusTopic(root, l.org, "site_a"), 1, true, forged("site_b")).WaitTimeout(converge)
	var siteA cp.Site
	l.must(200, "GET", "/vpc/sites/site_a", "", &siteA)
	own1 := protocol.SiteStatus{Schema: 1, OrgID: l.org, SiteID: "site_a", Epoch: l.m.Store.Epoch(), Revision: siteA.DesiredRevision,
		State: protocol.StateApplied, AppliedAt: time.Now()}
	j, _ := json.Marshal(own1)
	c.Publish(protocol.StatusTopic(root, l.org, "site_a"), 1, true, j).WaitTimeout(converge)
	l.waitStatus("/vpc/security-groups/"+a.ID, cp.StatusActive)

	var cur cp.SecurityGroup
	l.must(200, "GET", "/vpc/security-groups/"+b.ID, "", &cur)
	l.must(200, "GET", "/vpc/sites/site_b", "", &siteB)
	if cur.Status != cp.StatusSyncing || siteB.AppliedRevision != 0 {
		t.Errorf("site_a's forgeries changed site_b: group %q, site %+v", cur.Status, siteB)
	}
}

// TestFailureReportedThenRecovered: a router refuses the agent's writes a
// few times; the agent reports failed, the group turns failed and the site
// shows the router's error; the agent's retry then applies the same
// revision, and the late confirmation turns the group active.
func TestFailureReportedThenRecovered(t *testing.T) { bothBrokers(t, testFailureReportedThenRecovered) }

func testFailureReportedThenRecovered(t *testing.T, external bool) {
	l := newLoop(t, external, 2*time.Minute)
	f := l.fleet(1, "site_x")
	id := f.SiteIDs()[0]
	eventually(t, "agent online", func() string {
		var s cp.Site
		if l.call("GET", "/vpc/sites/"+id, "", &s) != 200 || !s.Online {
			return "not online yet"
		}
		return ""
	})
	f.Router(0).InjectTrap("/ip/firewall/filter/add", "failure: out of memory", 3)
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", id), &g)
	gpath := "/vpc/security-groups/" + g.ID
	l.waitStatus(gpath, cp.StatusFailed)
	var s cp.Site
	l.must(200, "GET", "/vpc/sites/"+id, "", &s)
	if s.State != cp.SiteFailed && s.State != cp.SiteSyncing || s.State == cp.SiteFailed && !strings.Contains(s.LastError, "out of memory") {
		t.Errorf("site while failing: %+v", s)
	}
	l.waitStatus(gpath, cp.StatusActive)
	l.must(200, "GET", "/vpc/sites/"+id, "", &s)
	if s.State != cp.SiteInSync || s.LastError != "" || s.AppliedRevision != s.DesiredRevision {
		t.Errorf("site after recovery: %+v", s)
	}
}

// TestBadMQTTURL: a --mqtt-url that is no broker URL stops the start with
// a message that says what would be valid.
func TestBadMQTTURL(t *testing.T) {
	for _, u := range []string{"http://broker:1883", "broker:1883", "tcp://"} {
		m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), MQTTURL: u}, Logger: slog.New(slog.DiscardHandler)}
		err := m.Start(context.Background())
		if err == nil {
			m.Close()
			t.Errorf("--mqtt-url %q accepted", u)
			continue
		}
		if !strings.Contains(err.Error(), "--mqtt-url") || !strings.Contains(err.Error(), "tcp://") {
			t.Errorf("--mqtt-url %q: %v", u, err)
		}
	}
}

// TestMosquittoRestart: the external broker restarts without persistence
// (every retained document lost) under the control plane and the agents;
// both reconnect, the control plane republishes, and a change converges.
// It runs its own Mosquitto, when RAMPART_TEST_MQTT_URL says one is
// available.
func TestMosquittoRestart(t *testing.T) {
	if os.Getenv("RAMPART_TEST_MQTT_URL") == "" {
		t.Skip("RAMPART_TEST_MQTT_URL is not set (.ci/run starts Mosquitto and sets it)")
	}
	path, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Skip("no mosquitto binary in PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\n"), 0o600)
	var mosq *exec.Cmd
	startMosquitto := func() {
		t.Helper()
		mosq = exec.Command(path, "-c", conf)
		if err := mosq.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "mosquitto listening on "+addr, func() string {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err.Error()
			}
			c.Close()
			return ""
		})
	}
	stopMosquitto := func() {
		mosq.Process.Signal(syscall.SIGTERM)
		mosq.Wait()
	}
	startMosquitto()
	t.Cleanup(func() { stopMosquitto() })

	t.Setenv("RAMPART_TEST_MQTT_URL", "tcp://"+addr)
	l := newLoop(t, true, 2*time.Minute)
	f := l.fleet(2, "site_m")
	var g cp.SecurityGroup
	l.must(201, "POST", "/vpc/security-groups", groupBody("443", "192.0.2.0/24", f.SiteIDs()...), &g)
	gpath := "/vpc/security-groups/" + g.ID
	l.waitStatus(gpath, cp.StatusActive)

	stopMosquitto()
	startMosquitto()
	l.must(200, "PUT", gpath, groupBody("9443", "192.0.2.0/24", f.SiteIDs()...), nil)
	// The agents' reconnect backoff reaches 30 s: allow for it.
	eventuallyFor(t, 3*converge, "agents apply the change after the broker restart", func() string {
		for i := range f.Len() {
			if !hasRule(f.Router(i), "9443", "0.0.0.0/0") {
				return f.SiteIDs()[i] + " has no rule for 9443 yet"
			}
		}
		return ""
	})
	l.waitStatus(gpath, cp.StatusActive)
}
