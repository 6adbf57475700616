package rossim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Running a parsed script. Values are RouterOS's script types: str
// (string), num (int64), bool, id (idv), array ([]val), code (*codeVal),
// nil and nothing [C: manual "Scripting", data types].

type val = any

type idv string

type nothing struct{}

type codeVal struct{ body []*cmd }

// ScriptError is a run-time failure: `:error`, or a command that failed
// (its trap message). Commands before it stay done, as on RouterOS.
type ScriptError struct{ Msg string }

func (e *ScriptError) Error() string { return e.Msg }

type returnSignal struct{ v val }

func (returnSignal) Error() string { return "return outside a function" }

type scope struct {
	vars   map[string]val
	parent *scope
}

func (s *scope) lookup(name string) (*scope, bool) {
	for x := s; x != nil; x = x.parent {
		if _, ok := x.vars[name]; ok {
			return x, true
		}
	}
	return nil, false
}

type interp struct {
	r     *Router
	ctx   context.Context
	out   io.Writer
	steps int // commands run, bounded by maxSteps
	depth int // function calls in progress, bounded by maxDepth
}

// Bounds on one script, so a runaway script cannot hold a session or the
// process forever (the simulator's own limits; RouterOS documents none).
const (
	maxScriptBytes = 4 << 20
	maxSteps       = 10_000_000
	maxDepth       = 100
)

// Import parses script whole, then runs it as the local console would
// (full permissions). A load-time error (*ParseError) changes nothing; a
// run-time error (*ScriptError) stops the script where it happened.
// Output of :put and print goes to out (nil: discarded).
func (r *Router) Import(ctx context.Context, script string, out io.Writer) error {
	if len(script) > maxScriptBytes {
		return &ScriptError{Msg: fmt.Sprintf("script of %d bytes; the simulator runs scripts of up to %d", len(script), maxScriptBytes)}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)()
	cmds, err := r.parseScript(script)
	if err != nil {
		return err
	}
	if out == nil {
		out = io.Discard
	}
	in := &interp{r: r, ctx: ctx, out: out}
	_, err = in.block(cmds, &scope{vars: map[string]val{}})
	var rs returnSignal
	if errors.As(err, &rs) {
		return nil
	}
	return err
}

// ImportFile runs /import file-name=name from the router's files.
func (r *Router) ImportFile(ctx context.Context, name string, out io.Writer) error {
	if p, err := r.files.hostPath(name); err == nil {
		if st, err := os.Stat(p); err == nil && st.Size() > maxScriptBytes {
			return &ScriptError{Msg: fmt.Sprintf("%s has %d bytes; the simulator runs scripts of up to %d", name, st.Size(), maxScriptBytes)}
		}
	}
	b, err := r.ReadFile(name)
	if err != nil {
		// [I] wording
		return &ScriptError{Msg: "failure: no such file " + name}
	}
	return r.Import(ctx, string(b), out)
}

// importCmd is /import over the API or in a script: the reply is !done, or
// a trap with the load-time or run-time message [I: the API's framing of
// an import failure is undocumented].
func (r *Router) importCmd(ctx context.Context, c *command, out io.Writer) result {
	name, _ := c.get("file-name")
	for _, a := range c.attrs {
		switch a.k {
		case "file-name", "verbose", "dry-run":
		default:
			return trapResult(errUnknownParam(a.k))
		}
	}
	if name == "" {
		return trapResult(&Trap{Message: "missing value(s) of argument(s) file-name"})
	}
	if err := r.ImportFile(ctx, name, out); err != nil {
		return trapResult(&Trap{Message: err.Error()})
	}
	return doneResult("")
}

func (in *interp) block(cmds []*cmd, sc *scope) (val, error) {
	var last val = nothing{}
	for _, c := range cmds {
		if err := in.tick(); err != nil {
			return nil, err
		}
		v, err := in.run(c, sc)
		if err != nil {
			return nil, err
		}
		last = v
	}
	return last, nil
}

