package api_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// TestAnswersAreFramed checks the answers written from stored bytes (GET,
// repeated so the second comes from the store's cache, and PUT): one JSON
// value and one newline, Content-Length exact, and the cached answer not
// changed by being written.
func TestAnswersAreFramed(t *testing.T) {
	e := newEnv(t)
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "Framed", Rules: []cp.FilterRuleWrite{rule(1, "22", "10.0.0.0/8")}, Sites: []string{}})
	path := "/vpc/security-groups/" + g.ID
	check := func(what string, r response) {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", what, r.status, r.body)
		}
		if !bytes.HasSuffix(r.body, []byte("}\n")) || bytes.Count(r.body, []byte("\n")) != 1 {
			t.Errorf("%s: body does not end in exactly one newline: %q", what, r.body)
		}
		if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
			t.Errorf("%s: Content-Length %q for %d bytes", what, cl, len(r.body))
		}
	}
	first := e.do("GET", path, orgA, nil)
	check("first GET", first)
	for i := range 3 {
		r := e.do("GET", path, orgA, nil)
		check("cached GET", r)
		if !bytes.Equal(r.body, first.body) {
			t.Fatalf("GET %d: %s, first %s", i, r.body, first.body)
		}
	}
	put := e.do("PUT", path, orgA, cp.SecurityGroupWrite{Name: "Framed 2", Rules: []cp.FilterRuleWrite{rule(1, "22", "10.0.0.0/8")}, Sites: []string{}})
	check("PUT", put)
	after := e.do("GET", path, orgA, nil)
	check("GET after PUT", after)
	if !bytes.Equal(after.body, put.body) {
		t.Errorf("GET after PUT %s, PUT answered %s", after.body, put.body)
	}
}
