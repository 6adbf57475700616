package routeros

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3/proto"

	"github.com/rampart-fw/rampart/rossim"
)

func sim(t *testing.T, o rossim.Options) *rossim.Router {
	t.Helper()
	r, err := rossim.Listen("127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestLogin(t *testing.T) {
	r := sim(t, rossim.Options{Password: "pw"})
	if _, err := Dial(context.Background(), Options{Addr: r.Addr(), User: "admin", Password: "bad", Timeout: 5 * time.Second}); err == nil || !strings.Contains(err.Error(), "invalid user name or password") {
		t.Fatalf("bad password: %v", err)
	}
	s, err := Dial(context.Background(), Options{Addr: r.Addr(), User: "admin", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	legacy := sim(t, rossim.Options{Password: "pw", LegacyLogin: true})
	s, err = Dial(context.Background(), Options{Addr: legacy.Addr(), User: "admin", Password: "pw"})
	if err != nil {
		t.Fatalf("legacy login: %v", err)
	}
	s.Close()
}

func TestTrapKeepsSessionUsable(t *testing.T) {
	r := sim(t, rossim.Options{})
	c := New(Options{Addr: r.Addr(), User: "admin", Sessions: 1})
	defer c.Close()
	ctx := context.Background()
	_, _, err := c.Run(ctx, "/ip/firewall/filter/remove", "=.id=*999")
	if !errors.Is(err, ErrNoSuchItem) {
		t.Fatalf("remove of a missing id: %v", err)
	}
	if _, _, err := c.Run(ctx, "/system/resource/print"); err != nil {
		t.Fatalf("after a trap: %v", err)
	}
	if got := r.Stats().Logins; got != 1 {
		t.Errorf("%d logins, want 1 (a trap must not cost a reconnect)", got)
	}
}

func TestPipelineAndStream(t *testing.T) {
	r := sim(t, rossim.Options{Latency: time.Millisecond})
	c := New(Options{Addr: r.Addr(), User: "admin"})
	defer c.Close()
	ctx := context.Background()
	s, err := c.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	cmd := func(i int) []string {
		// Entry 7 twice: the second add traps, the pipeline goes on.
		if i == n-1 {
			i = 7
		}
		return []string{"/ip/firewall/address-list/add", "=list=t", fmt.Sprintf("=address=10.0.%d.%d", i/250, i%250)}
	}
	ok, traps := 0, 0
	err = s.Pipeline(n, cmd, 16, func(i int, ret string, err error) {
		switch {
		case err == nil && strings.HasPrefix(ret, "*"):
			ok++
		case errors.Is(err, ErrExists) && i == n-1:
			traps++
		default:
			t.Errorf("reply %d: %q %v", i, ret, err)
		}
	})
	c.Release(s)
	if err != nil || ok != n-1 || traps != 1 {
		t.Fatalf("pipeline: err %v, %d ok, %d traps", err, ok, traps)
	}
	rows := 0
	err = c.Stream(ctx, func(ps []proto.Pair) {
		for _, p := range ps {
			if p.Key == "list" && p.Value == "t" {
				rows++
			}
		}
	}, "/ip/firewall/address-list/print", "=.proplist=.id,list")
	if err != nil || rows != n-1 {
		t.Fatalf("stream: %d rows, %v", rows, err)
	}
}

func TestDroppedConnectionBreaksSessionAndRedials(t *testing.T) {
	r := sim(t, rossim.Options{})
	c := New(Options{Addr: r.Addr(), User: "admin", Sessions: 1, Timeout: 5 * time.Second})
	defer c.Close()
	ctx := context.Background()
	if _, _, err := c.Run(ctx, "/system/resource/print"); err != nil {
		t.Fatal(err)
	}
	r.DropAfter(0)
	if _, _, err := c.Run(ctx, "/system/resource/print"); err == nil {
		t.Fatal("no error from a dropped connection")
	}
	if _, _, err := c.Run(ctx, "/system/resource/print"); err != nil {
		t.Fatalf("the pool did not redial: %v", err)
	}
	if got := r.Stats().Logins; got != 2 {
		t.Errorf("%d logins, want 2", got)
	}
}

// TestPoolReusesAnIdleSession: a caller that uses one session at a time
// logs in once, whatever the pool size; concurrent callers get sessions of
// their own, up to the pool size.
func TestPoolReusesAnIdleSession(t *testing.T) {
	r := sim(t, rossim.Options{})
	c := New(Options{Addr: r.Addr(), User: "admin", Sessions: 3})
	defer c.Close()
	ctx := context.Background()
	for range 5 {
		if _, _, err := c.Run(ctx, "/system/identity/print"); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Stats().Logins; n != 1 {
		t.Fatalf("%d logins for one caller at a time, want 1", n)
	}
	var held []*Session
	for range 3 {
		s, err := c.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
	}
	if n := r.Stats().Logins; n != 3 {
		t.Errorf("%d logins for three sessions held at once, want 3", n)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Acquire(short); err == nil {
		t.Error("a fourth session was handed out by a pool of three")
	}
	for _, s := range held {
		c.Release(s)
	}
}

// TestErrorsAreTyped: what the agent classifies comes as types, so it
// never matches messages: a refused login, an API it cannot reach, a
// session the router cut, and the trap kinds.
func TestErrorsAreTyped(t *testing.T) {
	ctx := context.Background()
	r := sim(t, rossim.Options{Password: "pw"})

	_, err := Dial(ctx, Options{Addr: r.Addr(), User: "admin", Password: "bad", Timeout: 5 * time.Second})
	var login *LoginError
	if !errors.As(err, &login) || login.User != "admin" || login.Message == "" {
		t.Errorf("bad password: %#v", err)
	}

	dead := sim(t, rossim.Options{})
	addr := dead.Addr()
	dead.Close()
	_, err = Dial(ctx, Options{Addr: addr, User: "admin", Timeout: 5 * time.Second})
	var ce *ConnError
	if !errors.As(err, &ce) || !ce.Dialing() || ce.Addr != addr {
		t.Errorf("unreachable API: %#v", err)
	}

	c := New(Options{Addr: r.Addr(), User: "admin", Password: "pw", Sessions: 1})
	defer c.Close()
	r.DropAfter(0)
	_, _, err = c.Run(ctx, "/system/resource/print")
	if !errors.As(err, &ce) || ce.Dialing() {
		t.Errorf("session cut: %#v", err)
	}

	for _, tc := range []struct {
		message string
		kind    error
	}{
		{"failure: already have such entry", ErrExists},
		{"not enough permissions (9)", ErrPermission},
		{"no such item (4)", ErrNoSuchItem},
		{"input does not match any value of in-interface-list", ErrNoSuchValue},
	} {
		r.InjectTrap("/ip/firewall/filter/print", tc.message, 1)
		_, _, err := c.Run(ctx, "/ip/firewall/filter/print")
		var trap *Trap
		if !errors.As(err, &trap) || !errors.Is(err, tc.kind) {
			t.Errorf("trap %q: %v, want %v", tc.message, err, tc.kind)
		}
		if tc.kind == ErrNoSuchValue && trap.Property() != "in-interface-list" {
			t.Errorf("trap %q names property %q", tc.message, trap.Property())
		}
		for _, other := range []error{ErrExists, ErrPermission, ErrNoSuchItem, ErrNoSuchValue} {
			if other != tc.kind && errors.Is(err, other) {
				t.Errorf("trap %q also reads as %v", tc.message, other)
			}
		}
	}
}
