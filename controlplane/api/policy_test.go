package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/syncer"
	"github.com/rampart-fw/rampart/protocol"
)

// payloads is a syncer.Publisher that keeps the newest payload published
// for each site, encoded as bus.Bus encodes it (encoding/json).
type payloads struct {
	mu   sync.Mutex
	last map[string][]byte
}

func (p *payloads) PublishDesired(_ context.Context, docs ...protocol.DesiredState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range docs {
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		p.last[d.SiteID] = b
	}
	return nil
}

// ClearSite forgets the site's payload, as the broker forgets a retained
// message.
func (p *payloads) ClearSite(_ context.Context, _, site string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.last, site)
	return nil
}

// await waits until site's newest payload has revision rev.
func (p *payloads) await(t *testing.T, site string, rev uint64) []byte {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		b := p.last[site]
		p.mu.Unlock()
		var d protocol.DesiredState
		if b != nil && json.Unmarshal(b, &d) == nil && d.Revision == rev {
			return b
		}
	}
	t.Fatalf("no document of revision %d published for %s", rev, site)
	return nil
}

// runSyncer publishes the env's writes to pub until the test ends.
func (e *env) runSyncer(t *testing.T, pub syncer.Publisher) *syncer.Syncer {
	sy := syncer.New(syncer.Options{Store: e.store, Logger: slog.New(slog.DiscardHandler), RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	e.store.OnChange(sy.Changed)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sy.Run(ctx, pub)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return sy
}

// TestSitePolicyIsWhatIsPublished: GET /vpc/sites/{id}/policy answers the
// bytes the syncer publishes for the site, after each write (the write's
// own document) and after a republish (compiled from a snapshot); another
// organisation's site, or a site never given anything, is 404.
func TestSitePolicyIsWhatIsPublished(t *testing.T) {
	e := newEnv(t, func(e *env) { e.revise = true })
	pub := &payloads{last: map[string][]byte{}}
	sy := e.runSyncer(t, pub)

	l := e.createList(orgA, "203.0.113.0/24")
	e.createGroup(orgA, cp.SecurityGroupWrite{Name: "web", Rules: []cp.FilterRuleWrite{rule(10, "443", "0.0.0.0/0"), rule(20, "22", l.ID)}, Sites: []string{"site_hq", "site_b"}})
	e.createGroup(orgB, cp.SecurityGroupWrite{Name: "theirs", Rules: []cp.FilterRuleWrite{rule(10, "80", "0.0.0.0/0")}, Sites: []string{"site_theirs"}})

	check := func(step, site string, rev uint64) protocol.DesiredState {
		t.Helper()
		want := pub.await(t, site, rev)
		r := e.do("GET", "/vpc/sites/"+site+"/policy", orgA, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: GET policy of %s: %d %s", step, site, r.status, r.body)
		}
		if diff := cmp.Diff(string(want)+"\n", string(r.body)); diff != "" {
			t.Fatalf("%s: policy of %s is not the published payload (-published +answered)\n%s", step, site, diff)
		}
		var d protocol.DesiredState
		r.decode(t, &d)
		return d
	}
	d := check("after create", "site_hq", 1)
	got := []any{d.OrgID, d.Epoch, len(d.SecurityGroups), len(d.SecurityGroups[0].Rules), len(d.PrefixLists), d.PrefixLists[0].CIDRs}
	if diff := cmp.Diff([]any{orgA, e.store.Epoch(), 1, 2, 1, []string{"203.0.113.0/24"}}, got); diff != "" {
		t.Errorf("document (-want +got)\n%s", diff)
	}
	if err := e.confirm(t.Context(), orgA, "site_hq", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.confirm(t.Context(), orgA, "site_b", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	// A change of the list reaches the site through the group: revision 2.
	if r := e.do("PUT", "/vpc/prefix-lists/"+l.ID, orgA, cp.PrefixListWrite{Name: "Office", Prefixes: []cp.PrefixWrite{{CIDR: "198.51.100.0/24", Description: "d"}}}); r.status != http.StatusOK {
		t.Fatalf("PUT list: %d %s", r.status, r.body)
	}
	if d := check("after the list changed", "site_hq", 2); d.PrefixLists[0].CIDRs[0] != "198.51.100.0/24" {
		t.Errorf("after the list changed: %v", d.PrefixLists)
	}
	// Republished from a snapshot (as after a broker connection): the same.
	pub.mu.Lock()
	clear(pub.last)
	pub.mu.Unlock()
	sy.RepublishAll()
	check("after a republish", "site_hq", 2)

	for _, c := range []struct{ org, site string }{
		{orgA, "site_theirs"}, // orgB's site
		{orgB, "site_hq"},     // orgA's site
		{orgA, "site_never"},
		{orgA, "not-a-site"},
	} {
		r := e.do("GET", "/vpc/sites/"+c.site+"/policy", c.org, nil)
		if r.status != http.StatusNotFound || r.errorResponse(t).Code != cp.CodeNotFound {
			t.Errorf("GET policy of %s as %s: %d %s, want 404", c.site, c.org, r.status, r.body)
		}
	}
	if r := e.do("GET", "/vpc/sites/site_hq/policy", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("without a token: %d", r.status)
	}
}
