package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"nothing", debug.BuildInfo{}, "dev"},
		{"devel without vcs", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"module version", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"pseudo-version", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261204201500-0123456789ab+dirty"}}, "v0.0.0-20261204201500-0123456789ab+dirty"},
		{"vcs", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "false"}}}, "0123456789ab"},
		{"vcs dirty", debug.BuildInfo{Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, "0123456789ab-dirty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(&tc.bi); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRegister(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	Register(reg, "agent")
	want := `# HELP rampart_build_info Always 1; the labels say which build of which Rampart component is running.
# TYPE rampart_build_info gauge
rampart_build_info{component="agent",goversion="` + runtime.Version() + `",version="` + Version() + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "rampart_build_info"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func TestVersionRequested(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--version"}, true},
		{[]string{"-version"}, true},
		{nil, false},
		{[]string{"--version", "x"}, false},
		{[]string{"version"}, false},
		{[]string{"--version=true"}, false},
	} {
		if got := VersionRequested(tc.args); got != tc.want {
			t.Errorf("VersionRequested(%q) = %v", tc.args, got)
		}
	}
	if got, want := Line("rampart-agent"), "rampart-agent "+Version()+" ("+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+")"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}
