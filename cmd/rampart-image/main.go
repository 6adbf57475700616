// Command rampart-image writes the agent's container image for one platform
// as a tarball RouterOS imports with `/container/add file=` (the `docker
// save` layout), without a Docker engine:
//
//	go run ./cmd/rampart-image --arch arm64 --out rampart-agent-arm64.tar
//
// It builds ./cmd/rampart-agent statically for the platform unless --binary
// names a prebuilt one, and stamps its version into the agent (what the
// agent reports in its status): --agent-version, by default what
// `rampart-image --version` prints. See package container/image.
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

	"github.com/rampart-fw/rampart/container/image"
	"github.com/rampart-fw/rampart/internal/buildinfo"
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
	var o image.Options
	var out string
	caDefault := ""
	if _, err := os.Stat(systemCABundle); err == nil {
		caDefault = systemCABundle
	}
	fs.StringVar(&o.Arch, "arch", "", "platform: arm64, arm (ARMv7) or amd64 (required)")
	fs.StringVar(&out, "out", "", "tarball to write, e.g. rampart-agent-arm64.tar (required)")
	fs.StringVar(&o.Binary, "binary", "", "package this prebuilt static agent binary instead of building ./cmd/rampart-agent")
	fs.StringVar(&o.Version, "agent-version", "", "version stamped into the agent and the image labels (default: what --version prints)")
	version := fs.Bool("version", false, "print the version it stamps into the agent, and exit")
	fs.StringVar(&o.Tag, "tag", image.DefaultTag, "image name and tag inside the tarball")
	fs.StringVar(&o.CACerts, "ca-certs", caDefault, "PEM CA bundle to include at "+image.CACertsPath+" (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		_, err := fmt.Fprintln(stdout, buildinfo.LineOf("rampart-image", image.SourceVersion(ctx, ".")))
		return err
	}
	if o.Version == "" {
		o.Version = image.SourceVersion(ctx, ".")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Arch == "" || out == "" {
		fs.Usage()
		return errors.New("--arch and --out are required")
	}
	o.BuildOutput = stderr
	if err := image.WriteTarballFile(ctx, o, out); err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s, agent %s, %.1f MB)\n", out, o.Arch, o.Version, float64(fi.Size())/1e6)
	return nil
}
