package rossim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// RouterOS scripts (.rsc, /import, the console). RouterOS parses a whole
// script before it runs any of it; an unknown command, argument or
// property name for the running version is a load-time error and nothing
// runs [3P: public setup scripts and lab notes, reference section 8]:
//
//	/system/resource/print bogus=1  ->  expected end of command (line 1 column 24)   [3P: 7.21.5 lab note]
//	/system/bogus                   ->  bad command name bogus (line 1 column 9)       [I: the console's wording]
//
// Neither `:do {} on-error={}` nor an untaken `:if` branch protects a name
// the version lacks; `[:parse "..."]` parses at run time and fails there,
// catchably [3P, reference section 8]. Positions are 1-based; a `\`
// line continuation keeps the physical line numbers.

// ParseError is a load-time error of a script.
type ParseError struct {
	Msg       string // e.g. "expected end of command"
	Line, Col int
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s (line %d column %d)", e.Msg, e.Line, e.Col)
}

type pos struct{ line, col int }

type cmdKind int

const (
	ckBlock   cmdKind = iota // { ... }
	ckBuiltin                // :local, :if, ...
	ckMenu                   // /menu/verb
	ckCall                   // $fn args
	ckPath                   // /menu alone: changes the current menu
)

type cmd struct {
	pos    pos
	kind   cmdKind
	name   string // builtin name or verb
	menu   string // ckMenu: the menu path ("" for /import)
	body   []*cmd
	args   []arg
	where  expr // find/print where ...
	callee string
}

type arg struct {
	name string // "" for a positional argument
	pos  pos
	v    expr
}

type expr interface{}

type (
	lit     struct{ v val }
	varRef  struct{ name string }
	propRef struct{ name string } // a property inside `where`
	subst   struct{ cmds []*cmd } // [ ... ]
	codeLit struct{ cmds []*cmd } // { ... } as a value
	binop   struct {
		op   string
		l, r expr
	}
	unop struct {
		op string
		x  expr
	}
	concatEx struct{ parts []expr } // "a$b", or a word with $var inside
)

type parser struct {
	r     *Router
	src   string
	i     int
	path  string // current menu for relative commands
	lines []int  // offset of each line's start, built on first use
}

func (p *parser) posAt(i int) pos {
	if p.lines == nil {
		p.lines = []int{0}
		for j := 0; j < len(p.src); j++ {
			if p.src[j] == '\n' {
				p.lines = append(p.lines, j+1)
			}
		}
	}
	// The line is the last whose start is at or before i.
	l := sort.SearchInts(p.lines, i+1) - 1
	return pos{l + 1, i - p.lines[l] + 1}
}

func (p *parser) fail(i int, format string, args ...any) {
	ps := p.posAt(i)
	panic(&ParseError{Msg: fmt.Sprintf(format, args...), Line: ps.line, Col: ps.col})
}

// parseScript parses src for router r's version.
func (r *Router) parseScript(src string) (cmds []*cmd, err error) {
	p := &parser{r: r, src: strings.ReplaceAll(src, "\r\n", "\n")}
	defer func() {
		if e := recover(); e != nil {
			pe, ok := e.(*ParseError)
			if !ok {
				panic(e)
			}
			err = pe
		}
	}()
	cmds = p.cmds(0)
	if p.i < len(p.src) {
		p.fail(p.i, "syntax error") // a stray closing bracket [I: wording]
	}
	return cmds, nil
}

func (p *parser) peek() byte {
	if p.i < len(p.src) {
		return p.src[p.i]
	}
	return 0
}

// space skips blanks and `\` line continuations, not newlines.
func (p *parser) space() {
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			p.i++
		case c == '\\' && p.i+1 < len(p.src) && p.src[p.i+1] == '\n':
			p.i += 2
		default:
			return
		}
	}
}

func isTerm(c byte) bool { return c == 0 || c == '\n' || c == ';' || c == '}' || c == ']' || c == ')' }

