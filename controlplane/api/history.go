package api

import (
	"net/http"
	"strconv"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// siteHistory answers GET /vpc/sites/{siteId}/history: the site's state
// transitions (controlplane.TransitionOf), newest first, paged like every
// list, starting_after being the seq of the last one of the previous page.
// Another organisation's site, like one nothing named, is 404.
func (s *Server) siteHistory(w http.ResponseWriter, r *http.Request, org string) error {
	site := r.PathValue("siteId")
	if !protocol.ValidSiteID(site) {
		return cp.NotFound("site", site)
	}
	limit, after, err := page(r, func(v string) bool { n, err := strconv.ParseUint(v, 10, 64); return err == nil && n > 0 }, "a transition's seq (a whole number from 1)")
	if err != nil {
		return err
	}
	q := cp.SiteHistoryQuery{Limit: limit}
	if after != "" {
		q.Before, _ = strconv.ParseUint(after, 10, 64)
	}
	trs, more, err := s.opts.Store.SiteHistory(r.Context(), org, site, q)
	if err != nil {
		return err
	}
	if more {
		setNext(w, r, limit, strconv.FormatUint(trs[len(trs)-1].Seq, 10))
	}
	return writeJSON(w, http.StatusOK, trs)
}
