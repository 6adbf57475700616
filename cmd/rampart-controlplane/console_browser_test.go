package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
	"github.com/rampart-fw/rampart/controlplane/console"
)

// chromiumPath is Debian's chromium package (.ci/run installs it).
const chromiumPath = "/usr/bin/chromium"

// TestConsoleInBrowser drives the operator console in a real headless
// Chromium against a control plane with three simulated routers and
// their real agents (the --demo setup): log in through a one-time link
// from the login-url subcommand, create a group with a port on ICMP and
// see the API's error at that field, fix it and see the group go syncing
// then active and every site in_sync without a reload, edit it in two
// tabs and see the second save get the 412, find both writes in the audit
// trail and restore the first version, see the new rules in a site's
// compiled policy, create and delete a prefix list, see a write to a
// group that is still syncing refused with when to retry, read the page
// at a phone's width, log out, after which the session's cookie opens
// nothing, and log in again with a pasted token using only the keyboard.
// Every page is checked for unnamed controls and low contrast.
// Screenshots of each step go to $RAMPART_CONSOLE_SCREENSHOTS (default: a
// new temporary directory, named in the log).
func TestConsoleInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("skipping the console's browser test: %s is missing (apt-get install chromium; .ci/run installs it)", chromiumPath)
	}
	m, link, shots := consoleDemo(t, "")
	base := "http://" + m.Addr.String()

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860))
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(ctx, 50*time.Second)
	defer cancel()

	n := 0
	shot := func(name string) {
		t.Helper()
		n++
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot after %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", n, name)), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// step runs actions, then keeps a screenshot named after the step.
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			shot(name + "-failed")
			t.Fatalf("step %s: %v", name, err)
		}
		shot(name)
	}
	// waitJS polls a JavaScript expression until it is true.
	waitJS := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))
	}
	// accessible checks the page as it stands: every control has a name
	// (a label, aria-label or text), and every text has a contrast of at
	// least 4.5:1 against its background (WCAG AA).
	accessible := func(where string) {
		t.Helper()
		problems := value(t, ctx, chromedp.Evaluate[[]string](a11yJS))
		for _, p := range problems {
			t.Errorf("%s: %s", where, p)
		}
	}
	// newResource opens the editor of a new group or list from the menu,
	// once the list page (which has its own "New" button) is up.
	newResource := func(kind string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Click(`a[data-nav="`+kind+`"]`),
			chromedp.WaitVisible(`#`+kind+`-table`),
			chromedp.Click(`#new-resource`, chromedp.NodeVisible),
			chromedp.WaitVisible(`#f-name`))
	}

	// 1. The one-time link logs in; the token leaves the address bar.
	step("login-link-fleet",
		chromedp.Navigate(link),
		chromedp.WaitVisible(`#fleet-table tbody tr[data-site="site_demo3"]`))
	accessible("fleet")
	if loc := value(t, ctx, chromedp.Location()); strings.Contains(loc, "login=") {
		t.Errorf("the login token stayed in the address bar: %s", loc)
	}
	// The client finds the field an API message names, and the next page
	// of a Link header.
	type parsed struct{ Fields, Next []string }
	got := value(t, ctx, chromedp.Evaluate[parsed](`import('/console/assets/api.js').then(m => ({
		fields: ['rules[2].port must be "" for protocol 1: ...', 'name is 2 characters long; it must be 3 to 255 characters.',
			'sites[1] "hq" is not a site id; ...', 'prefixes[0].cidr: ...', 'rules is required: ...',
			'The security group "sec_grp_x" is being deployed ...'].map(m.fieldOf),
		next: ['</vpc/sites?limit=1000&starting_after=site_b>; rel="next"',
			'</vpc/sites?limit=2>; rel="prev", </vpc/sites?limit=2&starting_after=site_c>; rel="next"', ''].map(m.nextLink),
	}))`, chromedp.EvalAwaitPromise))
	if diff := cmp.Diff(parsed{
		Fields: []string{"rules[2].port", "name", "sites[1]", "prefixes[0].cidr", "rules", ""},
		Next:   []string{"/vpc/sites?limit=1000&starting_after=site_b", "/vpc/sites?limit=2&starting_after=site_c", ""},
	}, got); diff != "" {
		t.Errorf("api.js parsing (-want +got):\n%s", diff)
	}

	// The link was spent: a second login with it is refused.
	if code, body := postJSON(t, base+"/console/login", `{"link": "`+link+`"}`); code != http.StatusUnauthorized || !strings.Contains(body, "already used") {
		t.Errorf("second use of the link: %d %s", code, body)
	}

	// 2. A port on ICMP: the API's own error, at the port of rule 1.
	step("icmp-port-field-error",
		newResource("groups"),
		chromedp.SendKeys(`#f-name`, "Ping from anywhere"),
		chromedp.Click(`#add-row`),
		chromedp.SetValue(`[data-field="rules[0].protocol"]`, "1"),
		chromedp.SendKeys(`[data-field="rules[0].port"]`, "22"),
		chromedp.SendKeys(`[data-field="rules[0].description"]`, "Allow ping"),
		// A second rule through the Type picker, as in AWS's table.
		chromedp.Click(`#add-row`),
		chromedp.SetValue(`tr[data-row="1"] [data-key="service"]`, "https"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('tr[data-row="1"] [data-key="service"]').dispatchEvent(new Event('change'))`),
		chromedp.SendKeys(`[data-field="rules[1].description"]`, "Allow HTTPS"),
		chromedp.SendKeys(`#f-sites`, "site_demo1, site_demo2, site_demo3"),
		chromedp.Click(`#save-resource`),
		chromedp.WaitVisible(`[data-error-for="rules[0].port"]`))
	accessible("editor with an error")
	if got := value(t, ctx, chromedp.Evaluate[[]string](`['protocol', 'port', 'order'].map(k => document.querySelector('tr[data-row="1"] [data-key="' + k + '"]').value)`)); !cmp.Equal(got, []string{"6", "443", "20"}) {
		t.Errorf("the https type set protocol, port and order %v; want [6 443 20]", got)
	}
	errText := value(t, ctx, chromedp.Text(`[data-error-for="rules[0].port"]`))
	invalid := value(t, ctx, chromedp.AttributeValue(`[data-field="rules[0].port"]`, "aria-invalid"))
	if !strings.Contains(errText, "rules[0].port") || !strings.Contains(errText, "protocol 1") || invalid.Value != "true" {
		t.Errorf("field error %q, aria-invalid %q; want the API's rules[0].port message at the port", errText, invalid.Value)
	}

	// 3. Fixed: syncing, then active and every site in_sync, live.
	step("saved",
		chromedp.Evaluate[chromedp.Void](`window.__marker = 'same page';
			window.__statuses = [];
			new MutationObserver(() => {
				const el = document.querySelector('#resource-status');
				const s = el ? el.textContent : '';
				if (s && window.__statuses[window.__statuses.length - 1] !== s) window.__statuses.push(s);
			}).observe(document.body, {subtree: true, childList: true, characterData: true});`),
		chromedp.SendKeys(`[data-field="rules[0].port"]`, kb.End+kb.Backspace+kb.Backspace),
		chromedp.Click(`#save-resource`),
		chromedp.WaitVisible(`#resource-status .badge`))
	step("active-in-sync",
		waitJS(`document.querySelector('#resource-status')?.textContent === 'active' &&
			(s => s.length === 3 && s.every(x => x === 'in_sync'))(`+siteStatesJS+`)`))
	accessible("group")
	if statuses := value(t, ctx, chromedp.Evaluate[[]string](`window.__statuses`)); len(statuses) < 2 || statuses[0] != "syncing" || statuses[len(statuses)-1] != "active" {
		t.Errorf("the group's status went %v; want syncing first and active last", statuses)
	}
	// Edited in two tabs: the second save is refused (the API's 412 on
	// If-Match), says so, and offers the other tab's version.
	groupURL := value(t, ctx, chromedp.Location())
	tab2, cancelTab2 := chromedp.NewContext(ctx)
	defer cancelTab2()
	if err := chromedp.Do(tab2, chromedp.Navigate(groupURL+"/edit"), chromedp.WaitVisible(`#f-name`)); err != nil {
		t.Fatalf("second tab: %v", err)
	}
	step("first-tab-saves",
		chromedp.Click(`#edit-resource`),
		chromedp.WaitVisible(`#f-name`),
		chromedp.SendKeys(`#f-name`, kb.End+" v2"),
		chromedp.Click(`#save-resource`),
		waitJS(`document.querySelector('#resource-status')?.textContent === 'active' &&
			document.querySelector('#resource-name').textContent === 'Ping from anywhere v2'`))
	if err := chromedp.Do(tab2,
		chromedp.SendKeys(`#f-description`, "from the second tab"),
		chromedp.Click(`#save-resource`),
		chromedp.WaitVisible(`#write-error[data-code="precondition_failed"]`)); err != nil {
		t.Fatalf("second tab's save: %v", err)
	}
	n++
	if png, err := chromedp.Run(tab2, chromedp.CaptureScreenshot()); err == nil {
		os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-second-tab-412.png", n)), png, 0o644)
	}
	if msg := value(t, tab2, chromedp.Text(`#write-error`)); !strings.Contains(msg, "Someone else changed this security group") {
		t.Errorf("412 message %q", msg)
	}
	if err := chromedp.Do(tab2, chromedp.Click(`#write-error button`),
		chromedp.Poll[chromedp.Void](`document.querySelector('#f-name')?.value === 'Ping from anywhere v2'`,
			chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("reloading the other tab's version: %v", err)
	}
	cancelTab2()

	// Both writes are in the audit trail; restoring the first version goes
	// through the same editor.
	step("audit-trail",
		chromedp.Click(`a[data-nav="audit"]`),
		waitJS(`(t => t.includes('created') && t.includes('replaced') && t.includes('Ping from anywhere v2'))(document.querySelector('#audit-table tbody')?.textContent || '')`),
		waitJS(`document.querySelector('#audit-more').offsetParent === null`)) // two events: no older page
	step("restore-first-version",
		chromedp.Click(`#audit-table tr:last-child button[data-restore="1"]`),
		chromedp.WaitVisible(`#restoring`),
		waitJS(`document.querySelector('#f-name')?.value === 'Ping from anywhere'`),
		chromedp.Click(`#save-resource`),
		waitJS(`document.querySelector('#resource-status')?.textContent === 'active' &&
			document.querySelector('#resource-name').textContent === 'Ping from anywhere'`))

	step("fleet-in-sync",
		chromedp.Click(`a[data-nav="fleet"]`),
		waitJS(`(document.querySelector('#state-counts [data-state="in_sync"] .n') || {}).textContent === '3'`))
	if marker := value(t, ctx, chromedp.Evaluate[string](`window.__marker`)); marker != "same page" {
		t.Error("the page reloaded")
	}

	// A site's page lists the group that now applies to it.
	step("site",
		chromedp.Click(`#fleet-table a[href="#/sites/site_demo1"]`),
		chromedp.WaitVisible(`#site-props`),
		waitJS(`[...document.querySelectorAll('#site-groups a')].some(a => a.textContent === 'Ping from anywhere')`),
		// Its compiled policy holds the new rules, as the router gets them.
		waitJS(`(t => t.includes('icmp (1)') && t.includes('Allow ping') && t.includes('Allow HTTPS'))(document.querySelector('#policy-rules tbody')?.textContent || '')`),
		// Its state history shows the group's write arriving: syncing,
		// then in_sync, newest first.
		waitJS(`(rows => rows.length >= 2 && rows[0].to === 'in_sync' &&
			rows.some((r, i) => r.from === 'syncing' && r.to === 'in_sync' && rows.slice(i + 1).some(o => o.to === 'syncing')))(`+historyRowsJS+`)`))
	accessible("site")

	// A prefix list: a CIDR with host bits gets the API's error at that
	// prefix, which says what was probably meant.
	step("prefix-list-field-error",
		newResource("lists"),
		chromedp.SendKeys(`#f-name`, "Office"),
		chromedp.Click(`#add-row`),
		chromedp.SendKeys(`[data-field="prefixes[0].cidr"]`, "10.0.0.1/24"),
		chromedp.SendKeys(`[data-field="prefixes[0].description"]`, "HQ"),
		chromedp.Click(`#save-resource`),
		chromedp.WaitVisible(`[data-error-for="prefixes[0].cidr"]`))
	if got := value(t, ctx, chromedp.Text(`[data-error-for="prefixes[0].cidr"]`)); !strings.Contains(got, "10.0.0.0/24") {
		t.Errorf("prefix error %q does not name 10.0.0.0/24", got)
	}
	step("prefix-list-active",
		chromedp.SendKeys(`[data-field="prefixes[0].cidr"]`, kb.End+kb.Backspace+kb.Backspace+kb.Backspace+kb.Backspace+"0/24"),
		chromedp.Click(`#save-resource`),
		waitJS(`document.querySelector('#resource-status')?.textContent === 'active' &&
			document.querySelector('#rows-table tbody')?.textContent.includes('10.0.0.0/24')`))

	// Deleting asks in the page first.
	step("prefix-list-delete-confirm",
		chromedp.Click(`#delete-resource`),
		chromedp.WaitVisible(`#confirm-delete`))
	accessible("delete confirmation")
	step("prefix-list-deleted",
		chromedp.Click(`#confirm-delete`),
		chromedp.WaitVisible(`#lists-table`),
		waitJS(`document.querySelector('#lists-table tbody').textContent.includes('No prefix list yet')`))

	// 4. A write to a group still syncing (its site has no agent, so
	// nothing confirms) is refused with when to retry.
	step("locked-retry-after",
		newResource("groups"),
		chromedp.SendKeys(`#f-name`, "Waits for a router"),
		chromedp.SendKeys(`#f-sites`, "site_noagent1"),
		chromedp.Click(`#save-resource`),
		chromedp.WaitVisible(`#resource-status .st-syncing`),
		chromedp.Click(`#edit-resource`),
		chromedp.WaitVisible(`#f-name`),
		chromedp.SendKeys(`#f-name`, kb.End+" (renamed)"),
		chromedp.Click(`#save-resource`),
		chromedp.WaitVisible(`#write-error[data-code="resource_locked"]`))
	if locked := value(t, ctx, chromedp.Text(`#write-error`)); !strings.Contains(locked, "Save again after") || !strings.Contains(locked, " s).") {
		t.Errorf("409 message %q does not say when to retry", locked)
	}

	// 5. A phone's width: the page does not scroll sideways (wide tables
	// scroll inside their frame).
	step("phone-fleet",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Click(`a[data-nav="fleet"]`),
		chromedp.WaitVisible(`#fleet-table tbody tr[data-site="site_demo1"]`))
	if width := value(t, ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); width > 390 {
		t.Errorf("at 390 px the page is %d px wide", width)
	}

	// 6. Log out: the server forgets the session, so a copy of the cookie
	// opens nothing.
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	var cookie string
	for _, c := range cookies.Cookies {
		if c.Name == console.CookieName {
			cookie = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Errorf("cookie HttpOnly=%v SameSite=%v; want HttpOnly, Strict", c.HTTPOnly, c.SameSite)
			}
		}
	}
	if cookie == "" {
		t.Fatal("the browser had no session cookie")
	}
	accessible("phone")
	step("logged-out",
		chromedp.EmulateViewport(1280, 860),
		chromedp.Click(`#logout`),
		chromedp.WaitVisible(`#login-form`))
	accessible("login")
	if m.Console.Sessions() != 0 {
		t.Errorf("%d sessions remain after logout", m.Console.Sessions())
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/vpc/sites", nil)
	req.AddCookie(&http.Cookie{Name: console.CookieName, Value: cookie})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Code string }
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || e.Code != "session_expired" {
		t.Errorf("the old cookie after logout: %d %q; want 401 session_expired", resp.StatusCode, e.Code)
	}

	// 7. Log in again with a pasted token, by keyboard alone: the login
	// page puts the focus in the token box; Tab reaches the button.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--data-dir", m.Config.DataDir, "--org", DemoOrg}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if f := value(t, ctx, chromedp.Evaluate[string](`document.activeElement.id`)); f != "token" {
		t.Errorf("the login page's focus is on %q; want the token box", f)
	}
	step("token-login-by-keyboard",
		chromedp.KeyEvent(strings.TrimSpace(out.String())),
		chromedp.KeyEvent(kb.Tab),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(`#fleet-table tbody tr[data-site="site_demo1"]`))
}

