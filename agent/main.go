package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
)

// envHelp is printed when the agent cannot start for want of configuration.
var envHelp = strings.TrimSpace(`
rampart-agent is configured only through its environment:
  RAMPART_MQTT_URL           broker URL, e.g. ssl://broker:8883 or tcp://broker:1883;
                             several, comma-separated, for a clustered broker (required)
  RAMPART_MQTT_CA            PEM file of a CA to trust for ssl:// besides the system's
  RAMPART_ORG_ID             organisation id (required)
  RAMPART_SITE_ID            site id, e.g. site_hq (required)
  RAMPART_SITE_SECRET        the site's MQTT secret (required)
  RAMPART_ROUTEROS_USER      RouterOS API user (required)
  RAMPART_ROUTEROS_PASSWORD  its password (may be empty)
  RAMPART_ROUTEROS_ADDR      RouterOS API address (default 172.17.0.1:8728, 172.17.0.1:8729 with TLS)
  RAMPART_ROUTEROS_TLS       true to use api-ssl (default false)
  RAMPART_STATE_DIR          directory of the agent's cache (default /var/lib/rampart-agent)
  RAMPART_METRICS_ADDR       /metrics and /healthz listener (default :9273; empty disables)
  RAMPART_RESYNC_INTERVAL    how often the firewall is re-read to repair drift (default 60s)
  RAMPART_WAN_LIST           interface list that faces the Internet (default WAN)`)

// defaultMemoryLimit is the Go heap's soft limit unless GOMEMLIMIT is set.
// It is the smallest that keeps a small change within its 10 ms of agent
// time on a router of 250 rules and 10,000 entries, on a quiet machine: the
// limit counts the runtime's own ~7 MB (metadata, fragmentation, stacks)
// besides the ~4 MB live heap, so under 14 MiB the collector still ran
// about 1.5 times per address-list change (11 ms), under 16 MiB about 0.8
// times (9 ms). The price is the peak during the first apply of 10,000
// entries (VmHWM ~23 MB); the steady state stays at ~17 MB, within the
// 20 MiB target (TestAgentRSS; BENCHMARKS.md, "Agent: receiving a
// document").
const defaultMemoryLimit = 16 << 20

// Main is the whole program behind cmd/rampart-agent, testable: it reads the
// configuration through lookup, runs the agent until ctx ends and returns the
// process exit code (0 on a clean stop, 1 on a runtime failure, 2 on bad
// configuration or arguments).
func Main(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "rampart-agent takes no arguments (got %q).\n%s\n", args, envHelp)
		return 2
	}
	cfg, err := LoadConfig(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "rampart-agent: %v\n\n%s\n", err, envHelp)
		return 2
	}
	if _, set := lookup("GOMEMLIMIT"); !set {
		// The agent shares a router's little RAM with RouterOS: keep the
		// heap near its live size instead of letting it double between
		// collections. GOMEMLIMIT overrides this.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	logger := slog.New(slog.NewJSONHandler(stdout, nil))
	a, err := New(cfg, Options{Logger: logger})
	if err != nil {
		logger.Error("start agent", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		logger.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}
