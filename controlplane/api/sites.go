package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/protocol"
)

// Paging of lists (DESIGN.md section 2): the answer stays a bare JSON
// array; `limit` (1 to MaxPageSize, default DefaultPageSize) bounds it and
// `starting_after` (the last id of the previous page) continues it. When
// more follow, the Link header names the next page: `<...>; rel="next"`.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// SitePager is implemented by a Store that can list sites a page at a time
// (bolt.Store does); without it, GET /vpc/sites pages over ListSites.
type SitePager interface {
	ListSitesPage(ctx context.Context, org, after string, limit int) ([]cp.Site, bool, error)
}

// SiteReserver is implemented by a Store that keeps the site quota:
// enrollment reserves a site before handing out its credentials, so an
// organisation gets credentials for at most its quota of sites.
type SiteReserver interface {
	ReserveSite(ctx context.Context, org, site string) error
}

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

// setNext sets the Link header to the page after last.
func setNext(w http.ResponseWriter, r *http.Request, limit int, last string) {
	q := url.Values{}
	q.Set("limit", strconv.Itoa(limit))
	q.Set("starting_after", last)
	w.Header().Set("Link", "<"+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
}

func (s *Server) listSitesPage(w http.ResponseWriter, r *http.Request, org string) error {
	limit, after, err := page(r, protocol.ValidSiteID, "a site id")
	if err != nil {
		return err
	}
	var sites []cp.Site
	var more bool
	if p, ok := s.opts.Store.(SitePager); ok {
		sites, more, err = p.ListSitesPage(r.Context(), org, after, limit)
	} else {
		sites, more, err = pageOf(r.Context(), s.opts.Store, org, after, limit)
	}
	if err != nil {
		return err
	}
	if more {
		setNext(w, r, limit, sites[len(sites)-1].ID)
	}
	return writeJSON(w, http.StatusOK, sites)
}

// pageOf pages over a store's whole list (ordered by id).
func pageOf(ctx context.Context, st Store, org, after string, limit int) ([]cp.Site, bool, error) {
	all, err := st.ListSites(ctx, org)
	if err != nil {
		return nil, false, err
	}
	i := 0
	for i < len(all) && after != "" && all[i].ID <= after {
		i++
	}
	all = all[i:]
	if len(all) > limit {
		return all[:limit], true, nil
	}
	return all, false, nil
}
