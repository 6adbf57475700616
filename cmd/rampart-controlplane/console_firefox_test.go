package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/internal/bidi"
)

// firefoxPath is Debian's firefox-esr package.
const firefoxPath = "/usr/bin/firefox-esr"

// TestConsoleInFirefox runs the console's core steps in a real headless
// Firefox, driven through WebDriver BiDi (internal/bidi), against the
// same --demo setup as TestConsoleInBrowser: log in through a one-time
// link, see the fleet's sites, create a group by typing into the editor,
// see it go syncing then active and every site in_sync without a reload,
// and find the write in a site's state history. The Chromium test covers
// the rest; this one holds the console to "works in Firefox too".
// Screenshots go to $RAMPART_CONSOLE_SCREENSHOTS/firefox (default: a new
// temporary directory, named in the log).
func TestConsoleInFirefox(t *testing.T) {
	if _, err := os.Stat(firefoxPath); err != nil {
		t.Skipf("skipping the console's Firefox test: %s is missing (apt-get install firefox-esr)", firefoxPath)
	}
	_, link, shots := consoleDemo(t, "firefox")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	ff, err := bidi.Launch(ctx, firefoxPath, t.TempDir(), 1280, 860)
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	if v, err := exec.Command(firefoxPath, "--version").Output(); err == nil {
		t.Logf("%s (session: %s)", strings.TrimSpace(string(v)), ff.Version())
	}

	n := 0
	shot := func(name string) {
		t.Helper()
		n++
		png, err := ff.Screenshot(ctx)
		if err != nil {
			t.Fatalf("screenshot after %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", n, name)), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// step runs actions in order, then keeps a screenshot named after it.
	step := func(name string, actions ...func() error) {
		t.Helper()
		for _, a := range actions {
			if err := a(); err != nil {
				shot(name + "-failed")
				t.Fatalf("step %s: %v", name, err)
			}
		}
		shot(name)
	}
	click := func(sel string) func() error { return func() error { return ff.Click(ctx, sel) } }
	typ := func(sel, text string) func() error { return func() error { return ff.Type(ctx, sel, text) } }
	wait := func(expr string) func() error { return func() error { return ff.Wait(ctx, expr) } }
	// accessible runs the Chromium test's checks (named controls, 4.5:1
	// contrast) on the page as Firefox renders it.
	accessible := func(where string) {
		t.Helper()
		var problems []string
		if err := ff.Eval(ctx, a11yJS, &problems); err != nil {
			t.Fatalf("%s: accessibility checks: %v", where, err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", where, p)
		}
	}
	visible := func(sel string) func() error {
		return wait(`(e => e && e.offsetParent !== null)(document.querySelector('` + sel + `'))`)
	}

	// The one-time link logs in; the token leaves the address bar.
	step("login-link-fleet",
		func() error { return ff.Navigate(ctx, link) },
		visible(`#fleet-table tbody tr[data-site="site_demo3"]`))
	accessible("fleet")
	var loc string
	if err := ff.Eval(ctx, `location.href`, &loc); err != nil || strings.Contains(loc, "login=") {
		t.Errorf("address after login %q (%v): the token stayed", loc, err)
	}

	// A group, typed into the editor; its status and its sites' states
	// change live.
	step("group-editor",
		click(`a[data-nav="groups"]`),
		visible(`#groups-table`),
		click(`#new-resource`),
		visible(`#f-name`),
		typ(`#f-name`, "Web from Firefox"),
		click(`#add-row`),
		typ(`[data-field="rules[0].port"]`, "443"),
		typ(`[data-field="rules[0].description"]`, "Allow HTTPS"),
		typ(`#f-sites`, "site_demo1, site_demo2, site_demo3"))
	step("saved",
		func() error {
			return ff.Eval(ctx, `(() => { window.__marker = 'same page'; window.__statuses = [];
				new MutationObserver(() => {
					const el = document.querySelector('#resource-status');
					const s = el ? el.textContent : '';
					if (s && window.__statuses[window.__statuses.length - 1] !== s) window.__statuses.push(s);
				}).observe(document.body, {subtree: true, childList: true, characterData: true}); return true; })()`, nil)
		},
		click(`#save-resource`),
		visible(`#resource-status .badge`))
	step("active-in-sync",
		wait(`document.querySelector('#resource-status')?.textContent === 'active' &&
			(s => s.length === 3 && s.every(x => x === 'in_sync'))(`+siteStatesJS+`)`))
	accessible("group")
	var statuses []string
	if err := ff.Eval(ctx, `window.__statuses`, &statuses); err != nil || len(statuses) < 2 || statuses[0] != "syncing" || statuses[len(statuses)-1] != "active" {
		t.Errorf("the group's status went %v (%v); want syncing first and active last", statuses, err)
	}
	var rules string
	if err := ff.Eval(ctx, `document.querySelector('#rows-table tbody').textContent`, &rules); err != nil || !strings.Contains(rules, "443") || !strings.Contains(rules, "Allow HTTPS") {
		t.Errorf("the group's rules read %q (%v); want the typed port and description", rules, err)
	}

	// A site's page: the group's rule in its compiled policy, and the
	// write in its state history.
	step("site-history",
		click(`#sites-table a[href="#/sites/site_demo1"]`),
		visible(`#site-props`),
		wait(`(document.querySelector('#policy-rules tbody')?.textContent || '').includes('Allow HTTPS')`),
		wait(`(rows => rows.length >= 2 && rows[0].to === 'in_sync' && rows[1].to === 'syncing')(`+historyRowsJS+`)`))
	accessible("site")
	var marker string
	if err := ff.Eval(ctx, `window.__marker`, &marker); err != nil || marker != "same page" {
		t.Errorf("the page reloaded (marker %q, %v)", marker, err)
	}
}
