package natstest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// opTimeout bounds one MQTT operation (connect, subscribe, publish): past it
// the attempt counts as failed. A healthy cluster answers in milliseconds;
// the bound is longer than nats-server's own wait for a JetStream answer
// (4 s in 2.9) so that its verdict, not ours, is what a probe sees.
const opTimeout = 10 * time.Second

var clientSeq atomic.Int64

// attempt errors, by type so probes can tell a refusal from a timeout.
var (
	errTimeout = errors.New("no answer in time")
	errRefused = errors.New("refused by the broker")
)

// opError is a failed MQTT operation: which one, on which node.
type opError struct {
	Op  string // "connect", "subscribe", "publish" or "deliver"
	URL string
	Err error
}

func (e *opError) Error() string { return fmt.Sprintf("%s on %s: %v", e.Op, e.URL, e.Err) }
func (e *opError) Unwrap() error { return e.Err }

// dial connects a fresh MQTT 3.1.1 client with a clean session and no
// automatic reconnection: each attempt below is one connection, so a
// refusal is seen as it happens.
func dial(url string) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker(url).
		SetClientID(fmt.Sprintf("natstest-%d", clientSeq.Add(1))).
		SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(opTimeout).SetWriteTimeout(opTimeout)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(opTimeout + time.Second) {
		c.Disconnect(0)
		return nil, &opError{"connect", url, errTimeout}
	}
	if err := tok.Error(); err != nil {
		return nil, &opError{"connect", url, err}
	}
	return c, nil
}

// publishRetained publishes payload on topic, retained, QoS 1, through url,
// and returns once the broker acknowledged it (PUBACK).
func publishRetained(url, topic, payload string) error {
	c, err := dial(url)
	if err != nil {
		return err
	}
	defer c.Disconnect(50)
	tok := c.Publish(topic, 1, true, payload)
	if !tok.WaitTimeout(opTimeout) {
		return &opError{"publish", url, errTimeout}
	}
	if err := tok.Error(); err != nil {
		return &opError{"publish", url, err}
	}
	return nil
}

// readRetained subscribes at QoS 1 through url with a fresh client and
// returns the first message delivered, which must be a retained one.
func readRetained(url, topic string) (string, error) {
	c, err := dial(url)
	if err != nil {
		return "", err
	}
	defer c.Disconnect(50)
	got := make(chan paho.Message, 1)
	tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m:
		default:
		}
	})
	if !tok.WaitTimeout(opTimeout) {
		return "", &opError{"subscribe", url, errTimeout}
	}
	if err := tok.Error(); err != nil {
		return "", &opError{"subscribe", url, err}
	}
	// SUBACK return code 0x80 is the broker refusing the subscription.
	if code := tok.(*paho.SubscribeToken).Result()[topic]; code == 0x80 {
		return "", &opError{"subscribe", url, fmt.Errorf("%w (SUBACK 0x80)", errRefused)}
	}
	select {
	case m := <-got:
		if !m.Retained() {
			return "", &opError{"deliver", url, fmt.Errorf("message %q is not flagged retained", m.Payload())}
		}
		return string(m.Payload()), nil
	case <-time.After(opTimeout):
		return "", &opError{"deliver", url, errTimeout}
	}
}

// seedRetained publishes payload, retained, on n1 and waits until every
// node delivers it to a fresh subscription.
func seedRetained(t testing.TB, c *Cluster, topic, payload string) {
	t.Helper()
	if err := publishRetained(c.Node(0).MQTTURL, topic, payload); err != nil {
		t.Fatalf("publish on n1: %v", err)
	}
	for i := range Size {
		retry(t, 15*time.Second, "retained message on "+c.Node(i).Name, func() error {
			got, err := readRetained(c.Node(i).MQTTURL, topic)
			if err == nil && got != payload {
				err = fmt.Errorf("%s delivers %q", c.Node(i).Name, got)
			}
			return err
		})
	}
}

