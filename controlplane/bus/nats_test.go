package bus

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-fw/rampart/internal/wait"
	"github.com/rampart-fw/rampart/protocol"
)

// natsNode is a nats-server process with MQTT and JetStream, one node of a
// cluster.
type natsNode struct {
	cmd     *exec.Cmd
	mqttURL string
	log     *bytes.Buffer
	stopped bool
}

// startNATSCluster starts n nats-server processes (Debian's nats-server,
// as DESIGN.md section 11 tests against) clustered, each with JetStream
// and an MQTT listener, and waits until each answers MQTT. It skips the
// test where nats-server is not installed.
func startNATSCluster(t *testing.T, n int) []*natsNode {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("nats-server is not installed (apt-get install nats-server); skipping the NATS cluster test")
	}
	dir := t.TempDir()
	client, cluster, mqtt := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		client[i], cluster[i], mqtt[i] = freeAddr(t), freeAddr(t), freeAddr(t)
	}
	var routes []string
	for _, c := range cluster {
		routes = append(routes, "nats://"+c)
	}
	nodes := make([]*natsNode, n)
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		conf := fmt.Sprintf(`server_name: %s
listen: %s
jetstream { store_dir: %q }
cluster { name: rampart, listen: %s, routes: [%s] }
mqtt { listen: %s }
`, name, client[i], filepath.Join(dir, name), cluster[i], strings.Join(routes, ", "), mqtt[i])
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		node := &natsNode{mqttURL: "tcp://" + mqtt[i], log: &bytes.Buffer{}}
		node.cmd = exec.Command(bin, "-c", path)
		node.cmd.Stdout, node.cmd.Stderr = node.log, node.log
		if err := node.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		nodes[i] = node
		t.Cleanup(func() {
			node.kill()
			if t.Failed() {
				out := node.log.Bytes()
				t.Logf("nats-server %s (last 2 KiB):\n%s", name, out[max(0, len(out)-2048):])
			}
		})
	}
	return nodes
}

// kill ends the node at once, as a crash would (SIGKILL).
func (n *natsNode) kill() {
	if n.stopped {
		return
	}
	n.stopped = true
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.cmd.Wait()
}

// TestNATSClusterFailover is #15 item 3 on a real 3-node NATS cluster with
// MQTT and JetStream: the bus is given every node's URL, the node it is
// connected to is killed, and it moves to another node, where JetStream may
// refuse its QoS 1 subscriptions while it elects new leaders; the bus
// retries them on that connection until they are granted, asks the agents
// to report again, and ingests a status published on the third node.
func TestNATSClusterFailover(t *testing.T) {
	nodes := startNATSCluster(t, 3)
	// The agent's node last, so the bus is not on it.
	urls := []string{nodes[0].mqttURL, nodes[1].mqttURL, nodes[2].mqttURL}
	root := "rampart-test/nats/v1"
	e := &env{url: strings.Join(urls, ","), root: root, site: func(string, string) (string, string) { return "", "" }}

	rec := &recorder{}
	b := connectBus(t, e, rec, nil, nil)
	agentEnv := *e
	agentEnv.url = nodes[2].mqttURL
	a := connectAgent(t, &agentEnv, "org_x", "site_a")
	st := mustJSON(t, status("org_x", "site_a", 1, protocol.StateApplied))
	a.publish(t, protocol.StatusTopic(root, "org_x", "site_a"), st)
	poll(t, "a status before the failover", func() bool { s, _ := rec.snapshot(); return len(s) >= 1 })

	var on *natsNode
	for _, n := range nodes {
		if n.mqttURL == b.Server() {
			on = n
		}
	}
	if on == nil || on == nodes[2] {
		t.Fatalf("the bus is on %q: want the first or second node", b.Server())
	}
	killed := time.Now()
	on.kill()
	// JetStream elects new leaders for a while (about 10 s here, 10-15 s
	// measured with Debian's nats-server 2.9.10): a bound well above that.
	wait.For(t, time.Minute, "the bus on another node with its subscriptions", func() bool {
		return testutil.ToFloat64(b.m.connects) >= 2 && b.Ready() == nil
	})
	recovered := time.Since(killed)
	// JetStream may refuse the agent's retained publish too while it elects
	// (NATS then closes the agent's connection): publish again until it is
	// taken, as the real agent does.
	st2 := mustJSON(t, status("org_x", "site_a", 2, protocol.StateApplied))
	wait.Until(t, time.Minute, "the agent's status taken after the failover", func() string {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(nodes[2].mqttURL).SetProtocolVersion(4).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Sprintf("connect: %v", tok.Error())
		}
		defer c.Disconnect(100)
		if tok := c.Publish(protocol.StatusTopic(root, "org_x", "site_a"), 1, true, st2); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Sprintf("publish: %v", tok.Error())
		}
		return ""
	})
	wait.For(t, time.Minute, "a status after the failover", func() bool {
		s, _ := rec.snapshot()
		return len(s) >= 2 && s[len(s)-1].Revision == 2
	})
	t.Logf("node killed -> bus subscribed on another node: %s; subscriptions refused meanwhile: %v; resync requests: %v",
		recovered.Round(time.Millisecond), testutil.ToFloat64(b.m.refused.WithLabelValues("subscribe")), testutil.ToFloat64(b.m.resyncs))
	if got := testutil.ToFloat64(b.m.resyncs); got < 2 {
		t.Errorf("resync requests = %v, want one per connection (2)", got)
	}
}
