package rossim

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3/proto"
	"github.com/google/go-cmp/cmp"
)

// rawConn speaks the wire protocol byte by byte. Sentences are written with
// go-routeros's proto writer, an encoder independent of the simulator's.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	w    proto.Writer
}

func rawDial(t testing.TB, r *Router) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", r.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, br: bufio.NewReader(conn), w: proto.NewWriter(conn)}
}

func (c *rawConn) send(words ...string) {
	c.t.Helper()
	c.w.BeginSentence()
	for _, w := range words {
		c.w.WriteWord(w)
	}
	if err := c.w.EndSentence(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawConn) read() []string {
	c.t.Helper()
	s, err := readSentence(c.br)
	if err != nil {
		c.t.Fatalf("read sentence: %v", err)
	}
	return s
}

// readUntilDone reads sentences up to and including the !done carrying tag.
func (c *rawConn) readUntilDone(tag string) [][]string {
	c.t.Helper()
	var out [][]string
	for {
		s := c.read()
		out = append(out, s)
		if s[0] == "!done" && tagOf(s) == tag {
			return out
		}
	}
}

func tagOf(s []string) string {
	for _, w := range s {
		if v, ok := strings.CutPrefix(w, ".tag="); ok {
			return v
		}
	}
	return ""
}

func (c *rawConn) login(user, pass string) {
	c.t.Helper()
	c.send("/login", "=name="+user, "=password="+pass)
	if s := c.read(); s[0] != "!done" {
		c.t.Fatalf("login: %q", s)
	}
}

func (c *rawConn) expectEOF() {
	c.t.Helper()
	if _, err := readSentence(c.br); !errors.Is(err, io.EOF) {
		c.t.Fatalf("connection not closed: %v", err)
	}
}

func TestLengthPrefixes(t *testing.T) {
	// Every boundary of the five forms round-trips, and the simulator's
	// encoder agrees with go-routeros's byte for byte.
	for _, n := range []int{0, 1, 0x7F, 0x80, 0x100, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 0xFFFFFFF, 0x10000000, 0x7FFFFFFF} {
		enc := appendLength(nil, n)
		got, err := readLength(bufio.NewReader(bytes.NewReader(enc)))
		if err != nil || got != n {
			t.Fatalf("length %#x: decoded %#x, %v (bytes % x)", n, got, err, enc)
		}
		if n < 0x300000 { // keep go-routeros's writer to sizes we can allocate cheaply
			var buf bytes.Buffer
			w := proto.NewWriter(&buf)
			w.BeginSentence()
			w.WriteWord(strings.Repeat("x", n))
			_ = w.EndSentence()
			if !bytes.HasPrefix(buf.Bytes(), enc) {
				t.Fatalf("length %#x: simulator encodes % x, go-routeros % x", n, enc, buf.Bytes()[:len(enc)])
			}
		}
	}
	wantLens := map[int]int{0x7F: 1, 0x80: 2, 0x3FFF: 2, 0x4000: 3, 0x1FFFFF: 3, 0x200000: 4, 0xFFFFFFF: 4, 0x10000000: 5}
	for n, l := range wantLens {
		if got := len(appendLength(nil, n)); got != l {
			t.Errorf("length %#x encodes in %d bytes, want %d", n, got, l)
		}
	}
	// A reserved control byte stops the reader [C: API-doc].
	if _, err := readLength(bufio.NewReader(bytes.NewReader([]byte{0xF8}))); !errors.Is(err, errControlByte) {
		t.Fatalf("0xF8: %v", err)
	}
}

func TestLongWordsOverTCP(t *testing.T) {
	r := start(t, Options{})
	c := rawDial(t, r)
	c.login("admin", "")
	// 256-byte word: its length is 0x81 0x00, a zero byte that must not
	// end the sentence [3P: librouteros test_long_word on CHR 7.18.2].
	for _, n := range []int{256 - len("=comment="), 300, 20000} {
		comment := strings.Repeat("c", n)
		c.send("/ip/firewall/address-list/add", "=list=l", "=address=10.0.0.1", "=comment="+comment, ".tag=add")
		reply := c.readUntilDone("add")
		id := strings.TrimPrefix(reply[0][1], "=ret=")
		c.send("/ip/firewall/address-list/print", "?.id="+id, "=.proplist=comment")
		rows := c.readUntilDone("")
		if len(rows) != 2 || rows[0][1] != "=comment="+comment {
			t.Fatalf("%d-byte comment did not round-trip: %d sentences", n, len(rows))
		}
		c.send("/ip/firewall/address-list/remove", "=.id="+id)
		c.readUntilDone("")
	}
}

func TestPipelinedTags(t *testing.T) {
	r := start(t, Options{})
	c := rawDial(t, r)
	c.login("admin", "")
	// Three sentences in one write, before any reply is read.
	var buf bytes.Buffer
	w := proto.NewWriter(&buf)
	for _, s := range [][]string{
		{"/ip/firewall/address-list/add", "=list=a", "=address=192.0.2.1", ".tag=t1"},
		{"/ip/firewall/address-list/print", "=.proplist=address", ".tag=t2"},
		{"/ip/firewall/nope/print", ".tag=t3"},
		{"/ip/firewall/address-list/add", "=list=a", "=address=192.0.2.1", ".tag=t4"},
	} {
		w.BeginSentence()
		for _, word := range s {
			w.WriteWord(word)
		}
		_ = w.EndSentence()
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := c.readUntilDone("t4")
	want := [][]string{
		{"!done", "=ret=*1", ".tag=t1"},
		{"!re", "=address=192.0.2.1", ".tag=t2"},
		{"!done", ".tag=t2"},
		{"!trap", "=category=0", "=message=no such command or directory (nope)", ".tag=t3"},
		{"!trap", "=message=no such command prefix", ".tag=t3"},
		{"!done", ".tag=t3"},
		{"!trap", "=message=failure: already have such entry", ".tag=t4"},
		{"!done", ".tag=t4"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("pipelined replies (-want +got):\n%s", d)
	}
}

func TestFatal(t *testing.T) {
	r := start(t, Options{})
	c := rawDial(t, r)
	c.send("/ip/firewall/filter/print")
	if d := cmp.Diff([]string{"!fatal", "not logged in"}, c.read()); d != "" {
		t.Fatalf("command before login (-want +got):\n%s", d)
	}
	c.expectEOF()

	c = rawDial(t, r)
	c.login("admin", "")
	c.send("/quit")
	if d := cmp.Diff([]string{"!fatal", "session terminated on request"}, c.read()); d != "" {
		t.Fatalf("/quit (-want +got):\n%s", d)
	}
	c.expectEOF()
}

func TestEmptyByVersion(t *testing.T) {
	for _, tt := range []struct {
		version string
		empty   bool
	}{{"7.16.2", false}, {"7.18", true}, {"7.20.4", true}, {"", true}, {"6.49.10", false}} {
		r := start(t, Options{ROSVersion: tt.version})
		c := rawDial(t, r)
		c.login("admin", "")
		c.send("/ip/firewall/address-list/print", ".tag=e")
		got := c.readUntilDone("e")
		want := [][]string{{"!done", ".tag=e"}}
		if tt.empty {
			want = [][]string{{"!empty", ".tag=e"}, {"!done", ".tag=e"}}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("version %q: empty print (-want +got):\n%s", tt.version, d)
		}
		// count-only answers in =ret= without !empty.
		c.send("/ip/firewall/address-list/print", "=count-only=")
		if d := cmp.Diff([][]string{{"!done", "=ret=0"}}, c.readUntilDone("")); d != "" {
			t.Errorf("count-only: %s", d)
		}
	}
}

func TestEmptySentencesIgnored(t *testing.T) {
	r := start(t, Options{})
	c := rawDial(t, r)
	c.login("admin", "")
	if _, err := c.conn.Write([]byte{0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	c.send("/system/identity/print")
	if d := cmp.Diff([][]string{{"!re", "=name=MikroTik"}, {"!done"}}, c.readUntilDone("")); d != "" {
		t.Fatal(d)
	}
}

// FuzzReadSentence: arbitrary bytes never panic the reader, and what it
// accepts re-encodes to a sentence it reads back identically.
func FuzzReadSentence(f *testing.F) {
	f.Add(appendSentences(nil, [][]string{{"/login", "=name=admin", "=password="}}, "1"))
	f.Add([]byte{0x81, 0x00})
	f.Add([]byte{0xF0, 0, 0, 0, 1, 'x', 0})
	f.Add([]byte{0xF8})
	f.Fuzz(func(t *testing.T, b []byte) {
		words, err := readSentence(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		var enc []byte
		for _, w := range words {
			enc = appendWord(enc, w)
		}
		enc = append(enc, 0)
		again, err := readSentence(bufio.NewReader(bytes.NewReader(enc)))
		if err != nil || !cmp.Equal(words, again) {
			t.Fatalf("round trip: %q -> %q, %v", words, again, err)
		}
	})
}

// TestTaggedPrintOverTheWire: a print over an API session, whose rows are
// encoded as they are printed, gives the rows Exec gives, with every
// sentence tagged; also with .proplist and a query.
func TestTaggedPrintOverTheWire(t *testing.T) {
	r := start(t, Options{})
	c := rawDial(t, r)
	c.login("admin", "")
	for _, words := range [][]string{
		{"/ip/firewall/filter/print"},
		{"/ip/firewall/filter/print", "=.proplist=.id,chain,comment"},
		{"/ip/firewall/filter/print", "?chain=forward"},
		{"/ip/firewall/address-list/print", "?list=nothing-here"},
	} {
		want, err := r.Exec(words...)
		if err != nil {
			t.Fatal(err)
		}
		c.send(append(words, ".tag=p7")...)
		var got []Item
		sents := c.readUntilDone("p7")
		for i, s := range sents {
			if tagOf(s) != "p7" {
				t.Fatalf("%v: sentence %q is not tagged p7", words, s)
			}
			if s[0] == "!done" && i == len(sents)-1 || s[0] == "!empty" && len(want) == 0 {
				continue
			}
			if s[0] != "!re" {
				t.Fatalf("%v: unexpected %q", words, s)
			}
			it := Item{}
			for _, w := range s[1:] {
				if k, v, ok := strings.Cut(strings.TrimPrefix(w, "="), "="); ok && strings.HasPrefix(w, "=") {
					it[k] = v
				}
			}
			got = append(got, it)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v over the wire (-Exec +wire):\n%s", words, diff)
		}
	}
}
