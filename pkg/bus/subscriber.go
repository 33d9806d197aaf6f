package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/events"
)

// Metadata keys the Subscriber adds to every received message. They start with "_", so the
// Publisher never copies them into the headers of a message it publishes.
const (
	MetaSubject      = "_nats_subject"
	MetaStream       = "_nats_stream"
	MetaStreamSeq    = "_nats_stream_seq"
	MetaNumDelivered = "_nats_num_delivered"
	MetaConsumer     = "_nats_consumer"
)

// Defaults of SubscriberOptions.
const (
	DefaultPollWait     = time.Second
	DefaultCloseTimeout = 10 * time.Second
	DefaultAckTimeout   = 5 * time.Second
	maxNakDelay         = 30 * time.Second
)

var (
	// ErrConsumerMissing means the durable a topic maps to has not been provisioned. The
	// Subscriber never creates consumers: a consumer created by a subscription is a consumer a
	// library may delete (research note, pitfall 2).
	ErrConsumerMissing = errors.New("bus: durable consumer not provisioned")
	// ErrSubscriberClosed is returned by Subscribe after Close.
	ErrSubscriberClosed = errors.New("bus: subscriber closed")
	// ErrNotJetStream is returned by InProgress for a message that did not come from a Subscriber.
	ErrNotJetStream = errors.New("bus: message was not received from JetStream")
)

// DefaultNakDelay is the redelivery delay after the n-th failed delivery: 1s, 2s, 4s, … capped
// at 30s. A plain NAK is redelivered at once, which turns one failing message into a hot loop
// (pitfall 6: 16,105 handler calls in 1s); consumer BackOff does not apply to NAKs.
func DefaultNakDelay(numDelivered uint64) time.Duration {
	if numDelivered < 1 {
		numDelivered = 1
	}
	if numDelivered > 6 { // 2^5 s = 32s > cap; avoids overflow for huge counts
		return maxNakDelay
	}
	return min(time.Second<<(numDelivered-1), maxNakDelay)
}