// cmds parses commands until end (a closing bracket, not consumed) or EOF.
func (p *parser) cmds(end byte) []*cmd {
	var out []*cmd
	saved := p.path
	defer func() { p.path = saved }()
	for {
		p.space()
		c := p.peek()
		switch {
		case c == 0:
			if end != 0 {
				p.fail(p.i, "missing %q", end)
			}
			return out
		case c == end:
			return out
		case c == '\n' || c == ';':
			p.i++
		case c == '#':
			for p.i < len(p.src) && p.src[p.i] != '\n' {
				p.i++
			}
		case c == '}' || c == ']' || c == ')':
			p.fail(p.i, "syntax error")
		default:
			if x := p.command(); x != nil {
				out = append(out, x)
			}
		}
	}
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// word reads a bare word (no quotes, no $, no brackets) at p.i.
func (p *parser) word() string {
	j := p.i
	for p.i < len(p.src) && isNameChar(p.src[p.i]) {
		p.i++
	}
	return p.src[j:p.i]
}

var builtinArgs = map[string]string{
	"local": "do", "global": "do", "set": "do", "if": "do else", "do": "on-error while", "while": "do",
	"for": "from to step do", "foreach": "in do", "put": "", "delay": "", "error": "", "return": "",
	"parse": "", "tonum": "", "tostr": "", "tobool": "", "toarray": "", "toid": "", "totime": "", "len": "",
	"typeof": "", "pick": "", "find": "", "log": "", "nothing": "", "environment": "", "execute": "", "resolve": "",
}

func (p *parser) command() *cmd {
	start := p.i
	c := &cmd{pos: p.posAt(start)}
	switch ch := p.peek(); {
	case ch == '{':
		c.kind = ckBlock
		c.body = p.bracketed('}')
		return c
	case ch == ':':
		p.i++
		nameAt := p.i
		c.kind = ckBuiltin
		c.name = p.word()
		allowed, ok := builtinArgs[c.name]
		if !ok {
			p.fail(nameAt, "bad command name %s", c.name)
		}
		if c.name == "log" {
			p.space()
			p.word() // :log info|warning|error|debug
		}
		c.args = p.args(false)
		for _, a := range c.args {
			if a.name != "" && !strings.Contains(" "+allowed+" ", " "+a.name+" ") {
				p.failPos(a.pos, "expected end of command")
			}
		}
		return c
	case ch == '$':
		p.i++
		c.kind = ckCall
		c.callee = p.word()
		c.args = p.args(false)
		return c
	}
	// A menu command: /abs/path verb, or relative to the current menu.
	cur := p.path
	if p.peek() == '/' {
		cur = ""
	}
	verb := ""
	first := true
	for {
		segAt := p.i
		var tok string
		if first || p.peek() == '/' {
			j := p.i
			for p.i < len(p.src) && (isNameChar(p.src[p.i]) || p.src[p.i] == '/') {
				p.i++
			}
			tok = p.src[j:p.i]
		} else {
			save := p.i
			tok = p.word()
			if tok == "" || p.peek() == '=' {
				p.i = save
				break
			}
		}
		first = false
		off := segAt
		done := false
		for _, seg := range strings.Split(tok, "/") {
			if seg == "" {
				off++
				continue
			}
			switch {
			case verb != "":
				p.fail(off, "bad command name %s", seg)
			case menus[cur+"/"+seg].verbs != nil || dirs[cur+"/"+seg]:
				cur += "/" + seg
			case scriptVerb(cur, seg):
				verb = seg
				done = true
			default:
				p.fail(off, "bad command name %s", seg)
			}
			off += len(seg) + 1
		}
		if done {
			break
		}
		p.space()
		if isTerm(p.peek()) || p.peek() == '#' {
			break
		}
		if !isNameChar(p.peek()) && p.peek() != '/' {
			p.fail(p.i, "expected end of command")
		}
	}
	if verb == "" {
		if !isTerm(p.peek()) && p.peek() != '#' {
			p.fail(p.i, "expected end of command")
		}
		// Path navigation: later relative commands use this menu.
		p.path = cur
		c.kind = ckPath
		c.menu = cur
		return c
	}
	c.kind, c.menu, c.name = ckMenu, cur, verb
	saved := p.path
	p.path = cur // [find ...] inside the arguments is relative to this menu
	c.args = p.args(verb == "find" || verb == "print" || verb == "remove" || verb == "set" || verb == "get")
	p.path = saved
	for i, a := range c.args {
		if a.name == "" && i == len(c.args)-1 {
			if w, ok := a.v.(*whereEx); ok {
				c.where = w.cond
				c.args = c.args[:i]
			}
		}
	}
	p.checkArgs(c)
	return c
}

type whereEx struct{ cond expr }

func (p *parser) failPos(ps pos, format string, args ...any) {
	panic(&ParseError{Msg: fmt.Sprintf(format, args...), Line: ps.line, Col: ps.col})
}

// scriptVerb reports whether verb is a command of menu in a script.
func scriptVerb(menu, verb string) bool {
	if menu == "" {
		return verb == "import"
	}
	m, ok := menus[menu]
	if !ok {
		return false
	}
	if verb == "get" || verb == "find" && m.tab >= 0 || verb == "export" {
		return true
	}
	return m.verbs[verb] && verb != "getall" && verb != "listen"
}

// args parses arguments up to the end of the command.
func (p *parser) args(where bool) []arg {
	var out []arg
	for {
		p.space()
		if isTerm(p.peek()) {
			return out
		}
		at := p.i
		if isNameChar(p.peek()) {
			save := p.i
			name := p.word()
			if p.peek() == '=' && name != "" {
				p.i++
				out = append(out, arg{name: name, pos: p.posAt(at), v: p.value()})
				continue
			}
			if where && name == "where" {
				out = append(out, arg{pos: p.posAt(at), v: &whereEx{p.whereExpr()}})
				return out
			}
			p.i = save
		}
		out = append(out, arg{pos: p.posAt(at), v: p.value()})
	}
}

type arrayLit struct {
	keys  []string // "" for an element without a key
	elems []expr
}

// array parses an array constant {1;2;"a"} or {a=1;b="x"} at p.i [C:
// manual "Scripting", arrays], or reports false and consumes nothing. Only
// elements that cannot start a command qualify (a quoted string, a number,
// a nested array, key=value), so a { } of code is never taken for one.
func (p *parser) array() (e expr, ok bool) {
	save := p.i
	defer func() {
		if r := recover(); r != nil {
			if _, isPE := r.(*ParseError); !isPE {
				panic(r)
			}
			p.i, e, ok = save, nil, false
		}
	}()
	p.i++
	a := &arrayLit{}
	for {
		p.space()
		if p.peek() == '}' {
			p.i++
			return a, true
		}
		key := ""
		if c := p.peek(); isNameChar(c) && !(c >= '0' && c <= '9') {
			key = p.word()
			if key == "" || p.peek() != '=' {
				p.fail(p.i, "not an array")
			}
			p.i++
		}
		var v expr
		switch c := p.peek(); {
		case c == '"':
			v = p.str()
		case c == '{':
			sub, ok := p.array()
			if !ok {
				p.fail(p.i, "not an array")
			}
			v = sub
		case c >= '0' && c <= '9' || c == '-':
			v = p.wordValue(true)
		case key != "" && (c == '$' || c == '['):
			v = p.wordValue(true)
		default:
			p.fail(p.i, "not an array")
		}
		a.keys = append(a.keys, key)
		a.elems = append(a.elems, v)
		p.space()
		switch p.peek() {
		case ';':
			p.i++
		case '}':
		default:
			p.fail(p.i, "not an array")
		}
	}
}

// paren parses "(expr)" at p.i.
func (p *parser) paren() expr {
	p.i++
	e := p.expr(0)
	p.space()
	if p.peek() != ')' {
		p.fail(p.i, "missing ')'")
	}
	p.i++
	return e
}

// bracketed parses the commands of "{...}" or "[...]" at p.i.
func (p *parser) bracketed(end byte) []*cmd {
	p.i++
	body := p.cmds(end)
	p.i++
	return body
}

// value parses one argument value.
func (p *parser) value() expr {
	switch p.peek() {
	case '{':
		if a, ok := p.array(); ok {
			return a
		}
		return &codeLit{p.bracketed('}')}
	case '(':
		return p.paren()
	}
	if c := p.peek(); c == ' ' || c == '\t' || c == '\r' || isTerm(c) {
		return &lit{""} // name= with nothing after it
	}
	return p.wordValue(false)
}

// wordValue parses a word made of literal text, "strings", $vars and
// [commands]. In an expression it also stops at operator characters.
func (p *parser) wordValue(inExpr bool) expr {
	var parts []expr
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, litOf(lit.String()))
			lit.Reset()
		}
	}
