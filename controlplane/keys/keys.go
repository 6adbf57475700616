// Package keys holds the control plane's one secret and everything derived
// from it: the HS256 key that signs embedded-mode API tokens, the MQTT
// password of every site, and the control plane's own broker password.
//
// The secret is a file beside the database (KeyFile in the data directory),
// not inside it, so the `token` and `enroll` subcommands can read it while the
// server holds the database's lock. Deriving rather than storing per-site
// secrets means enrolling a site writes nothing, and rotating the file
// revokes every credential at once.
package keys

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyFile is the name of the secret's file inside the data directory.
const KeyFile = "rampart.key"

// ControlPlaneMQTTUser is the broker username of the control plane's own
// connection. It contains no "/", so it can never be mistaken for a site's
// "org/site" username.
const ControlPlaneMQTTUser = "rampart-controlplane"

// Key is the control plane's root secret.
type Key struct{ secret []byte }

// LoadOrCreate reads the key from dir, creating dir and a new random key the
// first time. Concurrent first starts agree on one key: the file is linked
// into place exclusively and a loser reads the winner's file.
func LoadOrCreate(dir string) (Key, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Key{}, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, KeyFile)
	if k, err := Load(dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	// Write a temporary file and hard-link it into place: the link appears
	// whole or not at all, so a concurrent reader never sees a partial key.
	tmp, err := os.CreateTemp(dir, KeyFile+".tmp*")
	if err != nil {
		return Key{}, fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(hex.EncodeToString(secret) + "\n"); err != nil {
		tmp.Close()
		return Key{}, fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Key{}, fmt.Errorf("write key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return Load(dir)
	} else if err != nil {
		return Key{}, fmt.Errorf("create key file: %w", err)
	}
	return Key{secret: secret}, nil
}

// Load reads an existing key from dir. The error wraps fs.ErrNotExist when
// the control plane has never started on dir.
func Load(dir string) (Key, error) {
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return Key{}, fmt.Errorf("read key file: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) < 32 {
		return Key{}, fmt.Errorf("read key file %s: want 64 hex characters", filepath.Join(dir, KeyFile))
	}
	return Key{secret: secret}, nil
}

// FromBytes makes a Key from raw secret bytes, for tests and benchmarks.
func FromBytes(secret []byte) Key { return Key{secret: append([]byte(nil), secret...)} }

func (k Key) derive(label string, parts ...string) []byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(label))
	for _, p := range parts {
		// NUL cannot occur in a validated id, so the encoding is unambiguous.
		m.Write([]byte{0})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// JWTSigningKey is the HS256 key for embedded-mode API tokens.
func (k Key) JWTSigningKey() []byte { return k.derive("rampart/jwt-hs256") }

// SiteMQTTUser is a site's broker username.
//

// SiteSecret is the MQTT password of one site: 43 URL-safe characters, with
// no characters that need quoting in a shell or a RouterOS script.
func (k Key) SiteSecret(org, site string) string {
	return base64.RawURLEncoding.EncodeToString(k.derive("rampart/mqtt-site", org, site))
}

// ControlPlaneMQTTPassword is the password of the control plane's own broker
// connection (user ControlPlaneMQTTUser).
func (k Key) ControlPlaneMQTTPassword() string {
	return base64.RawURLEncoding.EncodeToString(k.derive("rampart/mqtt-controlplane"))
}

// Fingerprint names the key without revealing it: an HMAC of a fixed
// label under the key, in hex, so it can be stored and compared (every
// control plane on one PostgreSQL database needs the same key) and shown
// in an error. A plain hash of the key would do too, but the HMAC makes it
// one more derived value, like the others, useless for anything else.
func (k Key) Fingerprint() string { return hex.EncodeToString(k.derive("rampart/key-fingerprint")) }

// RouterOSPassword is the password of the dedicated RouterOS user that a
// site's agent logs in as (created by the `enroll` script): 43 URL-safe
// characters. It is derived, not stored, so running enroll again prints the
// same script, and a label distinct from SiteSecret's keeps the router
// password useless as an MQTT credential and the other way round.
func (k Key) RouterOSPassword(org, site string) string {
	return base64.RawURLEncoding.EncodeToString(k.derive("rampart/routeros-user", org, site))
}
