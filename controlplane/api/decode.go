package api

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/segmentio/encoding/json"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// The decoder of the bodies of writes (security groups, prefix lists).
//
// openapi.yaml is the contract, but checking a 250-rule body against it
// with kin-openapi (a tree of maps, then a walk of the schema) costs about
// 0.8 ms of a core, more than the rest of a PUT. decodeTyped decodes the
// body straight into its typed value instead and checks on the way what
// the schema demands beyond the domain checks of the value's Validate:
// each value of its JSON type, integers written as integers, no field but
// the schema's by its exact name (the JSON library), and every required
// field present with no null but where the schema allows one (bodyShape).
// When it refuses a body, the schema path (schemaDecode) runs to find and
// word the error exactly as the schema says it;
// TestGroupDecoderAgreesWithSchema, TestPrefixListDecoderAgreesWithSchema
// and their fuzz targets hold the two to the same verdicts. The schema path
// keeps encoding/json, so those tests also hold two JSON implementations
// to one reading of every body.
//
// The JSON library is github.com/segmentio/encoding/json, encoding/json's
// semantics (numbers, nulls, repeated fields, escapes) in one pass over
// the body, where encoding/json scans the whole body for validity and then
// decodes it: a 250-rule group decodes in about a third of encoding/json's
// CPU, and a PUT costs what it did before issue #14 (BENCHMARKS.md, "One
// decoder, faster"). Its strings are copies (no DontCopyString): nothing
// decoded aliases the request body.

// errDeclined means the typed decoder refused the body; the schema path
// says why.
var errDeclined = errors.New("body declined by the typed decoder")

// parseFlags make the library refuse, in its one pass, a field that is not
// the schema's or is not spelled exactly so (encoding/json would take
// "Name" for "name").
const parseFlags = json.DisallowUnknownFields | json.DontMatchCaseInsensitiveStructFields

// decodeGroup decodes a SecurityGroupWrite body into w, or answers
// errDeclined.
func decodeGroup(body []byte, w *cp.SecurityGroupWrite) error {
	w.Rules = make([]cp.FilterRuleWrite, 0, elements(body, cp.MaxRules))
	return decodeTyped(body, w, &groupBody)
}

// decodePrefixList decodes a PrefixListWrite body into w, or answers
// errDeclined.
func decodePrefixList(body []byte, w *cp.PrefixListWrite) error {
	w.Prefixes = make([]cp.PrefixWrite, 0, elements(body, cp.MaxPrefixes))
	return decodeTyped(body, w, &prefixListBody)
}

// elements is the capacity to give a body's array of objects, which the
// library appends into, so that it is allocated once instead of grown by
// doubling: the body's braces (one per element, one for the body), at
// most limit, so that a body of braces alone allocates no more.
func elements(body []byte, limit int) int {
	return min(bytes.Count(body, []byte{'{'}), limit)
}

func decodeTyped(body []byte, v any, s *bodyShape) error {
	if !utf8.Valid(body) { // as schemaDecode refuses it; the library would not
		return errDeclined
	}
	if rest, err := json.Parse(body, v, parseFlags); err != nil || len(rest) != 0 || !s.check(body) {
		return errDeclined
	}
	return nil
}

// bodyShape is what the schema says of a body's fields that the library
// does not check: which fields of the body (depth 1) and of the objects
// of its array of objects (depth 3: rules, prefixes) are required, and
// which may be null. Bit i of a mask is the field names[i].
type bodyShape struct {
	top, item                 []string
	topRequired, itemRequired uint16
	topNullable               uint16
}

var (
	groupBody = bodyShape{
		top:  []string{"name", "description", "rules", "sites"},
		item: []string{"direction", "order", "protocol", "port", "address", "description"},
		// name, rules and sites; every field of a rule; the group's description.
		topRequired: 0b1101, itemRequired: 0b111111, topNullable: 0b0010,
	}
	prefixListBody = bodyShape{
		top:  []string{"name", "description", "prefixes", "sites"},
		item: []string{"cidr", "description"},
		// name and prefixes; a prefix's cidr; the list's description.
		topRequired: 0b0101, itemRequired: 0b01, topNullable: 0b0010,
	}
)

// check reports whether body, which the library decoded (so it is
// well-formed, every value has its Go type and every field name is
// known), has every required field of the body and of each object of its
// array, and no null but where s allows one. A repeated field is taken,
// its last value winning, as the schema path takes it.
func (s *bodyShape) check(body []byte) bool {
	var seen [4]uint16 // by depth: 1 the body, 3 an element of its array
	depth, nullable := 0, false
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{':
			if depth++; depth >= len(seen) {
				return false
			}
			seen[depth] = 0
		case '[':
			depth++
		case '}':
			if depth == 1 && seen[1]&s.topRequired != s.topRequired || depth == 3 && seen[3]&s.itemRequired != s.itemRequired {
				return false
			}
			depth--
		case ']':
			depth--
		case ',':
			nullable = false
		case 'n': // outside strings, only null has an n
			if !nullable {
				return false
			}
		case '"':
			start, escaped := i, false
			for i++; body[i] != '"'; i++ {
				if body[i] == '\\' {
					escaped = true
					i++
				}
			}
			j := i + 1
			for j < len(body) && (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r') {
				j++
			}
			if j == len(body) || body[j] != ':' {
				continue // a string value
			}
			name := body[start+1 : i]
			if escaped {
				var key string
				if json.Unmarshal(body[start:i+1], &key) != nil {
					return false
				}
				name = []byte(key)
			}
			names := s.top
			if depth == 3 {
				names = s.item
			}
			bit := fieldBit(names, name)
			if bit == 0 || depth != 1 && depth != 3 {
				return false
			}
			seen[depth] |= bit
			nullable = depth == 1 && bit&s.topNullable != 0
			i = j
		}
	}
	return true
}

// fieldBit is the bit of name in names, 0 if it is not there. A linear
// search of a few short names costs less than hashing for a map.
func fieldBit(names []string, name []byte) uint16 {
	for i, n := range names {
		if n == string(name) {
			return 1 << i
		}
	}
	return 0
}
