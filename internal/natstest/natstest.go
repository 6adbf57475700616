// Package natstest runs a real 3-node NATS cluster for tests: three
// nats-server processes (Debian's package nats-server) on free loopback
// ports, routed to each other, with JetStream and MQTT enabled and the MQTT
// streams (retained messages, QoS 1 messages, sessions) replicated on all
// three nodes: the shape of deploy/nats, without its TLS.
//
// A test can kill -9 a node and restart it (same ports, same JetStream
// directory) to see what clients go through when a broker node dies. With
// nats-server 2.9.10 the other two keep every retained message, but refuse
// retained publishes for about 8 s while JetStream elects new leaders, and
// refuse about a third of new QoS 1 subscriptions (SUBACK 0x80) for as long
// as the node stays dead, and may even acknowledge a retained publish it
// did not store (BENCHMARKS.md, "NATS node death"): clients must retry
// both, and a PUBACK is no proof that new subscribers will get a message.
//
// Where nats-server is missing, Start skips the test and says how to
// install it.
package natstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-fw/rampart/internal/freeport"
)

// Size is the number of nodes: the smallest cluster that keeps a JetStream
// quorum with one node dead.
const Size = 3

// readyTimeout bounds how long a node may take to be healthy (routes up,
// JetStream meta leader known) on a loaded 2-core CI machine; idle, a
// cluster is healthy in about 2 s.
const readyTimeout = 60 * time.Second

// Cluster is a running 3-node cluster. Its methods fail the test on error;
// call them from the test's goroutine.
type Cluster struct {
	t     testing.TB
	bin   string
	nodes [Size]*Node
}

// Node is one nats-server of the cluster.
type Node struct {
	// Name is the server_name, n1 to n3.
	Name string
	// MQTTURL is tcp://127.0.0.1:<port> of the node's MQTT listener.
	MQTTURL string
	// MonitorURL is http://127.0.0.1:<port> of its monitoring endpoint.
	MonitorURL string

	dir  string
	conf string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Binary returns the path of nats-server, or an error saying how to
// install it.
func Binary() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	// /usr/sbin is where Debian puts it, and it is not on every user's PATH.
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server", nil
	}
	return "", errors.New("nats-server not found on PATH nor in /usr/sbin (install it with: apt-get install nats-server)")
}

// Options changes the cluster's configuration from deploy/nats's.
type Options struct {
	// ConsumerReplicas is mqtt.consumer_replicas, the replicas of the
	// JetStream consumer behind each QoS 1 subscription; 0 leaves
	// nats-server's default (as many as the streams').
	ConsumerReplicas int
}

// Start starts a 3-node cluster and waits until every node is healthy. It
// is stopped (kill -9; nothing of it is kept) when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skip("natstest: " + err.Error())
	}
	ports, err := freeport.Ports(4 * Size)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	dir := t.TempDir()
	c := &Cluster{t: t, bin: bin}
	var routes []string
	for i := range Size {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[4*i+2]))
	}
	for i := range Size {
		client, monitor, route, mqtt := ports[4*i], ports[4*i+1], ports[4*i+2], ports[4*i+3]
		n := &Node{
			Name:       fmt.Sprintf("n%d", i+1),
			MQTTURL:    fmt.Sprintf("tcp://127.0.0.1:%d", mqtt),
			MonitorURL: fmt.Sprintf("http://127.0.0.1:%d", monitor),
			dir:        filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
		}
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		n.conf = filepath.Join(n.dir, "nats.conf")
		if err := os.WriteFile(n.conf, []byte(config(n, opts, client, monitor, route, mqtt, routes)), 0o600); err != nil {
			t.Fatalf("natstest: write %s: %v", n.conf, err)
		}
		c.nodes[i] = n
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.kill()
		}
	})
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
	for i := range Size {
		c.WaitHealthy(i)
	}
	return c
}