// retry repeats op until it succeeds or within has passed, and returns how
// long it took and how many attempts failed (with the last failure).
func retry(t testing.TB, within time.Duration, what string, op func() error) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	failed := 0
	for {
		err := op()
		if err == nil {
			return time.Since(start), failed
		}
		failed++
		if time.Since(start) > within {
			t.Fatalf("%s: still failing after %s (%d attempts): %v", what, within, failed, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRetainedReplicatedAcrossNodes: a retained QoS 1 message published on
// node 1 is delivered, flagged retained, to a fresh subscription on node 3,
// and the subscription and publish are accepted on a healthy cluster.
func TestRetainedReplicatedAcrossNodes(t *testing.T) {
	c := Start(t)
	topic := "rampart/v1/org_test/site_a/desired"
	if err := publishRetained(c.Node(0).MQTTURL, topic, "rev-1"); err != nil {
		t.Fatalf("publish on n1: %v", err)
	}
	// A node learns of a retained message through JetStream, a moment after
	// the publisher's PUBACK: a subscription in that moment sees none yet.
	var got string
	took, failed := retry(t, 15*time.Second, "retained message on n3", func() (err error) {
		got, err = readRetained(c.Node(2).MQTTURL, topic)
		return err
	})
	t.Logf("retained message read on n3 %s after the PUBACK on n1 (%d empty reads first)", took, failed)
	if got != "rev-1" {
		t.Errorf("n3 delivered %q; want rev-1", got)
	}
	// A newer retained message replaces the older on every node.
	if err := publishRetained(c.Node(1).MQTTURL, topic, "rev-2"); err != nil {
		t.Fatalf("publish on n2: %v", err)
	}
	retry(t, 15*time.Second, "newer retained message on n1", func() error {
		got, err := readRetained(c.Node(0).MQTTURL, topic)
		if err == nil && got != "rev-2" {
			err = fmt.Errorf("n1 still delivers %q", got)
		}
		return err
	})
}

// TestRetainedSurvivesNodeDeath: after the node that took a retained
// message is killed with SIGKILL, the message is still delivered from the
// other nodes, a new retained publish is accepted there (after the leader
// elections) and reaches, live, a subscription made on a survivor before
// the death, and the restarted node serves what is published after.
func TestRetainedSurvivesNodeDeath(t *testing.T) {
	c := Start(t)
	topic := "rampart/v1/org_test/site_b/desired"
	// Every node has it before the kill, so what is read after comes from
	// the survivors' replicas, not from a message in flight.
	seedRetained(t, c, topic, "before")

	// A subscriber on n3 from before the death, as an agent would be.
	live, err := dial(c.Node(2).MQTTURL)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Disconnect(50)
	msgs := make(chan string, 16)
	tok := live.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { msgs <- string(m.Payload()) })
	if !tok.WaitTimeout(opTimeout) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()[topic] == 0x80 {
		t.Fatalf("subscribe on n3 before the kill: %v", tok.Error())
	}
	if got := <-msgs; got != "before" {
		t.Fatalf("live subscriber got %q first; want the retained before", got)
	}

	c.Kill(0)
	killed := time.Now()
	var got string
	took, failed := retry(t, 60*time.Second, "retained message on n3 after n1's death", func() (err error) {
		got, err = readRetained(c.Node(2).MQTTURL, topic)
		return err
	})
	if got != "before" {
		t.Errorf("n3 delivered %q after n1's death; want before", got)
	}
	t.Logf("n3 delivered the retained message %s after n1's death (%d refused attempts)", took, failed)
	_, failed = retry(t, 60*time.Second, "retained publish on n2 after n1's death", func() error {
		return publishRetained(c.Node(1).MQTTURL, topic, "after")
	})
	t.Logf("n2 accepted a retained publish %s after n1's death (%d refused attempts)", time.Since(killed), failed)
	select {
	case got := <-msgs:
		if got != "after" {
			t.Errorf("live subscriber on n3 got %q; want after", got)
		}
	case <-time.After(opTimeout):
		t.Error("the subscriber on n3 from before n1's death did not receive the publish made on n2 after it")
	}

	if _, err := dial(c.Node(0).MQTTURL); err == nil {
		t.Fatal("n1 still accepts connections after Kill")
	}
	c.Restart(0)
	// What the restarted node serves for a message published while it was
	// dead is not checked: nats-server 2.9.10 sometimes PUBACKs a retained
	// publish made just after a death without storing it in the retained
	// stream, and the restarted node then serves the older message
	// (BenchmarkRetainedPublishAfterDeath). A publish after the restart
	// reaches it.
	retry(t, 30*time.Second, "retained publish on n2 after n1's restart", func() error {
		return publishRetained(c.Node(1).MQTTURL, topic, "restarted")
	})
	retry(t, 30*time.Second, "restarted n1 delivers the retained message published after its restart", func() error {
		got, err := readRetained(c.Node(0).MQTTURL, topic)
		if err == nil && got != "restarted" {
			err = fmt.Errorf("n1 delivers %q", got)
		}
		return err
	})
}
