package rossim

import (
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Users, groups and the api service's address restriction as RouterOS
// enforces them on API sessions. The local console (Exec, Import) runs as
// the full-policy default user.

// errPermission: a command the user's group has no policy for [3P:
// "not enough permissions (9)" from real 7.x routers in
// tomaae/homeassistant-mikrotik_router#235 (a read,api user) and
// socialwifi/RouterOS-api#109 (7.19.2)].
var errPermission = &Trap{Message: "not enough permissions (9)"}

// errLogin is the one text for every refused login [3P: BenMenking/
// routeros-api#52]; RouterOS does not tell a wrong password from a user
// without the api policy or outside its address= [I: it logs the cause,
// "login failure for user X from Y via api", and answers the same].
var errLogin = &Trap{Message: "invalid user name or password (6)"}

// remoteIP is the address a connection comes from.
func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// serviceAdmits reports whether the api service accepts a connection from
// addr: enabled, and addr within its address/available-from (empty: any)
// [C: manual ip/service; a refused client is accepted then closed].
func (r *Router) serviceAdmits(addr netip.Addr) bool {
	for _, row := range r.db.t[tService].rows {
		if row.props["name"] != "api" {
			continue
		}
		if row.props["disabled"] == "true" {
			return false
		}
		return allowed(row.props[r.serviceAddressKey()], addr)
	}
	return true
}

// maxSessions is the api service's max-sessions (r.mu held).
func (r *Router) maxSessions() int {
	for _, row := range r.db.t[tService].rows {
		if row.props["name"] == "api" {
			if n, err := strconv.Atoi(row.props["max-sessions"]); err == nil {
				return n
			}
		}
	}
	return r.opts.MaxSessions
}

// userFor returns the policies of user name if it may log in over the API
// from addr with password (nil, "" when not) and why not.
func (r *Router) userFor(name string, check func(password string) bool, addr netip.Addr) (map[string]bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var u *row
	for _, x := range r.db.t[tUser].rows {
		if x.props["name"] == name {
			u = x
			break
		}
	}
	switch {
	case u == nil:
		return nil, "no such user"
	case u.props["disabled"] == "true":
		return nil, "user disabled"
	case !check(u.props["password"]):
		return nil, "wrong password"
	case !allowed(u.props["address"], addr):
		return nil, "address " + addr.String() + " not in the user's address=" + u.props["address"]
	}
	pol := map[string]bool{}
	for _, g := range r.db.t[tUserGroup].rows {
		if g.props["name"] == u.props["group"] {
			for _, p := range strings.Split(g.props["policy"], ",") {
				if p != "" && !strings.HasPrefix(p, "!") {
					pol[p] = true
				}
			}
		}
	}
	if !pol["api"] {
		return nil, "group " + u.props["group"] + " has no api policy"
	}
	return pol, ""
}

// needs is the policy a command needs: write for changes, read otherwise
// [C: manual "User" page, policy descriptions].
func needs(path string) string {
	if path == "/import" {
		return "write"
	}
	_, verb, traps := resolve(path)
	if traps != nil {
		return ""
	}
	if writeVerbs[verb] || verb == "start" || verb == "stop" || verb == "update" || verb == "set" {
		return "write"
	}
	return "read"
}

// connectionRows are /ip/service's dynamic per-connection rows, listed
// from 7.19 on [3P: terraform-routeros/terraform-provider-routeros #896,
// #897, #769: "names are no longer unique"]. Their properties beyond name,
// port and dynamic are [I].
func (r *Router) connectionRows() []*row {
	if r.minor < 19 {
		return nil
	}
	var out []*row
	for s := range r.sessions {
		if !s.loggedIn {
			continue
		}
		out = append(out, &row{id: 0x1000000 + s.connID, dynamic: true, builtin: true, props: map[string]string{
			"name": "api", "port": "8728", "local": s.conn.LocalAddr().String(),
			"remote": netip.AddrPortFrom(s.from, 0).Addr().String()}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// rowsOf returns a table's rows as a print or find sees them (r.mu held):
// the stored rows, plus /ip/service's per-connection rows, or /file's
// listing.
func (r *Router) rowsOf(t tableID) []*row {
	switch t {
	case tService:
		return append(append([]*row(nil), r.db.t[t].rows...), r.connectionRows()...)
	case tFile:
		return r.files.rows()
	case tLog:
		return r.logRows()
	}
	return r.db.t[t].rows
}
