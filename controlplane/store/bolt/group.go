package bolt

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/segmentio/ksuid"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// The CPU of a group write, outside bbolt: building the group, keeping
// rule ids and encoding it were a third of a 250-rule PUT. What is here
// does the same as cp.SecurityGroupWrite.NewSecurityGroup, cp.KeepRuleIDs
// and json.Marshal, cheaper; tests hold each to its original.

// buildGroup is w.NewSecurityGroup(org, id) with the rule ids left empty:
// most rules of a replace keep their id, so new ids are drawn afterwards,
// by fillRuleIDs, only for rules that need one.
func buildGroup(w *cp.SecurityGroupWrite, org, id string) cp.SecurityGroup {
	bare := *w
	bare.Rules = nil
	g := bare.NewSecurityGroup(org, id)
	// The write's strings may share the request body's memory (the API's
	// decoder cuts them from it). Sites go on in the Change to listeners
	// that may keep them: copies, so none pins a whole body.
	for i := range g.Sites {
		g.Sites[i] = strings.Clone(g.Sites[i])
	}
	g.Rules = make([]cp.FilterRule, len(w.Rules))
	for i, r := range w.Rules {
		g.Rules[i] = cp.FilterRule{Direction: r.Direction, Order: r.Order, Protocol: r.Protocol,
			Port: r.Port, Address: r.Address, Description: r.Description}
	}
	slices.SortStableFunc(g.Rules, func(a, b cp.FilterRule) int { return a.Order - b.Order })
	return g
}

// fillRuleIDs gives every rule without an id a new one: a KSUID sequence
// from one random seed, as cp.NewSecurityGroup draws them.
func fillRuleIDs(rules []cp.FilterRule) {
	var seq *ksuid.Sequence
	for i := range rules {
		if rules[i].ID != "" {
			continue
		}
		if seq == nil {
			seq = &ksuid.Sequence{Seed: ksuid.New()}
		}
		id, err := seq.Next()
		if err != nil { // exhausted (65536 ids): a new seed
			seq = &ksuid.Sequence{Seed: ksuid.New()}
			id, _ = seq.Next()
		}
		rules[i].ID = cp.FilterRuleIDPrefix + id.String()
	}
}

// matchKey is what cp.FilterRule.SameMatch compares.
type matchKey struct {
	direction string
	protocol  int
	port      string
	address   string
}

func keyOf(r *cp.FilterRule) matchKey {
	return matchKey{r.Direction, r.Protocol, r.Port, r.Address}
}

// keepRuleIDs is cp.KeepRuleIDs in linear time: each rule of next takes
// the id of the first unused rule of prev (in prev's order) that matches
// the same traffic. Per match key, prev's rules are chained in order and
// taken from the front.
func keepRuleIDs(prev, next []cp.FilterRule) {
	// The common replace leaves most rules where they were: while rule i
	// of both matches, every earlier rule of prev is taken, so prev[i] is
	// the first unused match of next[i].
	i := 0
	for ; i < len(prev) && i < len(next) && prev[i].SameMatch(next[i]); i++ {
		next[i].ID = prev[i].ID
	}
	prev, next = prev[i:], next[i:]
	if len(prev) == 0 || len(next) == 0 {
		return
	}
	head := make(map[matchKey]int, len(prev))
	chain := make([]int, len(prev)) // next prev rule with the same key, or -1
	for j := len(prev) - 1; j >= 0; j-- {
		k := keyOf(&prev[j])
		if h, ok := head[k]; ok {
			chain[j] = h
		} else {
			chain[j] = -1
		}
		head[k] = j
	}
	for i := range next {
		k := keyOf(&next[i])
		j, ok := head[k]
		if !ok || j < 0 {
			continue
		}
		next[i].ID = prev[j].ID
		head[k] = chain[j]
	}
}

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
// output is always json.Marshal's. The check goes eight bytes at a time:
// it was most of the encoding's CPU byte by byte.
func appendString(b []byte, s string) []byte {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if needsEscape(binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))) {
			return appendMarshalled(b, s)
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return appendMarshalled(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendMarshalled(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// needsEscape reports whether any byte of x is one appendString leaves to
// encoding/json: 0x80 and above, below 0x20, or one of " \\ < > &. The
// zero-byte test ((v - lsb) &^ v & msb) marks every byte that is zero,
// and may mark others only above a zero one, so "any mark" is exact.
func needsEscape(x uint64) bool {
	m := x & msb             // non-ASCII
	m |= (x - lsb*0x20) &^ x // below 0x20
	// Unrolled by hand: the compiler kept a loop over the five.
	v := x ^ (lsb * '"')
	m |= (v - lsb) &^ v
	v = x ^ (lsb * '\\')
	m |= (v - lsb) &^ v
	v = x ^ (lsb * '<')
	m |= (v - lsb) &^ v
	v = x ^ (lsb * '>')
	m |= (v - lsb) &^ v
	v = x ^ (lsb * '&')
	m |= (v - lsb) &^ v
	return m&msb != 0
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