// tick counts one step (a command or a loop iteration) and stops the
// script once interrupted or past maxSteps.
func (in *interp) tick() error {
	if err := in.ctx.Err(); err != nil {
		return &ScriptError{Msg: "interrupted"}
	}
	if in.steps++; in.steps > maxSteps {
		return &ScriptError{Msg: fmt.Sprintf("script stopped after %d steps (the simulator's bound)", maxSteps)}
	}
	return nil
}

func (in *interp) run(c *cmd, sc *scope) (val, error) {
	switch c.kind {
	case ckBlock:
		return in.block(c.body, &scope{vars: map[string]val{}, parent: sc})
	case ckPath:
		return nothing{}, nil
	case ckCall:
		v, ok := in.get(sc, c.callee)
		if !ok {
			return nil, &ScriptError{Msg: "no such variable " + c.callee} // [I]
		}
		return in.call(v, c.args, sc)
	case ckBuiltin:
		return in.builtin(c, sc)
	}
	return in.menuCmd(c, sc)
}

// call runs a function: $1, $2... are the positional arguments, named
// ones are variables; the body does not see the caller's locals [C:
// manual "Scripting", functions].
func (in *interp) call(fn val, args []arg, sc *scope) (val, error) {
	code, ok := fn.(*codeVal)
	if !ok {
		return nothing{}, nil
	}
	if in.depth >= maxDepth {
		return nil, &ScriptError{Msg: fmt.Sprintf("function calls nested deeper than %d (the simulator's bound)", maxDepth)}
	}
	in.depth++
	defer func() { in.depth-- }()
	fs := &scope{vars: map[string]val{}}
	n := 1
	for _, a := range args {
		v, err := in.eval(a.v, sc)
		if err != nil {
			return nil, err
		}
		if a.name == "" {
			fs.vars[strconv.Itoa(n)] = v
			n++
		} else {
			fs.vars[a.name] = v
		}
	}
	v, err := in.block(code.body, fs)
	var rs returnSignal
	if errors.As(err, &rs) {
		return rs.v, nil
	}
	return v, err
}

func (in *interp) get(sc *scope, name string) (val, bool) {
	if s, ok := sc.lookup(name); ok {
		return s.vars[name], true
	}
	in.r.mu.Lock()
	defer in.r.mu.Unlock()
	v, ok := in.r.globals[name]
	return v, ok
}

func (in *interp) named(c *cmd, name string) (expr, bool) {
	for _, a := range c.args {
		if a.name == name {
			return a.v, true
		}
	}
	return nil, false
}

func (in *interp) positional(c *cmd) []expr {
	var out []expr
	for _, a := range c.args {
		if a.name == "" {
			out = append(out, a.v)
		}
	}
	return out
}

// iterate runs one pass of a :for or :foreach body, counted as a step,
// with the loop variable name bound to v in a scope of its own.
func (in *interp) iterate(body expr, name string, v val, sc *scope) error {
	if err := in.tick(); err != nil {
		return err
	}
	_, err := in.runCode(body, &scope{vars: map[string]val{name: v}, parent: sc})
	return err
}

// runCode runs a code value (a { } literal) in a child scope of sc.
func (in *interp) runCode(e expr, sc *scope) (val, error) {
	if cl, ok := e.(*codeLit); ok {
		return in.block(cl.cmds, &scope{vars: map[string]val{}, parent: sc})
	}
	v, err := in.eval(e, sc)
	if err != nil {
		return nil, err
	}
	return in.call(v, nil, sc)
}

