package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/keys"
)

// runToken prints one embedded-mode bearer token. It reads (or creates) the
// key file beside the database, never the database, so it works while the
// server runs on the same data directory.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subcommandFlags("token", stderr, "")
	dataDir := fs.String("data-dir", DefaultDataDir, "data directory of the control plane (holds rampart.key)")
	org := fs.String("org", "", "organisation the token is for (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token")
	claim := fs.String("jwt-org-claim", "org_id", "claim that names the organisation")
	if err := parseFlags(fs, args, os.Getenv); err != nil {
		return err
	}
	if *org == "" {
		return fmt.Errorf("token: --org is required")
	}
	k, err := keys.LoadOrCreate(*dataDir)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok, err := auth.Mint(auth.MintOptions{Key: k.JWTSigningKey(), Org: *org, OrgClaim: *claim, TTL: *ttl})
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
