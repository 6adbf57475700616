package routeros

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/go-routeros/routeros/v3/proto"
)

// sentenceReader reads a session's reply sentences. go-routeros's
// proto reader allocates a buffer and starts a goroutine for every Read (it
// reads lengths a byte at a time), which for a print of 10,000 entries is
// hundreds of megabytes of garbage; this one reads from a bufio.Reader.
type sentenceReader struct {
	br      *bufio.Reader
	scratch []byte   // a word being read, before it becomes a string
	sen     sentence // the last sentence read, reused by the next read
}

// common holds the property names and values the agent reads most (every
// filter row repeats them), shared by all sessions: a word whose key or
// value is here costs no allocation for that part. Read-only after init.
var common = func() map[string]string {
	m := map[string]string{}
	for _, w := range []string{
		// filter and address-list properties, as RouterOS prints them
		".id", "chain", "action", "protocol", "src-address", "dst-address",
		"src-address-list", "dst-address-list", "src-port", "dst-port", "port",
		"in-interface", "out-interface", "in-interface-list", "out-interface-list",
		"connection-state", "connection-nat-state", "jump-target", "hw-offload",
		"ipsec-policy", "log", "log-prefix", "bytes", "packets", "invalid",
		"dynamic", "disabled", "comment", "list", "address", "creation-time",
		"timeout", "builtin", "name", "message", "ret", "category",
		// reply words and values
		"!re", "!done", "!trap", "!empty", "!fatal", "true", "false", "0", "accept", "drop", "reject", "jump", "return",
		"fasttrack-connection", "passthrough", "input", "forward", "output",
		"tcp", "udp", "icmp", "established,related,untracked",
		"established,related", "invalid", "dstnat", "!dstnat", "in,ipsec",
		"out,ipsec", "WAN", "!LAN", "LAN", "rampart-in", "rampart-out",
	} {
		m[w] = w
	}
	return m
}()

// str returns b as a string, without allocating when it is a common word.
func str(b []byte) string {
	if s, ok := common[string(b)]; ok { // no allocation for the lookup
		return s
	}
	return string(b)
}

// readBuffer is the reader's buffer. Each session keeps one for its life
// (a fleet of simulated agents has thousands); a large print needs a few
// more reads with a small buffer, and words longer than it are read
// straight into their own slice.
const readBuffer = 4 << 10

func newSentenceReader(r io.Reader) *sentenceReader {
	return &sentenceReader{br: bufio.NewReaderSize(r, readBuffer)}
}

// appendLength encodes a word length in the shortest form [reference 1.1;
// the table of go-routeros proto/writer.go encodeLength]. rossim has its own
// copy on purpose: the simulator stands for the router, and an encoder the
// two shared would hide its own bugs from the tests that put them face to
// face.
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x4000:
		return append(b, byte(n>>8)|0x80, byte(n))
	case n < 0x200000:
		return append(b, byte(n>>16)|0xC0, byte(n>>8), byte(n))
	case n < 0x10000000:
		return append(b, byte(n>>24)|0xE0, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(b, 0xF0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendWord(b []byte, w string) []byte {
	return append(appendLength(b, len(w)), w...)
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

// read reads one sentence. The sentence (and its pairs slice) is valid
// until the next read: every caller uses it before reading again.
func (r *sentenceReader) read() (*sentence, error) {
	s := &r.sen
	*s = sentence{pairs: s.pairs[:0]}
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
		buf := r.scratch
		if n > readBuffer {
			buf = make([]byte, n) // rare: not kept
		} else if cap(buf) < readBuffer {
			buf = make([]byte, readBuffer)
			r.scratch = buf
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r.br, buf); err != nil {
			return nil, err
		}
		switch {
		case s.word == "":
			if buf[0] != '!' {
				return nil, errors.New("reply sentence does not start with a reply word: " + string(buf))
			}
			s.word = str(buf)
		case bytes.HasPrefix(buf, []byte(".tag=")):
			s.tag = string(buf[len(".tag="):])
		case buf[0] == '=':
			k, v, _ := bytes.Cut(buf[1:], []byte("="))
			s.pairs = append(s.pairs, proto.Pair{Key: str(k), Value: str(v)})
		default:
			s.bare = append(s.bare, string(buf)) // !fatal's reason [reference 1.3]
		}
	}
}
