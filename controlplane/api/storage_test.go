package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/api"
	"github.com/rampart-fw/rampart/controlplane/auth"
	"github.com/rampart-fw/rampart/controlplane/store/bolt"
	"github.com/rampart-fw/rampart/internal/syncbuf"
)

// serveAPI serves the API over st on a real HTTP server (closed when tb
// ends) and mints a token for each of orgs.
func serveAPI(tb testing.TB, st api.Store, logger *slog.Logger, orgs ...string) (*httptest.Server, []string) {
	tb.Helper()
	v, err := auth.New(context.Background(), auth.Options{HMACKey: testKey})
	if err != nil {
		tb.Fatal(err)
	}
	a, err := api.New(api.Options{Store: st, Verifier: v, Logger: logger})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(a)
	tb.Cleanup(srv.Close)
	var toks []string
	for _, org := range orgs {
		tok, err := auth.Mint(auth.MintOptions{Key: testKey, Org: org, TTL: time.Hour})
		if err != nil {
			tb.Fatal(err)
		}
		toks = append(toks, tok)
	}
	return srv, toks
}

// TestFullDiskAnswers503 (#13.10): on a real full disk (a 4 MiB tmpfs,
// filled up) a write answers 503 storage_unavailable, not 500
// internal_error; the log names the cause; nothing is half written; and
// once space is back, writes work again. Needs root (mount); skips
// otherwise.
func TestFullDiskAnswers503(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	st, err := bolt.Open(filepath.Join(mnt, "rampart.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs syncbuf.Buffer
	srv, tok := serveAPI(t, st, slog.New(slog.NewJSONHandler(&logs, nil)), orgA)
	// A large group (250 rules, 1000 sites) needs many new pages.
	body := func(n int) []byte {
		w := cp.SecurityGroupWrite{Name: fmt.Sprintf("big %d", n), Sites: siteIDs(fmt.Sprint(n), 1000)}
		for i := range 250 {
			w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6, Port: fmt.Sprint(1000 + i), Address: "10.0.0.0/8", Description: strings.Repeat("d", 200)})
		}
		b, _ := json.Marshal(w)
		return b
	}
	post := func(n int) (int, api.ErrorResponse) {
		req, _ := http.NewRequest("POST", srv.URL+"/vpc/security-groups", bytes.NewReader(body(n)))
		req.Header.Set("Authorization", "Bearer "+tok[0])
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var er api.ErrorResponse
		json.NewDecoder(resp.Body).Decode(&er)
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "30" {
			t.Errorf("503 with Retry-After %q, want 30", resp.Header.Get("Retry-After"))
		}
		return resp.StatusCode, er
	}
	created := 0
	if st, er := post(0); st != http.StatusCreated {
		t.Fatalf("write with space left: %d %+v", st, er)
	}
	created++
	// Fill the disk.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	filler.Close()
	refused := false
	for n := 1; n <= 5 && !refused; n++ {
		switch st, er := post(n); {
		case st == http.StatusCreated: // bbolt still had free pages
			created++
		case st == http.StatusServiceUnavailable && er.Code == cp.CodeStorageUnavailable && er.Type == "api_error":
			refused = true
			if strings.Contains(er.Message, "no space") || strings.Contains(er.Message, "rampart.db") {
				t.Errorf("the answer leaks internals: %q", er.Message)
			}
		default:
			t.Fatalf("write on a full disk: %d %+v; want 503 storage_unavailable", st, er)
		}
	}
	if !refused {
		t.Fatal("five large writes fitted on a full 4 MiB disk")
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"storage unavailable"`) || !strings.Contains(l, "no space left on device") {
		t.Errorf("the log does not name the cause:\n%s", l)
	}
	var groups []cp.SecurityGroup
	page, _, _, err := st.ListJSONPage(context.Background(), orgA, cp.KindSecurityGroup, "", 100)
	if err == nil {
		err = json.Unmarshal(page, &groups)
	}
	if err != nil || len(groups) != created {
		t.Errorf("after the refused write: %d groups, %v; want %d (all or nothing)", len(groups), err, created)
	}
	// Space back: writes work again.
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	if st, er := post(99); st != http.StatusCreated {
		t.Errorf("write once space is back: %d %+v", st, er)
	}
}
