package protocol_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/protocol"
)

func sample() protocol.DesiredState {
	d := protocol.DesiredState{
		OrgID: "org_demo", SiteID: "site_hq", Epoch: "7d0c2c9e5b1a4f3e", Revision: 3,
		SecurityGroups: []protocol.SecurityGroup{{ID: "sec_grp_1", Name: "Web", Rules: []protocol.Rule{
			{ID: "fltr_b", Direction: protocol.Inbound, Order: 30, Protocol: 6, Port: "22", Address: "prfx_lst_office", Description: "SSH from office"},
			{ID: "fltr_a", Direction: protocol.Inbound, Order: 10, Protocol: 6, Port: "443", Address: "0.0.0.0/0", Description: "Allow HTTPS"},
		}}},
		PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_office", Name: "Office", CIDRs: []string{"203.0.113.0/24"}}},
	}
	d.Seal()
	return d
}

func ExampleDesiredState_Seal() {
	d := protocol.DesiredState{OrgID: "org_demo", SiteID: "site_hq", Epoch: "e1", Revision: 1,
		PrefixLists: []protocol.PrefixList{{ID: "prfx_lst_x", Name: "X", CIDRs: []string{"198.51.100.0/24", "192.0.2.0/24"}}}}
	d.Seal()
	fmt.Println(d.PrefixLists[0].CIDRs, strings.HasPrefix(d.Hash, "sha256:"), d.Validate("org_demo", "site_hq"))
	// Output: [192.0.2.0/24 198.51.100.0/24] true <nil>
}

func ExampleDesiredTopic() {
	fmt.Println(protocol.DesiredTopic(protocol.DefaultTopicRoot, "org_demo", "site_hq"))
	fmt.Println(protocol.ParseTopic(protocol.DefaultTopicRoot, "rampart/v1/org_demo/site_hq/status"))
	// Output:
	// rampart/v1/org_demo/site_hq/desired
	// org_demo site_hq status true
}

func TestHashIgnoresOrderAndEnvelope(t *testing.T) {
	a := sample()
	b := sample()
	b.Revision, b.Epoch = 99, "other"
	b.SecurityGroups[0].Rules[0], b.SecurityGroups[0].Rules[1] = b.SecurityGroups[0].Rules[1], b.SecurityGroups[0].Rules[0]
	if a.ContentHash() != b.ContentHash() {
		t.Fatalf("hash depends on rule order or envelope")
	}
	b.SecurityGroups[0].Rules[0].Port = "8443"
	if a.ContentHash() == b.ContentHash() {
		t.Fatalf("hash did not change with content")
	}
}

