package controlplane

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/rampart-fw/rampart/protocol"
)

// epochAllowance is the room a document's size check leaves for the epoch,
// stamped at publish, after the check: stores' epochs are 16 hex
// characters.
const epochAllowance = 64

// Revise runs r inside a write transaction, as every store does for the
// sites a write affects, and refuses the write if a site's document would
// be larger than an agent takes (protocol.MaxDesiredStateBytes): the
// broker and the agent refuse such a document, so committing it would
// leave the site waiting for a policy that can never be delivered, and
// the syncer retrying its publish forever. The caller's transaction then
// rolls back: all or nothing.
func Revise(r Revisioner, tx PolicyTx, org string, sites []string) (map[string]protocol.DesiredState, error) {
	docs, err := r.Revise(tx, org, sites)
	if err != nil {
		return nil, err
	}
	if err := checkDocumentSizes(docs, sites); err != nil {
		return nil, err
	}
	return docs, nil
}

// DocumentTooLarge is the error for a write that would make the document
// of site bytes long, more than an agent takes, and those of others more
// sites too large as well.
func DocumentTooLarge(site string, bytes, others int) *Error {
	also := ""
	if others > 0 {
		also = fmt.Sprintf(" (and those of %d other sites would be too)", others)
	}
	return Errorf(CodeDocumentTooLarge, "",
		"The write would make the policy document of site %q %d bytes long%s, more than the %d bytes (%d MiB) a site's agent takes; nothing was changed. A site's document holds every security group and prefix list attached to it: detach some from the site, or move the rules and prefixes it does not need into groups and lists of other sites.",
		site, bytes, also, protocol.MaxDesiredStateBytes, protocol.MaxDesiredStateBytes>>20)
}

// checkDocumentSizes refuses docs if any is larger than
// protocol.MaxDesiredStateBytes once published (with its epoch). Sites
// with the same content share its size: the sum of a cheap bound is
// enough for all but documents near the limit, which are encoded once per
// content, so an ordinary write costs no encoding here.
func checkDocumentSizes(docs map[string]protocol.DesiredState, sites []string) error {
	type sized struct {
		bound int
		exact int // 0 until encoded
		// The envelope of the site encoded: another site's document of
		// the same content differs in these only (ids have no characters
		// JSON escapes).
		site string
		rev  uint64
	}
	byHash := map[string]*sized{}
	first, over := "", 0
	size := 0
	for _, site := range sites {
		d, ok := docs[site]
		if !ok {
			continue
		}
		sz := byHash[d.Hash]
		if sz == nil {
			sz = &sized{bound: sizeBound(&d)}
			byHash[d.Hash] = sz
		}
		if sz.bound+epochAllowance <= protocol.MaxDesiredStateBytes {
			continue
		}
		if sz.exact == 0 {
			b, err := json.Marshal(&d)
			if err != nil {
				return fmt.Errorf("measure document of site %s: %w", site, err)
			}
			sz.exact, sz.site, sz.rev = len(b), site, d.Revision
		}
		n := sz.exact + len(site) - len(sz.site) + digits(d.Revision) - digits(sz.rev) + epochAllowance
		if n > protocol.MaxDesiredStateBytes {
			if first == "" {
				first, size = site, n
			} else {
				over++
			}
		}
	}
	if first != "" {
		return DocumentTooLarge(first, size, over)
	}
	return nil
}

func digits(n uint64) int { return len(strconv.FormatUint(n, 10)) }

// sizeBound is at least the length of d's JSON: every string as if each
// byte were escaped to six (\u00XX), every number at its widest, the
// names and punctuation of every field counted generously.
func sizeBound(d *protocol.DesiredState) int {
	const (
		envelope = 256 // names of the document's fields, schema, revision
		perGroup = 64  // {"id":"","name":"","rules":[]},
		perRule  = 160 // field names, quotes, commas, two numbers
		perList  = 64  // {"id":"","name":"","cidrs":[]},
		perCIDR  = 3   // "",
	)
	n := envelope + 6*(len(d.OrgID)+len(d.SiteID)+len(d.Epoch)+len(d.Hash))
	for i := range d.SecurityGroups {
		g := &d.SecurityGroups[i]
		n += perGroup + 6*(len(g.ID)+len(g.Name))
		for j := range g.Rules {
			r := &g.Rules[j]
			n += perRule + 6*(len(r.ID)+len(r.Direction)+len(r.Port)+len(r.Address)+len(r.Description))
		}
	}
	for i := range d.PrefixLists {
		l := &d.PrefixLists[i]
		n += perList + 6*(len(l.ID)+len(l.Name))
		for _, c := range l.CIDRs {
			n += perCIDR + 6*len(c)
		}
	}
	return n
}
