package compile

import (
	"maps"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/controlplane"
)

// memTx is a PolicyTx over a Policy and a map, standing in for the store's
// write transaction.
type memTx struct {
	p      Policy
	data   map[string][]byte
	writes int
}

// Policy returns the whole policy: a superset of what sites hold compiles
// to the same documents.
func (tx *memTx) Policy([]string) ([]controlplane.SecurityGroup, []controlplane.PrefixList, error) {
	return tx.p.Groups, tx.p.PrefixLists, nil
}
func (tx *memTx) SiteData(site string) ([]byte, error) { return tx.data[site], nil }
func (tx *memTx) SetSiteData(site string, b []byte) error {
	tx.writes++
	tx.data[site] = b
	return nil
}

func TestRevisioner(t *testing.T) {
	tx := &memTx{p: basePolicy(), data: map[string][]byte{}}
	all := []string{"site_a", "site_b", "site_c"}
	steps := []struct {
		name       string
		change     func(p *Policy)
		sites      []string
		want       map[string]uint64
		wantWrites int
	}{
		{"first compile", func(*Policy) {}, all, map[string]uint64{"site_a": 1, "site_b": 1, "site_c": 1}, 3},
		{"unchanged policy keeps revisions", func(*Policy) {}, all, map[string]uint64{"site_a": 1, "site_b": 1, "site_c": 1}, 0},
		{"vpn list edit reaches site_b only", func(p *Policy) { setCIDRs(&p.PrefixLists[1], "10.9.0.0/16") }, all, map[string]uint64{"site_a": 1, "site_b": 2, "site_c": 1}, 1},
		{"run twice in one transaction is stable", func(*Policy) {}, []string{"site_b"}, map[string]uint64{"site_b": 2}, 0},
		{"site_c loses its list and gets an empty document's revision", func(p *Policy) { p.PrefixLists[2].Sites = nil }, []string{"site_c"}, map[string]uint64{"site_c": 2}, 1},
	}
	for _, st := range steps {
		st.change(&tx.p)
		tx.writes = 0
		docs, err := Revisioner{}.Revise(tx, "org_x", st.sites)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := map[string]uint64{}
		for site, d := range docs {
			got[site] = d.Revision
			if d.SiteID != site || d.Epoch != "" {
				t.Errorf("%s: document of %s is for %s, epoch %q", st.name, site, d.SiteID, d.Epoch)
			}
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: revisions (-want +got):\n%s", st.name, diff)
		}
		if tx.writes != st.wantWrites {
			t.Errorf("%s: %d site data writes, want %d", st.name, tx.writes, st.wantWrites)
		}
	}

	// Publishing: compile in the same view and stamp from the stored data.
	docs, err := CompileTx(tx, "org_x", all)
	if err != nil {
		t.Fatal(err)
	}
	for _, site := range all {
		d := docs[site]
		stored, err := DecodeRevision(tx.data[site])
		if err != nil {
			t.Fatal(err)
		}
		if err := Stamp(&d, stored, "ep1"); err != nil {
			t.Fatalf("%s: %v", site, err)
		}
		if err := d.Validate("org_x", site); err != nil {
			t.Errorf("%s: stamped document does not validate: %v", site, err)
		}
	}
	// A document compiled from a policy the stored revision does not name
	// must not go out under that revision.
	stale := maps.Clone(tx.data)
	setCIDRs(&tx.p.PrefixLists[0], "192.0.2.0/24")
	docs, _ = CompileTx(tx, "org_x", []string{"site_a"})
	d := docs["site_a"]
	stored, _ := DecodeRevision(stale["site_a"])
	if err := Stamp(&d, stored, "ep1"); err == nil {
		t.Error("Stamp accepted content that differs from the stored revision's hash")
	}
}

func TestDecodeRevision(t *testing.T) {
	r := Revision{Revision: 42, Hash: "sha256:ab"}
	got, err := DecodeRevision(EncodeRevision(r))
	if err != nil || got != r {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	if got, err := DecodeRevision(nil); err != nil || got != (Revision{}) {
		t.Errorf("no data: %+v, %v", got, err)
	}
	if _, err := DecodeRevision([]byte("{")); err == nil {
		t.Error("garbage decoded without error")
	}
}
