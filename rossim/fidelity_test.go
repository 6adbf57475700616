package rossim

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/internal/wait"
)

func TestErrorTexts(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	const f = "/ip/firewall/filter/"
	id := run(t, c, f+"add", "=chain=x", "=action=accept").Done.Map["ret"]
	tests := []trapCase{
		{[]string{f + "add", "=chain=input", "=dst-port=80"}, "failure: ports can be specified if proto is tcp,udp,udp-lite,dccp,sctp"},
		{[]string{f + "add", "=chain=input", "=protocol=icmp", "=dst-port=80"}, "failure: ports can be specified if proto is tcp,udp,udp-lite,dccp,sctp"},
		{[]string{f + "add", "=chain=input", "=protocol=!tcp", "=dst-port=80"}, "failure: ports can be specified if proto is tcp,udp,udp-lite,dccp,sctp"},
		{[]string{f + "add", "=chain=input", "=colour=red"}, "unknown parameter colour"},
		{[]string{f + "add", "=chain=input", "=bytes=5"}, "unknown parameter bytes"},
		{[]string{f + "add", "=chain=input", "=action=allow"}, "input does not match any value of action"},
		{[]string{f + "add", "=chain=input", "=protocol=tcpp"}, "input does not match any value of protocol"},
		{[]string{f + "add", "=chain=input", "=protocol=256"}, "input does not match any value of protocol"},
		{[]string{f + "add", "=chain=input", "=in-interface-list=DMZ"}, "input does not match any value of in-interface-list"},
		{[]string{f + "add", "=chain=input", "=in-interface=eth9"}, "input does not match any value of in-interface"},
		{[]string{f + "add", "=chain=input", "=disabled=maybe"}, "input does not match any value of disabled"},
		{[]string{f + "add", "=chain=input", "=action=jump"}, "failure: no target chain specified"},
		{[]string{f + "add", "=action=accept"}, "missing value(s) of argument(s) chain"},
		{[]string{f + "add", "=chain=input", "=place-before=*999"}, "no such item (4)"},
		{[]string{f + "add", "=chain=input", "=place-before=0"}, "no such item (4)"},
		{[]string{f + "add", "=chain=input", "=place-before=" + idString(dummyID)}, "failure: cannot move builtin"},
		{[]string{f + "set", "=.id=" + id, "=place-before=*1"}, "unknown parameter place-before"},
		{[]string{f + "set", "=.id=*999", "=comment=x"}, "no such item (4)"},
		{[]string{f + "set", "=.id=1", "=comment=x"}, "no such item (4)"},
		{[]string{f + "set", "=.id=" + idString(dummyID), "=comment=x"}, "failure: cannot change builtin"},
		{[]string{f + "disable", "=numbers=" + idString(dummyID)}, "failure: cannot change builtin"},
		{[]string{f + "remove", "=.id=" + idString(dummyID)}, "failure: cannot remove builtin"},
		{[]string{f + "move", "=numbers=" + idString(dummyID), "=destination=*1"}, "failure: cannot move builtin"},
		{[]string{f + "move", "=numbers=" + id, "=destination=" + idString(dummyID)}, "failure: cannot move builtin"},
		{[]string{f + "remove", "=.id=*1,*999"}, "no such item (4)"},
		{[]string{f + "set", "=.id=" + id, "=!chain="}, "missing value(s) of argument(s) chain"},
		{[]string{f + "add", "=chain=input", "=protocol=udp", "=tcp-flags=syn"}, "failure: tcp-flags works only with tcp"},
		{[]string{f + "add", "=chain=input", "=src-address=10.0.0.300"}, "invalid value for argument src-address"},
		{[]string{f + "add", "=chain=input", "=protocol=tcp", "=dst-port=70000"}, "invalid value for argument dst-port"},
		{[]string{"/ip/firewall/address-list/add", "=list=l"}, "missing value(s) of argument(s) address"},
		// go-routeros keeps the last of the two traps of an unknown path
		// (reference section 5); TestPipelinedTags sees both.
		{[]string{"/ip/firewal/filter/print"}, "no such command prefix"},
		{[]string{"/ip/firewall/filter/frobnicate"}, "no such command prefix"},
	}
	checkTraps(t, r, c, tests)
	// Nothing of a failed multi-id remove happened: *1 is still there.
	if n := len(run(t, c, f+"print", "?.id=*1").Re); n != 1 {
		t.Fatal("*1 removed by a failing remove")
	}
}

