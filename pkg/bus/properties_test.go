package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
)

// The property tests run a stage like production does: the pipeline streams and a durable
// from Provision, our Publisher/Subscriber, and NewRouter's middleware stack. Only delays are
// shortened (NAK delay, retry intervals) so that a test takes a second, not minutes.

const (
	testStage   = "transformer"
	testDurable = "transformer"
	testTopic   = "ion.raw.v1.page.>"
	testAccount = "acme"
)

type rig struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	pub *bus.Publisher
}

// newRig starts a JetStream node and provisions the pipeline with one durable, configured as
// production (AckWait 30s, MaxDeliver 10, MaxAckPending = workers).
func newRig(t *testing.T) *rig {
	t.Helper()
	_, nc := bustest.StartServer(t)
	return provisionRig(t, nc)
}

func provisionRig(t *testing.T, nc *nats.Conn) *rig {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo := bus.Topology{
		Consumers: []bus.ConsumerSpec{{Stream: events.StreamRaw, Durable: testDurable, FilterSubjects: []string{testTopic}}},
		Logger:    quietLogger(),
	}
	if err := bus.Provision(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{nc: nc, js: js, pub: pub}
}

// quietLogger drops logs: the tests fail handlers on purpose and check outcomes, not log lines.
// Set BUS_TEST_LOG=1 to see them.
func quietLogger() *slog.Logger {
	if os.Getenv("BUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type stageConfig struct {
	router bus.RouterOptions
	sub    bus.SubscriberOptions
}

// fast returns production options with test-sized delays.
func (r *rig) fast() stageConfig {
	return stageConfig{
		router: bus.RouterOptions{
			Stage:          testStage,
			Logger:         quietLogger(),
			Publisher:      r.pub,
			HandlerTimeout: 5 * time.Second,
			Retry:          bus.RetryOptions{MaxRetries: 2, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
			MaxDeliver:     3,
			AckWait:        bus.DefaultAckWait,
		},
		sub: bus.SubscriberOptions{
			JS:       r.js,
			Stream:   events.StreamRaw,
			Logger:   quietLogger(),
			Consumer: func(string) string { return testDurable },
			NakDelay: func(uint64) time.Duration { return 50 * time.Millisecond },
			PollWait: 200 * time.Millisecond,
		},
	}
}

// start runs a router with one consumer handler and returns a stop func that closes it.
func start(t *testing.T, cfg stageConfig, h message.NoPublishHandlerFunc) (stop func()) {
	t.Helper()
	router, err := bus.NewRouter(cfg.router)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.NewSubscriber(cfg.sub)
	if err != nil {
		t.Fatal(err)
	}
	router.AddConsumerHandler("transform", testTopic, sub, h)
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
	case err := <-done:
		t.Fatalf("router stopped at start: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := router.Close(); err != nil {
				t.Errorf("router close: %v", err)
			}
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// rawPage returns a well-formed raw page event for account acme.
func rawPage(t *testing.T, n int) *message.Message {
	t.Helper()
	m, err := events.NewMessage(events.Meta{
		ID:     events.ID("test-page", strconv.Itoa(n)),
		Type:   events.TypeRawPage,
		Source: "test",
	}, map[string]int{"n": n})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func publish(t *testing.T, r *rig, msgs ...*message.Message) {
	t.Helper()
	if err := r.pub.Publish(events.RawPageSubject(testAccount), msgs...); err != nil {
		t.Fatal(err)
	}
}

func consumerInfo(t *testing.T, r *rig) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.js.Consumer(ctx, events.StreamRaw, testDurable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// settled fails unless the durable has delivered everything and every delivery is acked.
func settled(info *jetstream.ConsumerInfo) error {
	if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		return fmt.Errorf("durable not settled: pending %d, ack pending %d, redelivered %d, ack floor %d",
			info.NumPending, info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream)
	}
	return nil
}

func deadLetters(t *testing.T, r *rig) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestHandlerErrorDoesNotLoseMessage: a handler that fails twice (no in-process retries, so
// each failure is a NAK and a redelivery) then succeeds processes the message, the durable
// ends acked, and nothing is dead-lettered.
func TestHandlerErrorDoesNotLoseMessage(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	cfg := r.fast()
	cfg.router.Retry.MaxRetries = -1 // every failure goes back to the server
	cfg.router.MaxDeliver = 5
	var calls atomic.Int32
	processed := make(chan string, 1)
	start(t, cfg, func(msg *message.Message) error {
		if calls.Add(1) <= 2 {
			return errors.New("transient")
		}
		processed <- msg.UUID
		return nil
	})
	want := rawPage(t, 1)
	publish(t, r, want)

	select {
	case id := <-processed:
		if id != want.UUID {
			t.Fatalf("processed %s, want %s", id, want.UUID)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("message lost: %d handler calls and never processed", calls.Load())
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		info := consumerInfo(t, r)
		if info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream != 1 {
			return fmt.Errorf("not acked: ack pending %d, pending %d, ack floor %d", info.NumAckPending, info.NumPending, info.AckFloor.Stream)
		}
		return nil
	})
	if got := calls.Load(); got != 3 {
		t.Errorf("handler calls = %d, want 3", got)
	}
	if dl := deadLetters(t, r); len(dl) != 0 {
		t.Errorf("%d dead letters, want none", len(dl))
	}
}

// TestUndecodableGoesToDLQ: garbage is dead-lettered once, at once, with the original payload,
// and the original is acked.
func TestUndecodableGoesToDLQ(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var calls atomic.Int32
	start(t, r.fast(), func(msg *message.Message) error {
		calls.Add(1)
		var v map[string]int
		return events.Decode(msg, events.TypeRawPage, &v)
	})
	garbage := rawPage(t, 2)
	garbage.Payload = []byte("\x00{not json")
	publish(t, r, garbage)

	var dls []*jetstream.RawStreamMsg
	bustest.Eventually(t, 10*time.Second, func() error {
		if dls = deadLetters(t, r); len(dls) == 0 {
			return errors.New("no dead letter yet")
		}
		return settled(consumerInfo(t, r))
	})
	time.Sleep(300 * time.Millisecond) // a second dead letter or delivery would show up by now
	if dls = deadLetters(t, r); len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if want := events.DeadLetterSubject(testStage, testAccount); dl.Subject != want {
		t.Errorf("dead letter subject %s, want %s", dl.Subject, want)
	}
	var got events.DeadLetter
	if err := json.Unmarshal(dl.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Reason != bus.ReasonUndecodable || string(got.Payload) != string(garbage.Payload) ||
		got.OriginalID != garbage.UUID || got.OriginalSubject != events.RawPageSubject(testAccount) ||
		got.Account != testAccount || got.Attempts != 1 || got.OriginalSeq != 1 {
		t.Errorf("dead letter = %+v", got)
	}
	if wantID := events.ID("deadletter", testStage, garbage.UUID, bus.ReasonUndecodable).String(); dl.Header.Get(events.HeaderID) != wantID {
		t.Errorf("dead letter id %s, want %s", dl.Header.Get(events.HeaderID), wantID)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler calls = %d, want 1 (undecodable is never retried)", n)
	}
	if err := settled(consumerInfo(t, r)); err != nil {
		t.Error(err)
	}
}

// TestRestartResumesFromDurable: router 1 acks 5 of 10 and stops; a new router and subscriber
// on the same durable get exactly the other 5.
func TestRestartResumesFromDurable(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var all []*message.Message
	for i := range 10 {
		all = append(all, rawPage(t, 100+i))
	}
	publish(t, r, all...)

	var mu sync.Mutex
	first := map[string]bool{}
	fiveDone := make(chan struct{})
	release := make(chan struct{})
	cfg := r.fast()
	stop1 := start(t, cfg, func(msg *message.Message) error {
		mu.Lock()
		if len(first) < 5 {
			first[msg.UUID] = true
			if len(first) == 5 {
				close(fiveDone)
			}
			mu.Unlock()
			return nil
		}
		mu.Unlock()
		<-release // hold the 6th until the router is closing, then fail it: not acked
		return errors.New("stopping")
	})
	select {
	case <-fiveDone:
	case <-time.After(10 * time.Second):
		t.Fatal("router 1 did not process 5 messages")
	}
	closed := make(chan struct{})
	go func() { stop1(); close(closed) }()
	time.Sleep(100 * time.Millisecond) // let Close begin, so the failure is not dead-lettered
	close(release)
	<-closed

	var second []string
	got := make(chan string, 20)
	start(t, r.fast(), func(msg *message.Message) error {
		got <- msg.UUID
		return nil
	})
	timeout := time.After(10 * time.Second)
	for len(second) < 5 {
		select {
		case id := <-got:
			second = append(second, id)
		case <-timeout:
			t.Fatalf("router 2 got %d messages, want 5", len(second))
		}
	}
	select {
	case id := <-got:
		second = append(second, id)
	case <-time.After(500 * time.Millisecond):
	}
	if len(second) != 5 {
		t.Fatalf("router 2 got %d messages, want 5: %v", len(second), second)
	}
	for _, id := range second {
		if first[id] {
			t.Errorf("router 2 got %s, which router 1 acked", id)
		}
	}
	bustest.Eventually(t, 5*time.Second, func() error {
		info := consumerInfo(t, r)
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// TestDuplicateIDStoredOnce: the same event id published twice, in one batch, in two calls and
// on another subject of the same stream, is stored once; every publish reports success.
func TestDuplicateIDStoredOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	m := rawPage(t, 7)
	publish(t, r, m, m.Copy())
	publish(t, r, m.Copy())
	if err := r.pub.Publish(events.RawPageSubject("other"), m.Copy()); err != nil {
		t.Fatal(err)
	}
	s, err := r.js.Stream(context.Background(), events.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	stored, err := s.GetMsg(context.Background(), info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Header.Get(jetstream.MsgIDHeader) != m.UUID || stored.Header.Get(events.HeaderType) != events.TypeRawPage {
		t.Errorf("stored headers %v", stored.Header)
	}
}

// TestHotNakLoopBounded: a handler that always fails runs (MaxRetries+1)×MaxDeliver times, then
// the message is dead-lettered and acked, and nothing runs after that.
func TestHotNakLoopBounded(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	cfg := r.fast()
	var calls atomic.Int32
	start(t, cfg, func(*message.Message) error {
		calls.Add(1)
		return errors.New("always fails")
	})
	publish(t, r, rawPage(t, 9))
	bustest.Eventually(t, 10*time.Second, func() error {
		if len(deadLetters(t, r)) == 0 {
			return fmt.Errorf("no dead letter after %d calls", calls.Load())
		}
		return settled(consumerInfo(t, r))
	})
	time.Sleep(500 * time.Millisecond) // ten NAK delays: any further delivery would show
	want := int32((cfg.router.Retry.MaxRetries + 1) * cfg.router.MaxDeliver)
	if got := calls.Load(); got != want {
		t.Errorf("handler calls = %d, want %d", got, want)
	}
	dls := deadLetters(t, r)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	var dl events.DeadLetter
	if err := json.Unmarshal(dls[0].Data, &dl); err != nil {
		t.Fatal(err)
	}
	if dl.Reason != bus.ReasonHandlerFailed || dl.Attempts != cfg.router.MaxDeliver || dl.Error != "always fails" {
		t.Errorf("dead letter = %+v", dl)
	}
}

// TestPermanentErrorSkipsRetries: bus.Permanent dead-letters on the first failure.
func TestPermanentErrorSkipsRetries(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var calls atomic.Int32
	start(t, r.fast(), func(*message.Message) error {
		calls.Add(1)
		return fmt.Errorf("charge type: %w", bus.Permanent(errors.New("unknown")))
	})
	publish(t, r, rawPage(t, 11))
	bustest.Eventually(t, 10*time.Second, func() error {
		if len(deadLetters(t, r)) == 0 {
			return errors.New("no dead letter")
		}
		return settled(consumerInfo(t, r))
	})
	if n := calls.Load(); n != 1 {
		t.Errorf("handler calls = %d, want 1", n)
	}
}

// TestSubscribeRefusesMissingDurable: Subscribe binds only; it names stream and consumer.
func TestSubscribeRefusesMissingDurable(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sub, err := bus.NewSubscriber(bus.SubscriberOptions{JS: r.js, Stream: events.StreamRaw, Consumer: func(string) string { return "nobody" }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sub.Subscribe(context.Background(), testTopic)
	if !errors.Is(err, bus.ErrConsumerMissing) {
		t.Fatalf("err = %v, want ErrConsumerMissing", err)
	}
	ctx := context.Background()
	if _, err := r.js.Consumer(ctx, events.StreamRaw, "nobody"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("Subscribe created a consumer: %v", err)
	}
}

// TestInProgressKeepsLongHandlerAlive: a handler that runs longer than AckWait but calls
// bus.InProgress is not redelivered meanwhile.
func TestInProgressKeepsLongHandlerAlive(t *testing.T) {
	t.Parallel()
	_, nc := bustest.StartServer(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := bus.Provision(ctx, js, bus.Topology{Logger: quietLogger(), Consumers: []bus.ConsumerSpec{{
		Stream: events.StreamRaw, Durable: testDurable, FilterSubjects: []string{testTopic}, AckWait: time.Second,
	}}}); err != nil {
		t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{nc: nc, js: js, pub: pub}
	cfg := r.fast()
	cfg.router.AckWait = 0 // a long handler with InProgress is outside the Budget arithmetic
	cfg.sub.Workers = 2    // a redelivery would reach the idle second worker
	var calls atomic.Int32
	done := make(chan struct{})
	start(t, cfg, func(msg *message.Message) error {
		calls.Add(1)
		for range 8 { // 2.4s, more than twice AckWait
			time.Sleep(300 * time.Millisecond)
			if err := bus.InProgress(msg); err != nil {
				return err
			}
		}
		close(done)
		return nil
	})
	publish(t, r, rawPage(t, 12))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not finish")
	}
	bustest.Eventually(t, 5*time.Second, func() error { return settled(consumerInfo(t, r)) })
	if n := calls.Load(); n != 1 {
		t.Errorf("handler calls = %d, want 1 (redelivered despite InProgress)", n)
	}
	if err := bus.InProgress(message.NewMessage("x", nil)); !errors.Is(err, bus.ErrNotJetStream) {
		t.Errorf("InProgress on a plain message = %v, want ErrNotJetStream", err)
	}
}

// TestRetryAttemptGetsFreshContext: a handler that honours its context, fails its first attempt
// and succeeds on the second is processed by the in-process retry of the first delivery: two
// calls, both on delivery 1, each with a live context and a deadline of its own; no NAK, no
// redelivery, no dead letter.
func TestRetryAttemptGetsFreshContext(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	cfg := r.fast()
	type attempt struct {
		delivered string
		ctxErr    error
		deadline  time.Time
	}
	var (
		mu       sync.Mutex
		attempts []attempt
	)
	processed := make(chan struct{}, 1)
	start(t, cfg, func(msg *message.Message) error {
		ctx := msg.Context()
		d, _ := ctx.Deadline()
		mu.Lock()
		attempts = append(attempts, attempt{msg.Metadata.Get(bus.MetaNumDelivered), ctx.Err(), d})
		n := len(attempts)
		mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err // honours its context, as handlers must
		}
		if n == 1 {
			return errors.New("transient")
		}
		processed <- struct{}{}
		return nil
	})
	publish(t, r, rawPage(t, 13))

	select {
	case <-processed:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("never processed; attempts %+v", attempts)
	}
	bustest.Eventually(t, 5*time.Second, func() error { return settled(consumerInfo(t, r)) })
	time.Sleep(300 * time.Millisecond) // a NAK would bring a redelivery within a few NAK delays
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 2 {
		t.Fatalf("handler calls = %d, want 2: %+v", len(attempts), attempts)
	}
	for i, a := range attempts {
		if a.delivered != "1" || a.ctxErr != nil || a.deadline.IsZero() {
			t.Errorf("attempt %d: delivery %q, ctx err %v, deadline %v; want delivery 1, a live context with a deadline", i+1, a.delivered, a.ctxErr, a.deadline)
		}
	}
	if !attempts[1].deadline.After(attempts[0].deadline) {
		t.Errorf("retry deadline %v not after the first attempt's %v: not a fresh per-attempt timeout", attempts[1].deadline, attempts[0].deadline)
	}
	if info := consumerInfo(t, r); info.Delivered.Consumer != 1 {
		t.Errorf("consumer delivered %d times, want 1 (no NAK)", info.Delivered.Consumer)
	}
	if dl := deadLetters(t, r); len(dl) != 0 {
		t.Errorf("%d dead letters, want none", len(dl))
	}
}

// TestNoRetriesWithAckWait: MaxRetries -1 means no in-process retries everywhere: options whose
// Budget fits AckWait only without retries validate, and a failing handler runs exactly once
// per delivery until it is dead-lettered on delivery MaxDeliver.
func TestNoRetriesWithAckWait(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	cfg := r.fast()
	cfg.router.Retry.MaxRetries = -1
	cfg.router.HandlerTimeout = bus.DefaultAckWait * 2 / 3 // 3 attempts would not fit in AckWait
	cfg.router.AckWait = bus.DefaultAckWait
	cfg.router.MaxDeliver = 3
	if err := cfg.router.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got, want := cfg.router.Budget(), cfg.router.HandlerTimeout; got != want {
		t.Errorf("Budget = %s, want %s (one attempt)", got, want)
	}
	var (
		mu         sync.Mutex
		deliveries []string
	)
	start(t, cfg, func(msg *message.Message) error {
		mu.Lock()
		deliveries = append(deliveries, msg.Metadata.Get(bus.MetaNumDelivered))
		mu.Unlock()
		return errors.New("always fails")
	})
	publish(t, r, rawPage(t, 14))
	bustest.Eventually(t, 10*time.Second, func() error {
		if len(deadLetters(t, r)) == 0 {
			return errors.New("no dead letter yet")
		}
		return settled(consumerInfo(t, r))
	})
	time.Sleep(300 * time.Millisecond) // a further call would show by now
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(deliveries) != "[1 2 3]" {
		t.Errorf("handler called on deliveries %v, want [1 2 3] (one call per delivery)", deliveries)
	}
}
