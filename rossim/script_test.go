package rossim

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3"
	"github.com/google/go-cmp/cmp"
)

// configMenus are every menu a script can change.
var configMenus = []string{"/ip/firewall/filter", "/ip/firewall/address-list", "/ip/firewall/nat", "/ip/address",
	"/interface", "/interface/list", "/interface/list/member", "/interface/veth", "/user/group", "/user",
	"/ip/service", "/container", "/container/envs", "/container/mounts", "/container/config", "/ip/dns",
	"/system/identity"}

// config prints every menu a script can change.
func config(t testing.TB, r *Router) map[string][]Item {
	t.Helper()
	out := map[string][]Item{}
	for _, m := range configMenus {
		items, err := r.Exec(m + "/print")
		if err != nil {
			t.Fatalf("%s/print: %v", m, err)
		}
		out[m] = items
	}
	return out
}

// TestImportLoadErrors: a script naming what the version lacks fails to
// load with RouterOS's message and position, wherever the name is (an
// untaken :if branch, a :do with on-error), and changes nothing.
func TestImportLoadErrors(t *testing.T) {
	const svc = "/ip/service/set [find where name=api dynamic=no] "
	for _, tc := range []struct {
		name, version, script, want string
	}{
		// The 7.21.5 lab note of reference section 8, verbatim.
		{"unknown argument", "7.21.5", "/system/resource/print bogus=1", "expected end of command (line 1 column 24)"},
		{"available-from before 7.24", "7.23.1", "/ip/address/add address=10.9.9.1/24 interface=bridge\n" + svc + "available-from=10.0.0.0/8", "expected end of command (line 2 column 50)"},
		{"address from 7.24", "7.24.2", svc + "address=10.0.0.0/8", "expected end of command (line 1 column 50)"},
		{"mount list= on 7.20", "7.20.4", "/container/mounts/add list=x src=a dst=/b", "expected end of command (line 1 column 23)"},
		{"mount name= on 7.21", "7.21.5", "/container/mounts/add name=x src=a dst=/b", "expected end of command (line 1 column 23)"},
		{"mountlists= on 7.20", "7.20.4", "/container/add file=a.tar interface=v mountlists=x", "expected end of command (line 1 column 39)"},
		{"mounts= on 7.21", "7.21.5", "/container/add file=a.tar interface=v mounts=x", "expected end of command (line 1 column 39)"},
		{"in an untaken :if", "7.23.1", ":if (false) do={\n  " + svc + "available-from=10.0.0.0/8\n}", "expected end of command (line 2 column 52)"},
		{"under :do on-error", "7.20.4", ":do {\n /container/add file=a mountlists=x } on-error={ :put no }", "expected end of command (line 2 column 24)"},
		{"after a line continuation", "7.20.4", "/container/add file=a \\\n    mountlists=x", "expected end of command (line 2 column 5)"},
		{"unknown singleton property", "7.21.5", "/container/config/set bogus=1", "expected end of command (line 1 column 23)"},
		{"unknown command", "7.21.5", "/system/bogus", "bad command name bogus (line 1 column 9)"},
		{"unknown verb", "7.21.5", "/ip/service/add name=x", "bad command name add (line 1 column 13)"},
		{"unknown builtin", "7.21.5", "{\n:frobnicate 1\n}", "bad command name frobnicate (line 2 column 2)"},
		{"unterminated string", "7.21.5", ":put \"abc", "unterminated string (line 1 column 6)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(Options{ROSVersion: tc.version})
			defer r.Close()
			before := config(t, r)
			// A script that would change things before the bad line.
			err := r.Import(context.Background(), tc.script, nil)
			var pe *ParseError
			if !errors.As(err, &pe) || err.Error() != tc.want {
				t.Fatalf("Import: %v, want ParseError %q", err, tc.want)
			}
			if d := cmp.Diff(before, config(t, r)); d != "" {
				t.Errorf("a script that failed to load changed the router:\n%s", d)
			}
		})
	}
}

