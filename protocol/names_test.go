package protocol

import "testing"

func TestIPProtocolNumber(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"tcp", 6, true}, {"6", 6, true}, {"udp-lite", 136, true}, {"ipv6-encap", 41, true}, {"0", 0, true}, {"255", 255, true},
		{"256", 0, false}, {"-1", 0, false}, {"06", 0, false}, {"TCP", 0, false}, {"idrp", 0, false}, {"", 0, false},
	} {
		if n, ok := IPProtocolNumber(c.in); n != c.want || ok != c.ok {
			t.Errorf("IPProtocolNumber(%q) = %d, %v; want %d, %v", c.in, n, ok, c.want, c.ok)
		}
	}
	for _, p := range IPProtocols {
		if name, ok := IPProtocolName(p.Number); !ok || name != p.Name {
			t.Errorf("IPProtocolName(%d) = %q, %v", p.Number, name, ok)
		}
	}
	if _, ok := IPProtocolName(45); ok {
		t.Error("45 (idrp) has a name RouterOS is not known to print")
	}
}