// SubscriberOptions configures a Subscriber.
type SubscriberOptions struct {
	// JS is the JetStream context. The Subscriber never closes its connection (pitfall 9).
	JS jetstream.JetStream
	// Stream holds the durables this Subscriber binds to.
	Stream string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Consumer maps a topic to its durable consumer name; nil means the topic itself (only
	// valid when the topic contains no '.', '*' or '>').
	Consumer func(topic string) string
	// Workers is the number of messages of one Subscribe handled at the same time (default 1).
	// The consumer's MaxAckPending should be at least Workers×Batch×replicas.
	Workers int
	// Batch is the number of messages one pull asks for (default 1). The AckWait clock runs
	// from delivery, so a message waiting in a local batch burns its AckWait (pitfall 5): keep
	// Batch×handler time well inside AckWait.
	Batch int
	// NakDelay gives the redelivery delay after a Nack; nil means DefaultNakDelay.
	NakDelay func(numDelivered uint64) time.Duration
	// PollWait is how long one pull waits for messages when the consumer is idle (default 1s).
	// Close waits for an open pull to expire instead of cancelling it, because a message the
	// server sends into a cancelled pull stays pending until AckWait; so PollWait bounds the
	// latency of Close.
	PollWait time.Duration
	// CloseTimeout is how long Close (or cancelling Subscribe's context) lets in-flight
	// messages finish before they are handed back with a NAK (default 10s). Keep it at least
	// the router's handler budget, and below the router's CloseTimeout.
	CloseTimeout time.Duration
	// AckTimeout bounds the wait for the server to confirm an ack (default 5s).
	AckTimeout time.Duration
	// Gate, when set, is called before each pull and the pull waits until it returns: the
	// backpressure hook (Backlog.Wait). Nothing is held while it waits, so no AckWait burns.
	// Its context ends when the subscription stops.
	Gate func(ctx context.Context) error
}

// Validate reports options that can never work.
func (o SubscriberOptions) Validate() error {
	var errs []error
	if o.JS == nil {
		errs = append(errs, errors.New("JS is required"))
	}
	if o.Stream == "" {
		errs = append(errs, errors.New("Stream is required"))
	}
	if o.Workers < 0 || o.Batch < 0 {
		errs = append(errs, errors.New("Workers and Batch must not be negative"))
	}
	if o.PollWait < 0 || o.CloseTimeout < 0 || o.AckTimeout < 0 {
		errs = append(errs, errors.New("PollWait, CloseTimeout and AckTimeout must not be negative"))
	}
	if o.PollWait > 0 && o.PollWait < 100*time.Millisecond {
		errs = append(errs, errors.New("PollWait must be at least 100ms"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: subscriber options: %w", err)
	}
	return nil
}

func (o *SubscriberOptions) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Consumer == nil {
		o.Consumer = func(topic string) string { return topic }
	}
	if o.Workers == 0 {
		o.Workers = 1
	}
	if o.Batch == 0 {
		o.Batch = 1
	}
	if o.NakDelay == nil {
		o.NakDelay = DefaultNakDelay
	}
	if o.PollWait == 0 {
		o.PollWait = DefaultPollWait
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultAckTimeout
	}
}

// Subscriber is a watermill message.Subscriber on durable JetStream pull consumers that our
// provisioning created. Every message is acked explicitly: Ack → DoubleAck, Nack → NAK with
// NakDelay, anything else (shutdown, cancelled context) → never acked, handed back for
// redelivery. There is no implicit ack anywhere (pitfall 1).
type Subscriber struct {
	opts SubscriberOptions
	log  *slog.Logger

	mu     sync.Mutex
	closed bool
	subs   []*subscription
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a Subscriber for durables of opts.Stream.
func NewSubscriber(opts SubscriberOptions) (*Subscriber, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &Subscriber{opts: opts, log: opts.Logger.With("stream", opts.Stream)}, nil
}

// subscription is one Subscribe call: Workers pull loops feeding one channel.
type subscription struct {
	s      *Subscriber
	cons   jetstream.Consumer
	log    *slog.Logger
	ctx    context.Context // Subscribe's context, for values; its cancellation means stop
	out    chan *message.Message
	wg     sync.WaitGroup
	once   sync.Once
	stopc  chan struct{} // closed when the subscription stops taking new messages
	giveUp chan struct{} // closed CloseTimeout after stopc: in-flight messages are abandoned
	done   chan struct{} // closed after out is closed
	// gateCtx is cancelled with stopc, so a Gate blocked in Wait returns on shutdown.
	gateCtx    context.Context
	cancelGate context.CancelFunc
}

// Subscribe binds to the existing durable pull consumer of topic and returns its messages. It
// fails, naming stream and consumer, if the durable does not exist; it never creates one. The
// channel closes once ctx is cancelled or the Subscriber is closed and in-flight messages are
// settled.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	name := s.opts.Consumer(topic)
	cons, err := s.opts.JS.Consumer(ctx, s.opts.Stream, name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("%w: stream %q consumer %q (topic %q): %v", ErrConsumerMissing, s.opts.Stream, name, topic, err)
	case err != nil:
		return nil, fmt.Errorf("bus: bind stream %q consumer %q (topic %q): %w", s.opts.Stream, name, topic, err)
	}
	if err := s.check(cons.CachedInfo(), topic); err != nil {
		return nil, err
	}

	sub := &subscription{
		s:      s,
		cons:   cons,
		log:    s.log.With("consumer", name, "topic", topic),
		ctx:    ctx,
		out:    make(chan *message.Message),
		stopc:  make(chan struct{}),
		giveUp: make(chan struct{}),
		done:   make(chan struct{}),
	}
	sub.gateCtx, sub.cancelGate = context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sub.cancelGate()
		return nil, ErrSubscriberClosed
	}
	s.subs = append(s.subs, sub)
	s.mu.Unlock()

	sub.wg.Add(s.opts.Workers)
	for range s.opts.Workers {
		go sub.work()
	}
	go func() {
		select {
		case <-ctx.Done():
			sub.stop()
		case <-sub.stopc:
		}
	}()
	go func() {
		sub.wg.Wait()
		close(sub.out)
		s.forget(sub)
		close(sub.done)
	}()
	return sub.out, nil
}

// check refuses consumers that would break our ack discipline or that a wrong resolver picked.
func (s *Subscriber) check(info *jetstream.ConsumerInfo, topic string) error {
	if info == nil {
		return nil
	}
	c := info.Config
	if c.AckPolicy != jetstream.AckExplicitPolicy {
		return fmt.Errorf("bus: stream %q consumer %q: ack policy %s, want explicit", s.opts.Stream, info.Name, c.AckPolicy)
	}
	filters := c.FilterSubjects
	if c.FilterSubject != "" {
		filters = append(filters, c.FilterSubject)
	}
	if len(filters) > 0 && !slices.Contains(filters, topic) {
		return fmt.Errorf("bus: stream %q consumer %q filters %v, not topic %q", s.opts.Stream, info.Name, filters, topic)
	}
	if want := s.opts.Workers * s.opts.Batch; c.MaxAckPending > 0 && c.MaxAckPending < want {
		s.log.Warn("consumer MaxAckPending is below Workers×Batch; workers will idle",
			"consumer", info.Name, "max_ack_pending", c.MaxAckPending, "want", want)
	}
	return nil
}

func (s *Subscriber) forget(sub *subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = slices.DeleteFunc(s.subs, func(x *subscription) bool { return x == sub })
}

// Close stops every subscription: no new pulls, in-flight messages get up to CloseTimeout to be
// acked or nacked, the rest are handed back with a NAK. It never deletes a durable and never
// closes the connection. Close returns once every subscription's channel is closed.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	subs := slices.Clone(s.subs)
	s.mu.Unlock()
	for _, sub := range subs {
		sub.stop()
	}
	for _, sub := range subs {
		<-sub.done
	}
	return nil
}

