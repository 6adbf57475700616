package api

import (
	"fmt"
	"net/http"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/compile"
	"github.com/rampart-fw/rampart/protocol"
)

// sitePolicy answers GET /vpc/sites/{siteId}/policy: the site's desired
// state as the syncer publishes it, compiled and stamped from one snapshot
// by the same function (compile.Published), so the body is the retained
// message's payload byte for byte (both are encoding/json of the
// document). A site the organisation never attached anything to, or
// another organisation's, has none: 404.
func (s *Server) sitePolicy(w http.ResponseWriter, r *http.Request, org string) error {
	site := r.PathValue("siteId")
	if !protocol.ValidSiteID(site) {
		return cp.NotFound("site", site)
	}
	// A decommissioned site is forgotten, though its revision counter
	// (what Published reads) stays: no record, no policy.
	if _, err := s.opts.Store.GetSite(r.Context(), org, site); err != nil {
		if cp.ErrorCode(err) == cp.CodeNotFound {
			return noPolicy(site)
		}
		return err
	}
	var docs []protocol.DesiredState
	var bad error
	err := s.opts.Store.ViewPolicy(r.Context(), org, func(tx cp.PolicyTx) error {
		var err error
		docs, err = compile.Published(tx, org, []string{site}, s.opts.Store.Epoch(), func(_ string, err error) { bad = err })
		return err
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return fmt.Errorf("read policy of site %s: %w", site, err)
	}
	if len(docs) == 0 {
		return noPolicy(site)
	}
	return writeJSON(w, http.StatusOK, docs[0])
}

func noPolicy(site string) error {
	return cp.Errorf(cp.CodeNotFound, "", "The site %q has no policy: no security group or prefix list of your organisation was ever attached to it.", site)
}
