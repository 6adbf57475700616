// Package image builds the Rampart agent's container image and writes it as
// the tarball RouterOS's `/container/add file=` loads.
//
// Build compiles ./cmd/rampart-agent statically for one platform (or takes a
// prebuilt binary), stamps its version (Options.Version, -ldflags -X into
// internal/buildinfo), and wraps it in a one-layer image on an empty base;
// WriteTarball writes it in the `docker save` layout. One platform per file:
// RouterOS cannot load a multi-platform archive (routeros.md section 4,
// "Images"). No Docker engine is involved; the repository's Dockerfile
// builds the same image where Docker exists, and the two are kept equal
// (entrypoint, user, env, volume: see Config; TestDockerfileMatchesImage).
//
// The layer is a single uncompressed tar and the archive carries both the
// manifest.json of current `docker save` and the legacy per-layer
// directories (`<id>/layer.tar`, `<id>/json`, `VERSION`, `repositories`) of
// Docker's v1 save format. RouterOS's loader is known to reject some archives
// that other tools accept; the reported working recipe is a single
// uncompressed layer in the Docker v1 layout (routeros.md section 4 citing
// tikoci's OCI image notes and tangentsoft's "Container Limitations"), so the
// archive is built to that recipe while staying loadable by `docker load` and
// `podman load`.
//
// This package links go-containerregistry; the enrollment side (package
// container) must not, so that the control plane's API stays free of it
// (internal/deps checks).
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/legacy/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/internal/buildinfo"
)

// What the image contains and how it runs. The Dockerfile at the root of the
// repository repeats these values; change both together.
const (
	// AgentPackage is the Go package built into the image.
	AgentPackage = "github.com/rampart-fw/rampart/cmd/rampart-agent"
	// Entrypoint is where the agent binary sits in the image.
	Entrypoint = "/rampart-agent"
	// User is the image's default user: an unprivileged uid/gid that
	// owns /data in the image. Runtimes that create volumes from the image's
	// directory (Docker, podman) keep that ownership. RouterOS creates mount
	// sources owned by root and has no chown, so Script runs the container as
	// root when it mounts /data (see container.ScriptOptions.NoDataMount).
	User = "65532:65532"
	// CACertsPath is where a CA bundle is placed when Options.CACerts is set:
	// the first path Go's crypto/x509 reads on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultTag names the image in the tarball when Options.Tag is empty.
	DefaultTag = "rampart-agent:latest"
)

const imageUID, imageGID = 65532, 65532

// Env is the environment the image sets. Only values that hold for
// every router go here; the per-site settings come from the RouterOS
// environment list that Script creates. RAMPART_ROUTEROS_ADDR is the veth
// gateway Script sets up by default.
var Env = []string{
	"RAMPART_STATE_DIR=" + container.StateDir,
	"RAMPART_ROUTEROS_ADDR=" + container.DefaultGateway + ":8728",
	"RAMPART_WAN_LIST=WAN",
}

// Options says which image to build. The zero value of every field but Arch
// is usable.
type Options struct {
	// Arch is arm64, arm or amd64.
	Arch string
	// Binary is a prebuilt agent binary to package. Empty: build
	// AgentPackage with `go build`.
	Binary string
	// Dir is the directory `go build` runs in; it must be inside the
	// Rampart module. Empty: the current directory.
	Dir string
	// Go is the go command. Empty: "go".
	Go string
	// Version is stamped into the agent it builds (what the agent reports
	// in its status, its --version and rampart_build_info) and recorded in
	// the image's labels. Empty: "dev". SourceVersion is what
	// rampart-image passes by default.
	Version string
	// Tag names the image inside the tarball. Empty: DefaultTag.
	Tag string
	// CACerts is a PEM bundle copied to CACertsPath so the agent can verify
	// a TLS broker. Empty: no bundle (only plain tcp:// brokers, or a broker
	// certificate the agent is configured to trust otherwise).
	CACerts string
	// Created is the image's creation time and every file's mtime. Zero: the
	// Unix epoch, so the same binary always gives the same image digest.
	Created time.Time
	// BuildOutput receives the output of `go build`. Nil: discarded, but
	// included in the error when the build fails.
	BuildOutput io.Writer
}

