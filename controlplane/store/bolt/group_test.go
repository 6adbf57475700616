package bolt

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// oddStrings are strings encoding/json escapes, or might be thought to.
var oddStrings = []string{"", "plain", "quote\"", `back\slash`, "<html>&amp;", "tab\tnl\nnul\x00", "\u2028\u2029",
	"é ünïcode 🙂", "bad \xff utf8", "\x7f del", "slash/"}

func randomGroup(rng *rand.Rand) cp.SecurityGroup {
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	g := cp.SecurityGroup{ID: "sec_grp_" + pick(oddStrings), Name: pick(oddStrings), Description: pick(oddStrings),
		Status: cp.Status(pick([]string{"active", "syncing", "failed", pick(oddStrings)}))}
	if rng.IntN(8) > 0 {
		g.Sites = []string{}
		for range rng.IntN(4) {
			g.Sites = append(g.Sites, pick(oddStrings))
		}
	}
	if rng.IntN(8) > 0 {
		g.Rules = []cp.FilterRule{}
		for range rng.IntN(6) {
			g.Rules = append(g.Rules, cp.FilterRule{ID: pick(oddStrings), Direction: pick([]string{"inbound", "outbound"}),
				Order: rng.IntN(600) - 100, Protocol: rng.IntN(300) - 10, Port: pick([]string{"", "22", "80,443"}),
				Address: pick([]string{"10.0.0.0/8", "prfx_lst_x"}), Description: pick(oddStrings)})
		}
	}
	return g
}

// TestAppendGroupJSONIsMarshal holds the hand-written encoder to
// json.Marshal byte for byte, including a field added to SecurityGroup or
// FilterRule later (json.Marshal would write it, the encoder would not).
func TestAppendGroupJSONIsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		g := randomGroup(rng)
		want, err := json.Marshal(&g)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendGroupJSON(nil, &g); string(got) != string(want) {
			t.Fatalf("group %d:\n got %s\nwant %s", i, got, want)
		}
		if n := groupJSONSize(&g); n < len(want) && !strings.ContainsAny(string(want), `\`) {
			t.Errorf("group %d: size estimate %d < %d", i, n, len(want))
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestAppendStringIsMarshal holds the string encoder to json.Marshal on strings of every length up to 24 made of the bytes
// each rule is about (escapes, HTML characters, control, non-ASCII and
// invalid UTF-8) in every position.
func TestAppendStringIsMarshal(t *testing.T) {
	interesting := []byte{0, 0x1f, ' ', '!', '"', '&', '<', '>', '\\', 'a', 0x7f, 0x80, 0xc3, 0xa9, 0xff}
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 25 {
		for range 4000 {
			s := make([]byte, n)
			for i := range s {
				s[i] = 'a'
				if rng.IntN(n+1) == 0 {
					s[i] = interesting[rng.IntN(len(interesting))]
				}
			}
			want, _ := json.Marshal(string(s))
			if got := appendString([]byte("x"), string(s)); string(got) != "x"+string(want) {
				t.Fatalf("appendString(%q) = %s, want x%s", s, got, want)
			}
		}
	}
}

// BenchmarkPrepareGroup250 is the CPU a 250-rule replace spends outside
// bbolt in the store: keep the rule ids of the stored version (decoded
// from its index), encode the new group and its index.
//
//	go test -run '^$' -bench PrepareGroup -benchmem ./controlplane/store/bolt
func BenchmarkPrepareGroup250(b *testing.B) {
	w := &cp.SecurityGroupWrite{Name: "Big group", Sites: []string{}}
	for i := range cp.MaxRules {
		w.Rules = append(w.Rules, cp.FilterRuleWrite{Direction: "inbound", Order: i + 1, Protocol: 6,
			Port: fmt.Sprint(1000 + i), Address: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Description: "benchmark rule with a description"})
	}
	stored := &groupWrite{w: w, org: "org_a", gid: "sec_grp_x"}
	stored.prepare()
	b.SetBytes(int64(len(stored.data)))
	b.ReportAllocs()
	for b.Loop() {
		gw := &groupWrite{w: w, org: "org_a", gid: "sec_grp_x"}
		if err := decodePrev(&gw.prev, stored.index); err != nil {
			b.Fatal(err)
		}
		gw.prepare()
		if len(gw.data) != len(stored.data) {
			b.Fatalf("encoded %d bytes, want %d", len(gw.data), len(stored.data))
		}
	}
}
