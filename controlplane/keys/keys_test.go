package keys_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rampart-fw/rampart/controlplane/keys"
)

func TestLoadOrCreateIsStableAndConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := keys.LoadOrCreate(dir)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = k.SiteSecret("org_a", "site_a")
		}()
	}
	wg.Wait()
	for _, s := range got[1:] {
		if s != got[0] {
			t.Fatalf("concurrent first starts made different keys")
		}
	}
	k, err := keys.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.SiteSecret("org_a", "site_a") != got[0] {
		t.Fatal("reloaded key differs")
	}
	if fi, _ := os.Stat(filepath.Join(dir, keys.KeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestDerivationsDiffer(t *testing.T) {
	k := keys.FromBytes(make([]byte, 32))
	seen := map[string]string{}
	for name, v := range map[string]string{
		"a/b": k.SiteSecret("org_a", "site_b"),
		"ab/": k.SiteSecret("org_ab", "site_"),
		"b/a": k.SiteSecret("org_b", "site_a"),
		"cp":  k.ControlPlaneMQTTPassword(),
		"jwt": string(k.JWTSigningKey()),
	} {
		if prev, dup := seen[v]; dup {
			t.Errorf("%s and %s derive the same secret", name, prev)
		}
		seen[v] = name
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := keys.Load(t.TempDir()); err == nil {
		t.Fatal("Load of an empty directory succeeded")
	}
}