func TestDuplicateAddressAndNormalisation(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	const a = "/ip/firewall/address-list/"
	run(t, c, a+"add", "=list=office", "=address=203.0.113.77/24")
	run(t, c, a+"add", "=list=office", "=address=198.51.100.9/32")
	run(t, c, a+"add", "=list=office", "=address=192.0.2.0-192.0.2.255")
	run(t, c, a+"add", "=list=office", "=address=192.0.2.10-192.0.2.20")
	run(t, c, a+"add", "=list=office", "=address=203.0.113.1-254") // a DNS name [C]
	run(t, c, a+"add", "=list=other", "=address=203.0.113.0/24")   // same address, other list
	got := column(run(t, c, a+"print", "?list=office"), "address")
	want := []string{"203.0.113.0/24", "198.51.100.9", "192.0.2.0/24", "192.0.2.10-192.0.2.20", "203.0.113.1-254"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("normalised addresses (-want +got):\n%s", d)
	}
	if m := runErr(t, c, a+"add", "=list=office", "=address=203.0.113.5/24"); m != "failure: already have such entry" {
		t.Fatalf("duplicate: %q", m)
	}
	if m := runErr(t, c, a+"add", "=list=office", "=address=198.51.100.9"); m != "failure: already have such entry" {
		t.Fatalf("duplicate /32: %q", m)
	}
	row := rows(run(t, c, a+"print", "?address=198.51.100.9"))[0]
	if row["dynamic"] != "false" || row["disabled"] != "false" || row["creation-time"] == "" {
		t.Fatalf("row: %v", row)
	}
}

func TestQueries(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	const f = "/ip/firewall/filter/"
	ids := func(words ...string) []string {
		t.Helper()
		return column(run(t, c, append([]string{f + "print", "=.proplist=.id"}, words...)...), ".id")
	}
	tests := []struct {
		name string
		q    []string
		want []string
	}{
		{"equality", []string{"?chain=input"}, []string{"*1", "*2", "*3", "*4", "*5"}},
		{"?= equality", []string{"?=chain=input", "?=action=drop"}, []string{"*2", "*5"}},
		{"or", []string{"?protocol=icmp", "?dst-address=127.0.0.1", "?#|"}, []string{"*3", "*4"}},
		{"has property", []string{"?in-interface-list"}, []string{"*5", "*B"}},
		{"lacks property", []string{"?-connection-state", "?chain=forward"}, []string{idString(dummyID), "*6", "*7"}},
		{"boolean true/yes", []string{"?dynamic=yes"}, []string{idString(dummyID)}},
		{"boolean false", []string{"?dynamic=false", "?chain=input", "?action=accept"}, []string{"*1", "*3", "*4"}},
		{"not", []string{"?chain=input", "?#!"}, []string{idString(dummyID), "*6", "*7", "*8", "*9", "*A", "*B"}},
		{"and of or", []string{"?action=drop", "?action=accept", "?#|", "?chain=input", "?#&"}, []string{"*1", "*2", "*3", "*4", "*5"}},
		{"greater than", []string{"?>comment=defconf: drop"}, []string{"*2", "*5", "*8", "*A", "*B", idString(dummyID)}},
		{"less than", []string{"?<comment=defconf: accept in"}, []string{"*1", "*3", "*9"}},
		{"non-empty comment", []string{"?>comment=", "?chain=input"}, []string{"*1", "*2", "*3", "*4", "*5"}},
		{"id", []string{"?.id=*3"}, []string{"*3"}},
		{"unknown property matches nothing", []string{"?colour=red"}, nil},
		{"stack index at end replaces", []string{"?chain=input", "?chain=nope", "?#1"}, []string{"*1", "*2", "*3", "*4", "*5"}},
		{"dup and", []string{"?chain=output", "?#.&"}, nil},
	}
	for _, tt := range tests {
		got := ids(tt.q...)
		want := tt.want
		// keep the global order in the expectation
		order := ids()
		var sorted []string
		for _, id := range order {
			for _, w := range want {
				if w == id {
					sorted = append(sorted, id)
				}
			}
		}
		if d := cmp.Diff(sorted, got); d != "" {
			t.Errorf("%s %v (-want +got):\n%s", tt.name, tt.q, d)
		}
	}
	if got := run(t, c, f+"print", "=count-only=", "?chain=forward").Done.Map["ret"]; got != "7" {
		t.Fatalf("count-only = %q", got)
	}
	// A proplist naming nothing the row has gives a bare !re.
	rep := run(t, c, f+"print", "=.proplist=nothing", "?.id=*1")
	if len(rep.Re) != 1 || len(rep.Re[0].List) != 0 {
		t.Fatalf("bare !re expected: %v", rep)
	}
}

