package image_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/agent"
	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/container/image"
	"github.com/rampart-fw/rampart/controlplane/keys"
)

// TestEnvLoadsInAgent feeds the environment enroll prints, on top of the
// image's own, to the agent's config loader: what enroll accepts, the agent
// must accept, with the same meaning.
func TestEnvLoadsInAgent(t *testing.T) {
	k := keys.FromBytes([]byte("0123456789abcdef0123456789abcdef"))
	s := container.ForSite(k, "org_demo", "site_hq", "ssl://rampart.example.net:8883")
	s.WANList = `W"$x;[/x]`
	s.ResyncInterval = 90 * time.Second
	env, err := s.Env()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	cfg := image.Config(container.Platforms["arm64"], "")
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	for _, e := range env {
		vars[e.Key] = e.Value
	}
	c, err := agent.LoadConfig(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatalf("the agent refuses the enrolled environment: %v", err)
	}
	var urls []string
	for _, u := range c.MQTTURLs {
		urls = append(urls, u.String())
	}
	if strings.Join(urls, ",") != s.MQTTURL || c.OrgID != s.OrgID || c.SiteID != s.SiteID || c.SiteSecret != s.SiteSecret ||
		c.RouterOSAddr != "172.17.0.1:8728" || c.RouterOSUser != "rampart-agent" || c.RouterOSPassword != s.RouterOSPassword ||
		c.RouterOSTLS || c.StateDir != "/data" || c.WANList != s.WANList || c.ResyncInterval != 90*time.Second {
		t.Errorf("the agent read the environment as %+v", c)
	}

	// Image defaults alone: the agent must report the site settings missing.
	imageOnly := map[string]string{}
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		imageOnly[k] = v
	}
	if _, err := agent.LoadConfig(func(k string) (string, bool) { v, ok := imageOnly[k]; return v, ok }); err == nil {
		t.Error("the agent accepted the image's environment without site settings")
	}
}
