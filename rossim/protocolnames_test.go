package rossim

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/protocol"
)

// TestProtocolNamesAreProtocols holds the protocol names the agent and the
// API use (protocol.IPProtocols) to the simulator's own table, which stays
// a separate copy: the simulator judges RouterOS, so a name added to one
// must be shown to be RouterOS's and added to the other.
func TestProtocolNamesAreProtocols(t *testing.T) {
	shared := map[string]int{}
	for _, p := range protocol.IPProtocols {
		shared[p.Name] = p.Number
	}
	if d := cmp.Diff(protocolNames, shared); d != "" {
		t.Errorf("protocol names (-rossim +protocol.IPProtocols):\n%s", d)
	}
}
