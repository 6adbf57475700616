// Command rampart-agent keeps a MikroTik router's firewall equal to its site's
// desired state. It runs as a RouterOS container and is configured only
// through its environment (see package agent for the variables); it takes no
// flags, except --version.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampart-fw/rampart/agent"
	"github.com/rampart-fw/rampart/internal/buildinfo"
)

func main() {
	if buildinfo.VersionRequested(os.Args[1:]) {
		fmt.Println(buildinfo.Line("rampart-agent"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agent.Main(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