// BuildAgent compiles the agent for arch into out: static
// (CGO_ENABLED=0), -trimpath, stripped (-ldflags "-s -w"), with o.Version
// stamped into buildinfo (-X buildinfo.VersionVar=V).
func BuildAgent(ctx context.Context, o Options, out string) error {
	p, err := container.PlatformOf(o.Arch)
	if err != nil {
		return err
	}
	version, err := checkVersion(o.Version)
	if err != nil {
		return err
	}
	goCmd := o.Go
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags", "-s -w -X "+buildinfo.VersionVar+"="+version, "-o", out, AgentPackage)
	cmd.Dir = o.Dir
	env := make([]string, 0, len(os.Environ())+4)
	for _, kv := range os.Environ() {
		// The host's GOFLAGS may carry -race or -cover, neither of which
		// builds statically for another platform; a host's GOAMD64=v3 or
		// GOARM64 would make a binary that some routers' CPUs cannot run.
		// The platform's baseline (GOAMD64=v1, GOARM64=v8.0) is the default.
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "GOFLAGS", "GOARM", "GOAMD64", "GOARM64", "GOOS", "GOARCH", "CGO_ENABLED":
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.GOARCH, "GOFLAGS=-buildvcs=false")
	if p.GOARM != "" {
		env = append(env, "GOARM="+p.GOARM)
	}
	cmd.Env = env
	var buf bytes.Buffer
	if o.BuildOutput != nil {
		cmd.Stdout, cmd.Stderr = o.BuildOutput, io.MultiWriter(o.BuildOutput, &buf)
	} else {
		cmd.Stdout, cmd.Stderr = &buf, &buf
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build agent for %s: %w\n%s", o.Arch, err, strings.TrimSpace(buf.String()))
	}
	return nil
}

// ErrVersion is wrapped by the error for a version that cannot be stamped.
var ErrVersion = errors.New("invalid version")

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// checkVersion returns v, or "dev" for "", if it can go into -ldflags -X
// and an image label as it is: no spaces, quotes or control characters.
func checkVersion(v string) (string, error) {
	if v == "" {
		return "dev", nil
	}
	if !versionRE.MatchString(v) {
		return "", fmt.Errorf("%w %q: want 1 to 128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit, e.g. v1.2.3", ErrVersion, v)
	}
	return v, nil
}

// SourceVersion is the version rampart-image stamps by default: its own
// build's (buildinfo.Version), which is also the source tree's when both
// come from one checkout. A binary built without a stamp or VCS information
// (`go run`, or GOFLAGS=-buildvcs=false) says "dev"; the checkout in dir is
// then asked (`git describe --tags --always --dirty`), so an agent built from
// a checkout reports which. Still "dev" when that fails (no git, no
// checkout).
func SourceVersion(ctx context.Context, dir string) string {
	if v := buildinfo.Version(); v != "dev" {
		return v
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "dev"
	}
	v := strings.TrimSpace(string(out))
	if _, err := checkVersion(v); err != nil || v == "" {
		return "dev"
	}
	return v
}

// CheckBinary reports whether b is a static Linux ELF executable for arch:
// the right machine and class, and neither a program interpreter nor a
// dynamic section (a dynamically linked binary cannot start on an empty
// base).
func CheckBinary(b []byte, arch string) error {
	p, err := container.PlatformOf(arch)
	if err != nil {
		return err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("check agent binary: not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Machine != p.Machine || f.Class != p.Class {
		return fmt.Errorf("check agent binary: built for %v %v, want %v %v (%s)", f.Class, f.Machine, p.Class, p.Machine, arch)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("check agent binary: ELF type %v is not an executable", f.Type)
	}
	for _, prog := range f.Progs {
		switch prog.Type {
		case elf.PT_INTERP:
			return errors.New("check agent binary: dynamically linked (has a program interpreter); build with CGO_ENABLED=0")
		case elf.PT_DYNAMIC:
			return errors.New("check agent binary: has a dynamic section; build with CGO_ENABLED=0")
		}
	}
	return nil
}

// Config is the runtime configuration of the image for a platform.
func Config(p container.Platform, version string) v1.Config {
	if version == "" {
		version = "dev"
	}
	return v1.Config{
		Entrypoint: []string{Entrypoint},
		User:       User,
		Env:        append([]string(nil), Env...),
		Volumes:    map[string]struct{}{container.StateDir: {}},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":   "rampart-agent",
			"org.opencontainers.image.version": version,
			"org.opencontainers.image.source":  "https://github.com/rampart-fw/rampart",
		},
	}
}

