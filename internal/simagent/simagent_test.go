package simagent

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/rossim"
)

// TestEnv: the container's addresses map to this host's, everything else
// is the script's environment unchanged.
func TestEnv(t *testing.T) {
	c := rossim.Container{
		Env:     map[string]string{"RAMPART_MQTT_URL": "tcp://rampart.example.net:1883", "RAMPART_STATE_DIR": "/data/cache", "RAMPART_SITE_ID": "site_a"},
		Mounts:  []rossim.Mount{{Src: "/host/files/agent/data", RouterSrc: "agent/data", Dst: "/data"}},
		RootDir: "/host/files/agent/root",
		Address: netip.MustParsePrefix("172.17.0.2/24"), Gateway: netip.MustParseAddr("172.17.0.1"),
		APIAddr: "127.0.0.1:40001",
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		broker string
		want   map[string]string
	}{
		{"defaults", nil, "tcp://127.0.0.1:1883", map[string]string{
			"RAMPART_MQTT_URL": "tcp://127.0.0.1:1883", "RAMPART_SITE_ID": "site_a",
			"RAMPART_ROUTEROS_ADDR": "127.0.0.1:40001", "RAMPART_STATE_DIR": filepath.Join("/host/files/agent/data", "cache"),
			"RAMPART_METRICS_ADDR": "127.0.0.1:0"}},
		{"an address outside the veth is left alone, as is the broker without a mapping",
			map[string]string{"RAMPART_ROUTEROS_ADDR": "192.0.2.1:8728", "RAMPART_STATE_DIR": "/var/lib/x"}, "", map[string]string{
				"RAMPART_MQTT_URL": "tcp://rampart.example.net:1883", "RAMPART_SITE_ID": "site_a",
				"RAMPART_ROUTEROS_ADDR": "192.0.2.1:8728", "RAMPART_STATE_DIR": filepath.Join("/host/files/agent/root", "var/lib/x"),
				"RAMPART_METRICS_ADDR": "127.0.0.1:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := c
			cc.Env = map[string]string{}
			for k, v := range c.Env {
				cc.Env[k] = v
			}
			for k, v := range tc.env {
				cc.Env[k] = v
			}
			if d := cmp.Diff(tc.want, Env(cc, tc.broker)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
