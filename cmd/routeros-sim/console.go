package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rampart-fw/rampart/rossim"
)

// The console's input and output (tests replace them).
var (
	stdin  io.Reader = os.Stdin
	stdout io.Writer = os.Stdout
)

// runConsole reads scripts from in, as pasted into the router's terminal:
// lines are gathered until brackets balance and no line ends with a `\`
// continuation, then the chunk runs as one script (parsed whole first,
// like /import). Errors print as the terminal would.
func runConsole(ctx context.Context, r *rossim.Router, in io.Reader, out io.Writer, user, identity string) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	prompt := fmt.Sprintf("[%s@%s] > ", user, identity)
	var chunk strings.Builder
	depth := 0
	fmt.Fprint(out, prompt)
	for sc.Scan() {
		line := sc.Text()
		chunk.WriteString(line)
		chunk.WriteByte('\n')
		depth += bracketDepth(line)
		if depth > 0 || strings.HasSuffix(line, "\\") {
			continue
		}
		depth = 0
		if err := r.Import(ctx, chunk.String(), out); err != nil {
			fmt.Fprintln(out, err)
		}
		chunk.Reset()
		if ctx.Err() != nil {
			return
		}
		fmt.Fprint(out, prompt)
	}
}

// bracketDepth is the change in {[( nesting over line, ignoring quoted
// text and comments.
func bracketDepth(line string) int {
	d, quoted := 0, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '#' && strings.TrimSpace(line[:i]) == "":
			return d
		case c == '{' || c == '[' || c == '(':
			d++
		case c == '}' || c == ']' || c == ')':
			d--
		}
	}
	return d
}