func TestJSONRoundTripMatchesDesign(t *testing.T) {
	d := sample()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	want := []string{"epoch", "hash", "org_id", "prefix_lists", "revision", "schema", "security_groups", "site_id"}
	if diff := cmp.Diff(want, sorted(keys)); diff != "" {
		t.Errorf("top-level fields (-want +got):\n%s", diff)
	}
	var back protocol.DesiredState
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func sorted(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*protocol.DesiredState)
		wantErr string
	}{
		{"ok", func(*protocol.DesiredState) {}, ""},
		{"schema too new", func(d *protocol.DesiredState) { d.Schema = 3 }, "upgrade the agent"},
		{"schema 0", func(d *protocol.DesiredState) { d.Schema = 0 }, "schema 0 is not supported (want 1 to 2)"},
		{"ipv4 as schema 2", func(d *protocol.DesiredState) { d.Schema = 2 }, ""},
		{"ipv6 as schema 1", func(d *protocol.DesiredState) {
			d.PrefixLists[0].CIDRs = append(d.PrefixLists[0].CIDRs, "2001:db8::/32")
			d.Seal()
			d.Schema = 1
		}, `"2001:db8::/32" is IPv6, which schema 1 does not carry`},
		{"ipv6 not canonical", func(d *protocol.DesiredState) { d.SecurityGroups[0].Rules[0].Address = "2001:DB8::/32"; d.Seal() }, `not in canonical form "2001:db8::/32"`},
		{"ipv6 host bits", func(d *protocol.DesiredState) { d.SecurityGroups[0].Rules[0].Address = "2001:db8::1/32"; d.Seal() }, `did you mean "2001:db8::/32"`},
		{"ipv6 ok", func(d *protocol.DesiredState) { d.SecurityGroups[0].Rules[0].Address = "2001:db8::/32"; d.Seal() }, ""},
		{"wrong site", func(d *protocol.DesiredState) { d.SiteID = "site_other" }, "not org_demo/site_hq"},
		{"zero revision", func(d *protocol.DesiredState) { d.Revision = 0 }, "revision is 0"},
		{"port without tcp", func(d *protocol.DesiredState) { d.SecurityGroups[0].Rules[0].Protocol = 1; d.Seal() }, "needs protocol tcp"},
		{"host bits", func(d *protocol.DesiredState) { d.SecurityGroups[0].Rules[0].Address = "10.0.0.1/24"; d.Seal() }, `did you mean "10.0.0.0/24"`},
		{"missing list", func(d *protocol.DesiredState) { d.PrefixLists = nil; d.Seal() }, "does not carry"},
		{"bad port", func(d *protocol.DesiredState) { d.SecurityGroups[0].Rules[1].Port = "70000"; d.Seal() }, "outside 1-65535"},
		{"tampered", func(d *protocol.DesiredState) { d.SecurityGroups[0].Rules[0].Port = "1" }, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := sample()
			tt.mutate(&d)
			err := d.Validate("org_demo", "site_hq")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParsePort(t *testing.T) {
	for _, ok := range []string{"", "1", "65535", "80,443", "1000-2000", "22,8000-8080"} {
		if err := protocol.ParsePort(ok); err != nil {
			t.Errorf("ParsePort(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"0", "65536", "a", "1-", "-1", "2-1", "1,,2", " 1", "80 ", "+1"} {
		if err := protocol.ParsePort(bad); err == nil {
			t.Errorf("ParsePort(%q) accepted", bad)
		}
	}
}

func TestPresence(t *testing.T) {
	for in, want := range map[string]string{`"offline"`: "offline", "offline": "offline", `{"state":"online","at":"2026-11-21T10:00:00Z"}`: "online"} {
		p, err := protocol.ParsePresence([]byte(in))
		if err != nil || p.State != want {
			t.Errorf("ParsePresence(%s) = %+v, %v; want %s", in, p, err, want)
		}
	}
	if _, err := protocol.ParsePresence([]byte(`{"state":"maybe"}`)); err == nil {
		t.Error("accepted an unknown presence state")
	}
}

func TestIDs(t *testing.T) {
	for id, want := range map[string]bool{"org_demo": true, "org/x": false, "org+": false, "#": false, "": false} {
		if got := protocol.ValidOrgID(id); got != want {
			t.Errorf("ValidOrgID(%q) = %v", id, got)
		}
	}
	for id, want := range map[string]bool{"site_hq": true, "site_": false, "site_a-b": false, "hq": false, "site_" + strings.Repeat("a", 65): false} {
		if got := protocol.ValidSiteID(id); got != want {
			t.Errorf("ValidSiteID(%q) = %v", id, got)
		}
	}
}

func TestParseStatus(t *testing.T) {
	ok := `{"schema":1,"org_id":"org_demo","site_id":"site_hq","epoch":"e","revision":3,"state":"applied"}`
	tests := []struct {
		name, payload string
		want          protocol.SiteStatus
		mismatch      bool
		wantErr       string
	}{
		{name: "valid", payload: ok, want: protocol.SiteStatus{Schema: 1, OrgID: "org_demo", SiteID: "site_hq", Epoch: "e", Revision: 3, State: "applied"}},
		{name: "not json", payload: `{`, wantErr: "parse status: unexpected end of JSON input"},
		{name: "schema", payload: strings.Replace(ok, `"schema":1`, `"schema":3`, 1), wantErr: "parse status: schema 3 is not supported (want 1 to 2)"},
		{name: "other site", payload: strings.Replace(ok, "site_hq", "site_b", 1), mismatch: true,
			wantErr: "status names another site than its topic: org_demo/site_b on the topic of org_demo/site_hq"},
		{name: "state", payload: strings.Replace(ok, "applied", "done", 1), wantErr: `parse status: state "done" is not one of applying, applied, failed`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protocol.ParseStatus([]byte(tc.payload), "org_demo", "site_hq")
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				if got := errors.Is(err, protocol.ErrStatusMismatch); got != tc.mismatch {
					t.Errorf("errors.Is(err, ErrStatusMismatch) = %v, want %v", got, tc.mismatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func ExampleResyncTopic() {
	fmt.Println(protocol.ResyncTopic(protocol.DefaultTopicRoot))
	// Output: rampart/v1/resync
}

// TestMaxDesiredStateBytes holds the bound to its stated reasoning: six
// groups of 250 rules at the API's bounds fit, with room for their lists.
func TestMaxDesiredStateBytes(t *testing.T) {
	desc := strings.Repeat("<", 255) // escaped by encoding/json to \u003c
	var ports []string
	for i := range 64 {
		ports = append(ports, fmt.Sprintf("%d-%d", 60000+i, 65535))
	}
	d := protocol.DesiredState{OrgID: "org_demo", SiteID: "site_hq", Epoch: "e", Revision: 1}
	for g := range 6 {
		grp := protocol.SecurityGroup{ID: fmt.Sprintf("sec_grp_%027d", g), Name: strings.Repeat("<", 255)}
		for r := range 250 {
			grp.Rules = append(grp.Rules, protocol.Rule{ID: fmt.Sprintf("fltr_%027d", r), Direction: protocol.Outbound,
				Order: r + 1, Protocol: 132, Port: strings.Join(ports, ","), Address: "255.255.255.255/32", Description: desc})
		}
		d.SecurityGroups = append(d.SecurityGroups, grp)
	}
	d.Seal()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("six worst-case full groups: %d bytes (%.0f per rule)", len(b), float64(len(b))/1500)
	if len(b) > protocol.MaxDesiredStateBytes {
		t.Errorf("six worst-case full groups take %d bytes, more than MaxDesiredStateBytes %d", len(b), protocol.MaxDesiredStateBytes)
	}
}

// TestBoundedStatusFits: whatever text an agent's status carries, once
// Bounded it fits the broker's packet limit for a site, even when every
// character is one JSON escapes to six bytes.
func TestBoundedStatusFits(t *testing.T) {
	worst := strings.Repeat("\x01", 1<<20)
	st := protocol.SiteStatus{
		Schema: protocol.StatusSchema, OrgID: "org_" + strings.Repeat("a", 124), SiteID: "site_" + strings.Repeat("b", 64),
		Epoch: strings.Repeat("e", 64), Revision: ^uint64(0), State: protocol.StateFailed,
		Error: worst, AgentVersion: worst, RouterOSVersion: worst, Board: worst,
	}.Bounded()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > protocol.MaxStatusBytes {
		t.Errorf("bounded status is %d bytes of JSON; the broker refuses more than %d", len(b), protocol.MaxStatusBytes)
	}
	for name, f := range map[string]struct {
		v   string
		max int
	}{"error": {st.Error, protocol.MaxStatusError}, "agent_version": {st.AgentVersion, protocol.MaxStatusText}, "board": {st.Board, protocol.MaxStatusText}} {
		if len(f.v) > f.max || !strings.HasSuffix(f.v, "…") {
			t.Errorf("%s: %d bytes, want at most %d with the cut marked", name, len(f.v), f.max)
		}
	}
	if got := protocol.Truncate("short", 10); got != "short" {
		t.Errorf("Truncate changed a short string to %q", got)
	}
	if got := protocol.Truncate("ééé", 4); got != "…" || !utf8.ValidString(got) {
		t.Errorf("protocol.Truncate(%q, 4) = %q; want the cut on a rune boundary", "ééé", got)
	}
}