loop:
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || isTerm(c) || c == '{' || c == '(':
			break loop
		case c == '\\' && p.i+1 < len(p.src) && p.src[p.i+1] == '\n':
			break loop
		case inExpr && strings.IndexByte("<>=!&|", c) >= 0:
			break loop
		case c == '"':
			flush()
			parts = append(parts, p.str())
		case c == '$':
			flush()
			parts = append(parts, p.dollar())
		case c == '[':
			flush()
			parts = append(parts, &subst{p.bracketed(']')})
		default:
			lit.WriteByte(c)
			p.i++
		}
	}
	flush()
	switch len(parts) {
	case 0:
		p.fail(p.i, "syntax error")
	case 1:
		return parts[0]
	}
	return &concatEx{parts}
}

// litOf types a bare literal: integers are numbers, anything else text.
func litOf(s string) expr {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return &lit{n}
	}
	switch s {
	case "true":
		return &lit{true}
	case "false":
		return &lit{false}
	}
	return &lit{s}
}

// dollar parses $name, $"name", $[cmd] or $(expr) at p.i.
func (p *parser) dollar() expr {
	p.i++
	switch p.peek() {
	case '[':
		return &subst{p.bracketed(']')}
	case '(':
		return p.paren()
	case '"':
		s := p.str()
		if l, ok := s.(*lit); ok {
			return &varRef{toStr(l.v)}
		}
		p.fail(p.i, "syntax error")
	}
	j := p.i
	for p.i < len(p.src) && (isNameChar(p.src[p.i]) && p.src[p.i] != '.' && p.src[p.i] != '-') {
		p.i++
	}
	if p.i == j {
		p.fail(p.i, "syntax error")
	}
	return &varRef{p.src[j:p.i]}
}