func (in *interp) builtin(c *cmd, sc *scope) (val, error) {
	pos := in.positional(c)
	arg := func(i int) (val, error) {
		if i >= len(pos) {
			return nothing{}, nil
		}
		return in.eval(pos[i], sc)
	}
	switch c.name {
	case "local", "global", "set":
		if len(pos) == 0 {
			return nil, &ScriptError{Msg: "missing variable name"}
		}
		nameV, _ := arg(0)
		name := toStr(nameV)
		var v val = nothing{}
		if e, ok := in.named(c, "do"); ok {
			cl, _ := e.(*codeLit)
			if cl != nil {
				v = &codeVal{cl.cmds}
			}
		} else if len(pos) > 1 {
			var err error
			if v, err = arg(1); err != nil {
				return nil, err
			}
		}
		switch c.name {
		case "local":
			sc.vars[name] = v
		case "global":
			in.r.mu.Lock()
			in.r.globals[name] = v
			in.r.mu.Unlock()
		case "set":
			if s, ok := sc.lookup(name); ok {
				s.vars[name] = v
			} else {
				in.r.mu.Lock()
				_, g := in.r.globals[name]
				if g {
					in.r.globals[name] = v
				}
				in.r.mu.Unlock()
				if !g {
					sc.vars[name] = v // [I]
				}
			}
		}
		return nothing{}, nil
	case "if":
		cond, err := arg(0)
		if err != nil {
			return nil, err
		}
		if truthy(cond) {
			if e, ok := in.named(c, "do"); ok {
				return in.runCode(e, sc)
			}
		} else if e, ok := in.named(c, "else"); ok {
			return in.runCode(e, sc)
		}
		return nothing{}, nil
	case "do":
		if len(pos) == 0 {
			return nothing{}, nil
		}
		if w, ok := in.named(c, "while"); ok {
			for {
				if err := in.tick(); err != nil {
					return nil, err
				}
				if _, err := in.runCode(pos[0], sc); err != nil {
					return nil, err
				}
				v, err := in.eval(w, sc)
				if err != nil {
					return nil, err
				}
				if !truthy(v) {
					return nothing{}, nil
				}
			}
		}
		v, err := in.runCode(pos[0], sc)
		var rs returnSignal
		if err != nil && !errors.As(err, &rs) {
			if e, ok := in.named(c, "on-error"); ok {
				return in.runCode(e, sc)
			}
		}
		return v, err
	case "while":
		body, _ := in.named(c, "do")
		for {
			if err := in.tick(); err != nil {
				return nil, err
			}
			cond, err := arg(0)
			if err != nil {
				return nil, err
			}
			if !truthy(cond) {
				return nothing{}, nil
			}
			if body != nil {
				if _, err := in.runCode(body, sc); err != nil {
					return nil, err
				}
			}
		}
	case "for":
		nameV, _ := arg(0)
		from, to, step := int64(0), int64(0), int64(1)
		for _, x := range []struct {
			k string
			p *int64
		}{{"from", &from}, {"to", &to}, {"step", &step}} {
			if e, ok := in.named(c, x.k); ok {
				v, err := in.eval(e, sc)
				if err != nil {
					return nil, err
				}
				*x.p, _ = toNum(v)
			}
		}
		body, _ := in.named(c, "do")
		for i := from; step > 0 && i <= to || step < 0 && i >= to; i += step {
			if err := in.iterate(body, toStr(nameV), i, sc); err != nil {
				return nil, err
			}
		}
		return nothing{}, nil
	case "foreach":
		nameV, _ := arg(0)
		e, _ := in.named(c, "in")
		list, err := in.eval(e, sc)
		if err != nil {
			return nil, err
		}
		body, _ := in.named(c, "do")
		for _, x := range toArray(list) {
			if err := in.iterate(body, toStr(nameV), x, sc); err != nil {
				return nil, err
			}
		}
		return nothing{}, nil
	case "put":
		v, err := arg(0)
		if err != nil {
			return nil, err
		}
		fmt.Fprintln(in.out, toStr(v))
		return nothing{}, nil
	case "log":
		v, err := arg(0)
		if err != nil {
			return nil, err
		}
		in.r.logf("script: %s", toStr(v))
		return nothing{}, nil
	case "delay":
		v, err := arg(0)
		if err != nil {
			return nil, err
		}
		d, ok := parseROSTime(toStr(v))
		if !ok {
			return nil, &ScriptError{Msg: "invalid time value " + toStr(v)} // [I]
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-in.ctx.Done():
			return nil, &ScriptError{Msg: "interrupted"}
		}
		return nothing{}, nil
	case "error":
		v, err := arg(0)
		if err != nil {
			return nil, err
		}
		return nil, &ScriptError{Msg: toStr(v)}
	case "return":
		v, err := arg(0)
		if err != nil {
			return nil, err
		}
		return nil, returnSignal{v}
	case "parse":
		v, err := arg(0)
		if err != nil {
			return nil, err
		}
		cmds, perr := in.r.parseScript(toStr(v))
		if perr != nil {
			return nil, &ScriptError{Msg: perr.Error()}
		}
		return &codeVal{cmds}, nil
	case "nothing":
		return nothing{}, nil
	case "execute", "resolve", "environment":
		// RouterOS has them, so they load; running them is not modelled.
		return nil, &ScriptError{Msg: "rossim: :" + c.name + " is not modelled by the simulator"}
	}
	// Conversions and string functions.
	v, err := arg(0)
	if err != nil {
		return nil, err
	}
	switch c.name {
	case "tostr":
		return toStr(v), nil
	case "tonum":
		if n, ok := toNum(v); ok {
			return n, nil
		}
		return nil, nil
	case "tobool":
		return truthy(v), nil
	case "toarray":
		return toArray(v), nil
	case "toid":
		return idv(toStr(v)), nil
	case "totime":
		return toStr(v), nil
	case "len":
		if a, ok := v.([]val); ok {
			return int64(len(a)), nil
		}
		return int64(len(toStr(v))), nil
	case "typeof":
		return typeOf(v), nil
	case "pick":
		s := toStr(v)
		a, _ := arg(1)
		b, _ := arg(2)
		i, _ := toNum(a)
		j, ok := toNum(b)
		if arr, isArr := v.([]val); isArr {
			if !ok {
				j = i + 1
			}
			i, j = clamp(i, len(arr)), clamp(j, len(arr))
			if j <= i {
				return []val{}, nil
			}
			if len(pos) < 3 {
				return arr[i], nil
			}
			return append([]val(nil), arr[i:j]...), nil
		}
		if !ok {
			j = i + 1
		}
		i, j = clamp(i, len(s)), clamp(j, len(s))
		if j <= i {
			return "", nil
		}
		return s[i:j], nil
	case "find":
		hay := toStr(v)
		nv, _ := arg(1)
		if k := strings.Index(hay, toStr(nv)); k >= 0 {
			return int64(k), nil
		}
		return nil, nil
	}
	return nothing{}, nil
}

