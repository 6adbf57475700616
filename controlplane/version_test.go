package controlplane

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseIfMatch(t *testing.T) {
	for _, c := range []struct {
		header string
		want   Precondition
		bad    bool
	}{
		{header: "", want: Precondition{}},
		{header: "*", want: Precondition{Any: true, Raw: "*"}},
		{header: `"v3"`, want: Precondition{Versions: []uint64{3}, Raw: `"v3"`}},
		{header: ` "v1" , "v22"`, want: Precondition{Versions: []uint64{1, 22}, Raw: `"v1" , "v22"`}},
		{header: `W/"v3"`, want: Precondition{Versions: []uint64{}, Raw: `W/"v3"`}},
		{header: `"abc"`, want: Precondition{Versions: []uint64{}, Raw: `"abc"`}},
		{header: `v3`, bad: true},
		{header: `"v3`, bad: true},
		{header: `"v"3"`, bad: true},
	} {
		got, err := ParseIfMatch(c.header)
		if (err != nil) != c.bad {
			t.Errorf("%q: error %v", c.header, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); !c.bad && diff != "" {
			t.Errorf("%q (-want +got)\n%s", c.header, diff)
		}
	}
}

func TestPreconditionCheck(t *testing.T) {
	for _, c := range []struct {
		header  string
		version uint64
		ok      bool
	}{
		{"", 5, true}, {"*", 5, true}, {`"v5"`, 5, true}, {`"v4", "v5"`, 5, true},
		{`"v4"`, 5, false}, {`W/"v5"`, 5, false}, {`"x"`, 5, false},
	} {
		p, err := ParseIfMatch(c.header)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Check(KindSecurityGroup, "sec_grp_x", c.version)
		if (err == nil) != c.ok || (err != nil && ErrorCode(err) != CodePreconditionFailed) {
			t.Errorf("%q at v%d: %v", c.header, c.version, err)
		}
	}
}

// TestNewAuditEventMethod: a write that does not come from the API (no
// WriteRequest) still records a method the API's schema allows.
func TestNewAuditEventMethod(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []string
	for _, c := range []struct {
		wr      WriteRequest
		version uint64
		body    []byte
	}{
		{WriteRequest{}, 1, []byte(`{}`)},
		{WriteRequest{}, 2, []byte(`{}`)},
		{WriteRequest{}, 3, nil},
		{WriteRequest{Method: "PUT", Subject: "alice"}, 1, []byte(`{}`)},
	} {
		e := NewAuditEvent(c.wr, "org_a", KindSecurityGroup, "sec_grp_x", c.version, c.body, at)
		got = append(got, e.Method+" "+e.Subject+" "+string(e.Body))
	}
	want := []string{"POST unknown {}", "PUT unknown {}", "DELETE unknown null", "PUT alice {}"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

// TestNextVersion checks the versions writes give: 1 on create, one more
// on each later write, 1 for a state stored before versions existed.
func TestNextVersion(t *testing.T) {
	tests := []struct {
		name string
		prev *SyncState
		want uint64
	}{
		{"create", nil, 1},
		{"stored before versions", &SyncState{}, 1},
		{"replace", &SyncState{Version: 7}, 8},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, NextVersion(tt.prev)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}
