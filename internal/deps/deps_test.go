package deps

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const mod = "github.com/rampart-fw/rampart"

// rule forbids every package matching from to depend, directly or not, on a
// package matching forbid (unless it also matches allow). Patterns are
// import paths, or prefixes ending in "/..." that also match the prefix
// itself, as in the go command.
type rule struct {
	why                 string
	from, forbid, allow []string
}

var rules = []rule{
	{
		why:    "the agent, the wire protocol and the container code run without the control plane (#14)",
		from:   []string{mod + "/agent/...", mod + "/cmd/rampart-agent", mod + "/protocol/...", mod + "/container/...", mod + "/cmd/rampart-image"},
		forbid: []string{mod + "/controlplane/..."},
	},
	{
		why:    "protocol is what both sides import, so it imports nothing of ours",
		from:   []string{mod + "/protocol/..."},
		forbid: []string{mod + "/..."},
		allow:  []string{mod + "/protocol/..."},
	},
	{
		why:    "the control plane (its API serves enrollments) does not link the image builder or go-containerregistry",
		from:   []string{mod + "/controlplane/...", mod + "/cmd/rampart-controlplane"},
		forbid: []string{"github.com/google/go-containerregistry/...", mod + "/container/image/..."},
	},
	{
		why:    "rossim is the judge of RouterOS behaviour, independent of the agent and the control plane it judges",
		from:   []string{mod + "/rossim/..."},
		forbid: []string{mod + "/agent/...", mod + "/controlplane/..."},
	},
}

func match(patterns []string, path string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "/..."); ok {
			if path == prefix || strings.HasPrefix(path, prefix+"/") {
				return true
			}
		} else if path == p {
			return true
		}
	}
	return false
}

// violations returns, for each rule, an import chain (from ... forbidden)
// per package that breaks it, given the import graph (package → its direct
// imports) of every package.
func violations(graph map[string][]string, rules []rule) []string {
	var out []string
	var roots []string
	for p := range graph {
		roots = append(roots, p)
	}
	slices.Sort(roots)
	for _, r := range rules {
		for _, root := range roots {
			if !match(r.from, root) {
				continue
			}
			// Breadth first, so the chain reported is a shortest one.
			parent := map[string]string{root: ""}
			queue := []string{root}
			for len(queue) > 0 {
				p := queue[0]
				queue = queue[1:]
				if p != root && match(r.forbid, p) && !match(r.allow, p) {
					chain := []string{p}
					for q := parent[p]; q != ""; q = parent[q] {
						chain = append(chain, q)
					}
					slices.Reverse(chain)
					out = append(out, r.why+": "+strings.Join(chain, " → "))
					break
				}
				for _, imp := range graph[p] {
					if _, seen := parent[imp]; !seen {
						parent[imp] = p
						queue = append(queue, imp)
					}
				}
			}
		}
	}
	return out
}

// importGraph is `go list -deps` of the whole module: every package it
// builds (tests excluded: the rules are about what ships) with its direct
// imports.
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	graph := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return graph
}

// TestDependencyRules fails on every import chain that crosses a rule, and
// on a rule whose packages no longer exist (a rename would otherwise turn
// it off without a word).
func TestDependencyRules(t *testing.T) {
	graph := importGraph(t)
	for _, r := range rules {
		for _, p := range r.from {
			found := false
			for pkg := range graph {
				found = found || match([]string{p}, pkg)
			}
			if !found {
				t.Errorf("rule %q: no package matches %s; update the rule", r.why, p)
			}
		}
	}
	for _, v := range violations(graph, rules) {
		t.Error(v)
	}
}

// TestViolations checks the checker on a small graph, so that a rule that
// can never fire does not pass for the wrong reason.
func TestViolations(t *testing.T) {
	graph := map[string][]string{
		mod + "/agent":                                  {mod + "/protocol", mod + "/agent/mqtt"},
		mod + "/agent/mqtt":                             {mod + "/controlplane/keys"},
		mod + "/controlplane/keys":                      {mod + "/protocol", "crypto/hmac"},
		mod + "/protocol":                               {"encoding/json"},
		mod + "/protocol/sub":                           {mod + "/protocol"},
		mod + "/controlplane/api":                       {mod + "/container"},
		mod + "/container":                              {mod + "/protocol"},
		mod + "/cmd/rampart-controlplane":               {mod + "/controlplane/api", mod + "/container/image"},
		mod + "/container/image":                        {"github.com/google/go-containerregistry/pkg/v1"},
		mod + "/rossim":                                 {"net"},
		"github.com/google/go-containerregistry/pkg/v1": nil,
		"encoding/json":                                 nil, "crypto/hmac": nil, "net": nil,
	}
	want := []string{
		rules[0].why + ": " + mod + "/agent → " + mod + "/agent/mqtt → " + mod + "/controlplane/keys",
		rules[0].why + ": " + mod + "/agent/mqtt → " + mod + "/controlplane/keys",
		rules[2].why + ": " + mod + "/cmd/rampart-controlplane → " + mod + "/container/image",
	}
	if d := cmp.Diff(want, violations(graph, rules)); d != "" {
		t.Errorf("violations (-want +got):\n%s", d)
	}
	graph[mod+"/protocol"] = []string{mod + "/container"}
	graph[mod+"/rossim"] = []string{mod + "/agent"}
	got := violations(graph, rules)
	for _, w := range []string{
		rules[1].why + ": " + mod + "/protocol → " + mod + "/container",
		rules[1].why + ": " + mod + "/protocol/sub → " + mod + "/protocol → " + mod + "/container",
		rules[3].why + ": " + mod + "/rossim → " + mod + "/agent",
	} {
		if !slices.Contains(got, w) {
			t.Errorf("violations lack %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
}
