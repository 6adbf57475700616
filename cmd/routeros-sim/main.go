// Command routeros-sim serves a simulated RouterOS 7 router (package rossim)
// on the binary API until it is killed.
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
	fs.StringVar(&o.ROSVersion, "ros-version", rossim.DefaultROSVersion, "RouterOS version to emulate (!empty from 7.18)")
	fs.StringVar(&o.Board, "board", "RB5009UG+S+", "board-name in /system/resource")
	fs.StringVar(&o.Architecture, "architecture", "arm64", "architecture-name in /system/resource")
	fs.StringVar(&o.Identity, "identity", "MikroTik", "/system/identity name")
	fs.DurationVar(&o.Latency, "latency", 0, "delay before every reply")
	fs.DurationVar(&o.WriteServiceTime, "write-service-time", 0, "time each write takes (writes are serialised router-wide)")
	fs.IntVar(&o.MaxSessions, "max-sessions", 20, "maximum concurrent API sessions")
	fs.BoolVar(&o.LegacyLogin, "legacy-login", false, "answer /login with a challenge (pre-6.43 login)")
	fs.IntVar(&o.HistoryLimit, "history-limit", -1, "firewall states kept for History (-1: none, 0: all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
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
	o.Logger.Info("routeros-sim serving", "addr", ln.Addr().String(), "ros_version", o.ROSVersion, "user", o.User)
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
