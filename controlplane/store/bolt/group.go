package bolt

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// The stored form of a group is the API's JSON, encoded here without
// reflection rather than by json.Marshal (BenchmarkPrepareGroup250).
// TestAppendGroupJSONIsMarshal holds it to json.Marshal byte for byte.

// appendGroupJSON appends exactly what json.Marshal(g) produces.
func appendGroupJSON(b []byte, g *cp.SecurityGroup) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, g.ID)
	b = append(b, `,"name":`...)
	b = appendString(b, g.Name)
	b = append(b, `,"description":`...)
	b = appendString(b, g.Description)
	b = append(b, `,"status":`...)
	b = appendString(b, string(g.Status))
	b = append(b, `,"sites":`...)
	if g.Sites == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, s := range g.Sites {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		b = append(b, ']')
	}
	b = append(b, `,"rules":`...)
	if g.Rules == nil {
		return append(b, "null}"...)
	}
	b = append(b, '[')
	for i := range g.Rules {
		r := &g.Rules[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, r.ID)
		b = append(b, `,"direction":`...)
		b = appendString(b, r.Direction)
		b = append(b, `,"order":`...)
		b = strconv.AppendInt(b, int64(r.Order), 10)
		b = append(b, `,"protocol":`...)
		b = strconv.AppendInt(b, int64(r.Protocol), 10)
		b = append(b, `,"port":`...)
		b = appendString(b, r.Port)
		b = append(b, `,"address":`...)
		b = appendString(b, r.Address)
		b = append(b, `,"description":`...)
		b = appendString(b, r.Description)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendString appends s as a JSON string. Printable ASCII other than the
// characters encoding/json escapes (" and \\, and <, > and & as HTML-safe
// escapes) is copied; anything else is left to encoding/json, so the
// output is always json.Marshal's.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// groupJSONSize estimates the encoding's length, to allocate once.
func groupJSONSize(g *cp.SecurityGroup) int {
	n := 128 + len(g.ID) + len(g.Name) + len(g.Description)
	for _, s := range g.Sites {
		n += len(s) + 3
	}
	for i := range g.Rules {
		r := &g.Rules[i]
		n += 110 + len(r.ID) + len(r.Direction) + len(r.Port) + len(r.Address) + len(r.Description)
	}
	return n
}
