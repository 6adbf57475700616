// Package buildinfo says which build of Rampart is running: one version
// string for `--version`, the agent's status and the rampart_build_info
// metric of every process.
//
// The version comes, in order, from the link-time stamp
// (`go build -ldflags "-X github.com/rampart-fw/rampart/internal/buildinfo.version=V"`,
// what rampart-image does for the agent it builds), from the version control
// information the go command records (`go build` in a checkout, `go install
// module@version`), else "dev".
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is set with -ldflags -X; see the package doc. VersionVar names it.
var version string

// VersionVar is the symbol to stamp with -ldflags "-X VersionVar=V".
const VersionVar = "github.com/rampart-fw/rampart/internal/buildinfo.version"

// Version is this build's version: the -ldflags stamp, else the module
// version or VCS revision the go command recorded, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	// A module version (go install m@v1.2.3) or, since Go 1.24, a
	// pseudo-version derived from the checkout by go build.
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// VersionRequested reports whether a command's arguments are exactly
// --version (or -version): every Rampart binary answers that before it
// parses anything else.
func VersionRequested(args []string) bool {
	return len(args) == 1 && (args[0] == "--version" || args[0] == "-version")
}

// Line is what `program --version` prints: the program, its version, and
// the Go version and platform it was built with.
func Line(program string) string { return LineOf(program, Version()) }

// LineOf is Line with another version: rampart-image prints the version it
// stamps into the agent.
func LineOf(program, version string) string {
	return program + " " + version + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}

// Register adds rampart_build_info{version,goversion,component} = 1 to reg,
// the usual "info" gauge: joins on it label other series with the build
// that produced them. component names the process: "controlplane" or
// "agent". It panics if reg already has it, like MustRegister: each process
// registers it once, on its own registry.
func Register(reg prometheus.Registerer, component string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rampart_build_info",
		Help: "Always 1; the labels say which build of which Rampart component is running.",
		ConstLabels: prometheus.Labels{
			"version":   Version(),
			"goversion": runtime.Version(),
			"component": component,
		},
	})
	g.Set(1)
	reg.MustRegister(g)
}
