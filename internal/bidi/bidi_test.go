package bidi_test

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/internal/bidi"
)

const firefox = "/usr/bin/firefox-esr"

const page = `<!doctype html><title>t</title>
<input id="box" aria-label="box">
<button id="go" onclick="document.querySelector('#out').textContent = 'clicked ' + document.querySelector('#box').value">Go</button>
<p id="out"></p>`

// TestDriver: real input reaches the page (typing, special keys, a click
// on the element's middle), script values come back decoded, a script's
// exception and a missing element are errors, a wait that never holds
// ends with its context, and a screenshot is a PNG of the window's size.
func TestDriver(t *testing.T) {
	if _, err := os.Stat(firefox); err != nil {
		t.Skipf("skipping: %s is missing (apt-get install firefox-esr)", firefox)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(page))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bidi.Launch(ctx, firefox, t.TempDir(), 800, 600)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Navigate(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	if err := b.Type(ctx, "#box", "abcx\uE003d"); err != nil { // Backspace
		t.Fatal(err)
	}
	if err := b.Click(ctx, "#go"); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(ctx, `document.querySelector('#out').textContent !== ''`); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Out   string
		Focus string
		N     []int
	}
	if err := b.Eval(ctx, `({out: document.querySelector('#out').textContent, focus: document.activeElement.id, n: [1, 2]})`, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(struct {
		Out   string
		Focus string
		N     []int
	}{"clicked abcd", "go", []int{1, 2}}, got); diff != "" {
		t.Errorf("page after typing and a click (-want +got):\n%s", diff)
	}

	if err := b.Eval(ctx, `Promise.reject(new Error('nope'))`, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("a rejected promise: %v, want its error", err)
	}
	if err := b.Click(ctx, "#missing"); err == nil {
		t.Error("clicking a missing element: no error")
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err = b.Wait(short, `false`)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "false") {
		t.Errorf("a wait that never holds: %v, want the deadline naming the condition", err)
	}
	shot, err := b.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if w := img.Bounds().Dx(); w < 400 || w > 800 {
		t.Errorf("screenshot %d px wide, want about the window's 800", w)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Navigate(ctx, srv.URL); !errors.Is(err, bidi.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}
