package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// ipv6Rows prints the router's IPv6 filter and address lists through the
// RouterOS API.
func (s *site) ipv6Rows(t *testing.T) []map[string]string {
	t.Helper()
	return s.print(t, "/ipv6/firewall/filter/print", "/ipv6/firewall/address-list/print")
}

// TestIPv6AcrossProcesses: a dual-stack policy written through the API of
// the built control plane reaches the IPv6 tables of a routeros-sim
// process through a rampart-agent process (embedded broker): the IPv6 rule,
// the list's IPv6 prefix, the guards that keep the uplink; deleting the
// group takes every IPv6 row of Rampart's away again.
func TestIPv6AcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	org := randomOrg()
	cp := startControlPlane(t, org, "")
	env := cp.must(200, "GET", "/vpc/sites/site_v6/enrollment?format=env", "", nil)
	s := startSite(t, "site_v6", env)

	var list struct {
		ID string `json:"id"`
	}
	cp.must(201, "POST", "/vpc/prefix-lists", `{"name":"Office","prefixes":[{"cidr":"203.0.113.0/24"},{"cidr":"3fff:0:1::/48"}]}`, &list)
	var g struct {
		ID string `json:"id"`
	}
	cp.must(201, "POST", "/vpc/security-groups", `{"name":"Web","description":"dual stack","rules":[
	  {"direction":"inbound","order":10,"protocol":6,"port":"443","address":"3fff:0:2::/48","description":"HTTPS over IPv6"},
	  {"direction":"inbound","order":20,"protocol":6,"port":"22","address":"`+list.ID+`","description":"SSH from office"}],
	  "sites":["site_v6"]}`, &g)
	gpath := "/vpc/security-groups/" + g.ID
	cp.waitStatus(converge, gpath, "active")

	want := map[string]bool{"in/icmpv6": false, "in/dhcpv6": false, "https6": false, "ssh6": false, "entry6": false, "jump": false}
	for _, row := range s.ipv6Rows(t) {
		c := row["comment"]
		switch {
		case strings.HasPrefix(c, "rampart:in/icmpv6:") && row["protocol"] == "icmpv6":
			want["in/icmpv6"] = true
		case strings.HasPrefix(c, "rampart:in/dhcpv6:") && row["dst-port"] == "546" && row["src-address"] == "fe80::/10":
			want["in/dhcpv6"] = true
		case row["chain"] == "rampart-in" && row["dst-port"] == "443" && row["src-address"] == "3fff:0:2::/48":
			want["https6"] = true
		case row["chain"] == "rampart-in" && row["dst-port"] == "22" && row["src-address-list"] == "rampart-"+list.ID:
			want["ssh6"] = true
		case row["list"] == "rampart-"+list.ID && row["address"] == "3fff:0:1::/48":
			want["entry6"] = true
		case row["chain"] == "input" && row["jump-target"] == "rampart-in":
			want["jump"] = true
		}
	}
	for k, found := range want {
		if !found {
			t.Errorf("no %s in the router's IPv6 firewall: %v", k, s.ipv6Rows(t))
		}
	}

	cp.must(204, "DELETE", gpath, "", nil)
	eventually(t, 2*converge, "IPv6 rules leave "+s.id, func() string {
		n := 0
		for _, row := range s.ipv6Rows(t) {
			if strings.HasPrefix(row["comment"], "rampart:") || strings.HasPrefix(row["chain"], "rampart-") || row["jump-target"] == "rampart-in" {
				n++
			}
		}
		if n > 0 {
			return fmt.Sprintf("%d IPv6 filter rows of Rampart's left", n)
		}
		return ""
	})
}