// JavaScript expressions of both browser tests: the states of the sites
// a group's page lists, and a site's history rows, newest first.
const (
	siteStatesJS  = `[...document.querySelectorAll('#sites-table tbody tr[data-site] td[data-col=state] .badge')].map(e => e.textContent)`
	historyRowsJS = `[...document.querySelectorAll('#history-table tbody tr[data-seq]')].map(r =>
		({from: r.querySelector('[data-col=from]').textContent, to: r.querySelector('[data-col=to]').textContent}))`
)

// value runs one browser action and returns its result.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// BenchmarkConsoleFleet10k measures the fleet page in headless Chromium
// with 10,000 sites (known through 20 groups of 500, no agents): per
// iteration, opening the page until its first 50 rows and the counts of
// all 10,000 show (fetching /vpc/sites, counting, sorting, rendering), and
// a search typed in the box re-rendering from memory. Reported: ms-load,
// ms-search, and the bytes and pages of one reading of /vpc/sites.
func BenchmarkConsoleFleet10k(b *testing.B) {
	if _, err := os.Stat(chromiumPath); err != nil {
		b.Skipf("%s is missing", chromiumPath)
	}
	dir := b.TempDir()
	m := &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, MQTTListen: "127.0.0.1:0", JWTOrgClaim: "org_id",
		SyncTimeout: time.Hour, LogLevel: "error", Quotas: cp.Quotas{Sites: 10_000}},
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.Addr.String()
	var tok bytes.Buffer
	if err := run(context.Background(), []string{"token", "--data-dir", dir, "--org", "org_bench"}, &tok, io.Discard); err != nil {
		b.Fatal(err)
	}
	bearer := "Bearer " + strings.TrimSpace(tok.String())
	for g := range 20 {
		sites := make([]string, 500)
		for i := range sites {
			sites[i] = fmt.Sprintf("site_b%05d", g*500+i)
		}
		ss, _ := json.Marshal(sites)
		req, _ := http.NewRequest("POST", base+"/vpc/security-groups", strings.NewReader(
			fmt.Sprintf(`{"name": "group %d", "rules": [], "sites": %s}`, g, ss)))
		req.Header.Set("Authorization", bearer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("create group: %d %s", resp.StatusCode, body)
		}
	}
	// What the page reads: every page of 1000, through Link rel="next".
	total, pages := 0, 0
	for next := "/vpc/sites?limit=1000"; next != ""; pages++ {
		req, _ := http.NewRequest("GET", base+next, nil)
		req.Header.Set("Authorization", bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		total += len(body)
		next = ""
		if l := resp.Header.Get("Link"); strings.HasPrefix(l, "<") {
			next = l[1:strings.Index(l, ">")]
		}
	}

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(b.TempDir()), chromedp.WindowSize(1280, 860))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	var link bytes.Buffer
	if err := run(context.Background(), []string{"login-url", "--data-dir", dir, "--org", "org_bench", "--url", base}, &link, io.Discard); err != nil {
		b.Fatal(err)
	}
	loaded := chromedp.Poll[chromedp.Void](`(document.querySelector('#fleet-range') || {}).textContent === 'Sites 1–50 of 10,000'`,
		chromedp.WithPollingTimeout(time.Minute), chromedp.WithPollingInterval(5*time.Millisecond))
	if err := chromedp.Do(ctx, chromedp.Navigate(strings.TrimSpace(link.String())), loaded); err != nil {
		b.Fatal(err)
	}
	var load, search time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+fmt.Sprintf("/?%d#/fleet", i)), loaded); err != nil {
			b.Fatal(err)
		}
		load += time.Since(start)
		ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => {
			const s = document.querySelector('#site-search');
			const t0 = performance.now();
			s.value = 'site_b0999';
			s.dispatchEvent(new Event('input'));
			const t1 = performance.now();
			s.value = '';
			s.dispatchEvent(new Event('input'));
			return t1 - t0;
		})()`))
		if err != nil {
			b.Fatal(err)
		}
		search += time.Duration(ms * float64(time.Millisecond))
	}
	b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "ms-load")
	b.ReportMetric(float64(search.Microseconds())/1000/float64(b.N), "ms-search")
	b.ReportMetric(float64(total), "bytes-sites")
	b.ReportMetric(float64(pages), "pages")
}

// a11yJS returns the page's accessibility problems: controls without an
// accessible name, and visible text whose contrast with the background
// behind it is under 4.5:1 (WCAG 2 AA, its formula).
const a11yJS = `(() => {
	const problems = [];
	const visible = (el) => el.offsetParent !== null || getComputedStyle(el).position === 'fixed';
	for (const el of document.querySelectorAll('input, select, textarea, button, a[href]')) {
		if (!visible(el)) continue;
		const name = (el.getAttribute('aria-label') || '').trim() ||
			(el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]')?.textContent.trim()) ||
			(el.getAttribute('aria-labelledby') || '').split(' ').map(id => document.getElementById(id)?.textContent.trim() || '').join('') ||
			(el.tagName === 'BUTTON' || el.tagName === 'A' ? el.textContent.trim() : '');
		if (!name) problems.push('no accessible name: ' + el.outerHTML.slice(0, 120));
	}
	const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
	const lum = ([r, g, b]) => {
		const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
		return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
	};
	const background = (el) => {
		for (let e = el; e; e = e.parentElement) {
			const c = rgb(getComputedStyle(e).backgroundColor);
			if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
		}
		return [255, 255, 255];
	};
	const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	for (let n = walker.nextNode(); n; n = walker.nextNode()) {
		const el = n.parentElement;
		if (!n.textContent.trim() || !visible(el) || el.closest('.visually-hidden, [hidden], :disabled, .skip')) continue;
		const s = getComputedStyle(el);
		const fg = rgb(s.color).slice(0, 3), bg = background(el);
		const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
		const ratio = (a + 0.05) / (b + 0.05);
		if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ' for "' + n.textContent.trim().slice(0, 40) + '" (' + s.color + ' on rgb(' + bg + '))');
	}
	return problems;
})()`

// consoleDemo starts a control plane with the --demo setup (three simulated
// routers and their real agents) for a browser test, and answers it, a
// one-time login link from the login-url subcommand, and the folder
// for the test's screenshots: $RAMPART_CONSOLE_SCREENSHOTS/browser (default:
// a new temporary directory, named in the log).
func consoleDemo(t *testing.T, browser string) (m *Main, link, shots string) {
	t.Helper()
	shots = os.Getenv("RAMPART_CONSOLE_SCREENSHOTS")
	if shots == "" {
		var err error
		if shots, err = os.MkdirTemp("", "rampart-console-screenshots-"); err != nil {
			t.Fatal(err)
		}
	}
	shots = filepath.Join(shots, browser)
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	demoStdout = io.Discard
	t.Cleanup(func() { demoStdout = os.Stdout })
	dir := t.TempDir()
	m = &Main{Config: Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, MQTTListen: "127.0.0.1:0", JWTOrgClaim: "org_id",
		SyncTimeout: time.Minute, Demo: 3, LogLevel: "info"},
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), SweepInterval: 100 * time.Millisecond}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	base := "http://" + m.Addr.String()

	var out bytes.Buffer
	if err := run(context.Background(), []string{"login-url", "--data-dir", dir, "--org", DemoOrg, "--url", base}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	link = strings.TrimSpace(out.String())
	if !strings.HasPrefix(link, base+"/#login=") {
		t.Fatalf("login-url printed %q", link)
	}
	return m, link, shots
}