// Build builds (or reads, with Options.Binary) the agent for o.Arch and
// returns the image: one uncompressed layer on an empty base.
func Build(ctx context.Context, o Options) (v1.Image, error) {
	p, err := container.PlatformOf(o.Arch)
	if err != nil {
		return nil, err
	}
	if o.Version, err = checkVersion(o.Version); err != nil {
		return nil, err
	}
	bin := o.Binary
	if bin == "" {
		dir, err := os.MkdirTemp("", "rampart-image-")
		if err != nil {
			return nil, fmt.Errorf("build image: %w", err)
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "rampart-agent")
		if err := BuildAgent(ctx, o, bin); err != nil {
			return nil, err
		}
	}
	agent, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read agent binary: %w", err)
	}
	if err := CheckBinary(agent, o.Arch); err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	var certs []byte
	if o.CACerts != "" {
		if certs, err = os.ReadFile(o.CACerts); err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
	}
	created := o.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	layer, err := layerTar(agent, certs, created)
	if err != nil {
		return nil, err
	}

	img, err := mutate.Append(empty.Image, mutate.Addendum{
		// DockerUncompressedLayer: written as-is, with digest = diff id.
		Layer: static.NewLayer(layer, types.DockerUncompressedLayer),
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "rampart-image --arch " + o.Arch,
			Comment:   "static rampart-agent on an empty base",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	img = mutate.MediaType(img, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.Variant, cf.OS = p.Architecture, p.Variant, "linux"
	cf.Created = v1.Time{Time: created}
	cf.Config = Config(p, o.Version)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	return img, nil
}

// WriteTarball writes img, tagged tag (DefaultTag when empty), to w in the
// `docker save` layout: manifest.json, the config, and the layer as
// <id>/layer.tar with the legacy <id>/json, <id>/VERSION and repositories
// files.
func WriteTarball(img v1.Image, tag string, w io.Writer) error {
	if tag == "" {
		tag = DefaultTag
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("write image tarball: tag %q: %w", tag, err)
	}
	if err := tarball.Write(ref, img, w); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	return nil
}

// WriteTarballFile builds the image for o and writes its tarball to path,
// replacing path only once the whole tarball is written.
func WriteTarballFile(ctx context.Context, o Options, path string) error {
	img, err := Build(ctx, o)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := WriteTarball(img, o.Tag, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	return nil
}

// layerTar is the image's only layer: the agent, /data owned by the image
// user, a minimal /etc/passwd and /etc/group naming that user (for tools
// that resolve it), and optionally a CA bundle.
func layerTar(agent, certs []byte, mtime time.Time) ([]byte, error) {
	type entry struct {
		hdr  tar.Header
		body []byte
	}
	dir := func(name string, mode int64, uid, gid int) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid}}
	}
	file := func(name string, mode int64, body []byte) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, body: body}
	}
	entries := []entry{
		dir("data", 0o700, imageUID, imageGID),
		dir("etc", 0o755, 0, 0),
		file("etc/group", 0o644, []byte("root:x:0:\nrampart:x:65532:\n")),
		file("etc/passwd", 0o644, []byte("root:x:0:0:root:/:/sbin/nologin\nrampart:x:65532:65532:rampart:/data:/sbin/nologin\n")),
		file(strings.TrimPrefix(Entrypoint, "/"), 0o755, agent),
	}
	if certs != nil {
		entries = append(entries, dir("etc/ssl", 0o755, 0, 0), dir("etc/ssl/certs", 0o755, 0, 0),
			file(strings.TrimPrefix(CACertsPath, "/"), 0o644, certs))
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].hdr.Name < entries[j].hdr.Name })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		e.hdr.ModTime = mtime
		e.hdr.Format = tar.FormatUSTAR
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, fmt.Errorf("build image layer: %w", err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("build image layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build image layer: %w", err)
	}
	return buf.Bytes(), nil
}
