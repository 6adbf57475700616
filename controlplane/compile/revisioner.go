package compile

import (
	"encoding/json"
	"fmt"

	"github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// EncodeRevision is how a site's Revision is kept in the store's per-site
// data (controlplane.PolicyTx.SetSiteData).
func EncodeRevision(r Revision) []byte {
	b, _ := json.Marshal(struct {
		Revision uint64 `json:"revision"`
		Hash     string `json:"hash"`
	}{r.Revision, r.Hash}) // a uint64 and a string cannot fail to marshal
	return b
}

// DecodeRevision reads what EncodeRevision wrote; no data is the zero
// Revision (a site that never had a document).
func DecodeRevision(b []byte) (Revision, error) {
	if len(b) == 0 {
		return Revision{}, nil
	}
	var v struct {
		Revision uint64 `json:"revision"`
		Hash     string `json:"hash"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return Revision{}, fmt.Errorf("decode site revision: %w", err)
	}
	return Revision{Revision: v.Revision, Hash: v.Hash}, nil
}

// Revisioner is the controlplane.Revisioner the store calls inside every
// write transaction: it compiles the affected sites from the policy as it
// will commit, bumps each site's revision when its content hash changed, and
// stores (revision, hash) in the same transaction, so revisions survive a
// restart and never run ahead of the committed policy.
type Revisioner struct{}

var _ controlplane.Revisioner = Revisioner{}

// Revise returns the document of every site in sites, with the revision the
// site must confirm. A site whose content did not change keeps its
// revision; the caller may already hold a confirmation for it
// (Site.AppliedRevision).
func (Revisioner) Revise(tx controlplane.PolicyTx, org string, sites []string) (map[string]protocol.DesiredState, error) {
	docs, err := CompileTx(tx, org, sites)
	if err != nil {
		return nil, err
	}
	out := make(map[string]protocol.DesiredState, len(docs))
	for _, site := range sites {
		d := docs[site]
		prev, err := siteRevision(tx, site)
		if err != nil {
			return nil, err
		}
		if AssignRevision(prev, &d, "") {
			if err := tx.SetSiteData(site, EncodeRevision(Revision{Revision: d.Revision, Hash: d.Hash})); err != nil {
				return nil, fmt.Errorf("store revision of site %s: %w", site, err)
			}
		}
		out[site] = d
	}
	return out, nil
}

// CompileTx compiles sites from the policy tx sees: only the groups and
// lists that make up their documents are read. Documents carry no revision
// or epoch: see Stamp.
func CompileTx(tx controlplane.PolicyTx, org string, sites []string) (map[string]protocol.DesiredState, error) {
	groups, lists, err := tx.Policy(sites)
	if err != nil {
		return nil, fmt.Errorf("read the policy of %d sites: %w", len(sites), err)
	}
	return CompileSites(org, Policy{Groups: groups, PrefixLists: lists}, sites), nil
}

func siteRevision(tx controlplane.PolicyTx, site string) (Revision, error) {
	b, err := tx.SiteData(site)
	if err != nil {
		return Revision{}, fmt.Errorf("read revision of site %s: %w", site, err)
	}
	r, err := DecodeRevision(b)
	if err != nil {
		return Revision{}, fmt.Errorf("site %s: %w", site, err)
	}
	return r, nil
}

// Stamp turns a compiled document into the one to publish, given what the
// Revisioner stored for the site (read in the same view as the policy it was
// compiled from) and the store's epoch. It refuses a document whose content
// is not the one the stored revision names: publishing it under that
// revision would tell agents two different policies share one revision.
func Stamp(d *protocol.DesiredState, stored Revision, epoch string) error {
	if stored.Revision == 0 || stored.Hash != d.Hash {
		return fmt.Errorf("stamp desired state of %s/%s: compiled content %s is not revision %d's %s", d.OrgID, d.SiteID, d.Hash, stored.Revision, stored.Hash)
	}
	d.Epoch, d.Revision = epoch, stored.Revision
	return nil
}

// Published returns the documents of sites as they are published: compiled
// from tx and stamped with the revision stored in tx and with epoch, in the
// order of sites. A site never given a revision (known only from its
// agent's reports) has none. A site whose content is not its stored
// revision's is left out and reported to bad (a bug: publishing it under
// that revision would be worse than not publishing). The syncer publishes
// these after a connection; the API shows them (GET /vpc/sites/{id}/policy).
func Published(tx controlplane.PolicyTx, org string, sites []string, epoch string, bad func(site string, err error)) ([]protocol.DesiredState, error) {
	compiled, err := CompileTx(tx, org, sites)
	if err != nil {
		return nil, err
	}
	var docs []protocol.DesiredState
	for _, site := range sites {
		d, ok := compiled[site]
		if !ok {
			continue
		}
		rev, err := siteRevision(tx, site)
		if err != nil {
			return nil, err
		}
		if rev.Revision == 0 {
			continue
		}
		if err := Stamp(&d, rev, epoch); err != nil {
			bad(site, err)
			continue
		}
		docs = append(docs, d)
	}
	return docs, nil
}
