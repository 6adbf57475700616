package api

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"unicode/utf8"
	"unsafe"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// The fast path of a security group write.
//
// Parsing a 250-rule body into a tree and walking it with kin-openapi cost
// about 1 ms of a core, half of a PUT's CPU. fastGroup instead decodes the
// plain shape of SecurityGroupWrite straight into the typed value in one
// pass, and checks on the way exactly what openapi.yaml demands beyond the
// domain checks of cp.SecurityGroupWrite.Validate: every required field
// present, no other field, each value of its JSON type, description the
// only nullable field, integers written as plain integers. It never
// rejects: anything unusual (an unknown field, a wrong type,
// null where the schema forbids it, an escape it cannot resolve, a number with a fraction) makes it
// answer false, and the caller takes the schema path, which finds and
// words the error exactly as before. So a body is accepted only if both
// fastGroup and Validate accept it, and every error comes from the schema
// path; TestFastGroupAgreesWithSchema and FuzzFastGroup enforce that
// fastGroup accepts exactly what the schema path accepts, with the same
// value, so openapi.yaml stays the one source of truth.

// fastGroup decodes body into w if it has the plain shape of a
// SecurityGroupWrite (see above); false means "take the schema path".
//
// The strings of w share body's memory (no copy of the 35 KB of a
// 250-rule body, no allocation per string): body must never be modified
// afterwards. The API reads each body into a buffer of its own and drops
// it after the request.
func fastGroup(body []byte, w *cp.SecurityGroupWrite) bool {
	if len(body) == 0 || !utf8.Valid(body) {
		return false
	}
	p := parser{b: body, s: unsafe.String(&body[0], len(body))}
	if !p.groupObject(w) {
		return false
	}
	p.ws()
	return p.i == len(p.b)
}

