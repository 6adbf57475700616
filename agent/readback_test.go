package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-fw/rampart/rossim"
)

// TestListQuerySelectsLists: the read-back's query words select exactly the
// entries of the lists written, on the simulator (RouterOS's query stack).
func TestListQuerySelectsLists(t *testing.T) {
	r := rossim.New(rossim.Options{})
	for _, e := range [][2]string{{"rampart-a", "10.0.0.1"}, {"rampart-b", "10.0.0.2"}, {"rampart-c", "10.0.0.3"}, {"rampart-b", "10.0.0.4"}} {
		if _, err := r.Exec("/ip/firewall/address-list/add", "=list="+e[0], "=address="+e[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		lists []string
		want  []string
	}{
		{[]string{"rampart-b"}, []string{"10.0.0.2", "10.0.0.4"}},
		{[]string{"rampart-a", "rampart-c"}, []string{"10.0.0.1", "10.0.0.3"}},
		{[]string{"rampart-a", "rampart-b", "rampart-c"}, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{[]string{"rampart-none"}, nil},
	} {
		rows, err := r.Exec(append([]string{"/ip/firewall/address-list/print"}, listQuery(tc.lists)...)...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range rows {
			got = append(got, it["address"])
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tc.lists, diff)
		}
	}
}