// config is a node's configuration: the shape of deploy/nats/nats.conf,
// on loopback ports. stream_replicas 3 is what makes retained messages
// (and QoS 1 messages and sessions) survive a node's death.
func config(n *Node, opts Options, client, monitor, route, mqtt int, routes []string) string {
	extra := ""
	if opts.ConsumerReplicas > 0 {
		extra = fmt.Sprintf("  consumer_replicas: %d\n", opts.ConsumerReplicas)
	}
	return fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
}
cluster {
  name: rampart-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
mqtt {
  listen: 127.0.0.1:%d
  stream_replicas: 3
%s}
`, n.Name, client, monitor, filepath.Join(n.dir, "jetstream"), route, strings.Join(routes, ", "), mqtt, extra)
}

// Node returns node i (0 to 2).
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// MQTTURLs returns every node's MQTT URL, in node order.
func (c *Cluster) MQTTURLs() []string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.MQTTURL)
	}
	return urls
}

// Kill kills node i with SIGKILL (no goodbye to its peers or clients) and
// waits until it has exited.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.nodes[i].kill()
}

// Restart starts node i again, with the same ports and JetStream
// directory, and waits until it is healthy.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	n := c.nodes[i]
	if n.running() {
		c.t.Fatalf("natstest: restart %s: it is still running", n.Name)
	}
	if err := c.start(n); err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
	c.WaitHealthy(i)
}

// WaitHealthy waits until node i's /healthz answers ok: its routes are up
// and its JetStream knows the cluster's meta leader.
func (c *Cluster) WaitHealthy(i int) {
	c.t.Helper()
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var why string
	for {
		why = n.health(ctx)
		if why == "" {
			return
		}
		select {
		case <-n.done:
			c.t.Fatalf("natstest: %s exited: %s", n.Name, n.logTail())
		case <-ctx.Done():
			c.t.Fatalf("natstest: %s not healthy within %s: %s\n%s", n.Name, readyTimeout, why, n.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// MetaLeader returns the index of the node that is the JetStream meta
// leader as node i sees it, or -1 if it knows none.
func (c *Cluster) MetaLeader(i int) int {
	c.t.Helper()
	var jsz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := c.nodes[i].get(context.Background(), "/jsz", &jsz); err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
	if jsz.Meta == nil {
		return -1
	}
	for j, n := range c.nodes {
		if n.Name == jsz.Meta.Leader {
			return j
		}
	}
	return -1
}

func (c *Cluster) start(n *Node) error {
	logf, err := os.OpenFile(filepath.Join(n.dir, "nats.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s log: %w", n.Name, err)
	}
	cmd := exec.Command(c.bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by its timeout takes the nodes along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.cmd = cmd
	n.done = make(chan struct{})
	done := n.done
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	return nil
}

func (n *Node) running() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func (n *Node) kill() {
	if !n.running() {
		return
	}
	n.cmd.Process.Kill()
	<-n.done
}

// health returns "" when /healthz says ok, else why not.
func (n *Node) health(ctx context.Context) string {
	var h struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	if err := n.get(ctx, "/healthz", &h); err != nil {
		return err.Error()
	}
	if h.Status != "ok" {
		return h.Status + ": " + h.Error
	}
	return ""
}

// get decodes the JSON of a monitoring endpoint. /healthz answers 503 with
// a JSON body while unhealthy, so the body is read whatever the status.
func (n *Node) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.MonitorURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s of %s: %w", path, n.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read %s of %s: %w", path, n.Name, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s of %s (HTTP %d): %w", path, n.Name, resp.StatusCode, err)
	}
	return nil
}

func (n *Node) logTail() string {
	s := n.Log()
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return strings.TrimSpace(s)
}

// StreamLeader returns the index of the node that leads stream (of the
// global account, where MQTT clients without accounts live) as node i sees
// it, or -1 if it knows none.
func (c *Cluster) StreamLeader(i int, stream string) int {
	c.t.Helper()
	var jsz struct {
		Accounts []struct {
			Name    string `json:"name"`
			Streams []struct {
				Name    string `json:"name"`
				Cluster *struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := c.nodes[i].get(context.Background(), "/jsz?accounts=true&streams=true", &jsz); err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			if s.Name != stream || s.Cluster == nil {
				continue
			}
			for j, n := range c.nodes {
				if n.Name == s.Cluster.Leader {
					return j
				}
			}
		}
	}
	return -1
}

// Log returns the node's log so far (all its runs), for a test to show or
// search when something went wrong.
func (n *Node) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "nats.log"))
	return string(b)
}
