// Command rampart-image writes the agent's container image for one platform
// as a tarball RouterOS imports with `/container/add file=` (the `docker
// save` layout), without a Docker engine:
//
//	go run ./cmd/rampart-image --arch arm64 --out rampart-agent-arm64.tar
//
// It builds ./cmd/rampart-agent statically for the platform unless --binary
// names a prebuilt one. See package container.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampart-fw/rampart/container"
)

// systemCABundle is Debian's and Alpine's CA bundle, included by default so
// the agent can verify a TLS broker.
const systemCABundle = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rampart-image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rampart-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o container.Options
	var out string
	caDefault := ""
	if _, err := os.Stat(systemCABundle); err == nil {
		caDefault = systemCABundle
	}
	fs.StringVar(&o.Arch, "arch", "", "platform: arm64, arm (ARMv7) or amd64 (required)")
	fs.StringVar(&out, "out", "", "tarball to write, e.g. rampart-agent-arm64.tar (required)")
	fs.StringVar(&o.Binary, "binary", "", "package this prebuilt static agent binary instead of building ./cmd/rampart-agent")
	fs.StringVar(&o.Version, "version", "dev", "version recorded in the image labels")
	fs.StringVar(&o.Tag, "tag", container.DefaultTag, "image name and tag inside the tarball")
	fs.StringVar(&o.CACerts, "ca-certs", caDefault, "PEM CA bundle to include at "+container.CACertsPath+" (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Arch == "" || out == "" {
		fs.Usage()
		return errors.New("--arch and --out are required")
	}
	o.BuildOutput = stderr
	if err := container.WriteTarballFile(ctx, o, out); err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %.1f MB)\n", out, o.Arch, float64(fi.Size())/1e6)
	return nil
}