func TestSetUnsetEnableDisableMoveLists(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	const f = "/ip/firewall/filter/"
	var ids []string
	for _, p := range []string{"22", "80", "443"} {
		ids = append(ids, run(t, c, f+"add", "=chain=t", "=protocol=tcp", "=dst-port="+p, "=comment=c"+p).Done.Map["ret"])
	}
	if ids[0] != "*D" || ids[2] != "*F" {
		t.Fatalf("ids after defconf's *1..*B and the dummy *C: %v", ids)
	}
	// ids are never reused
	run(t, c, f+"remove", "=numbers="+ids[2])
	if id := run(t, c, f+"add", "=chain=t").Done.Map["ret"]; id != "*10" {
		t.Fatalf("new id after remove = %s, want *10", id)
	}
	run(t, c, f+"set", "=numbers="+ids[0]+","+ids[1], "=!dst-port=", "=comment=")
	for _, row := range rows(run(t, c, f+"print", "?chain=t", "?protocol=tcp")) {
		if _, ok := row["dst-port"]; ok {
			t.Fatalf("dst-port not unset: %v", row)
		}
		if _, ok := row["comment"]; ok {
			t.Fatalf("comment not cleared: %v", row)
		}
	}
	run(t, c, f+"disable", "=.id="+ids[0]+","+ids[1])
	if got := column(run(t, c, f+"print", "?chain=t", "?disabled=true"), ".id"); len(got) != 2 {
		t.Fatalf("disabled rows: %v", got)
	}
	run(t, c, f+"enable", "=numbers="+ids[1])
	if got := column(run(t, c, f+"print", "?chain=t", "?disabled=no"), ".id"); !cmp.Equal(got, []string{ids[1], "*10"}) {
		t.Fatalf("enabled rows: %v", got)
	}
	run(t, c, f+"unset", "=numbers="+ids[1], "=value-name=protocol")
	if row := rows(run(t, c, f+"print", "?.id="+ids[1]))[0]; row["protocol"] != "" {
		t.Fatalf("unset protocol: %v", row)
	}
	// move two rules before *1: they keep the order given.
	run(t, c, f+"move", "=numbers=*10,"+ids[0], "=destination=*1")
	all := column(run(t, c, f+"print"), ".id")
	if d := cmp.Diff([]string{idString(dummyID), "*10", ids[0], "*1"}, all[:4]); d != "" {
		t.Fatalf("after move:\n%s", d)
	}
	// without destination: to the end [I]
	run(t, c, f+"move", "=numbers=*10")
	all = column(run(t, c, f+"print"), ".id")
	if all[len(all)-1] != "*10" {
		t.Fatalf("move without destination: %v", all)
	}
	// protocol by number prints by name; an unnamed number prints as such.
	id := run(t, c, f+"add", "=chain=t", "=protocol=47").Done.Map["ret"]
	id2 := run(t, c, f+"add", "=chain=t", "=protocol=253").Done.Map["ret"]
	if p := rows(run(t, c, f+"print", "?.id="+id))[0]["protocol"]; p != "gre" {
		t.Fatalf("protocol 47 prints %q", p)
	}
	if p := rows(run(t, c, f+"print", "?.id="+id2))[0]["protocol"]; p != "253" {
		t.Fatalf("protocol 253 prints %q", p)
	}
	// booleans print true/false whatever the input
	id3 := run(t, c, f+"add", "=chain=t", "=log=yes", "=disabled=false").Done.Map["ret"]
	row := rows(run(t, c, f+"print", "?.id="+id3))[0]
	if row["log"] != "true" || row["disabled"] != "false" || row["invalid"] != "false" || row["bytes"] != "0" || row["packets"] != "0" {
		t.Fatalf("row: %v", row)
	}
	// The dummy rule goes with the last fasttrack rule and comes back with one.
	run(t, c, f+"remove", "=.id=*8")
	if n := len(run(t, c, f+"print", "?dynamic=true").Re); n != 0 {
		t.Fatal("dummy rule still present without a fasttrack rule")
	}
	ft := run(t, c, f+"add", "=chain=forward", "=action=fasttrack-connection", "=connection-state=established,related").Done.Map["ret"]
	// Back on top, with the next id of the same counter: ids are never
	// reused, so it is not its old *C [I: reference section 8 for the
	// counter, 1.8 for no reuse].
	top := rows(run(t, c, f+"print"))[0]
	ftID, _ := parseID(ft)
	if top["dynamic"] != "true" || top[".id"] != idString(ftID+1) {
		t.Fatalf("dummy rule not back on top with id after %s: %v", ft, top)
	}
}

