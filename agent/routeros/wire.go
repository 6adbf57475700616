package routeros

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-routeros/routeros/v3/proto"
)

// sentenceReader reads reply sentences for Stream and Pipeline. go-routeros's
// proto reader allocates a buffer and starts a goroutine for every Read (it
// reads lengths a byte at a time), which for a print of 10,000 entries is
// hundreds of megabytes of garbage; this one reads from a bufio.Reader.
type sentenceReader struct {
	br *bufio.Reader
}

func newSentenceReader(r io.Reader) *sentenceReader {
	return &sentenceReader{br: bufio.NewReaderSize(r, 32<<10)}
}

// sentence is one reply: its reply word, tag, attributes in order, and for
// !fatal the bare reason word.
type sentence struct {
	word, tag string
	pairs     []proto.Pair
	bare      []string
}

func (s *sentence) get(key string) string {
	for _, p := range s.pairs {
		if p.Key == key {
			return p.Value
		}
	}
	return ""
}

// readLength decodes a word length [reference 1.1].
func (r *sentenceReader) readLength() (int, error) {
	b, err := r.br.ReadByte()
	if err != nil {
		return 0, err
	}
	var n, extra int
	switch {
	case b&0x80 == 0:
		return int(b), nil
	case b&0xC0 == 0x80:
		n, extra = int(b&0x3F), 1
	case b&0xE0 == 0xC0:
		n, extra = int(b&0x1F), 2
	case b&0xF0 == 0xE0:
		n, extra = int(b&0x0F), 3
	case b == 0xF0:
		n, extra = 0, 4
	default:
		return 0, fmt.Errorf("reserved control byte 0x%02X in a word length", b)
	}
	for range extra {
		c, err := r.br.ReadByte()
		if err != nil {
			return 0, err
		}
		n = n<<8 | int(c)
	}
	return n, nil
}

const maxWord = 16 << 20 // no reply word of the menus the agent reads comes close

func (r *sentenceReader) read() (*sentence, error) {
	s := &sentence{}
	for first := true; ; first = false {
		n, err := r.readLength()
		if err != nil {
			return nil, err
		}
		if n == 0 {
			if first {
				first = true // empty sentences are ignored [C]
				continue
			}
			return s, nil
		}
		if n > maxWord {
			return nil, fmt.Errorf("word of %d bytes", n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			return nil, err
		}
		w := string(buf)
		switch {
		case s.word == "":
			if !strings.HasPrefix(w, "!") {
				return nil, errors.New("reply sentence does not start with a reply word: " + w)
			}
			s.word = w
		case strings.HasPrefix(w, ".tag="):
			s.tag = w[len(".tag="):]
		case strings.HasPrefix(w, "="):
			k, v, _ := strings.Cut(w[1:], "=")
			s.pairs = append(s.pairs, proto.Pair{Key: k, Value: v})
		default:
			s.bare = append(s.bare, w) // !fatal's reason [reference 1.3]
		}
	}
}
