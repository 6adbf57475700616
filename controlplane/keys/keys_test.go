package keys_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
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
		"ros": k.RouterOSPassword("org_a", "site_b"),
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

func TestRouterOSPassword(t *testing.T) {
	k := keys.FromBytes(make([]byte, 32))
	p := k.RouterOSPassword("org_a", "site_a")
	if p != k.RouterOSPassword("org_a", "site_a") {
		t.Fatal("RouterOSPassword is not deterministic")
	}
	if p == k.RouterOSPassword("org_a", "site_b") || p == k.RouterOSPassword("org_b", "site_a") {
		t.Error("RouterOSPassword is the same for different sites")
	}
	if p == k.SiteSecret("org_a", "site_a") {
		t.Error("RouterOSPassword equals the site's MQTT secret")
	}
	if other := keys.FromBytes(append(make([]byte, 31), 1)); other.RouterOSPassword("org_a", "site_a") == p {
		t.Error("RouterOSPassword does not depend on the key")
	}
	if len(p) != 43 || strings.Trim(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Errorf("RouterOSPassword %q: want 43 characters of [A-Za-z0-9_-]", p)
	}
}

// TestFingerprint: a key's fingerprint is the same every time and for a
// copy of the key, differs between keys, and is neither the key nor its
// plain SHA-256 (it is stored in the database and shown in errors).
func TestFingerprint(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	k, copied, other := keys.FromBytes(secret), keys.FromBytes(bytes.Clone(secret)), keys.FromBytes(make([]byte, 32))
	fp := k.Fingerprint()
	plain := sha256.Sum256(secret)
	switch {
	case fp != k.Fingerprint() || fp != copied.Fingerprint():
		t.Errorf("one key, two fingerprints: %s, %s", fp, copied.Fingerprint())
	case fp == other.Fingerprint():
		t.Errorf("two keys, one fingerprint %s", fp)
	case len(fp) != 64 || strings.Contains(fp, hex.EncodeToString(secret)) || fp == hex.EncodeToString(plain[:]):
		t.Errorf("fingerprint %q reveals the key or is its plain hash", fp)
	}
}
