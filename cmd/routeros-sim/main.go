// Command routeros-sim serves a simulated RouterOS 7 router (package rossim)
// on the binary API until it is killed.
//
// With --files DIR as the router's files and --console as its terminal, it
// walks the onboarding of README "Deploy on a router" on this machine:
//
//	rampart-controlplane --data-dir ./data &
//	mkdir files
//	rampart-controlplane enroll --data-dir ./data --org org_demo --site site_hq --rsc \
//	    --routeros-version 7.21 --agent-mqtt-url tcp://127.0.0.1:1883 --api-allow 127.0.0.1/32 > files/rampart.rsc
//	rampart-image --arch arm64 --out files/rampart-agent-arm64.tar   # the simulator does not read it
//	routeros-sim --ros-version 7.21 --files files --console
//	[admin@MikroTik] > /import file-name=rampart.rsc
//	[admin@MikroTik] > /container/print
//	[admin@MikroTik] > /log/print
//
// The script creates the veth, the agent's user and group, the container's
// envs and mounts, and starts the container: its agent runs in this
// process with exactly that environment, reaches the router's API at the
// veth gateway (172.17.0.1:8728, mapped to a loopback listener whose
// sessions the router sees from the veth's address) and the broker at its
// RAMPART_MQTT_URL (or --container-broker-url). /import file-name= also
// works over the API from any client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampart-fw/rampart/internal/buildinfo"
	"github.com/rampart-fw/rampart/internal/simagent"
	"github.com/rampart-fw/rampart/rossim"
)

func main() {
	if buildinfo.VersionRequested(os.Args[1:]) {
		fmt.Println(buildinfo.Line("routeros-sim"))
		return
	}
	if err := Main(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "routeros-sim:", err)
		os.Exit(1)
	}
}

// Main parses args, serves until ctx ends or a signal arrives.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("routeros-sim", flag.ContinueOnError)
	var o rossim.Options
	listen := fs.String("listen", "127.0.0.1:8728", "address of the API service")
	fs.StringVar(&o.User, "user", "admin", "API user name")
	fs.StringVar(&o.Password, "password", "", "API password")
	fs.StringVar(&o.ROSVersion, "ros-version", rossim.DefaultROSVersion, "RouterOS version to emulate: menus and names per version (7.20 to 7.24 modelled), !empty from 7.18")
	fs.StringVar(&o.Board, "board", "RB5009UG+S+", "board-name in /system/resource")
	fs.StringVar(&o.Architecture, "architecture", "arm64", "architecture-name in /system/resource")
	fs.StringVar(&o.Identity, "identity", "MikroTik", "/system/identity name")
	fs.DurationVar(&o.Latency, "latency", 0, "delay before every reply")
	fs.DurationVar(&o.WriteServiceTime, "write-service-time", 0, "time each write takes (writes are serialised router-wide)")
	fs.IntVar(&o.MaxSessions, "max-sessions", 20, "maximum concurrent API sessions")
	fs.BoolVar(&o.LegacyLogin, "legacy-login", false, "answer /login with a challenge (pre-6.43 login)")
	fs.IntVar(&o.HistoryLimit, "history-limit", -1, "firewall states kept for History (-1: none, 0: all)")
	fs.StringVar(&o.FilesDir, "files", "", "directory holding the router's files (/file, /import file-name=, container tarballs and mounts); empty: a temporary one")
	brokerURL := fs.String("container-broker-url", "", "broker URL the container's agent uses instead of its RAMPART_MQTT_URL (empty: keep it)")
	console := fs.Bool("console", false, "read scripts from standard input, as the router's terminal: paste the enrollment script or type /import file-name=...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// A started container runs the real agent in this process.
	o.ContainerRunner = simagent.Runner(simagent.Options{BrokerURL: *brokerURL})
	o.Logger = slog.New(slog.NewJSONHandler(stderr, nil))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	r := rossim.New(o)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- r.Serve(ln) }()
	o.Logger.Info("routeros-sim serving", "addr", ln.Addr().String(), "ros_version", o.ROSVersion, "user", o.User, "files", o.FilesDir)
	if *console {
		go runConsole(ctx, r, stdin, stdout, o.User, o.Identity)
	}
	select {
	case <-ctx.Done():
		r.Close()
		return nil
	case err := <-errc:
		r.Close()
		if errors.Is(err, rossim.ErrClosed) {
			return nil
		}
		return err
	}
}
