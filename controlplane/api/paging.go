package api

import (
	"net/http"
	"strconv"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// Paging of lists (DESIGN.md section 2, #13.2, #16): the answer stays a bare JSON
// array; `limit` (1 to MaxPageSize, default DefaultPageSize) bounds it and
// `starting_after` (the last id of the previous page) continues it. When
// more follow, the Link header names the next page: `<...>; rel="next"`.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// page reads limit and starting_after. idOK checks starting_after.
func page(r *http.Request, idOK func(string) bool, idHint string) (limit int, after string, err error) {
	q := r.URL.Query()
	limit = DefaultPageSize
	if v := q.Get("limit"); v != "" {
		n, convErr := strconv.Atoi(v)
		if convErr != nil || n < 1 || n > MaxPageSize {
			return 0, "", cp.Errorf(cp.CodeInvalidValue, "limit", "limit %q is not valid; use a whole number from 1 to %d (default %d).", v, MaxPageSize, DefaultPageSize)
		}
		limit = n
	}
	after = q.Get("starting_after")
	if after != "" && !idOK(after) {
		return 0, "", cp.Errorf(cp.CodeInvalidValue, "starting_after", "starting_after %q is not %s; send the id of the last item of the previous page.", after, idHint)
	}
	return limit, after, nil
}

// setNext sets the Link header to the page after last, keeping the
// request's other parameters (an audit listing's filters).
func setNext(w http.ResponseWriter, r *http.Request, limit int, last string) {
	q := r.URL.Query()
	q.Set("limit", strconv.Itoa(limit))
	q.Set("starting_after", last)
	w.Header().Set("Link", "<"+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
}

func (s *Server) listSitesPage(w http.ResponseWriter, r *http.Request, org string) error {
	limit, after, err := page(r, protocol.ValidSiteID, "a site id")
	if err != nil {
		return err
	}
	sites, more, err := s.opts.Store.ListSitesPage(r.Context(), org, after, limit)
	if err != nil {
		return err
	}
	if more {
		setNext(w, r, limit, sites[len(sites)-1].ID)
	}
	return writeJSON(w, http.StatusOK, sites)
}

// listPage answers GET of the groups or the prefix lists, a page at a
// time.
func (s *Server) listPage(w http.ResponseWriter, r *http.Request, org, kind string) error {
	prefix := cp.SecurityGroupIDPrefix
	if kind == cp.KindPrefixList {
		prefix = cp.PrefixListIDPrefix
	}
	limit, after, err := page(r, func(id string) bool { return cp.ValidID(prefix, id) }, "an id "+prefix+"...")
	if err != nil {
		return err
	}
	body, last, more, err := s.opts.Store.ListJSONPage(r.Context(), org, kind, after, limit)
	if err != nil {
		return err
	}
	if more {
		setNext(w, r, limit, last)
	}
	return writeRaw(w, http.StatusOK)(body, nil)
}
