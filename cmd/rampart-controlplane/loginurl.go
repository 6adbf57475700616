package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/rampart-fw/rampart/controlplane/console"
	"github.com/rampart-fw/rampart/controlplane/keys"
)

// runLoginURL prints a one-time link that opens the console logged in to
// an organisation. Like token, it reads only the key file beside the
// database, so it works while the server runs; unlike token, it refuses a
// data directory the control plane never started on, since no server
// could redeem the link.
func runLoginURL(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subcommandFlags("login-url", stderr, "")
	dataDir := fs.String("data-dir", DefaultDataDir, "data directory of the control plane (holds rampart.key)")
	org := fs.String("org", "", "organisation to log in to (required)")
	ttl := fs.Duration("ttl", console.DefaultLinkTTL, fmt.Sprintf("how long the link can be opened (at most %s); it logs in once", console.MaxLinkTTL))
	httpAddr := fs.String("http-addr", ":8080", "the control plane's --http-addr, to build the link from")
	tlsCert := fs.String("tls-cert", "", "the control plane's --tls-cert; when set the link is https://")
	base := fs.String("url", "", "the console's address as the browser reaches it (default: http[s]://localhost and the --http-addr port)")
	if err := parseFlags(fs, args, os.Getenv); err != nil {
		return err
	}
	if *org == "" {
		return fmt.Errorf("login-url: --org is required")
	}
	k, err := keys.Load(*dataDir)
	if err != nil {
		return fmt.Errorf("login-url: %w (has the control plane started on --data-dir %s?)", err, *dataDir)
	}
	u := *base
	if u == "" {
		host, port, err := net.SplitHostPort(*httpAddr)
		if err != nil {
			return fmt.Errorf("login-url: parse --http-addr %q: %w", *httpAddr, err)
		}
		if anyHost(host) {
			host = "localhost"
		}
		scheme := "http"
		if *tlsCert != "" {
			scheme = "https"
		}
		u = scheme + "://" + net.JoinHostPort(host, port)
	}
	link, err := console.LoginURL(console.LinkOptions{JWTKey: k.JWTSigningKey(), Org: *org, BaseURL: u, TTL: *ttl})
	if err != nil {
		return fmt.Errorf("login-url: %w", err)
	}
	_, err = fmt.Fprintln(stdout, link)
	return err
}