// TestImportRuns: the language the onboarding script uses, run.
func TestImportRuns(t *testing.T) {
	r := New(Options{ROSVersion: "7.21.5"})
	defer r.Close()
	script := `# comment
{
:local tag "t\"q\$x"
:global g 5
:local n 0
:while ($n < 3) do={ :set n ($n + 1) }
:put ("n=" . $n . " g=$g tag=$tag")
:if ($n = 3) do={ :put "if" } else={ :put "else" }
:do { :error "boom" } on-error={ :put "caught" }
:do { /ip/address/add address=bad interface=bridge } on-error={ :put "trap caught" }
:local f do={ :return ("f(" . $1 . "," . $k . ")") }
:put [$f a k=b]
:local p [:parse ":return [/system/resource/get version]"]
:put [$p]
:do { :local bad [:parse "/ip/service/set api available-from=1.2.3.4"] } on-error={ :put "parse caught" }
:put [:pick "7.21.5 (stable)" 2 4]
:put [:typeof [:tonum "21"]]
:put [:len [/interface/find where type=ether]]
:delay 10ms
/ip service set [find where name=www dynamic=no] disabled=yes
:put [/ip/service/get [find where name=www dynamic=no] disabled]
/ip service
set [find where name=api dynamic=no] \
    address=10.0.0.0/8,192.168.88.0/24
/interface/veth/add name=v1 address=172.17.0.2/24 gateway=172.17.0.1 comment=$tag
:foreach i in=[/interface/veth/find] do={ :put [/interface/veth/get $i name] }
:put [/ip/service/get [find where name=api dynamic=no] address]
:local arr {1;"two";{3;4}}
:put ([:len $arr] . " " . [:pick $arr 1])
:local kv {a=1;b="x"}
:foreach v in=$kv do={ :put $v }
:if (true) do={ :put "code, not an array" }
/container/config/set tmpdir=disk1/tmp
:put [/container/config/get tmpdir]
:put [/system/device-mode/get container]
}`
	var out strings.Builder
	if err := r.Import(context.Background(), script, &out); err != nil {
		t.Fatalf("Import: %v\noutput:\n%s", err, out.String())
	}
	want := `n=3 g=5 tag=t"q$x
if
caught
trap caught
f(a,b)
7.21.5 (stable)
parse caught
21
num
9
true
v1
10.0.0.0/8,192.168.88.0/24
3 two
1
x
code, not an array
disk1/tmp
true
`
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}
	items, _ := r.Exec("/interface/veth/print")
	if len(items) != 1 || items[0]["comment"] != `t"q$x` {
		t.Errorf("veth: %v", items)
	}
	// A run-time error stops the script there; what ran stays done.
	err := r.Import(context.Background(), "/interface/veth/add name=v2\n:error \"stop here\"\n/interface/veth/add name=v3", nil)
	var se *ScriptError
	if !errors.As(err, &se) || se.Msg != "stop here" {
		t.Fatalf("run-time error: %v", err)
	}
	if items, _ := r.Exec("/interface/veth/print"); len(items) != 2 {
		t.Errorf("after a run-time error: %v", items)
	}
}

// TestImportOverAPI: /import file-name= over the API, from /file.
func TestImportOverAPI(t *testing.T) {
	r := start(t, Options{ROSVersion: "7.24.2"})
	c := dial(t, r, "admin", "")
	if err := r.PutFile("ok.rsc", []byte("/interface/veth/add name=v1 address=172.17.0.2/24 gateway=172.17.0.1\n")); err != nil {
		t.Fatal(err)
	}
	if err := r.PutFile("bad.rsc", []byte("/interface/veth/add name=v2\n/ip/service/set api address=1.2.3.4\n")); err != nil {
		t.Fatal(err)
	}
	run(t, c, "/import", "=file-name=ok.rsc")
	if got := column(run(t, c, "/interface/veth/print"), "name"); !cmp.Equal(got, []string{"v1"}) {
		t.Fatalf("veths after import: %v", got)
	}
	if msg := runErr(t, c, "/import", "=file-name=bad.rsc"); msg != "expected end of command (line 2 column 21)" {
		t.Errorf("bad import: %q", msg)
	}
	if got := column(run(t, c, "/interface/veth/print"), "name"); !cmp.Equal(got, []string{"v1"}) {
		t.Errorf("a script that failed to load changed the router: %v", got)
	}
	names := column(run(t, c, "/file/print"), "name")
	if !cmp.Equal(names, []string{"bad.rsc", "ok.rsc"}) {
		t.Errorf("/file: %v", names)
	}
}

