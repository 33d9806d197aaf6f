package bus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestIntegrationClusterLeaderLoss kills the USAGE stream leader of a 3-node cluster while
// messages are published and consumed. Publishes that fail are retried with the same
// Nats-Msg-Id; in the end every message must have been consumed and stored exactly once.
func TestIntegrationClusterLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const n = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	servers, nc := bustest.StartCluster(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitForJetStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	topo := Topology{Replicas: 3, Logger: quietLogger(), Consumers: []ConsumerSpec{{
		Stream: events.StreamUsage, Durable: "publisher", FilterSubjects: []string{"usage.v1.record.>"},
		Workers: 256, AckWait: 5 * time.Second, MaxDeliver: -1,
	}}}
	if err := Provision(ctx, js, topo); err != nil {
		t.Fatalf("provision R3: %v", err)
	}

	// Publish through the stream leader itself, so that killing it drops the publisher's
	// connection with acks in flight: the case that needs retries.
	pjs := leaderConn(ctx, t, js, servers, events.StreamUsage)

	// Consume and ack concurrently with publishing.
	var mu sync.Mutex
	seen := make(map[string]int, n)
	cons, err := js.Consumer(ctx, events.StreamUsage, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		mu.Lock()
		seen[m.Headers().Get(jetstream.MsgIDHeader)]++
		mu.Unlock()
		_ = m.Ack() // a lost ack only means a redelivery, which at-least-once allows
	}, jetstream.PullMaxMessages(256), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()

	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("rec-%05d", i)
	}
	subject := events.UsageRecordSubject("A", "C")
	pending := ids
	var killed string
	retried := 0
	for round := 1; len(pending) > 0; round++ {
		if round > 60 {
			t.Fatalf("%d messages still unpublished after %d rounds", len(pending), round-1)
		}
		type inflight struct {
			id string
			f  jetstream.PubAckFuture
		}
		var futures []inflight
		var failed []string
		for i, id := range pending {
			if round == 1 && i == n/2 {
				killed = killStreamLeader(ctx, t, js, servers, events.StreamUsage)
			}
			f, err := pjs.PublishAsync(subject, []byte(`{}`), jetstream.WithMsgID(id), jetstream.WithExpectStream(events.StreamUsage))
			if err != nil {
				failed = append(failed, id)
				continue
			}
			futures = append(futures, inflight{id, f})
		}
		for _, p := range futures {
			select {
			case <-p.f.Ok():
			case <-p.f.Err():
				failed = append(failed, p.id)
			case <-ctx.Done():
				t.Fatalf("waiting for publish acks: %v", ctx.Err())
			}
		}
		retried += len(failed)
		pending = failed
		if len(pending) > 0 {
			time.Sleep(200 * time.Millisecond) // let the new leader settle before retrying
		}
	}
	t.Logf("killed stream leader %s; %d publishes retried", killed, retried)
	if killed == "" {
		t.Fatal("the stream leader was never killed")
	}

	// Every publish was acked, so the stream is final: fewer than n is a loss, more is a
	// duplicate that slipped past Nats-Msg-Id.
	s, err := js.Stream(ctx, events.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != n {
		t.Fatalf("stream holds %d messages, want exactly %d (loss or duplicates)", got, n)
	}

	bustest.Eventually(t, 90*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) < n {
			return fmt.Errorf("consumed %d of %d ids", len(seen), n)
		}
		return nil
	})
	mu.Lock()
	redelivered := 0
	for _, id := range ids {
		if seen[id] == 0 {
			t.Errorf("message %s lost", id)
		}
		redelivered += seen[id] - 1
	}
	mu.Unlock()
	t.Logf("%d redeliveries", redelivered)

}

// killStreamLeader shuts down the node that leads stream and returns its name.
func killStreamLeader(ctx context.Context, t *testing.T, js jetstream.JetStream, servers []*server.Server, stream string) string {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	ci := s.CachedInfo().Cluster
	if ci == nil || ci.Leader == "" {
		t.Fatalf("stream %s has no cluster leader", stream)
	}
	leader := bustest.ServerByName(servers, ci.Leader)
	if leader == nil {
		t.Fatalf("leader %q is not one of ours", ci.Leader)
	}
	leader.Shutdown()
	return ci.Leader
}

// leaderConn connects to the leader of stream first (other nodes as fallbacks, in order) and
// returns a JetStream context with bounded async publishing.
func leaderConn(ctx context.Context, t *testing.T, js jetstream.JetStream, servers []*server.Server, stream string) jetstream.JetStream {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	leader := s.CachedInfo().Cluster.Leader
	urls := []string{bustest.ServerByName(servers, leader).ClientURL()}
	for _, srv := range servers {
		if srv.Name() != leader {
			urls = append(urls, srv.ClientURL())
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pjs, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256), jetstream.WithPublishAsyncTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return pjs
}
