package routeros

import (
	"bytes"
	"strings"
	"testing"

	"github.com/go-routeros/routeros/v3/proto"
	"github.com/google/go-cmp/cmp"
)

func TestSentenceReader(t *testing.T) {
	var buf bytes.Buffer
	w := proto.NewWriter(&buf)
	long := map[int]string{}
	for _, n := range []int{0x7F, 0x80, 0x100, 0x3FFF, 0x4000, 0x20000} {
		long[n] = strings.Repeat("x", n-len("=comment="))
		w.BeginSentence()
		w.WriteWord("!re")
		w.WriteWord("=comment=" + long[n])
		w.WriteWord(".tag=t1")
		if err := w.EndSentence(); err != nil {
			t.Fatal(err)
		}
	}
	buf.Write([]byte{0}) // an empty sentence is ignored
	w.BeginSentence()
	w.WriteWord("!fatal")
	w.WriteWord("session terminated on request")
	w.EndSentence()

	r := newSentenceReader(&buf)
	for _, n := range []int{0x7F, 0x80, 0x100, 0x3FFF, 0x4000, 0x20000} {
		s, err := r.read()
		if err != nil {
			t.Fatalf("word of %d bytes: %v", n, err)
		}
		if s.word != "!re" || s.tag != "t1" || s.get("comment") != long[n] {
			t.Fatalf("word of %d bytes: got %q %q, comment of %d bytes", n, s.word, s.tag, len(s.get("comment")))
		}
	}
	s, err := r.read()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"session terminated on request"}, s.bare); s.word != "!fatal" || diff != "" {
		t.Errorf("!fatal: %q %s", s.word, diff)
	}
	if _, err := r.read(); err == nil {
		t.Error("read past the end")
	}
}

// TestAppendWordMatchesGoRouterOS: the sentences the session writes itself
// are encoded as go-routeros's writer encodes them, for every length form.
func TestAppendWordMatchesGoRouterOS(t *testing.T) {
	for _, n := range []int{0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000} {
		word := strings.Repeat("y", n)
		var buf bytes.Buffer
		w := proto.NewWriter(&buf)
		w.BeginSentence()
		w.WriteWord("/ip/firewall/filter/print")
		w.WriteWord(word)
		if err := w.EndSentence(); err != nil {
			t.Fatal(err)
		}
		got := append(appendWord(appendWord(nil, "/ip/firewall/filter/print"), word), 0)
		if !bytes.Equal(got, buf.Bytes()) {
			t.Errorf("word of %d bytes: encoded differently from go-routeros", n)
		}
	}
}
