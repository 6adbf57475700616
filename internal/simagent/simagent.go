// Package simagent runs the real Rampart agent (package agent, in-process)
// as the container of a simulated router (package rossim): it is a
// rossim.ContainerRunner. The agent gets exactly the environment the
// router's /container/envs lists give the container, read by the agent's
// own configuration loader, with these addresses mapped from the
// container's view to this host's:
//
//   - RAMPART_ROUTEROS_ADDR (default 172.17.0.1:8728): the veth gateway's
//     API port becomes the router's per-container loopback listener, whose
//     sessions the router sees as coming from the veth's address
//     (rossim.Container.RouterAddr). Any other address is left alone, and
//     fails as it would on the router.
//   - RAMPART_MQTT_URL: replaced by Options.BrokerURL when set (the test's
//     broker), else left alone.
//   - RAMPART_STATE_DIR (default /var/lib/rampart-agent): the container
//     path becomes the host directory of the mount that holds it, or a
//     directory under the container's root-dir.
//   - RAMPART_METRICS_ADDR: the container's own listener binds
//     127.0.0.1:0, so several simulated routers share one host.
//
// rossim does not import the agent; this package is the bridge, wired in
// by tests and cmd/routeros-sim.
package simagent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rampart-fw/rampart/agent"
	"github.com/rampart-fw/rampart/protocol"
	"github.com/rampart-fw/rampart/rossim"
)

// Options configure the runner.
type Options struct {
	// BrokerURL replaces the container's RAMPART_MQTT_URL; empty keeps it.
	BrokerURL string
	// Agent are the agent's in-process options (timeouts, registry); its
	// Logger is replaced by one that writes JSON to the container's log.
	Agent agent.Options
	// Started, if set, receives each agent's configuration once it starts.
	Started func(rossim.Container, agent.Config)
}

// Runner returns a rossim.ContainerRunner that runs the real agent.
func Runner(o Options) rossim.ContainerRunner {
	return func(ctx context.Context, c rossim.Container) (func(), error) {
		env := Env(c, o.BrokerURL)
		cfg, err := agent.LoadConfig(func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
		if err != nil {
			// The agent would print this and exit: the container stops.
			fmt.Fprintf(c.Log, "rampart-agent: %v\n", err)
			return nil, fmt.Errorf("start agent: %w", err)
		}
		ao := o.Agent
		ao.Logger = slog.New(slog.NewJSONHandler(c.Log, nil))
		a, err := agent.New(cfg, ao)
		if err != nil {
			fmt.Fprintf(c.Log, "rampart-agent: start agent: %v\n", err)
			return nil, fmt.Errorf("start agent: %w", err)
		}
		if o.Started != nil {
			o.Started(c, cfg)
		}
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := a.Run(ctx); err != nil {
				ao.Logger.Error("agent stopped", "err", err)
			}
		}()
		var once sync.Once
		return func() {
			once.Do(func() {
				cancel()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					fmt.Fprintln(c.Log, "rampart-agent: did not stop within 10 s")
				}
			})
		}, nil
	}
}

// Env is the container's environment with its addresses mapped to this
// host (see the package doc).
func Env(c rossim.Container, brokerURL string) map[string]string {
	env := make(map[string]string, len(c.Env)+2)
	for k, v := range c.Env {
		env[k] = v
	}
	addr := env[protocol.EnvRouterOSAddr]
	if addr == "" {
		addr = agent.DefaultRouterOSAddr
		if env[protocol.EnvRouterOSTLS] == "true" {
			addr = agent.DefaultRouterOSTLSAddr
		}
	}
	if mapped, ok := c.RouterAddr(addr); ok {
		env[protocol.EnvRouterOSAddr] = mapped
	}
	if brokerURL != "" {
		env[protocol.EnvMQTTURL] = brokerURL
	}
	dir, ok := env[protocol.EnvStateDir]
	if !ok {
		dir = agent.DefaultStateDir
	}
	env[protocol.EnvStateDir] = c.HostPath(dir)
	env[protocol.EnvMetricsAddr] = "127.0.0.1:0"
	return env
}