func clamp(i int64, n int) int64 {
	if i < 0 {
		return 0
	}
	if i > int64(n) {
		return int64(n)
	}
	return i
}

func (in *interp) eval(e expr, sc *scope) (val, error) {
	switch x := e.(type) {
	case *lit:
		return x.v, nil
	case *varRef:
		v, ok := in.get(sc, x.name)
		if !ok {
			return nothing{}, nil
		}
		return v, nil
	case *subst:
		return in.block(x.cmds, sc)
	case *codeLit:
		return &codeVal{x.cmds}, nil
	case *arrayLit:
		// Keys are kept only as the order of the elements [I: enough for
		// :foreach and :len; key lookup ($a->"k") is not modelled].
		out := make([]val, 0, len(x.elems))
		for _, el := range x.elems {
			v, err := in.eval(el, sc)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case *concatEx:
		var b strings.Builder
		for _, p := range x.parts {
			v, err := in.eval(p, sc)
			if err != nil {
				return nil, err
			}
			b.WriteString(toStr(v))
		}
		return b.String(), nil
	case *unop:
		v, err := in.eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		if x.op == "!" {
			return !truthy(v), nil
		}
		n, _ := toNum(v)
		return -n, nil
	case *binop:
		l, err := in.eval(x.l, sc)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "&&", "and":
			if !truthy(l) {
				return false, nil
			}
			r, err := in.eval(x.r, sc)
			return truthy(r), err
		case "||", "or":
			if truthy(l) {
				return true, nil
			}
			r, err := in.eval(x.r, sc)
			return truthy(r), err
		}
		r, err := in.eval(x.r, sc)
		if err != nil {
			return nil, err
		}
		return binary(x.op, l, r), nil
	case *whereEx:
		return nil, &ScriptError{Msg: "where outside find"}
	}
	return nothing{}, nil
}