// str parses a "string" with RouterOS escapes and $ interpolation [C:
// manual "Scripting", constant escape sequences].
func (p *parser) str() expr {
	open := p.i
	p.i++
	var parts []expr
	var b strings.Builder
	for {
		if p.i >= len(p.src) {
			p.fail(open, "unterminated string")
		}
		c := p.src[p.i]
		switch c {
		case '"':
			p.i++
			if b.Len() > 0 || len(parts) == 0 {
				parts = append(parts, &lit{b.String()})
			}
			if len(parts) == 1 {
				return parts[0]
			}
			return &concatEx{parts}
		case '$':
			if p.i+1 < len(p.src) && (isNameChar(p.src[p.i+1]) || strings.IndexByte("[(\"", p.src[p.i+1]) >= 0) {
				if b.Len() > 0 {
					parts = append(parts, &lit{b.String()})
					b.Reset()
				}
				parts = append(parts, p.dollar())
				continue
			}
			b.WriteByte(c)
			p.i++
		case '\\':
			p.i++
			if p.i >= len(p.src) {
				p.fail(open, "unterminated string")
			}
			e := p.src[p.i]
			p.i++
			switch e {
			case '\n':
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'a':
				b.WriteByte(7)
			case 'b':
				b.WriteByte(8)
			case 'f':
				b.WriteByte(12)
			case 'v':
				b.WriteByte(11)
			case '_':
				b.WriteByte(' ')
			case '"', '\\', '$', '?':
				b.WriteByte(e)
			default:
				if p.i < len(p.src) {
					if v, err := strconv.ParseUint(string([]byte{e, p.src[p.i]}), 16, 8); err == nil {
						b.WriteByte(byte(v))
						p.i++
						continue
					}
				}
				p.fail(p.i-2, "invalid escape sequence")
			}
		default:
			b.WriteByte(c)
			p.i++
		}
	}
}

var precedence = map[string]int{"||": 1, "or": 1, "&&": 2, "and": 2, "=": 3, "!=": 3, "<": 3, ">": 3, "<=": 3, ">=": 3,
	"~": 3, "in": 3, ".": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}

// operator reads a binary operator at p.i, if any.
func (p *parser) operator() string {
	rest := p.src[p.i:]
	for _, op := range []string{"||", "&&", "!=", "<=", ">=", "=", "<", ">", "~", ".", "+", "-", "*", "/", "%"} {
		if strings.HasPrefix(rest, op) {
			return op
		}
	}
	for _, op := range []string{"and", "or", "in"} {
		if strings.HasPrefix(rest, op+" ") {
			return op
		}
	}
	return ""
}