func (sub *subscription) stop() {
	sub.once.Do(func() {
		close(sub.stopc)
		sub.cancelGate()
		time.AfterFunc(sub.s.opts.CloseTimeout, func() { close(sub.giveUp) })
	})
}

func (sub *subscription) stopping() bool {
	select {
	case <-sub.stopc:
		return true
	default:
		return false
	}
}

// work is one pull loop. Each pull asks for Batch messages and waits up to PollWait; the
// messages are handled one at a time, each settled before the next.
func (sub *subscription) work() {
	defer sub.wg.Done()
	o := sub.s.opts
	for !sub.stopping() {
		if o.Gate != nil {
			if err := o.Gate(sub.gateCtx); err != nil {
				if !sub.stopping() {
					sub.log.Warn("gate failed", "err", err)
					sub.pause()
				}
				continue
			}
		}
		batch, err := sub.cons.Fetch(o.Batch, jetstream.FetchMaxWait(o.PollWait))
		if err != nil {
			sub.log.Warn("pull failed", "err", err)
			sub.pause()
			continue
		}
		for m := range batch.Messages() {
			if sub.stopping() {
				sub.abandon(m, "subscriber stopping before delivery")
				continue
			}
			sub.deliver(m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			// e.g. the consumer was deleted or a leader moved; retry after a pause rather
			// than spinning, and keep the durable's position.
			sub.log.Warn("pull ended with an error", "err", err)
			sub.pause()
		}
	}
}

func (sub *subscription) pause() {
	select {
	case <-sub.stopc:
	case <-time.After(time.Second):
	}
}

// deliver hands one message to the channel and settles it from the consumer's verdict.
func (sub *subscription) deliver(m jetstream.Msg) {
	wm := sub.toWatermill(m)
	// The message context keeps Subscribe's values but not its cancellation: a handler must be
	// able to finish (and ack) while the service shuts down (pitfall 7). It is cancelled once
	// the message is settled or abandoned.
	ctx, cancel := context.WithCancel(context.WithValue(context.WithoutCancel(sub.ctx), jsMsgKey{}, m))
	defer cancel()
	wm.SetContext(ctx)

	select {
	case sub.out <- wm:
	case <-sub.stopc:
		sub.abandon(m, "subscriber stopping before delivery")
		return
	}
	select {
	case <-wm.Acked():
		sub.ack(m, wm)
		return
	case <-wm.Nacked():
		sub.nak(m, wm)
		return
	case <-sub.stopc:
	}
	select {
	case <-wm.Acked():
		sub.ack(m, wm)
	case <-wm.Nacked():
		sub.nak(m, wm)
	case <-sub.giveUp:
		sub.abandon(m, "handler did not finish within CloseTimeout")
	}
}

func (sub *subscription) ack(m jetstream.Msg, wm *message.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), sub.s.opts.AckTimeout)
	defer cancel()
	// DoubleAck waits for the server's confirmation, so "acked" means stored on the consumer,
	// not "written to a socket". On failure the message is redelivered after AckWait; handlers
	// are idempotent.
	if err := m.DoubleAck(ctx); err != nil {
		sub.log.Warn("ack not confirmed; the message will be redelivered", "id", wm.UUID, "err", err)
	}
}

