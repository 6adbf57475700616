package main

// --demo N: N simulated routers (package rossim) with the real agent each,
// in this process, on the control plane's broker (package fleet), and the
// commands a newcomer pastes to watch a group go from syncing to active and
// read the rules on a router.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/console"
	"github.com/rampart-fw/rampart/internal/fleet"
	"github.com/rampart-fw/rampart/rossim"
)

// demoStdout receives the demo's instructions (tests replace it).
var demoStdout io.Writer = os.Stdout

// DemoOrg is the organisation of the demo sites, site_demo1 to site_demoN.
const DemoOrg = fleet.DefaultOrg

// maxDemo bounds --demo: each simulated router costs about five file
// descriptors.
const maxDemo = 1000

type demo struct {
	fleet *fleet.Fleet
	srv   *http.Server
	done  chan struct{}
}

// startDemo starts --demo N simulated routers with their agents on the
// control plane's broker (m.MQTT.AgentURL), serves their firewalls as text
// and prints how to try it. It runs after the MQTT side.
func (m *Main) startDemo(ctx context.Context) (func(), error) {
	n := m.Config.Demo
	url := m.MQTT.AgentURL
	d := &demo{}
	var err error
	d.fleet, err = fleet.Start(ctx, fleet.Options{
		N: n, Org: DemoOrg, BrokerURL: url, Key: m.Key,
		DataDir: m.Config.DataDir + "/demo-agents",
		// Drift is repaired within seconds, so a newcomer who changes a
		// simulated router by hand sees the agent put it back.
		ResyncInterval: 10 * time.Second,
		Logger:         m.Logger.With("demo", true),
	})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	stop := func() {
		if d.srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			d.srv.Shutdown(sctx)
			cancel()
			<-d.done
		}
		if err := d.fleet.Close(); err != nil {
			m.Logger.Warn("demo fleet stopped", "err", err)
		}
	}
	routersURL, err := d.serveRouters(m)
	if err != nil {
		stop()
		return nil, err
	}
	tok, err := auth.Mint(auth.MintOptions{Key: m.Key.JWTSigningKey(), Org: DemoOrg, OrgClaim: m.Config.JWTOrgClaim, TTL: 24 * time.Hour})
	if err != nil {
		stop()
		return nil, fmt.Errorf("demo: mint token: %w", err)
	}
	scheme := "http://"
	if m.TLS != nil {
		scheme = "https://"
	}
	api := scheme + hostPort(m.Addr)
	consoleURL := api + "/"
	if m.Config.JWKSURL == "" {
		if consoleURL, err = console.LoginURL(console.LinkOptions{JWTKey: m.Key.JWTSigningKey(), Org: DemoOrg, BaseURL: api, TTL: demoLinkTTL}); err != nil {
			stop()
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	fmt.Fprint(demoStdout, demoInstructions(api, consoleURL, routersURL, url, tok, d.fleet, m.Config.JWKSURL != ""))
	m.Logger.Info("demo started", "sites", n, "org", DemoOrg, "mqtt_url", url, "routers", routersURL)
	return stop, nil
}

func loopbackIfAny(host string) string {
	if anyHost(host) {
		return "127.0.0.1"
	}
	return host
}

// anyHost says whether a listen address's host means every interface ("",
// 0.0.0.0, ::), which a client cannot dial: an address to hand out needs
// a name in its place.
func anyHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

func hostPort(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	return net.JoinHostPort(loopbackIfAny(host), port)
}

// demoGroup is the create page's example with the office as a CIDR, so one
// paste is enough.
func demoGroup(sites []string) string {
	ss, _ := json.Marshal(sites)
	return `{"name": "Web Application Servers",
  "description": "Allows HTTP/S from the world and SSH from the office.",
  "rules": [
    {"direction": "inbound", "order": 10, "protocol": 6, "port": "443", "address": "0.0.0.0/0", "description": "Allow HTTPS"},
    {"direction": "inbound", "order": 20, "protocol": 6, "port": "80", "address": "0.0.0.0/0", "description": "Allow HTTP"},
    {"direction": "inbound", "order": 30, "protocol": 6, "port": "22", "address": "203.0.113.0/24", "description": "Allow SSH from Office"}],
  "sites": ` + string(ss) + `}`
}

// demoLinkTTL is how long the demo's console link can be opened: longer
// than login-url's default, since a newcomer reads the output first.
const demoLinkTTL = 30 * time.Minute

func demoInstructions(api, consoleURL, routers, mqttURL, token string, f *fleet.Fleet, jwks bool) string {
	var b strings.Builder
	ids := f.SiteIDs()
	user, pass := f.RouterCredentials()
	fmt.Fprintf(&b, "\nRampart demo: %d simulated routers (%s..%s, organisation %s), each with the real agent, connected to %s.\n\n",
		len(ids), ids[0], ids[len(ids)-1], DemoOrg, mqttURL)
	if jwks {
		b.WriteString("Note: --jwks-url is set, so the API accepts only that issuer's tokens, not the one below.\n\n")
	}
	if jwks {
		fmt.Fprintf(&b, "Console: %s (log in with a token of your identity provider).\n\n", consoleURL)
	} else {
		fmt.Fprintf(&b, "Console: open this one-time link in a browser (logs in once, within %s; `rampart-controlplane login-url --org %s` makes another):\n\n    %s\n\n",
			demoLinkTTL, DemoOrg, consoleURL)
	}
	fmt.Fprintf(&b, "Or with curl:\n\n1. A bearer token for %s (24 hours):\n\n    export TOKEN=%s\n\n", DemoOrg, token)
	fmt.Fprintf(&b, "2. Attach the create page's security group to the demo sites:\n\n"+
		"    curl -s %s/vpc/security-groups -H \"Authorization: Bearer $TOKEN\" -H \"Content-Type: application/json\" --data '%s'\n\n",
		api, demoGroup(ids))
	fmt.Fprintf(&b, "   It answers 201 with \"status\":\"syncing\". Watch it turn \"active\" once every router applied it:\n\n"+
		"    curl -s %s/vpc/security-groups -H \"Authorization: Bearer $TOKEN\"\n\n", api)
	fmt.Fprintf(&b, "3. Each site as the control plane sees it (online, revisions, in_sync):\n\n"+
		"    curl -s %s/vpc/sites -H \"Authorization: Bearer $TOKEN\"\n\n", api)
	fmt.Fprintf(&b, "4. The firewall of a simulated router, as RouterOS prints it:\n\n    curl -s %s/%s\n\n", routers, ids[0])
	fmt.Fprintf(&b, "   The routers' RouterOS API (user %s, password %s), for any RouterOS API client:\n", user, pass)
	for i, id := range ids {
		if i == 10 {
			fmt.Fprintf(&b, "     ... and %d more: %s\n", len(ids)-10, routers)
			break
		}
		fmt.Fprintf(&b, "     %-14s %s\n", id, f.Router(i).Addr())
	}
	b.WriteString("\n")
	return b.String()
}

// serveRouters serves each simulated router's firewall as text, on the
// API's port + 1 when free (a stable address for the README), else any port.
func (d *demo) serveRouters(m *Main) (string, error) {
	var ln net.Listener
	var err error
	if _, port, _ := net.SplitHostPort(m.Addr.String()); port != "" {
		if p, _ := strconv.Atoi(port); p > 0 && p < 65535 && !strings.HasSuffix(m.Config.HTTPAddr, ":0") {
			ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		}
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return "", fmt.Errorf("demo: listen for the routers page: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /routers/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		user, pass := d.fleet.RouterCredentials()
		fmt.Fprintf(w, "# site, RouterOS API address (user %s, password %s)\n", user, pass)
		for i, id := range d.fleet.SiteIDs() {
			fmt.Fprintf(w, "%s %s\n", id, d.fleet.Router(i).Addr())
		}
	})
	mux.HandleFunc("GET /routers/{site}", func(w http.ResponseWriter, r *http.Request) {
		i := slices.Index(d.fleet.SiteIDs(), r.PathValue("site"))
		if i < 0 {
			http.Error(w, fmt.Sprintf("no demo router %q; see %s", r.PathValue("site"), "/routers/"), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		writeFirewall(w, d.fleet.Site(i))
	})
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	d.done = make(chan struct{})
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("demo routers page", "err", err)
		}
	}()
	return "http://" + ln.Addr().String() + "/routers", nil
}

// writeFirewall prints the agent's last status, then a router's filter rules
// and address lists, IPv4 then IPv6, the way /ip/firewall/filter/print
// detail does (numbered, one row each, the properties a person reads first).
func writeFirewall(w io.Writer, s *fleet.Site) {
	fw := s.Router.Snapshot()
	st := s.Status()
	fmt.Fprintf(w, "# %s: agent status %q, revision %d, %d rules, %d address-list entries\n",
		s.ID, st.State, st.Revision, st.Rules, st.AddressEntries)
	if st.Error != "" {
		fmt.Fprintf(w, "# error: %s\n", st.Error)
	}
	writeTable(w, "/ip", fw.Filter, fw.AddressList)
	writeTable(w, "/ipv6", fw.Filter6, fw.AddressList6)
}

// writeTable prints one family's filter rules and address lists.
func writeTable(w io.Writer, menu string, filter, lists []rossim.Item) {
	fmt.Fprintln(w, menu+" firewall filter")
	n := 0
	for _, row := range filter {
		if row["dynamic"] == "true" {
			continue // the dummy rule RouterOS shows first
		}
		fmt.Fprintf(w, "%2d %s\n", n, formatRow(row, "chain", "action"))
		n++
	}
	fmt.Fprintln(w, menu+" firewall address-list")
	for i, row := range lists {
		fmt.Fprintf(w, "%2d %s\n", i, formatRow(row, "list", "address"))
	}
}

// formatRow prints first the given keys, then every other property the row
// sets, sorted, with the comment last, as RouterOS's print does: a matcher
// the page did not know about must still show, or a reader would misjudge
// what the rule matches. Read-only counters and flags at their defaults are
// left out.
func formatRow(row rossim.Item, first ...string) string {
	skip := map[string]bool{".id": true, "bytes": true, "packets": true, "dynamic": true, "invalid": true, "comment": true}
	var rest []string
	for k := range row {
		if !skip[k] && !slices.Contains(first, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	var parts []string
	for _, k := range append(append(first, rest...), "comment") {
		v, ok := row[k]
		if !ok || v == "" || ((k == "disabled" || k == "log") && v == "false") {
			continue
		}
		if strings.ContainsAny(v, " \"") {
			v = strconv.Quote(v)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}