func binary(op string, l, r val) val {
	ln, lok := toNum(l)
	rn, rok := toNum(r)
	_, lnum := l.(int64)
	_, rnum := r.(int64)
	numeric := lok && rok && (lnum || rnum)
	switch op {
	case ".":
		return toStr(l) + toStr(r)
	case "+", "-", "*", "/", "%":
		switch op {
		case "+":
			return ln + rn
		case "-":
			return ln - rn
		case "*":
			return ln * rn
		case "/":
			if rn == 0 {
				return nil
			}
			return ln / rn
		default:
			if rn == 0 {
				return nil
			}
			return ln % rn
		}
	case "=":
		if numeric {
			return ln == rn
		}
		return toStr(l) == toStr(r)
	case "!=":
		if numeric {
			return ln != rn
		}
		return toStr(l) != toStr(r)
	case "<", ">", "<=", ">=":
		c := strings.Compare(toStr(l), toStr(r))
		if numeric {
			c = cmp.Compare(ln, rn)
		}
		return op == "<" && c < 0 || op == ">" && c > 0 || op == "<=" && c <= 0 || op == ">=" && c >= 0
	case "~":
		re, err := regexp.Compile(toStr(r))
		return err == nil && re.MatchString(toStr(l))
	case "in":
		for _, x := range toArray(r) {
			if toStr(x) == toStr(l) {
				return true
			}
		}
		return false
	}
	return nil
}

func truthy(v val) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true" || x == "yes"
	case int64:
		return x != 0
	}
	return false
}

func toNum(v val) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func toStr(v val) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		if x {
			return "true"
		}
		return "false"
	case idv:
		return string(x)
	case []val:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = toStr(e)
		}
		return strings.Join(s, ";")
	case *codeVal:
		return "(code)"
	}
	return ""
}

func toArray(v val) []val {
	switch x := v.(type) {
	case []val:
		return x
	case nil, nothing:
		return nil
	case string:
		if x == "" {
			return nil
		}
		var out []val
		for _, s := range strings.Split(x, ",") {
			out = append(out, s)
		}
		return out
	}
	return []val{v}
}

func typeOf(v val) string {
	switch v.(type) {
	case string:
		return "str"
	case int64:
		return "num"
	case bool:
		return "bool"
	case idv:
		return "id"
	case []val:
		return "array"
	case *codeVal:
		return "code"
	case nil:
		return "nil"
	}
	return "nothing"
}

// parseROSTime parses 1s, 500ms, 1m30s, 1h, 1d, or hh:mm:ss [C: manual
// "Scripting", time type].
func parseROSTime(s string) (time.Duration, bool) {
	if strings.Contains(s, ":") {
		parts := strings.Split(s, ":")
		var d time.Duration
		for _, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil {
				return 0, false
			}
			d = d*60 + time.Duration(n)
		}
		return d * time.Second, true
	}
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, true
	}
	s = strings.ReplaceAll(s, "w", "*7d")
	var total time.Duration
	num := ""
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			num += string(c)
			i++
		case strings.HasPrefix(s[i:], "ms"):
			n, _ := strconv.Atoi(num)
			total += time.Duration(n) * units["ms"]
			num = ""
			i += 2
		default:
			u, ok := units[string(c)]
			if !ok || num == "" {
				return 0, false
			}
			n, _ := strconv.Atoi(num)
			total += time.Duration(n) * u
			num = ""
			i++
		}
	}
	return total, num == ""
}

