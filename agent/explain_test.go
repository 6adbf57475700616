package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rampart-fw/rampart/agent/routeros"
	"github.com/rampart-fw/rampart/protocol"
)

// TestExplainNamesTheSetting: every failure the agent classifies, wrapped
// as the apply wraps it, is explained by type with the setting to check.
func TestExplainNamesTheSetting(t *testing.T) {
	a := &Agent{cfg: Config{WANList: "WAN", RouterOSUser: "rampart", RouterOSAddr: "172.17.0.1:8728"}}
	wrap := func(err error) error { return fmt.Errorf("add /ip/firewall/filter: %w", err) }
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"WAN list checked", &wanMissingError{list: "WAN"}, []string{`interface list "WAN" does not exist`, protocol.EnvWANList}},
		{"WAN list trap", wrap(&routeros.Trap{Command: "/ip/firewall/filter/add", Message: "input does not match any value of in-interface-list", Category: "1"}), []string{`interface list "WAN" does not exist`, protocol.EnvWANList}},
		{"login", &routeros.LoginError{Addr: "172.17.0.1:8728", User: "rampart", Message: "invalid user name or password (6)"}, []string{"refused the login", protocol.EnvRouterOSUser, protocol.EnvRouterOSPassword}},
		{"permission", wrap(&routeros.Trap{Message: "not enough permissions (9)"}), []string{"lacks permissions", "write", protocol.EnvRouterOSUser}},
		{"unreachable", &routeros.ConnError{Addr: "172.17.0.1:8728", Op: "connect", Err: errors.New("connection refused")}, []string{"cannot reach the RouterOS API", protocol.EnvRouterOSAddr}},
		{"other trap", wrap(&routeros.Trap{Message: "failure: simulated"}), []string{"failure: simulated"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := a.explain(tc.err)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("explain(%v) = %q, lacks %q", tc.err, got, w)
				}
			}
		})
	}
}
