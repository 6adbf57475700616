package rossim

import (
	"strconv"
	"strings"
)

// lookup returns a printed property of a row.
func lookup(kvs []kv, k string) (string, bool) {
	for _, p := range kvs {
		if p.k == k {
			return p.v, true
		}
	}
	return "", false
}

// queryMatch runs the query words of a print over one printed row, with the
// stack machine of the API [C: API-doc "Queries"]: the stack starts as
// infinitely many true values; ?name pushes whether the property exists,
// ?-name whether it does not, ?name=x ?<name=x ?>name=x compare; ?#ops
// combine. The row is returned when no false remains.
// ?=name=x is equality too: librouteros and Ansible send it and it works on
// 7.18.2 [3P: luqasz/librouteros query.py and integration tests].
func queryMatch(qs []string, kvs []kv, isBool func(string) bool) bool {
	var st []bool
	pop := func() bool {
		if len(st) == 0 {
			return true // the stack is infinitely deep in true values
		}
		v := st[len(st)-1]
		st = st[:len(st)-1]
		return v
	}
	for _, q := range qs {
		w := q[1:]
		switch {
		case strings.HasPrefix(w, "#"):
			ops := w[1:]
			for i := 0; i < len(ops); i++ {
				c := ops[i]
				switch {
				case c == '!':
					st = append(st, !pop())
				case c == '&':
					a, b := pop(), pop()
					st = append(st, a && b)
				case c == '|':
					a, b := pop(), pop()
					st = append(st, a || b)
				case c == '.':
					v := pop()
					st = append(st, v, v)
				case c >= '0' && c <= '9':
					j := i
					for j < len(ops) && ops[j] >= '0' && ops[j] <= '9' {
						j++
					}
					n, _ := strconv.Atoi(ops[i:j])
					v := true
					if n < len(st) {
						v = st[len(st)-1-n]
					}
					if j == len(ops) {
						// An index at the end of the word replaces the
						// whole stack with that value [C: API-doc].
						st = []bool{v}
					} else {
						st = append(st, v)
					}
					i = j - 1
				}
			}
		case strings.HasPrefix(w, "-"):
			_, ok := lookup(kvs, w[1:])
			st = append(st, !ok)
		case strings.HasPrefix(w, "<") || strings.HasPrefix(w, ">") || strings.HasPrefix(w, "="):
			op := w[0]
			name, val, _ := strings.Cut(w[1:], "=")
			st = append(st, compare(op, kvs, name, val, isBool))
		default:
			name, val, hasVal := strings.Cut(w, "=")
			if !hasVal {
				_, ok := lookup(kvs, name)
				st = append(st, ok)
				continue
			}
			st = append(st, compare('=', kvs, name, val, isBool))
		}
	}
	for _, v := range st {
		if !v {
			return false
		}
	}
	return true
}

// compare: an absent property compares as the empty string, so ?>comment=
// means "has a non-empty comment" [C: API-doc example]. Numbers compare as
// numbers [I]; booleans accept yes/no like input does [I].
func compare(op byte, kvs []kv, name, want string, isBool func(string) bool) bool {
	have, _ := lookup(kvs, name)
	if isBool(name) {
		if b, ok := parseBool(want); ok {
			want = b
		}
	}
	switch op {
	case '=':
		return have == want
	}
	a, err1 := strconv.ParseInt(have, 10, 64)
	b, err2 := strconv.ParseInt(want, 10, 64)
	c := strings.Compare(have, want)
	if err1 == nil && err2 == nil {
		c = 0
		if a < b {
			c = -1
		} else if a > b {
			c = 1
		}
	}
	if op == '<' {
		return c < 0
	}
	return c > 0
}
