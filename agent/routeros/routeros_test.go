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