// expr parses an expression inside ( ) by precedence climbing.
func (p *parser) expr(min int) expr {
	l := p.unary()
	for {
		p.space()
		for p.peek() == '\n' { // newlines are blanks inside parentheses
			p.i++
			p.space()
		}
		op := p.operator()
		prec := precedence[op]
		if op == "" || prec <= min {
			return l
		}
		p.i += len(op)
		p.space()
		r := p.expr(prec)
		l = &binop{op, l, r}
	}
}

func (p *parser) unary() expr {
	p.space()
	switch p.peek() {
	case '!':
		p.i++
		return &unop{"!", p.unary()}
	case '-':
		if p.i+1 < len(p.src) && p.src[p.i+1] >= '0' && p.src[p.i+1] <= '9' {
			break
		}
		p.i++
		return &unop{"-", p.unary()}
	case '(':
		return p.paren()
	case '{':
		return p.value()
	}
	return p.wordValue(true)
}

// whereExpr parses `where` conditions to the end of the command: terms
// joined by && || and or, or by juxtaposition (and).
func (p *parser) whereExpr() expr {
	var l expr
	pending := "&&"
	for {
		p.space()
		if isTerm(p.peek()) {
			break
		}
		if op := p.operator(); op == "&&" || op == "||" || op == "and" || op == "or" {
			p.i += len(op)
			pending = map[string]string{"and": "&&", "or": "||"}[op]
			if pending == "" {
				pending = op
			}
			continue
		}
		t := p.whereTerm()
		if l == nil {
			l = t
		} else {
			l = &binop{pending, l, t}
		}
		pending = "&&"
	}
	if l == nil {
		return &lit{true}
	}
	return l
}

func (p *parser) whereTerm() expr {
	p.space()
	switch p.peek() {
	case '!':
		p.i++
		return &unop{"!", p.whereTerm()}
	case '(':
		p.i++
		e := p.whereExpr()
		if p.peek() != ')' {
			p.fail(p.i, "missing ')'")
		}
		p.i++
		return e
	}
	at := p.i
	name := p.word()
	if name == "" {
		p.fail(at, "syntax error")
	}
	p.space()
	op := p.operator()
	switch op {
	case "=", "!=", "<", ">", "<=", ">=", "~", "in":
		p.i += len(op)
		p.space()
		return &binop{op, &propRef{name}, p.wordValue(true)}
	}
	return &propRef{name} // a boolean property, e.g. `where dynamic`
}

// checkArgs validates a menu command's argument names for the version.
func (p *parser) checkArgs(c *cmd) {
	bad := func(a arg) { p.failPos(a.pos, "expected end of command") }
	m := menus[c.menu]
	var spec map[string]propKind
	if m.tab >= 0 && c.menu != "" {
		spec = p.r.specFor(m.tab)
	} else if c.menu != "" {
		spec = propsIn(singleProps[c.menu], p.r.minor)
	}
	var ok map[string]bool
	positional := 1
	switch c.name {
	case "import":
		ok, positional = verbs("file-name verbose dry-run"), 1
	case "add":
		ok, positional = verbs("place-before copy-from disabled comment"), 0
		for k := range spec {
			ok[k] = true
		}
	case "set", "update":
		ok = verbs("numbers disabled comment")
		for k := range spec {
			ok[k] = true
		}
		if m.tab < 0 {
			positional = 0
		}
	case "get":
		ok, positional = verbs("number value-name"), 2
	case "find":
		return // property names in find are not checked at load [I: reference 8, still open]
	case "print":
		ok, positional = printArgs, 99
	case "move":
		ok, positional = verbs("numbers destination"), 2
	case "unset":
		ok = verbs("numbers value-name")
	case "export":
		ok, positional = verbs("file verbose compact terse show-sensitive"), 0
	default: // remove enable disable start stop reset-counters
		ok = verbs("numbers")
	}
	n := 0
	for _, a := range c.args {
		if a.name == "" {
			n++
			if n > positional {
				bad(a)
			}
			continue
		}
		if !ok[a.name] {
			bad(a)
		}
	}
}