type parser struct {
	b []byte
	s string // b as a string
	i int
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then c.
func (p *parser) consume(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// peek skips whitespace and reports the next byte (0 at the end).
func (p *parser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// str reads a JSON string. Without escapes it is cut from p.s; with them
// encoding/json decodes the literal, so escapes mean exactly what they
// mean on the schema path.
func (p *parser) str() (string, bool) {
	lo, hi, escaped, ok := p.span()
	switch {
	case !ok:
		return "", false
	case !escaped:
		return p.s[lo:hi], true
	}
	var s string
	if json.Unmarshal(p.b[lo-1:hi+1], &s) != nil {
		return "", false
	}
	return s, true
}

// key reads an object key and its colon. Keys are matched exactly (the
// schema path is case-sensitive too), escapes decoded as in strings.
func (p *parser) key() ([]byte, bool) {
	start := p.i
	lo, hi, escaped, ok := p.span()
	if ok && escaped {
		p.i = start
		s, ok := p.str()
		return []byte(s), ok && p.consume(':')
	}
	return p.b[lo:hi], ok && p.consume(':')
}

// span reads a JSON string's literal: its content is p.b[lo:hi].
func (p *parser) span() (lo, hi int, escaped, ok bool) {
	if !p.consume('"') {
		return 0, 0, false, false
	}
	lo = p.i
	for p.i < len(p.b) {
		// Eight bytes at a time up to the first that needs a look: a
		// quote, a backslash or a control character.
		for p.i+8 <= len(p.b) {
			m := special(binary.LittleEndian.Uint64(p.b[p.i:]))
			if m != 0 {
				p.i += bits.TrailingZeros64(m) / 8
				break
			}
			p.i += 8
		}
		if p.i >= len(p.b) {
			break
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return lo, p.i - 1, escaped, true
		case c == '\\':
			escaped = true
			p.i += 2
		case c < 0x20:
			return 0, 0, false, false
		default:
			p.i++
		}
	}
	return 0, 0, false, false
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special marks (high bit of the byte) the bytes of x, read little-endian,
// that are '"', '\\' or below 0x20. Bytes above the first marked one may
// be marked wrongly (a borrow), the first never is, and none is missed:
// the caller only uses the lowest mark.
func special(x uint64) uint64 {
	quote := x ^ (lsb * '"')
	backslash := x ^ (lsb * '\\')
	return ((quote-lsb)&^quote | (backslash-lsb)&^backslash | (x-lsb*0x20)&^x) & msb
}

// int reads a JSON number written as a plain integer (no fraction, no
// exponent) of at most 9 digits: what json.Number.Int64 takes exactly and
// what the schema's integer bounds can judge without rounding.
func (p *parser) int() (int, bool) {
	p.ws()
	neg := false
	if p.i < len(p.b) && p.b[p.i] == '-' {
		neg = true
		p.i++
	}
	start, n := p.i, 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + int(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 9 || (digits > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

// object reads an object whose keys are each handled by field, which
// returns false to give up. seen is the set of field's answers. A repeated
// key overwrites, as on the schema path (encoding/json keeps the last).
func (p *parser) object(field func(k []byte) (bit uint, ok bool)) (seen uint, ok bool) {
	if !p.consume('{') {
		return 0, false
	}
	if p.peek() == '}' {
		p.i++
		return 0, true
	}
	for {
		k, ok := p.key()
		if !ok {
			return 0, false
		}
		bit, ok := field(k)
		if !ok {
			return 0, false
		}
		seen |= bit
		if p.consume(',') {
			continue
		}
		return seen, p.consume('}')
	}
}

// array reads an array, calling elem for each element.
func (p *parser) array(elem func() bool) bool {
	if !p.consume('[') {
		return false
	}
	if p.peek() == ']' {
		p.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		if p.consume(',') {
			continue
		}
		return p.consume(']')
	}
}

const (
	gName = 1 << iota
	gDescription
	gRules
	gSites
	gRequired = gName | gRules | gSites
)

func (p *parser) groupObject(w *cp.SecurityGroupWrite) bool {
	seen, ok := p.object(func(k []byte) (uint, bool) {
		switch string(k) { // no allocation
		case "name":
			s, ok := p.str()
			w.Name = s
			return gName, ok
		case "description":
			if p.peek() == 'n' {
				w.Description = nil
				return gDescription, p.literal("null")
			}
			s, ok := p.str()
			w.Description = &s
			return gDescription, ok
		case "rules":
			// A rule takes at least ~90 bytes of JSON: size the slice
			// once from the body instead of doubling it up to 256.
			w.Rules = make([]cp.FilterRuleWrite, 0, min(len(p.b)/90, cp.MaxRules)+1)
			return gRules, p.array(func() bool {
				if len(w.Rules) > cp.MaxRules {
					return false // the schema path words maxItems
				}
				w.Rules = append(w.Rules, cp.FilterRuleWrite{})
				return p.ruleObject(&w.Rules[len(w.Rules)-1])
			})
		case "sites":
			w.Sites = []string{}
			return gSites, p.array(func() bool {
				s, ok := p.str()
				w.Sites = append(w.Sites, s)
				return ok
			})
		}
		return 0, false
	})
	return ok && seen&gRequired == gRequired
}

func (p *parser) literal(lit string) bool {
	p.ws()
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return false
	}
	p.i += len(lit)
	return true
}

const (
	rDirection = 1 << iota
	rOrder
	rProtocol
	rPort
	rAddress
	rDescription
	rAll = rDirection | rOrder | rProtocol | rPort | rAddress | rDescription
)

func (p *parser) ruleObject(r *cp.FilterRuleWrite) bool {
	seen, ok := p.object(func(k []byte) (uint, bool) {
		var ok bool
		switch string(k) { // no allocation
		case "direction":
			r.Direction, ok = p.str()
			return rDirection, ok
		case "order":
			r.Order, ok = p.int()
			return rOrder, ok
		case "protocol":
			r.Protocol, ok = p.int()
			return rProtocol, ok
		case "port":
			r.Port, ok = p.str()
			return rPort, ok
		case "address":
			r.Address, ok = p.str()
			return rAddress, ok
		case "description":
			r.Description, ok = p.str()
			return rDescription, ok
		}
		return 0, false
	})
	return ok && seen == rAll
}