func TestSystemAndInterfaceMenus(t *testing.T) {
	r := start(t, Options{ROSVersion: "7.16.2", Board: "hAP ax2", Architecture: "arm", Identity: "edge-1"})
	c := dial(t, r, "admin", "")
	res := rows(run(t, c, "/system/resource/print"))[0]
	if res["version"] != "7.16.2 (stable)" || res["board-name"] != "hAP ax2" || res["architecture-name"] != "arm" || res["uptime"] == "" {
		t.Fatalf("resource: %v", res)
	}
	if n := rows(run(t, c, "/system/identity/print"))[0]["name"]; n != "edge-1" {
		t.Fatalf("identity %q", n)
	}
	names := column(run(t, c, "/interface/print"), "name")
	if names[0] != "ether1" || names[len(names)-1] != "bridge" {
		t.Fatalf("interfaces: %v", names)
	}
	lists := column(run(t, c, "/interface/list/print"), "name")
	if d := cmp.Diff([]string{"all", "none", "dynamic", "static", "WAN", "LAN"}, lists); d != "" {
		t.Fatalf("lists:\n%s", d)
	}
	members := rows(run(t, c, "/interface/list/member/print", "=.proplist=list,interface"))
	if d := cmp.Diff([]map[string]string{{"list": "LAN", "interface": "bridge"}, {"list": "WAN", "interface": "ether1"}}, members); d != "" {
		t.Fatalf("members:\n%s", d)
	}
	id := run(t, c, "/interface/list/member/add", "=list=LAN", "=interface=ether2").Done.Map["ret"]
	if m := runErr(t, c, "/interface/list/member/add", "=list=NOPE", "=interface=ether2"); m != "input does not match any value of list" {
		t.Fatalf("member of unknown list: %q", m)
	}
	run(t, c, "/interface/list/member/remove", "=.id="+id)
	if n := len(run(t, c, "/interface/list/member/print").Re); n != 2 {
		t.Fatalf("members after remove: %d", n)
	}
	// A filter rule may reference an interface list created later.
	run(t, c, "/interface/list/add", "=name=DMZ")
	run(t, c, "/ip/firewall/filter/add", "=chain=forward", "=in-interface-list=DMZ")
}