// menuCmd runs a menu command of a script as the local console.
func (in *interp) menuCmd(c *cmd, sc *scope) (val, error) {
	r := in.r
	pos := in.positional(c)
	vals := make([]val, len(pos))
	for i, e := range pos {
		v, err := in.eval(e, sc)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	named := map[string]string{}
	var order []string
	for _, a := range c.args {
		if a.name == "" {
			continue
		}
		v, err := in.eval(a.v, sc)
		if err != nil {
			return nil, err
		}
		if arr, ok := v.([]val); ok {
			parts := make([]string, len(arr))
			for i, x := range arr {
				parts[i] = toStr(x)
			}
			named[a.name] = strings.Join(parts, ",")
		} else {
			named[a.name] = toStr(v)
		}
		order = append(order, a.name)
	}
	m := menus[c.menu]
	switch c.name {
	case "import":
		name := named["file-name"]
		if name == "" && len(vals) > 0 {
			name = toStr(vals[0])
		}
		if err := r.ImportFile(in.ctx, name, in.out); err != nil {
			return nil, err
		}
		return nothing{}, nil
	case "find":
		return r.scriptFind(in, c, m, sc)
	case "get":
		return r.scriptGet(c, m, vals, named)
	case "print":
		rows, err := in.r.scriptRows(in, c, m, sc)
		if err != nil {
			return nil, err
		}
		for i, kvs := range rows {
			var b strings.Builder
			fmt.Fprintf(&b, "%2d ", i)
			for _, p := range kvs {
				fmt.Fprintf(&b, " %s=%s", p.k, quoteIfNeeded(p.v))
			}
			fmt.Fprintln(in.out, b.String())
		}
		return nothing{}, nil
	case "export":
		return nothing{}, nil
	}
	words := []string{c.menu + "/" + c.name}
	if len(vals) > 0 && m.tab >= 0 && c.name != "add" {
		ids := idList(vals[0])
		if len(ids) == 0 {
			// remove/set/... [find ...] that finds nothing does nothing
			// (the usual idempotent-script idiom) [3P: common in
			// published scripts].
			return nothing{}, nil
		}
		words = append(words, "=numbers="+strings.Join(ids, ","))
		if c.name == "move" && len(vals) > 1 {
			words = append(words, "=destination="+strings.Join(idList(vals[1]), ","))
		}
	}
	for _, k := range order {
		words = append(words, "="+k+"="+named[k])
	}
	items, err := r.Exec(words...)
	if err != nil {
		var t *Trap
		if errors.As(err, &t) {
			return nil, &ScriptError{Msg: t.Message}
		}
		return nil, err
	}
	if c.name == "add" && len(items) == 1 {
		return idv(items[0]["ret"]), nil
	}
	return nothing{}, nil
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \";") {
		return strconv.Quote(s)
	}
	return s
}

