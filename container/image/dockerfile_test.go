package image_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/container"
	"github.com/rampart-fw/rampart/container/image"
	"github.com/rampart-fw/rampart/internal/buildinfo"
)

// TestDockerfileMatchesImage keeps the Dockerfile (for machines with Docker)
// equal to the image the Go builder writes: no Docker engine runs here, so
// this is the check that the two stay one image.
func TestDockerfileMatchesImage(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	var instrs []string
	var cur strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		if s := strings.TrimSpace(cur.String()); s != "" {
			instrs = append(instrs, s)
		}
		cur.Reset()
	}
	final := -1
	for i, in := range instrs {
		if strings.HasPrefix(in, "FROM ") {
			final = i
		}
	}
	if final < 0 || instrs[final] != "FROM scratch" {
		t.Fatalf("the last stage is not FROM scratch")
	}
	got := map[string][]string{}
	for _, in := range instrs[final+1:] {
		op, arg, _ := strings.Cut(in, " ")
		got[op] = append(got[op], strings.TrimSpace(arg))
	}
	cfg := image.Config(container.Platforms["amd64"], "")
	if d := cmp.Diff([]string{`["` + cfg.Entrypoint[0] + `"]`}, got["ENTRYPOINT"]); d != "" {
		t.Errorf("ENTRYPOINT (-image +Dockerfile):\n%s", d)
	}
	if d := cmp.Diff([]string{cfg.User}, got["USER"]); d != "" {
		t.Errorf("USER (-image +Dockerfile):\n%s", d)
	}
	if d := cmp.Diff([]string{`["` + container.StateDir + `"]`}, got["VOLUME"]); d != "" {
		t.Errorf("VOLUME (-image +Dockerfile):\n%s", d)
	}
	var env []string
	for _, e := range got["ENV"] {
		env = append(env, strings.Fields(e)...)
	}
	want := slices.Clone(cfg.Env)
	slices.Sort(want)
	slices.Sort(env)
	if d := cmp.Diff(want, env); d != "" {
		t.Errorf("ENV (-image +Dockerfile):\n%s", d)
	}
	all := strings.Join(instrs, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X ` + buildinfo.VersionVar + `=$VERSION"`, "./cmd/rampart-agent", image.CACertsPath, "--chown=" + image.User, `GOARM="${GOARM:-7}"`} {
		if !strings.Contains(all, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if !regexp.MustCompile(`chmod 700 \S*/data`).MatchString(all) {
		t.Error("Dockerfile does not make /data private (0700) as the Go builder does")
	}
}