func TestLegacyLogin(t *testing.T) {
	r := start(t, Options{User: "u", Password: "passTest", LegacyLogin: true})
	c := dial(t, r, "u", "passTest") // go-routeros answers the challenge itself
	run(t, c, "/system/identity/print")
	if _, err := tryDial(r, "u", "wrong"); err == nil || !strings.Contains(err.Error(), "cannot log in") {
		t.Fatalf("wrong legacy password: %v", err)
	}
	// The reference's test vector [C: go-routeros TestLoginPre643].
	if got := ChallengeResponse([]byte{0xab, 0xc1, 0x23}, "passTest"); got != "0021277bff9ac7caf06aa608e46616d47f" {
		t.Fatalf("challenge response %s", got)
	}
}

func TestSessionsAndMaxSessions(t *testing.T) {
	r := start(t, Options{MaxSessions: 3})
	var clients []*routeros.Client
	for i := 0; i < 3; i++ {
		clients = append(clients, dial(t, r, "admin", ""))
	}
	// All three work concurrently.
	var wg sync.WaitGroup
	errs := make(chan error, 3*50)
	for i, c := range clients {
		wg.Add(1)
		go func(i int, c *routeros.Client) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if _, err := c.Run("/ip/firewall/address-list/add", "=list=s", "=address=10.0."+itoa(i)+"."+itoa(j)); err != nil {
					errs <- err
				}
			}
		}(i, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(r.Snapshot().AddressList); n != 150 {
		t.Fatalf("entries = %d", n)
	}
	// A fourth is refused: accepted, then closed.
	if _, err := tryDial(r, "admin", ""); err == nil {
		t.Fatal("fourth session was served")
	}
	clients[0].Close()
	waitFor(t, func() bool {
		c, err := tryDial(r, "admin", "")
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// The limit is the api service's max-sessions [C: manual ip/service].
	if items, _ := r.Exec("/ip/service/print", "?name=api"); items[0]["max-sessions"] != "3" {
		t.Fatalf("api service: %v", items)
	}
	if _, err := r.Exec("/ip/service/set", "=numbers=api", "=max-sessions=2"); err != nil {
		t.Fatal(err)
	}
	if _, err := tryDial(r, "admin", ""); err == nil {
		t.Fatal("a session past max-sessions=2 was served")
	}
	if _, err := r.Exec("/ip/service/set", "=numbers=api", "=max-sessions=0"); err == nil || err.Error() != "invalid value for argument max-sessions" {
		t.Fatalf("max-sessions=0: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	wait.For(t, 20*time.Second, "condition", cond)
}

func TestListenAndCancel(t *testing.T) {
	r := start(t, Options{})
	// go-routeros's async mode registers a tag after sending (reference
	// section 5, issue #33): a reply faster than that is lost. A little
	// latency keeps this test about the simulator, not that race.
	r.SetLatency(20 * time.Millisecond)
	c := dial(t, r, "admin", "")
	c.Async()
	l, err := c.Listen("/ip/firewall/address-list/listen")
	if err != nil {
		t.Fatal(err)
	}
	w := dial(t, r, "admin", "")
	id := run(t, w, "/ip/firewall/address-list/add", "=list=x", "=address=192.0.2.7").Done.Map["ret"]
	run(t, w, "/ip/firewall/address-list/remove", "=.id="+id)
	run(t, w, "/ip/firewall/filter/add", "=chain=x") // another table: not followed
	got := []map[string]string{}
	for len(got) < 2 {
		select {
		case s := <-l.Chan():
			got = append(got, s.Map)
		case <-time.After(20 * time.Second):
			t.Fatalf("listen got %v", got)
		}
	}
	if got[0][".id"] != id || got[0]["address"] != "192.0.2.7" || got[1][".id"] != id || got[1][".dead"] != "true" {
		t.Fatalf("listen events: %v", got)
	}
	if _, err := l.Cancel(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-l.Chan():
		if ok {
			t.Fatal("event after cancel")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("listen channel not closed by /cancel")
	}
	if l.Done == nil || l.Done.Map["category"] != "2" || l.Done.Map["message"] != "interrupted" {
		t.Fatalf("listen ended with %v", l.Done)
	}
}

func TestCancelSequenceRaw(t *testing.T) {
	r := start(t, Options{})
	c := rawDial(t, r)
	c.login("admin", "")
	c.send("/ip/firewall/filter/listen", ".tag=10")
	c.send("/ip/firewall/filter/add", "=chain=z", ".tag=11")
	var seen [][]string
	for len(seen) < 2 {
		seen = append(seen, c.read())
	}
	c.send("/cancel", "=tag=10", ".tag=20")
	got := c.readUntilDone("10")
	want := [][]string{
		{"!trap", "=category=2", "=message=interrupted", ".tag=10"},
		{"!done", ".tag=20"},
		{"!done", ".tag=10"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("cancel sequence [C: API-doc] (-want +got):\n%s", d)
	}
	tags := map[string]bool{}
	for _, s := range seen {
		tags[s[0]+" "+tagOf(s)] = true
	}
	if !tags["!re 10"] || !tags["!done 11"] {
		t.Fatalf("listen and add replies: %v", seen)
	}
}

func TestFollow(t *testing.T) {
	r := start(t, Options{})
	c := rawDial(t, r)
	c.login("admin", "")
	c.send("/ip/firewall/address-list/print", "=follow=", ".tag=f")
	r.Exec("/ip/firewall/address-list/add", "=list=q", "=address=192.0.2.9")
	s := c.read()
	if s[0] != "!re" || tagOf(s) != "f" || !contains(s, "=address=192.0.2.9") {
		t.Fatalf("follow event: %q", s)
	}
}

func contains(s []string, w string) bool {
	for _, x := range s {
		if x == w {
			return true
		}
	}
	return false
}

func TestFaults(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")

	r.InjectTrap("/ip/firewall/filter/add", "failure: injected", 2)
	for i := 0; i < 2; i++ {
		if m := runErr(t, c, "/ip/firewall/filter/add", "=chain=i"); m != "failure: injected" {
			t.Fatalf("injected trap %d: %q", i, m)
		}
	}
	if n := len(r.Snapshot().Filter); n != 12 {
		t.Fatalf("an injected trap had an effect: %d rows", n)
	}
	run(t, c, "/ip/firewall/filter/add", "=chain=i")

	r.DropAfter(2)
	run(t, c, "/system/identity/print")
	run(t, c, "/system/identity/print")
	_, err := c.Run("/ip/firewall/filter/add", "=chain=i")
	if err == nil {
		t.Fatal("third command answered after DropAfter(2)")
	}
	if n := len(r.Snapshot().Filter); n != 13 {
		t.Fatalf("the dropped command had an effect: %d rows", n)
	}
	c2 := dial(t, r, "admin", "") // the drop is one-shot
	run(t, c2, "/system/identity/print")

	r.SetLatency(50 * time.Millisecond)
	t0 := time.Now()
	run(t, c2, "/system/identity/print")
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Fatalf("reply after %v with 50ms latency", d)
	}
	r.SetLatency(0)
	r.SetWriteServiceTime(30 * time.Millisecond)
	c3 := dial(t, r, "admin", "")
	t0 = time.Now()
	var wg sync.WaitGroup
	for _, cl := range []*routeros.Client{c2, c3} {
		wg.Add(1)
		go func(cl *routeros.Client) {
			defer wg.Done()
			cl.Run("/ip/firewall/address-list/add", "=list=w", "=address=10.9.9."+itoa(int(time.Now().UnixNano()%200)))
		}(cl)
	}
	wg.Wait()
	if d := time.Since(t0); d < 60*time.Millisecond {
		t.Fatalf("two writes on two sessions took %v; they must be serialised at 30ms each", d)
	}
	st := r.Stats()
	if st.Writes["add"] != 3 || st.Logins != 3 {
		t.Fatalf("stats %+v", st)
	}
	r.ResetStats()
	if st := r.Stats(); st.Commands != 0 || len(st.Writes) != 0 {
		t.Fatalf("after reset %+v", st)
	}
}

func TestDroppedConnectionIsEOF(t *testing.T) {
	r := start(t, Options{})
	c := rawDial(t, r)
	c.login("admin", "")
	r.DropAfter(0)
	c.send("/system/identity/print")
	if _, err := readSentence(c.br); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("want the connection closed without reply, got %v", err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}

func TestHistoryLimit(t *testing.T) {
	for _, tt := range []struct{ limit, want int }{{0, 11}, {4, 4}, {-1, 1}} {
		r := New(Options{HistoryLimit: tt.limit})
		for i := 0; i < 10; i++ {
			if _, err := r.Exec("/ip/firewall/address-list/add", "=list=h", "=address=10.0.0."+itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		h := r.History()
		if len(h) != tt.want {
			t.Fatalf("limit %d: %d states, want %d", tt.limit, len(h), tt.want)
		}
		if n := len(h[len(h)-1].AddressList); n != 10 {
			t.Fatalf("limit %d: last state has %d entries", tt.limit, n)
		}
		if tt.limit >= 0 {
			if n := len(h[0].AddressList); n != 10-(tt.want-1) {
				t.Fatalf("limit %d: first kept state has %d entries", tt.limit, n)
			}
		}
	}
}

// TestContainerVeth follows DESIGN.md section 8: the enroll script creates a
// veth and puts it in LAN so defconf's input rule lets the agent reach the API.
func TestContainerVeth(t *testing.T) {
	r := start(t, Options{})
	c := dial(t, r, "admin", "")
	probe := pkt("input", "veth1", "", "172.17.0.2", "172.17.0.1", 6, 8728, "new")
	if v := r.Snapshot().Evaluate(probe); v.Action != "drop" {
		t.Fatalf("unknown interface not in LAN should be dropped: %+v", v)
	}
	if m := runErr(t, c, "/interface/list/member/add", "=list=LAN", "=interface=veth1"); m != "input does not match any value of interface" {
		t.Fatalf("member with a missing interface: %q", m)
	}
	id := run(t, c, "/interface/veth/add", "=name=veth1", "=address=172.17.0.2/24", "=gateway=172.17.0.1").Done.Map["ret"]
	if m := runErr(t, c, "/interface/veth/add", "=name=veth1"); m != "failure: already have interface with such name" {
		t.Fatalf("duplicate veth: %q", m)
	}
	if n := len(run(t, c, "/interface/print", "?name=veth1", "?type=veth").Re); n != 1 {
		t.Fatal("veth not listed in /interface")
	}
	run(t, c, "/interface/list/member/add", "=list=LAN", "=interface=veth1")
	if v := r.Snapshot().Evaluate(probe); v.Action != "accept" {
		t.Fatalf("veth in LAN: %+v", v)
	}
	run(t, c, "/interface/veth/set", "=.id="+id, "=name=veth-rampart")
	if n := len(run(t, c, "/interface/print", "?name=veth-rampart").Re); n != 1 {
		t.Fatal("rename not mirrored in /interface")
	}
	run(t, c, "/interface/veth/remove", "=.id="+id)
	if n := len(run(t, c, "/interface/print", "?type=veth").Re); n != 0 {
		t.Fatal("veth interface left behind")
	}
}

// dummyID is the fasttrack dummy rule's id on a fresh defconf router: the
// next of the filter counter after defconf's eleven rules.
const dummyID = 0xC
