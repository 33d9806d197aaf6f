package bus_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
)

// backlogRig is a file-storage stream with n messages and an explicit-ack pull durable "down"
// that nothing has consumed yet.
func backlogRig(t *testing.T, n int) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	js := bustest.JetStream(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "BACKLOG", Subjects: []string{"backlog.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	// Published before the durable exists: the server counts a new consumer's pending from the store
	// at once, but a live consumer learns of new messages asynchronously, so its info can lag.
	for i := range n {
		if _, err := js.Publish(ctx, "backlog.x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "BACKLOG", jetstream.ConsumerConfig{
		Durable: "down", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return js, cons
}

func newBacklog(t *testing.T, js jetstream.JetStream, durable string, max int) *bus.Backlog {
	t.Helper()
	b, err := bus.NewBacklog(bus.BacklogOptions{
		JS: js, Stream: "BACKLOG", Durable: durable, Max: max, Refresh: time.Millisecond, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// consume takes and acks n messages, as a live downstream stage does.
func consume(t *testing.T, cons jetstream.Consumer, n int) {
	t.Helper()
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != n {
		t.Fatalf("consumed %d of %d messages (%v)", got, n, batch.Error())
	}
}

// A live downstream consumer with more than Max messages left pauses the upstream; once it
// has worked the backlog down to Max, Wait returns.
func TestBacklogPausesAboveMaxAndResumes(t *testing.T) {
	t.Parallel()
	js, cons := backlogRig(t, 20)
	consume(t, cons, 1) // the durable is live: it delivered just now
	b := newBacklog(t, js, "down", 5)
	time.Sleep(2 * time.Millisecond) // past Refresh, so Over asks the server
	if !b.Over(context.Background()) {
		t.Fatal("19 messages left for a live consumer, Max 5: Over = false, want a pause")
	}
	waited := make(chan error, 1)
	go func() { waited <- b.Wait(context.Background()) }()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v with 19 messages left", err)
	default:
	}
	consume(t, cons, 14) // 5 left
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait still blocked with 5 messages left, Max 5")
	}
	if b.Over(context.Background()) {
		t.Error("Over = true at the bound")
	}
}

// A backlog counts messages delivered but not yet acked: a stage holding a batch is behind.
func TestBacklogCountsAckPending(t *testing.T) {
	t.Parallel()
	js, cons := backlogRig(t, 8)
	batch, err := cons.Fetch(8, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var held []jetstream.Msg
	for m := range batch.Messages() {
		held = append(held, m)
	}
	if len(held) != 8 {
		t.Fatalf("fetched %d of 8", len(held))
	}
	b := newBacklog(t, js, "down", 5)
	if !b.Over(context.Background()) {
		t.Error("8 messages ack pending, Max 5: Over = false")
	}
	for _, m := range held {
		if err := m.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Millisecond)
	if b.Over(context.Background()) {
		t.Error("everything acked: Over = true")
	}
}

// A durable nobody consumes (a publisher without sinks, or not running) never blocks the
// upstream, however large its backlog; neither does a durable that does not exist.
func TestBacklogIgnoresIdleOrMissingConsumer(t *testing.T) {
	t.Parallel()
	js, _ := backlogRig(t, 50)
	for _, durable := range []string{"down", "missing"} {
		b := newBacklog(t, js, durable, 1)
		if b.Over(context.Background()) {
			t.Errorf("%s: Over = true for a durable nobody consumes", durable)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := b.Wait(ctx); err != nil {
			t.Errorf("%s: Wait = %v, want nil at once", durable, err)
		}
		cancel()
	}
}

// A durable whose last delivery is older than Idle and that has no pull waiting is idle: its
// backlog no longer pauses the upstream, so a stage that stopped cannot stop the one before it.
func TestBacklogStaleConsumerIsIdle(t *testing.T) {
	t.Parallel()
	js, cons := backlogRig(t, 20)
	consume(t, cons, 1)
	b, err := bus.NewBacklog(bus.BacklogOptions{
		JS: js, Stream: "BACKLOG", Durable: "down", Max: 5, Refresh: time.Millisecond, Idle: 50 * time.Millisecond,
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // past Idle
	if b.Over(context.Background()) {
		t.Error("consumer idle for longer than Idle: Over = true")
	}
}

// A pull request waiting on the server marks the consumer live whatever its last delivery:
// here a consumer at its MaxAckPending, whose next pull waits.
func TestBacklogWaitingPullIsLive(t *testing.T) {
	t.Parallel()
	js, _ := backlogRig(t, 5)
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, "BACKLOG", jetstream.ConsumerConfig{
		Durable: "capped", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() { // held un-acked: the consumer is at MaxAckPending
	}
	go func() { _, _ = cons.Fetch(1, jetstream.FetchMaxWait(time.Minute)) }() // waits
	b, err := bus.NewBacklog(bus.BacklogOptions{
		JS: js, Stream: "BACKLOG", Durable: "capped", Max: 1, Refresh: time.Millisecond,
		Idle:   time.Nanosecond, // the delivery alone never counts as live
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		if !b.Over(ctx) {
			return fmt.Errorf("5 messages left, a pull waiting, Max 1: not over")
		}
		return nil
	})
}

// The subscriber calls its Gate before every pull: while the gate is closed nothing is taken
// from the durable (no AckWait runs), and Close does not wait for the gate to open.
func TestSubscriberGateHoldsNothing(t *testing.T) {
	t.Parallel()
	js, cons := backlogRig(t, 3)
	called := make(chan struct{}, 16)
	open := make(chan struct{})
	sub, err := bus.NewSubscriber(bus.SubscriberOptions{
		JS: js, Stream: "BACKLOG", Consumer: func(string) string { return "down" }, Logger: quietLogger(),
		Gate: func(ctx context.Context) error {
			select {
			case called <- struct{}{}:
			default:
			}
			select {
			case <-open:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), "backlog.x")
	if err != nil {
		t.Fatal(err)
	}
	<-called
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 3 || info.Delivered.Consumer != 0 {
		t.Fatalf("gate closed: ack pending %d, pending %d, delivered %d; want 0, 3, 0",
			info.NumAckPending, info.NumPending, info.Delivered.Consumer)
	}
	close(open)
	for i := range 3 {
		m := <-msgs
		if string(m.Payload) != strconv.Itoa(i) {
			t.Errorf("message %d: %q", i, m.Payload)
		}
		m.Ack()
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
}

// Close returns while the gate is still closed: the gate's context ends with the subscription.
func TestSubscriberCloseWhileGated(t *testing.T) {
	t.Parallel()
	js, _ := backlogRig(t, 1)
	entered := make(chan struct{}, 1) // buffered: the gate may run before the test waits for it
	sub, err := bus.NewSubscriber(bus.SubscriberOptions{
		JS: js, Stream: "BACKLOG", Consumer: func(string) string { return "down" }, Logger: quietLogger(),
		Gate: func(ctx context.Context) error {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), "backlog.x")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the gate was never entered")
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-msgs; ok {
		t.Error("a message was delivered through a closed gate")
	}
}