func (sub *subscription) nak(m jetstream.Msg, wm *message.Message) {
	n, _ := strconv.ParseUint(wm.Metadata.Get(MetaNumDelivered), 10, 64)
	d := sub.s.opts.NakDelay(n)
	if err := m.NakWithDelay(d); err != nil {
		sub.log.Warn("nak failed; the message will be redelivered after AckWait", "id", wm.UUID, "err", err)
	}
}

// abandon hands a message back without acking it: a NAK (no delay) lets another replica, or
// this service after a restart, take it at once rather than after AckWait.
func (sub *subscription) abandon(m jetstream.Msg, why string) {
	sub.log.Debug("message handed back", "reason", why, "subject", m.Subject())
	if err := m.Nak(); err != nil {
		sub.log.Debug("nak of an abandoned message failed; redelivered after AckWait", "err", err)
	}
}

// toWatermill converts without judging the content: odd headers or bodies are the handler's
// problem (it dead-letters them as undecodable), never a reason to drop or ack here.
func (sub *subscription) toWatermill(m jetstream.Msg) *message.Message {
	md := message.Metadata{}
	for k, v := range m.Headers() {
		if len(v) > 0 {
			md[k] = v[0]
		}
	}
	md[MetaSubject] = m.Subject()
	var stream string
	var seq uint64
	if meta, err := m.Metadata(); err == nil {
		stream, seq = meta.Stream, meta.Sequence.Stream
		md[MetaStream] = stream
		md[MetaStreamSeq] = strconv.FormatUint(seq, 10)
		md[MetaNumDelivered] = strconv.FormatUint(meta.NumDelivered, 10)
		md[MetaConsumer] = meta.Consumer
	} else {
		sub.log.Warn("message without JetStream metadata", "subject", m.Subject(), "err", err)
	}
	id := md[jetstream.MsgIDHeader]
	if id == "" {
		id = md[events.HeaderID]
	}
	if id == "" {
		// Stable across redeliveries, so idempotency keyed on msg.UUID still works.
		id = events.ID("nats-msg", stream, strconv.FormatUint(seq, 10)).String()
	}
	wm := message.NewMessage(id, m.Data())
	wm.Metadata = md
	return wm
}

type jsMsgKey struct{}

// InProgress tells the server that msg is still being worked on, which restarts its AckWait.
// Long handlers call it periodically (watermill messages have no such hook of their own). It
// works through msg.Context(), which the router's middleware derive from ours.
func InProgress(msg *message.Message) error {
	m, ok := msg.Context().Value(jsMsgKey{}).(jetstream.Msg)
	if !ok {
		return ErrNotJetStream
	}
	return m.InProgress()
}

// KeepAlive calls touch (which sends InProgress for the messages being worked on) every
// interval until the returned stop is called, so that work longer than the consumer's AckWait
// is not redelivered meanwhile.
func KeepAlive(every time.Duration, touch func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				touch()
			}
		}
	}()
	return func() { close(done) }
}
