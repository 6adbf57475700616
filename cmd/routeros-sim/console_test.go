package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/internal/syncbuf"
	"github.com/rampart-fw/rampart/internal/wait"
)

// TestConsoleImport is the newcomer's walk without the agent: --files DIR
// holds a script, and the console runs /import file-name= on it; a
// multi-line block pasted into the console runs whole; a load error prints
// RouterOS's message.
func TestConsoleImport(t *testing.T) {
	dir := t.TempDir()
	script := "/interface/veth/add name=v1 address=172.17.0.2/24 gateway=172.17.0.1\n"
	if err := os.WriteFile(filepath.Join(dir, "setup.rsc"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	stdin = strings.NewReader("/import file-name=setup.rsc\n{\n  :local n [:len [/interface/veth/find]]\n  :put \"veths: $n\"\n}\n/ip/service/set api available-from=10.0.0.0/8\n")
	stdout = &out
	t.Cleanup(func() { stdin, stdout = os.Stdin, os.Stdout })
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"--listen", "127.0.0.1:0", "--ros-version", "7.21", "--files", dir, "--console"}, &logs)
	}()
	wait.Until(t, 20*time.Second, "console output", func() string {
		if !strings.Contains(out.String(), "expected end of command") {
			return "output so far: " + out.String()
		}
		return ""
	})
	cancel()
	<-done
	got := out.String()
	for _, want := range []string{"veths: 1", "expected end of command (line 1 column 21)", "[admin@MikroTik] > "} {
		if !strings.Contains(got, want) {
			t.Errorf("console output lacks %q:\n%s", want, got)
		}
	}
}