// TestUserPolicies: a user logs in only with the api policy, from its
// address=; without write it cannot change anything.
func TestUserPolicies(t *testing.T) {
	r := start(t, Options{ROSVersion: "7.21.5"})
	err := r.Import(context.Background(), `
/user/group/add name=ro policy=api,read
/user/group/add name=rw policy=api,read,write
/user/group/add name=noapi policy=read,write
/user/add name=reader group=ro password=p address=127.0.0.1/32
/user/add name=writer group=rw password=p
/user/add name=far group=rw password=p address=10.0.0.0/8
/user/add name=web group=noapi password=p
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, r, "reader", "p")
	run(t, c, "/ip/firewall/filter/print")
	if msg := runErr(t, c, "/ip/firewall/filter/add", "=chain=input"); msg != "not enough permissions (9)" {
		t.Errorf("add without write: %q", msg)
	}
	w := dial(t, r, "writer", "p")
	run(t, w, "/ip/firewall/filter/add", "=chain=input")
	for _, u := range []string{"far", "web"} {
		if _, err := tryDial(r, u, "p"); err == nil || !strings.Contains(err.Error(), "invalid user name or password (6)") {
			t.Errorf("login of %s: %v", u, err)
		}
	}
}

// TestServiceRows: /ip/service lists a dynamic row per API connection
// from 7.19, and its address restriction refuses new connections.
func TestServiceRows(t *testing.T) {
	for _, v := range []string{"7.18.2", "7.21.5"} {
		r := start(t, Options{ROSVersion: v})
		c := dial(t, r, "admin", "")
		want := 1
		if v != "7.18.2" {
			want = 2
		}
		if n := len(run(t, c, "/ip/service/print", "?name=api").Re); n != want {
			t.Errorf("%s: %d rows named api with one session, want %d", v, n, want)
		}
		var out strings.Builder
		if err := r.Import(context.Background(), ":put [:len [/ip/service/find where name=api]]\n/ip/service/set [find where name=api dynamic=no] address=10.0.0.0/8", &out); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out.String()) != itoa(want) {
			t.Errorf("%s: find where name=api found %s", v, out.String())
		}
		run(t, c, "/system/resource/print") // the open session stays
		if _, err := tryDial(r, "admin", ""); err == nil {
			t.Errorf("%s: a connection from outside address= was served", v)
		}
	}
}

// TestContainer: add from a /file tarball -> extracting -> stopped; start
// runs the runner with the envs, mounts and the mapped API address; stop
// stops it.
func TestContainer(t *testing.T) {
	var mu sync.Mutex
	var got []Container
	stopped := 0
	r := start(t, Options{ROSVersion: "7.21.5", ExtractTime: 50 * time.Millisecond, ContainerRunner: func(_ context.Context, c Container) (func(), error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, c)
		fmt.Fprintln(c.Log, "hello from the container")
		return func() { mu.Lock(); stopped++; mu.Unlock() }, nil
	}})
	ctx := context.Background()
	if err := r.Import(ctx, "/container/add file=a.tar interface=v", nil); err == nil || err.Error() != "failure: file does not exist" {
		t.Fatalf("add without the file: %v", err)
	}
	if err := r.PutFile("a.tar", dockerSave(t, "arm64")); err != nil {
		t.Fatal(err)
	}
	err := r.Import(ctx, `
/interface/veth/add name=v address=172.17.0.2/24 gateway=172.17.0.1
/user/group/add name=g policy=api,read,write
/user/add name=agent group=g password=pw address=172.17.0.2/32
/container/envs/add list=e key=A value="1"
/container/envs/add list=other key=B value="2"
/container/mounts/add list=m src=d/data dst=/data
/container/add file=a.tar interface=v envlists=e mountlists=m root-dir=d/root logging=yes comment=c
:put [/container/get [find where comment=c] status]
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	status := func() string {
		items, _ := r.Exec("/container/print")
		return items[0]["status"]
	}
	if s := status(); s != "extracting" {
		t.Errorf("status after add: %s", s)
	}
	waitFor(t, func() bool { return status() == "stopped" })
	if err := r.Import(ctx, "/container/start [find]", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	if err := r.Import(ctx, "/container/remove [find]", nil); err == nil {
		t.Error("removed a running container")
	}
	c := got[0]
	// logging=yes: the container's output is in the router's log.
	var logOut strings.Builder
	if err := r.Import(ctx, `:foreach l in=[/log/find where topics~"container"] do={ :put [/log/get $l message] }`, &logOut); err != nil {
		t.Fatal(err)
	}
	if logOut.String() != "hello from the container\n" {
		t.Errorf("container log: %q", logOut.String())
	}
	if d := cmp.Diff(map[string]string{"A": "1"}, c.Env); d != "" {
		t.Errorf("env:\n%s", d)
	}
	if len(c.Mounts) != 1 || c.Mounts[0].Dst != "/data" || c.HostPath("/data/x") != c.Mounts[0].Src+"/x" {
		t.Errorf("mounts: %+v", c.Mounts)
	}
	api, ok := c.RouterAddr("172.17.0.1:8728")
	if !ok || api != c.APIAddr {
		t.Fatalf("RouterAddr: %q %v", api, ok)
	}
	// The container's view of the API: sessions come from 172.17.0.2,
	// which the user's address= allows; the host's own address does not.
	if _, err := tryDial(r, "agent", "pw"); err == nil {
		t.Error("agent user logged in from 127.0.0.1 despite address=172.17.0.2/32")
	}
	// defconf's input chain drops what does not come from LAN: the veth
	// must join the list first.
	if _, err := tryDialAddr(api, "agent", "pw"); err == nil {
		t.Error("the container reached the API through defconf's drop rule")
	}
	if err := r.Import(ctx, "/interface/list/member/add list=LAN interface=v", nil); err != nil {
		t.Fatal(err)
	}
	conn := containerDial(t, api, "agent", "pw")
	run(t, conn, "/ip/firewall/filter/add", "=chain=input", "=comment=from the container")
	if err := r.Import(ctx, "/container/stop [find]", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return stopped == 1 && status() == "stopped" })
	if err := r.Import(ctx, "/container/remove [find]", nil); err != nil {
		t.Fatal(err)
	}
}

func containerDial(t testing.TB, addr, user, pass string) *routeros.Client {
	t.Helper()
	c, err := tryDialAddr(addr, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestVersionedNamesOverAPI: over the API, a name the version lacks is
// "unknown parameter <name>", the name it has works.
func TestVersionedNamesOverAPI(t *testing.T) {
	for _, tc := range []struct{ version, good, bad string }{
		{"7.23.1", "address", "available-from"},
		{"7.24.2", "available-from", "address"},
	} {
		r := start(t, Options{ROSVersion: tc.version})
		c := dial(t, r, "admin", "")
		id := rows(run(t, c, "/ip/service/print", "?name=api", "?dynamic=false"))[0][".id"]
		if msg := runErr(t, c, "/ip/service/set", "=.id="+id, "="+tc.bad+"=127.0.0.0/8"); msg != "unknown parameter "+tc.bad {
			t.Errorf("%s: %s: %q", tc.version, tc.bad, msg)
		}
		run(t, c, "/ip/service/set", "=.id="+id, "="+tc.good+"=127.0.0.0/8")
		if got := rows(run(t, c, "/ip/service/print", "?.id="+id))[0][tc.good]; got != "127.0.0.0/8" {
			t.Errorf("%s: %s = %q", tc.version, tc.good, got)
		}
	}
	for _, tc := range []struct{ version, good, bad string }{
		{"7.20.4", "name", "list"},
		{"7.21.5", "list", "name"},
	} {
		r := start(t, Options{ROSVersion: tc.version})
		c := dial(t, r, "admin", "")
		if msg := runErr(t, c, "/container/mounts/add", "="+tc.bad+"=m", "=src=a", "=dst=/b"); msg != "unknown parameter "+tc.bad {
			t.Errorf("%s: %s: %q", tc.version, tc.bad, msg)
		}
		run(t, c, "/container/mounts/add", "="+tc.good+"=m", "=src=a", "=dst=/b")
	}
}

// TestImportBounds: runaway recursion stops with an error, and Close
// interrupts a running script.
func TestImportBounds(t *testing.T) {
	r := New(Options{})
	err := r.Import(context.Background(), ":global f do={ :return [$f] }\n:put [$f]", nil)
	var se *ScriptError
	if !errors.As(err, &se) || !strings.Contains(se.Msg, "nested deeper than 100") {
		t.Errorf("recursion: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Import(context.Background(), ":while (true) do={ :delay 1h }", nil) }()
	r.Close() // before or while the script runs: either way it ends
	select {
	case err := <-done:
		if !errors.As(err, &se) || se.Msg != "interrupted" {
			t.Errorf("script after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not interrupt the script")
	}
}

// TestContainerNeedsDNS: RouterOS starts no container without DNS.
func TestContainerNeedsDNS(t *testing.T) {
	r := New(Options{ROSVersion: "7.21", ExtractTime: time.Millisecond})
	defer r.Close()
	r.mu.Lock()
	r.singles["/ip/dns"]["dynamic-servers"] = "" // a router whose WAN gave no DNS
	r.mu.Unlock()
	if err := r.PutFile("a.tar", dockerSave(t, "arm64")); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := r.Import(context.Background(), `
/interface/veth/add name=v address=172.17.0.2/24 gateway=172.17.0.1
/container/add file=a.tar interface=v
:while ([/container/get [find] status] != "stopped") do={ :delay 10ms }
:do { /container/start [find] } on-error={ :put "refused" }
/container/set [find] dns=192.0.2.1
/container/start [find]
`, &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "refused\n" {
		t.Errorf("start without DNS was not refused: %q", out.String())
	}
	items, _ := r.Exec("/container/print")
	if items[0]["status"] != "running" {
		t.Errorf("container with dns= set: %v", items)
	}
}

// FuzzParseScript: any input loads or fails with a ParseError; it never
// panics or hangs.
func FuzzParseScript(f *testing.F) {
	for _, s := range []string{
		"/system/resource/print bogus=1", ":if ($a = \"x\") do={ :put [/ip/service/find where name=api dynamic=no] } else={}",
		"{ :local f do={ :return ($1 . \"\\\"\") }; :put [$f a] }", "/ip service\nset [find] address=1.2.3.4 \\\n disabled=no",
		":put \"$[:len \"ab\"] $(1 + 2)\"", "[", "{", "(", "\"", "$", ":foreach i in=[/file/find] do={ :put $i }",
	} {
		f.Add(s)
	}
	r := New(Options{ROSVersion: "7.21.5"})
	f.Cleanup(func() { r.Close() })
	f.Fuzz(func(t *testing.T, src string) {
		_, err := r.parseScript(src)
		var pe *ParseError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("%q: %v", src, err)
		}
	})
}

// FuzzImport: running any script ends in time with nil, a ParseError or a
// ScriptError; it never panics.
func FuzzImport(f *testing.F) {
	for _, s := range []string{
		":local n 0\n:while ($n < 3) do={ :set n ($n + 1) }\n:put $n",
		":do { :error x } on-error={ :put [:pick \"abc\" 1 2] }",
		"/interface/veth/add name=v address=1.2.3.4/24 gateway=1.2.3.1\n:put [/interface/veth/get [find] name]",
		":local f do={ :return [:len $1] }\n:put [$f [/ip/service/find]]",
		":foreach i in=[:toarray \"a,b\"] do={ :put [:typeof $i] }",
		":put [[:parse \":return 1\"]]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		r := New(Options{ROSVersion: "7.21.5"})
		defer r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err := r.Import(ctx, src, nil)
		var pe *ParseError
		var se *ScriptError
		if err != nil && !errors.As(err, &pe) && !errors.As(err, &se) {
			t.Fatalf("%q: %v", src, err)
		}
	})
}

// dockerSave is a minimal `docker save` archive of one image per arch:
// manifest.json and the config (the layer is not read).
func dockerSave(t testing.TB, archs ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	var manifest []map[string]any
	for i, a := range archs {
		cfg := fmt.Sprintf("sha256:%064d", i)
		put(cfg, []byte(`{"architecture":"`+a+`","os":"linux"}`))
		put(fmt.Sprintf("%d/layer.tar", i), make([]byte, 1024))
		manifest = append(manifest, map[string]any{"Config": cfg, "RepoTags": []string{"rampart-agent:latest"}, "Layers": []string{fmt.Sprintf("%d/layer.tar", i)}})
	}
	b, _ := json.Marshal(manifest)
	put("manifest.json", b)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestContainerImages: a tarball that is no single-image docker save ends
// in status error; an image for another architecture stops at once when
// started, with the reason in the log.
func TestContainerImages(t *testing.T) {
	started := make(chan struct{}, 4)
	r := start(t, Options{ROSVersion: "7.21.5", Architecture: "arm64", ExtractTime: time.Millisecond,
		ContainerRunner: func(context.Context, Container) (func(), error) { started <- struct{}{}; return func() {}, nil }})
	for name, data := range map[string][]byte{"junk.tar": []byte("not a tar"), "multi.tar": dockerSave(t, "arm64", "amd64"),
		"amd64.tar": dockerSave(t, "amd64"), "arm64.tar": dockerSave(t, "arm64")} {
		if err := r.PutFile(name, data); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	err := r.Import(context.Background(), `
/interface/veth/add name=v address=172.17.0.2/24 gateway=172.17.0.1
:foreach f in={"junk.tar";"multi.tar";"amd64.tar";"arm64.tar"} do={ /container/add file=$f interface=v comment=$f }
:foreach c in=[/container/find] do={
  :while ([/container/get $c status] = "extracting") do={ :delay 10ms }
  :put ([/container/get $c comment] . " " . [/container/get $c status])
}
`, &out)
	if err != nil {
		t.Fatal(err)
	}
	want := "junk.tar error\nmulti.tar error\namd64.tar stopped\narm64.tar stopped\n"
	if out.String() != want {
		t.Fatalf("after extraction:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := r.Import(context.Background(), "/container/start [find where comment=amd64.tar]", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, l := range r.Log() {
			if strings.Contains(l, "exec format error: the image is linux/amd64, this router is arm64") {
				return true
			}
		}
		return false
	})
	items, _ := r.Exec("/container/print", "?comment=amd64.tar")
	if items[0]["status"] != "stopped" || len(started) != 0 {
		t.Errorf("amd64 image on arm64: %v, runner called %d times", items, len(started))
	}
	if err := r.Import(context.Background(), "/container/start [find where comment=arm64.tar]", nil); err != nil {
		t.Fatal(err)
	}
	<-started
}
