package rossim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxWordLen bounds one word read from a client. RouterOS limits what a client
// may send before login [C: API-doc], and any server must bound memory; 16 MiB
// is far beyond any real command.
const maxWordLen = 16 << 20

// errControlByte: a first length byte of 0xF8 or more is a reserved control
// byte after which a receiver cannot continue [C: API-doc].
var errControlByte = errors.New("reserved control byte in word length")

// readLength decodes one word length in any of the five forms [C: API-doc,
// section "API words"]. Bytes of a multi-byte length are data, including 0x00.
func readLength(r *bufio.Reader) (int, error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	var extra, n int
	switch {
	case b < 0x80:
		return int(b), nil
	case b < 0xC0:
		extra, n = 1, int(b&0x3F)
	case b < 0xE0:
		extra, n = 2, int(b&0x1F)
	case b < 0xF0:
		extra, n = 3, int(b&0x0F)
	case b == 0xF0:
		extra = 4
	default:
		return 0, errControlByte
	}
	for i := 0; i < extra; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		n = n<<8 | int(c)
	}
	return n, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readWord reads one length-prefixed word; "" is the end of a sentence.
func readWord(r *bufio.Reader) (string, error) {
	n, err := readLength(r)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", nil
	}
	if n > maxWordLen {
		return "", fmt.Errorf("read word: length %d exceeds %d", n, maxWordLen)
	}
	if n > 64<<10 {
		// Grow with the data that actually arrives, not with the
		// length a client claims.
		var b strings.Builder
		if _, err := io.CopyN(&b, r, int64(n)); err != nil {
			return "", unexpected(err)
		}
		return b.String(), nil
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", unexpected(err)
	}
	return string(buf), nil
}

// readSentence reads words up to the terminating empty word. Empty sentences
// are skipped, as RouterOS ignores them [C: API-doc]. The router evaluates a
// sentence only once its terminator arrived [C: API-doc], which is what
// reading it whole does.
func readSentence(r *bufio.Reader) ([]string, error) {
	var words []string
	for {
		w, err := readWord(r)
		if err != nil {
			if len(words) > 0 {
				err = unexpected(err)
			}
			return nil, err
		}
		if w == "" {
			if len(words) == 0 {
				continue
			}
			return words, nil
		}
		words = append(words, w)
	}
}

// appendLength encodes n in the shortest of the five forms [C: API-doc; the
// same table as go-routeros proto/writer.go encodeLength].
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

// appendRe encodes one !re sentence of kvs, as appendSentences would encode
// reSentence(kvs), without building its words first.
func appendRe(b []byte, kvs []kv, tag string) []byte {
	b = appendWord(b, "!re")
	for _, p := range kvs {
		b = appendLength(b, 2+len(p.k)+len(p.v))
		b = append(b, '=')
		b = append(b, p.k...)
		b = append(b, '=')
		b = append(b, p.v...)
	}
	if tag != "" {
		b = appendWord(b, ".tag="+tag)
	}
	return append(b, 0)
}

// appendSentences encodes reply sentences, adding .tag=tag to every one of
// them when tag is not empty: every reply sentence of a tagged command carries
// its tag [C: API-doc, "Tags"].
func appendSentences(b []byte, sents [][]string, tag string) []byte {
	if b == nil {
		// One allocation for the whole reply (a print of a whole table is
		// thousands of words): at most 5 length bytes a word.
		n := 0
		for _, s := range sents {
			for _, w := range s {
				n += 5 + len(w)
			}
			n += 1 + 10 + len(tag)
		}
		b = make([]byte, 0, n)
	}
	for _, s := range sents {
		for _, w := range s {
			b = appendWord(b, w)
		}
		// !fatal ends the connection, not a command: it goes untagged [I].
		if tag != "" && s[0] != "!fatal" {
			b = appendWord(b, ".tag="+tag)
		}
		b = append(b, 0)
	}
	return b
}
