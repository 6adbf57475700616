package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// The decoder of a security group write.
//
// openapi.yaml is the contract, but checking a 250-rule body against it
// with kin-openapi (a tree of maps, then a walk of the schema) costs about
// 0.8 ms of a core, more than the rest of a PUT. decodeGroup decodes the
// body with encoding/json straight into a typed value instead and checks
// on the way what the schema demands beyond the domain checks of
// cp.SecurityGroupWrite.Validate: each value of its JSON type, integers
// written as integers, no other field (encoding/json), and every required
// field present once by its exact name (encoding/json alone would take
// "Name" for "name") with description the only nullable field
// (groupShape). When it refuses a body, the schema
// path (schemaDecode) runs to find and word the error exactly as the
// schema says it; TestGroupDecoderAgreesWithSchema holds the two to the
// same verdicts over every single-field variation of a valid body.

// errDeclined means decodeGroup refused the body; the schema path says why.
var errDeclined = errors.New("body declined by the typed decoder")

// decodeGroup decodes a SecurityGroupWrite body into w, or answers
// errDeclined.
func decodeGroup(body []byte, w *cp.SecurityGroupWrite) error {
	// Unmarshal reuses the capacity of w.Rules: sized from the body's
	// "direction" keys (a guess: each rule has one; at most MaxRules, so
	// a body of nothing else allocates no more), the rules slice is
	// allocated once instead of grown by doubling.
	w.Rules = make([]cp.FilterRuleWrite, 0, min(bytes.Count(body, []byte(`"direction"`)), cp.MaxRules))
	if !utf8.Valid(body) || json.Unmarshal(body, w) != nil || !groupShape(body) {
		return errDeclined
	}
	return nil
}

// Fields of a group body and of its rules, as bits.
const (
	fName uint16 = 1 << iota
	fDescription
	fRules
	fSites
	fDirection
	fOrder
	fProtocol
	fPort
	fAddress

	groupRequired = fName | fRules | fSites
	ruleRequired  = fDirection | fOrder | fProtocol | fPort | fAddress | fDescription
)

var (
	groupFields = map[string]uint16{"name": fName, "description": fDescription, "rules": fRules, "sites": fSites}
	ruleFields  = map[string]uint16{"direction": fDirection, "order": fOrder, "protocol": fProtocol,
		"port": fPort, "address": fAddress, "description": fDescription}
)

// groupShape checks, in a body encoding/json decoded into a
// SecurityGroupWrite (so it is well-formed and every value has its Go
// type), what encoding/json does not: that no field is unknown (by its
// exact name: encoding/json takes "Name" for "name"), that the group (depth 1) and each
// rule (depth 3, inside the rules array) have every required field by its
// exact name, and that no value is null but the group's description. A
// repeated field is taken, its last value winning, as the schema path
// takes it.
func groupShape(body []byte) bool {
	var seen [4]uint16 // by depth: 1 the group, 3 a rule
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
			if depth == 1 && seen[1]&groupRequired != groupRequired || depth == 3 && seen[3]&ruleRequired != ruleRequired {
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
			fields := groupFields
			if depth == 3 {
				fields = ruleFields
			}
			bit := fields[string(body[start+1:i])]
			if escaped {
				var key string
				if json.Unmarshal(body[start:i+1], &key) != nil {
					return false
				}
				bit = fields[key]
			}
			if bit == 0 || depth != 1 && depth != 3 {
				return false
			}
			seen[depth] |= bit
			nullable = depth == 1 && bit == fDescription
			i = j
		}
	}
	return true
}
