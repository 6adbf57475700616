package api_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// TestConcurrentEditsWithIfMatch is #16's "two people edit the same
// group": clients that all read the same ETag write at once with it;
// exactly one wins and every other gets 412, round after round (the check
// runs in the write transaction, so there is no window between check and
// write).
func TestConcurrentEditsWithIfMatch(t *testing.T) {
	e := newEnv(t)
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "contended", Rules: []cp.FilterRuleWrite{rule(10, "443", "0.0.0.0/0")}, Sites: []string{}})
	path := "/vpc/security-groups/" + g.ID
	authz := "Bearer " + e.token(orgA)
	const clients, rounds = 6, 10
	for round := range rounds {
		r := e.doRaw("GET", path, authz, nil)
		etag := r.header.Get("ETag")
		if want := cp.ETag(uint64(round + 1)); etag != want {
			t.Fatalf("round %d: GET ETag %q, want %q", round, etag, want)
		}
		statuses := make([]int, clients)
		etags := make([]string, clients)
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				w := cp.SecurityGroupWrite{Name: "contended", Rules: []cp.FilterRuleWrite{rule(10, "443", "0.0.0.0/0"), rule(20, "8000", "0.0.0.0/0")}, Sites: []string{}}
				w.Rules[1].Port = []string{"8001", "8002", "8003", "8004", "8005", "8006"}[c]
				r := e.doWith("PUT", path, authz, map[string]string{"If-Match": etag}, w)
				statuses[c], etags[c] = r.status, r.header.Get("ETag")
				if r.status == http.StatusPreconditionFailed {
					if er := r.errorResponse(t); er.Code != cp.CodePreconditionFailed {
						t.Errorf("412 with code %q", er.Code)
					}
				}
			})
		}
		wg.Wait()
		won := 0
		for c, st := range statuses {
			switch st {
			case http.StatusOK:
				won++
				if want := cp.ETag(uint64(round + 2)); etags[c] != want {
					t.Errorf("round %d: the winner's ETag %q, want %q", round, etags[c], want)
				}
			case http.StatusPreconditionFailed:
			default:
				t.Errorf("round %d: client %d got %d", round, c, st)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1 (statuses %v)", round, won, statuses)
		}
	}
}

// TestIfMatch walks the precondition's rules on groups and prefix lists.
func TestIfMatch(t *testing.T) {
	e := newEnv(t)
	l := e.createList(orgA, "192.0.2.0/24")
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "443", l.ID)}, Sites: []string{}})
	authz := "Bearer " + e.token(orgA)
	for _, res := range []struct {
		path string
		body any
	}{
		{"/vpc/security-groups/" + g.ID, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "80", l.ID)}, Sites: []string{}}},
		{"/vpc/prefix-lists/" + l.ID, cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "198.51.100.0/24", Description: "d"}}}},
	} {
		put := func(ifMatch string) response {
			return e.doWith("PUT", res.path, authz, map[string]string{"If-Match": ifMatch}, res.body)
		}
		steps := []struct {
			name, ifMatch string
			status        int
			code, etag    string
		}{
			{"stale", `"v7"`, http.StatusPreconditionFailed, cp.CodePreconditionFailed, ""},
			{"weak never matches", `W/"v1"`, http.StatusPreconditionFailed, cp.CodePreconditionFailed, ""},
			{"not a tag", `v1`, http.StatusUnprocessableEntity, cp.CodeInvalidValue, ""},
			{"current among others", `"v9", "v1"`, http.StatusOK, "", `"v2"`},
			{"the old one again", `"v1"`, http.StatusPreconditionFailed, cp.CodePreconditionFailed, ""},
			{"any", `*`, http.StatusOK, "", `"v3"`},
			{"none", ``, http.StatusOK, "", `"v4"`},
		}
		for _, st := range steps {
			r := put(st.ifMatch)
			var code string
			if r.status >= 400 {
				code = r.errorResponse(t).Code
			}
			got := []any{r.status, code, r.header.Get("ETag")}
			if diff := cmp.Diff([]any{st.status, st.code, st.etag}, got); diff != "" {
				t.Errorf("%s %s: (-want +got)\n%s", res.path, st.name, diff)
			}
		}
		if r := e.doRaw("GET", res.path, authz, nil); r.header.Get("ETag") != `"v4"` {
			t.Errorf("GET %s: ETag %q, want \"v4\"", res.path, r.header.Get("ETag"))
		}
		// Another organisation's id is not found, whatever If-Match says.
		if r := e.doWith("PUT", res.path, e.bearer(orgB), map[string]string{"If-Match": `"v4"`}, res.body); r.status != http.StatusNotFound {
			t.Errorf("PUT %s as another organisation: %d, want 404", res.path, r.status)
		}
		if r := e.doWith("DELETE", res.path, e.bearer(orgB), map[string]string{"If-Match": `"v4"`}, nil); r.status != http.StatusNotFound {
			t.Errorf("DELETE %s as another organisation: %d, want 404", res.path, r.status)
		}
	}
	// DELETE: a stale tag keeps the resource, the current one deletes it.
	gp := "/vpc/security-groups/" + g.ID
	if r := e.doWith("DELETE", gp, authz, map[string]string{"If-Match": `"v3"`}, nil); r.status != http.StatusPreconditionFailed {
		t.Fatalf("DELETE with a stale ETag: %d %s", r.status, r.body)
	}
	if r := e.doWith("DELETE", gp, authz, map[string]string{"If-Match": `"v4"`}, nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE with the current ETag: %d %s", r.status, r.body)
	}
	if r := e.doRaw("GET", gp, authz, nil); r.status != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d", r.status)
	}
}

// TestIfMatchAndTheSyncLock: the 409 lock while syncing stays with a
// matching If-Match, a mismatch is 412 first, and the ETag of a write
// holds while its status moves from syncing to active.
func TestIfMatchAndTheSyncLock(t *testing.T) {
	e := newEnv(t)
	g := e.createGroup(orgA, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "443", "0.0.0.0/0")}, Sites: []string{"site_a"}})
	path := "/vpc/security-groups/" + g.ID
	authz := "Bearer " + e.token(orgA)
	body := cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "80", "0.0.0.0/0")}, Sites: []string{"site_a"}}
	if r := e.doWith("PUT", path, authz, map[string]string{"If-Match": `"v1"`}, body); r.status != http.StatusConflict || r.errorResponse(t).Code != cp.CodeResourceLocked {
		t.Fatalf("PUT of a syncing group with its ETag: %d %s, want 409 resource_locked", r.status, r.body)
	}
	if r := e.doWith("PUT", path, authz, map[string]string{"If-Match": `"v0"`}, body); r.status != http.StatusPreconditionFailed {
		t.Fatalf("PUT of a syncing group with a stale ETag: %d %s, want 412", r.status, r.body)
	}
	var synced cp.SecurityGroup
	r := e.doRaw("GET", path, authz, nil)
	r.decode(t, &synced)
	if err := e.confirm(t.Context(), orgA, "site_a", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	r = e.doRaw("GET", path, authz, nil)
	var active cp.SecurityGroup
	r.decode(t, &active)
	if active.Status != cp.StatusActive || r.header.Get("ETag") != `"v1"` {
		t.Fatalf("after confirm: status %q ETag %q, want active \"v1\"", active.Status, r.header.Get("ETag"))
	}
	if r := e.doWith("PUT", path, authz, map[string]string{"If-Match": `"v1"`}, body); r.status != http.StatusOK || r.header.Get("ETag") != `"v2"` {
		t.Fatalf("PUT once active: %d %q %s", r.status, r.header.Get("ETag"), r.body)
	}
}
