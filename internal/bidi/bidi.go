// Package bidi drives Firefox for tests through WebDriver BiDi, the W3C
// protocol Firefox speaks natively over a WebSocket once started with
// --remote-debugging-port (it no longer speaks CDP, so chromedp cannot
// drive it). No geckodriver is involved: the test starts firefox itself,
// reads the endpoint from its stderr ("WebDriver BiDi listening on
// ws://..."), and opens a session with session.new on ws://.../session.
//
// It is the small part of the protocol the console's browser tests need:
// navigate, evaluate a script, click and type through real input actions,
// and capture a screenshot. No Go client of the protocol is among the
// project's allowed dependencies; the WebSocket is gorilla/websocket's.
package bidi

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Browser is a Firefox process and one BiDi session with it.
type Browser struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	conn    *websocket.Conn
	version string

	closeOnce sync.Once
	writeMu   sync.Mutex
	mu        sync.Mutex
	nextID    int64
	pending   map[int64]chan reply
	readErr   error
	done      chan struct{}
	// Context is the top-level browsing context (the tab) the session
	// opened with.
	Context string
}

type reply struct {
	Type    string          `json:"type"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
}

// Error is an error the browser answered a command with.
type Error struct {
	Method, Code, Message string
}

func (e *Error) Error() string { return e.Method + ": " + e.Code + ": " + e.Message }

// ErrClosed is the error of a command the connection closed under.
var ErrClosed = errors.New("connection closed")

var listening = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

// Launch starts Firefox at path, headless, with a fresh profile in
// profileDir, and opens a BiDi session with it. Width and height size its
// window. ctx bounds the start only; Close ends the browser.
func Launch(ctx context.Context, path, profileDir string, width, height int) (*Browser, error) {
	cmd := exec.Command(path, "--headless", "--no-remote", "--remote-debugging-port=0",
		"--profile", profileDir, "--width", fmt.Sprint(width), "--height", fmt.Sprint(height), "about:blank")
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1")
	// Its own process group: Close ends the content processes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start firefox: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start firefox: %w", err)
	}
	b := &Browser{cmd: cmd, exited: make(chan struct{}), pending: map[int64]chan reply{}, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		// Keep draining stderr for the process's life, so it never blocks
		// on a full pipe.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait() // after stderr is drained, as exec.Cmd asks
		close(b.exited)
	}()
	var url string
	select {
	case url = <-found:
	case <-ctx.Done():
		b.kill()
		return nil, fmt.Errorf("start firefox: no BiDi endpoint announced: %w", ctx.Err())
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.DialContext(ctx, url+"/session", nil)
	if err != nil {
		b.kill()
		return nil, fmt.Errorf("connect to firefox at %s: %w", url, err)
	}
	conn.SetReadLimit(64 << 20) // screenshots are base64 PNGs
	b.conn = conn
	go b.read()

	var sess struct {
		Capabilities struct {
			BrowserVersion string `json:"browserVersion"`
		} `json:"capabilities"`
	}
	if err := b.Call(ctx, "session.new", map[string]any{"capabilities": map[string]any{}}, &sess); err != nil {
		b.Close()
		return nil, err
	}
	b.version = sess.Capabilities.BrowserVersion
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	if err := b.Call(ctx, "browsingContext.getTree", map[string]any{"maxDepth": 0}, &tree); err != nil {
		b.Close()
		return nil, err
	}
	if len(tree.Contexts) == 0 {
		b.Close()
		return nil, errors.New("open firefox session: no browsing context")
	}
	b.Context = tree.Contexts[0].Context
	return b, nil
}

// Version is the browser's version as the session reported it.
func (b *Browser) Version() string { return b.version }

func (b *Browser) read() {
	defer close(b.done)
	for {
		_, data, err := b.conn.ReadMessage()
		if err != nil {
			b.mu.Lock()
			b.readErr = err
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m struct {
			ID *int64 `json:"id"`
			reply
		}
		if json.Unmarshal(data, &m) != nil || m.ID == nil {
			continue // an event: none is subscribed to
		}
		b.mu.Lock()
		ch := b.pending[*m.ID]
		delete(b.pending, *m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.reply
		}
	}
}

// Call sends a command and decodes its result into out (nil: ignored).
func (b *Browser) Call(ctx context.Context, method string, params any, out any) error {
	b.mu.Lock()
	if b.readErr != nil {
		b.mu.Unlock()
		return fmt.Errorf("%s: %w: %w", method, ErrClosed, b.readErr)
	}
	b.nextID++
	id := b.nextID
	ch := make(chan reply, 1)
	b.pending[id] = ch
	b.mu.Unlock()

	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return fmt.Errorf("encode %s: %w", method, err)
	}
	b.writeMu.Lock()
	err = b.conn.WriteMessage(websocket.TextMessage, msg)
	b.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("send %s: %w", method, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: %w", method, ErrClosed)
		}
		if r.Type == "error" {
			return &Error{Method: method, Code: r.Error, Message: r.Message}
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(r.Result, out); err != nil {
			return fmt.Errorf("decode %s result: %w", method, err)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// Navigate loads url in the tab and waits until its document is complete.
func (b *Browser) Navigate(ctx context.Context, url string) error {
	return b.Call(ctx, "browsingContext.navigate", map[string]any{"context": b.Context, "url": url, "wait": "complete"}, nil)
}

// remoteValue is a script result as BiDi serialises it.
type remoteValue struct {
	Type     string          `json:"type"`
	Value    json.RawMessage `json:"value"`
	SharedID string          `json:"sharedId"`
}

type evalResult struct {
	Type             string      `json:"type"`
	Result           remoteValue `json:"result"`
	ExceptionDetails struct {
		Text string `json:"text"`
	} `json:"exceptionDetails"`
}

func (b *Browser) evaluate(ctx context.Context, expr string) (remoteValue, error) {
	var r evalResult
	err := b.Call(ctx, "script.evaluate", map[string]any{
		"expression": expr, "target": map[string]any{"context": b.Context},
		"awaitPromise": true, "resultOwnership": "none",
	}, &r)
	if err != nil {
		return remoteValue{}, err
	}
	if r.Type == "exception" {
		return remoteValue{}, fmt.Errorf("evaluate %.80q: %s", expr, r.ExceptionDetails.Text)
	}
	return r.Result, nil
}

// Eval evaluates a JavaScript expression in the tab (awaiting a promise)
// and decodes its value, passed through JSON.stringify, into out.
func (b *Browser) Eval(ctx context.Context, expr string, out any) error {
	v, err := b.evaluate(ctx, "(async () => JSON.stringify(await ("+expr+")))()")
	if err != nil {
		return err
	}
	var s string
	if v.Type != "string" || json.Unmarshal(v.Value, &s) != nil {
		return fmt.Errorf("evaluate %.80q: the value is not JSON (%s)", expr, v.Type)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal([]byte(s), out)
}

// Wait polls a JavaScript expression until it is true, or ctx ends; the
// error then says which condition was not met.
func (b *Browser) Wait(ctx context.Context, expr string) error {
	for {
		var ok bool
		err := b.Eval(ctx, "!!("+expr+")", &ok)
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("wait for %s: %w (last: %v)", expr, ctx.Err(), err)
			}
			return fmt.Errorf("wait for %s: %w", expr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// element finds the first element matching a CSS selector, scrolled into
// view, as a reference input actions can use.
func (b *Browser) element(ctx context.Context, selector string) (map[string]any, error) {
	sel, _ := json.Marshal(selector)
	v, err := b.evaluate(ctx, "(() => { const e = document.querySelector("+string(sel)+"); e?.scrollIntoView({block: 'center'}); return e; })()")
	if err != nil {
		return nil, err
	}
	if v.Type != "node" || v.SharedID == "" {
		return nil, fmt.Errorf("find %s: no such element", selector)
	}
	return map[string]any{"sharedId": v.SharedID}, nil
}

// Click moves the mouse to the middle of the element selector matches and
// clicks it, through input.performActions: the browser's own input path,
// with its hit testing and focus changes.
func (b *Browser) Click(ctx context.Context, selector string) error {
	el, err := b.element(ctx, selector)
	if err != nil {
		return err
	}
	return b.Call(ctx, "input.performActions", map[string]any{"context": b.Context, "actions": []any{map[string]any{
		"type": "pointer", "id": "mouse", "parameters": map[string]any{"pointerType": "mouse"},
		"actions": []any{
			map[string]any{"type": "pointerMove", "x": 0, "y": 0, "origin": map[string]any{"type": "element", "element": el}},
			map[string]any{"type": "pointerDown", "button": 0},
			map[string]any{"type": "pointerUp", "button": 0},
		},
	}}}, nil)
}

// Type clicks the element selector matches and types text into it, key by
// key. Keys beyond plain characters use WebDriver's codes (Backspace is
// "\uE003", End "\uE010", Tab "\uE004", Enter "\uE007").
func (b *Browser) Type(ctx context.Context, selector, text string) error {
	if err := b.Click(ctx, selector); err != nil {
		return err
	}
	return b.Keys(ctx, text)
}

// Keys types text into whatever has the focus.
func (b *Browser) Keys(ctx context.Context, text string) error {
	var keys []any
	for _, r := range text {
		keys = append(keys, map[string]any{"type": "keyDown", "value": string(r)}, map[string]any{"type": "keyUp", "value": string(r)})
	}
	return b.Call(ctx, "input.performActions", map[string]any{"context": b.Context, "actions": []any{map[string]any{
		"type": "key", "id": "keyboard", "actions": keys,
	}}}, nil)
}

// Screenshot captures the tab's viewport as PNG.
func (b *Browser) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := b.Call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": b.Context}, &r); err != nil {
		return nil, err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return nil, fmt.Errorf("decode screenshot: %w", err)
	}
	return png, nil
}

// Close ends the session and the browser, and waits for its processes.
// Calling it again does nothing.
func (b *Browser) Close() error {
	b.closeOnce.Do(b.close)
	return nil
}

func (b *Browser) close() {
	if b.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := b.Call(ctx, "browser.close", map[string]any{}, nil)
		cancel()
		b.conn.Close()
		if err == nil || errors.Is(err, ErrClosed) {
			select { // Firefox exits on its own after browser.close
			case <-b.exited:
			case <-time.After(10 * time.Second):
			}
		}
	}
	b.kill()
}

// kill ends the browser's process group (whatever is left of it) and
// waits for the browser.
func (b *Browser) kill() {
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.exited
}
