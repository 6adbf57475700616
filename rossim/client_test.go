package rossim

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3"
	"github.com/google/go-cmp/cmp"
)

// start serves a router on 127.0.0.1:0 and closes it when the test ends.
func start(t testing.TB, opts Options) *Router {
	t.Helper()
	r, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// dial logs in with go-routeros over TCP, the way the agent does: its own
// dial with a deadline, then NewClient + Login.
func dial(t testing.TB, r *Router, user, pass string) *routeros.Client {
	t.Helper()
	c, err := tryDial(r, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tryDial(r *Router, user, pass string) (*routeros.Client, error) {
	return tryDialAddr(r.Addr(), user, pass)
}

func tryDialAddr(addr, user, pass string) (*routeros.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := routeros.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Login(user, pass); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func run(t testing.TB, c *routeros.Client, words ...string) *routeros.Reply {
	t.Helper()
	rep, err := c.Run(words...)
	if err != nil {
		t.Fatalf("%v: %v", words, err)
	}
	return rep
}

// runErr runs a command that must fail and returns the trap message
// go-routeros reports (the last trap of the reply).
func runErr(t testing.TB, c *routeros.Client, words ...string) string {
	t.Helper()
	_, err := c.Run(words...)
	var de *routeros.DeviceError
	if !errors.As(err, &de) {
		t.Fatalf("%v: want a device error, got %v", words, err)
	}
	return de.Sentence.Map["message"]
}

// trapCase is a command that must fail, and the trap's message it must
// fail with.
type trapCase struct {
	words []string
	want  string
}

// checkTraps runs each failing command on c and checks its trap's message,
// then that none of them changed r's firewall (every write all or nothing).
func checkTraps(t *testing.T, r *Router, c *routeros.Client, tests []trapCase) {
	t.Helper()
	before := r.Snapshot()
	for _, tt := range tests {
		if got := runErr(t, c, tt.words...); got != tt.want {
			t.Errorf("%v: trap %q, want %q", tt.words, got, tt.want)
		}
	}
	if d := cmp.Diff(before, r.Snapshot(), cmp.AllowUnexported(Firewall{})); d != "" {
		t.Fatalf("failed commands changed the firewall:\n%s", d)
	}
}

// mustExec runs one command on r's API surface (Exec) and returns the
// id an add answers with ("" for other commands).
func mustExec(t *testing.T, r *Router, words ...string) string {
	t.Helper()
	out, err := r.Exec(words...)
	if err != nil {
		t.Fatalf("%v: %v", words, err)
	}
	if len(out) == 1 {
		return out[0]["ret"]
	}
	return ""
}

func rows(rep *routeros.Reply) []map[string]string {
	var out []map[string]string
	for _, s := range rep.Re {
		out = append(out, s.Map)
	}
	return out
}

func column(rep *routeros.Reply, k string) []string {
	var out []string
	for _, s := range rep.Re {
		out = append(out, s.Map[k])
	}
	return out
}

func TestLoginPrintAddSetRemoveMove(t *testing.T) {
	r := start(t, Options{User: "api", Password: "secret"})
	c := dial(t, r, "api", "secret")

	rep := run(t, c, "/ip/firewall/filter/print")
	if got := len(rep.Re); got != 12 {
		t.Fatalf("defconf filter rows = %d, want 12 (dummy + 11)", got)
	}
	if d := rep.Re[0].Map; d["dynamic"] != "true" || d["action"] != "passthrough" || d["comment"] != dummyComment {
		t.Fatalf("first row is not the dynamic dummy: %v", d)
	}

	add := run(t, c, "/ip/firewall/filter/add", "=chain=rampart-in", "=action=accept", "=protocol=6", "=dst-port=443", "=src-address=10.1.2.3/24", "=comment=rampart:x")
	id := add.Done.Map["ret"]
	if !strings.HasPrefix(id, "*") {
		t.Fatalf("add ret = %q", id)
	}
	got := rows(run(t, c, "/ip/firewall/filter/print", "?.id="+id, "=.proplist=.id,chain,protocol,dst-port,src-address,disabled"))
	want := []map[string]string{{".id": id, "chain": "rampart-in", "protocol": "tcp", "dst-port": "443", "src-address": "10.1.2.0/24", "disabled": "false"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("print after add (-want +got):\n%s", d)
	}

	run(t, c, "/ip/firewall/filter/set", "=.id="+id, "=dst-port=80", "=disabled=yes")
	got = rows(run(t, c, "/ip/firewall/filter/print", "?.id="+id, "=.proplist=dst-port,disabled"))
	if d := cmp.Diff([]map[string]string{{"dst-port": "80", "disabled": "true"}}, got); d != "" {
		t.Fatalf("print after set (-want +got):\n%s", d)
	}

	// move before the first input rule (*1)
	run(t, c, "/ip/firewall/filter/move", "=numbers="+id, "=destination=*1")
	ids := column(run(t, c, "/ip/firewall/filter/print", "=.proplist=.id"), ".id")
	if ids[1] != id || ids[2] != "*1" {
		t.Fatalf("after move ids = %v", ids)
	}
	run(t, c, "/ip/firewall/filter/remove", "=.id="+id)
	if n := len(run(t, c, "/ip/firewall/filter/print").Re); n != 12 {
		t.Fatalf("rows after remove = %d", n)
	}

	h := r.History()
	if len(h) != 5 { // initial, add, set, move, remove
		t.Fatalf("history has %d states, want 5", len(h))
	}
	if len(h[1].Filter) != 13 || h[1].Filter[12][".id"] != id || h[1].Filter[12]["dst-port"] != "443" {
		t.Fatalf("state after add: %v", h[1].Filter[12])
	}
	if h[2].Filter[12]["dst-port"] != "80" || h[3].Filter[1][".id"] != id || len(h[4].Filter) != 12 {
		t.Fatalf("history states wrong: %v / %v", h[2].Filter[12], h[3].Filter[1])
	}
	if st := r.Stats(); st.Logins != 1 || st.Writes["add"] != 1 || st.Writes["set"] != 1 || st.Writes["move"] != 1 || st.Writes["remove"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestWrongPasswordTraps(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	r := start(t, Options{User: "api", Password: "secret", Logger: slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_, err := tryDial(r, "api", "wrong")
	if err == nil || !strings.Contains(err.Error(), "invalid user name or password (6)") {
		t.Fatalf("login with a wrong password: %v", err)
	}
	// The failed login is logged (RouterOS logs every API login attempt).
	c := dial(t, r, "api", "secret")
	run(t, c, "/system/identity/print")
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `"msg":"api login failed"`) || !strings.Contains(logs.String(), `"command":"/system/identity/print"`) {
		t.Fatalf("logs: %s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestExecAndSnapshot(t *testing.T) {
	r := New(Options{})
	out, err := r.Exec("/ip/firewall/address-list/add", "=list=office", "=address=203.0.113.77/24")
	if err != nil {
		t.Fatal(err)
	}
	if out[0]["ret"] != "*1" {
		t.Fatalf("ret = %v", out)
	}
	_, err = r.Exec("/ip/firewall/address-list/add", "=list=office", "=address=203.0.113.0/24")
	var trap *Trap
	if !errors.As(err, &trap) || trap.Message != "failure: already have such entry" {
		t.Fatalf("duplicate add: %v", err)
	}
	s := r.Snapshot()
	if len(s.AddressList) != 1 || s.AddressList[0]["address"] != "203.0.113.0/24" {
		t.Fatalf("snapshot: %v", s.AddressList)
	}
	s.AddressList[0]["address"] = "mutated"
	if r.Snapshot().AddressList[0]["address"] != "203.0.113.0/24" {
		t.Fatal("snapshot is not a deep copy")
	}
}