func idList(v val) []string {
	var out []string
	for _, x := range toArray(v) {
		if s := toStr(x); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// scriptRows prints the rows of a table that match the command's where
// clause and property arguments.
func (r *Router) scriptRows(in *interp, c *cmd, m menu, sc *scope) ([][]kv, error) {
	if m.tab < 0 {
		r.mu.Lock()
		kvs := r.singleton(c.menu)
		r.mu.Unlock()
		return [][]kv{kvs}, nil
	}
	r.mu.Lock()
	rows := append([]*row(nil), r.rowsOf(m.tab)...)
	p := newPrinter(r.db)
	printed := make([][]kv, len(rows))
	for i, x := range rows {
		printed[i] = p.print(m.tab, x)
	}
	r.mu.Unlock()
	var out [][]kv
	for _, kvs := range printed {
		ok := true
		if c.where != nil {
			v, err := in.evalWhere(c.where, kvs, sc)
			if err != nil {
				return nil, err
			}
			ok = truthy(v)
		}
		for _, a := range c.args {
			if a.name == "" || !ok || printArgs[a.name] {
				continue
			}
			v, err := in.eval(a.v, sc)
			if err != nil {
				return nil, err
			}
			got, _ := lookup(kvs, a.name)
			ok = got == toStr(v)
		}
		if ok {
			out = append(out, kvs)
		}
	}
	return out, nil
}

func (r *Router) scriptFind(in *interp, c *cmd, m menu, sc *scope) (val, error) {
	rows, err := r.scriptRows(in, c, m, sc)
	if err != nil {
		return nil, err
	}
	out := []val{}
	for _, kvs := range rows {
		id, _ := lookup(kvs, ".id")
		out = append(out, idv(id))
	}
	return out, nil
}

// evalWhere evaluates a where condition against one printed row. Booleans
// compare as RouterOS prints them; an absent property is "" [I].
func (in *interp) evalWhere(e expr, kvs []kv, sc *scope) (val, error) {
	switch x := e.(type) {
	case *propRef:
		v, _ := lookup(kvs, x.name)
		return v, nil
	case *unop:
		v, err := in.evalWhere(x.x, kvs, sc)
		return !truthy(v), err
	case *binop:
		l, err := in.evalWhere(x.l, kvs, sc)
		if err != nil {
			return nil, err
		}
		r, err := in.evalWhere(x.r, kvs, sc)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "&&":
			return truthy(l) && truthy(r), nil
		case "||":
			return truthy(l) || truthy(r), nil
		}
		if b, ok := r.(bool); ok {
			r = boolStr(b)
		}
		// Booleans print true/false; a script may write yes/no [C:
		// REST-doc, input accepts both].
		if s, ok := r.(string); ok {
			if b, ok := parseBool(s); ok && (l == "true" || l == "false") {
				r = b
			}
		}
		if arr, ok := r.([]val); ok && len(arr) == 1 && x.op != "in" {
			r = arr[0]
		}
		return binary(x.op, l, r), nil
	}
	return in.eval(e, sc)
}

// scriptGet is `get <item> <property>` (or `get <property>` on a
// singleton): the value, typed (true/false as bool).
func (r *Router) scriptGet(c *cmd, m menu, vals []val, named map[string]string) (val, error) {
	var item, prop string
	if m.tab < 0 {
		if len(vals) > 0 {
			prop = toStr(vals[0])
		}
	} else {
		if len(vals) > 0 {
			ids := idList(vals[0])
			if len(ids) != 1 {
				return nil, &ScriptError{Msg: "no such item"} // [I]
			}
			item = ids[0]
		}
		if len(vals) > 1 {
			prop = toStr(vals[1])
		}
	}
	if v, ok := named["number"]; ok {
		item = v
	}
	if v, ok := named["value-name"]; ok {
		prop = v
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var kvs []kv
	if m.tab < 0 {
		kvs = r.singleton(c.menu)
	} else {
		var found *row
		for _, x := range r.rowsOf(m.tab) {
			if idString(x.id) == item || nameKey[m.tab] != "" && x.props[nameKey[m.tab]] == item {
				found = x
				break
			}
		}
		if found == nil {
			return nil, &ScriptError{Msg: "no such item"} // [I]
		}
		kvs = newPrinter(r.db).print(m.tab, found)
	}
	if prop == "" {
		arr := []val{}
		for _, p := range kvs {
			arr = append(arr, p.k+"="+p.v)
		}
		return arr, nil
	}
	v, ok := lookup(kvs, prop)
	if !ok {
		// Unset properties read as nothing; an unknown name is an
		// error [I].
		return nothing{}, nil
	}
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	if prop == ".id" {
		return idv(v), nil
	}
	return v, nil
}
