package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rampart-fw/rampart/controlplane/keys"
)

// TestLoginURL: the link's address follows the server's flags (and their
// RAMPART_ variables), and bad input says what was wrong.
func TestLoginURL(t *testing.T) {
	dir := t.TempDir()
	if _, err := keys.LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		args       []string
		env        map[string]string
		wantPrefix string
		wantErr    string
	}{
		{name: "defaults", args: []string{"--org", "org_a"}, wantPrefix: "http://localhost:8080/#login=ey"},
		{name: "the server's --http-addr", args: []string{"--org", "org_a", "--http-addr", "10.0.0.5:9000"}, wantPrefix: "http://10.0.0.5:9000/#login=ey"},
		{name: "RAMPART_HTTP_ADDR", args: []string{"--org", "org_a"}, env: map[string]string{"RAMPART_HTTP_ADDR": "0.0.0.0:8443", "RAMPART_TLS_CERT": "/etc/rampart/cert.pem"},
			wantPrefix: "https://localhost:8443/#login=ey"},
		{name: "--url wins", args: []string{"--org", "org_a", "--url", "https://rampart.example.com/", "--tls-cert", "x"}, wantPrefix: "https://rampart.example.com/#login=ey"},
		{name: "no --org", args: nil, wantErr: "--org is required"},
		{name: "a bad organisation", args: []string{"--org", "org/a"}, wantErr: "not a valid organisation id"},
		{name: "too long a lifetime", args: []string{"--org", "org_a", "--ttl", "2h"}, wantErr: "lifetime 2h0m0s is outside"},
		{name: "not a URL", args: []string{"--org", "org_a", "--url", "rampart.example.com"}, wantErr: "not an http:// or https:// URL"},
		{name: "a data directory never started", args: []string{"--org", "org_a", "--data-dir", t.TempDir()}, wantErr: "has the control plane started"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			args := append([]string{"login-url", "--data-dir", dir}, c.args...)
			err := run(context.Background(), args, &out, &errOut)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v; want one saying %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := out.String(); !strings.HasPrefix(got, c.wantPrefix) || strings.Count(got, "\n") != 1 {
				t.Errorf("printed %q; want one line starting %q", got, c.wantPrefix)
			}
		})
	}
}
