package protocol_test

import (
	"testing"

	"github.com/rampart-fw/rampart/protocol"
)

func TestSiteMQTTUser(t *testing.T) {
	u := protocol.SiteMQTTUser("org_demo", "site_hq")
	if u != "org_demo/site_hq" {
		t.Errorf("SiteMQTTUser = %q, want org_demo/site_hq", u)
	}
	if org, site, ok := protocol.ParseSiteMQTTUser(u); !ok || org != "org_demo" || site != "site_hq" {
		t.Errorf("ParseSiteMQTTUser(%q) = %q, %q, %v", u, org, site, ok)
	}
	for _, bad := range []string{"", "rampart-controlplane", "org_demo", "org_demo/", "/site_hq", "org_demo/hq", "org/demo/site_hq", "org_demo/site_hq/x", "org+/site_hq", "org_demo/site_#"} {
		if org, site, ok := protocol.ParseSiteMQTTUser(bad); ok || org != "" || site != "" {
			t.Errorf("ParseSiteMQTTUser(%q) = %q, %q, %v; want not ok", bad, org, site, ok)
		}
	}
}
