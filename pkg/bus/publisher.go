package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of PublisherOptions.
const (
	DefaultPublishMaxInFlight = 256
	DefaultPublishTimeout     = 30 * time.Second
)

// ErrPublish is wrapped by every error Publish returns for messages the stream did not confirm.
var ErrPublish = errors.New("bus: publish not confirmed")

// PublisherOptions configures a Publisher.
type PublisherOptions struct {
	// JS is the JetStream context to publish with. The Publisher never closes its connection:
	// connections are shared by publishers and subscribers (research note, pitfall 9).
	JS jetstream.JetStream
	// Logger receives debug logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxInFlight bounds the unconfirmed async publishes of one Publish call (default 256).
	MaxInFlight int
	// Timeout bounds Publish (the variant without a context) until every PubAck arrives
	// (default 30s). PublishCtx uses its context instead.
	Timeout time.Duration
}

// Validate reports options that can never work.
func (o PublisherOptions) Validate() error {
	var errs []error
	if o.JS == nil {
		errs = append(errs, errors.New("JS is required"))
	}
	if o.MaxInFlight < 0 {
		errs = append(errs, errors.New("MaxInFlight must not be negative"))
	}
	if o.Timeout < 0 {
		errs = append(errs, errors.New("Timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: publisher options: %w", err)
	}
	return nil
}

func (o *PublisherOptions) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultPublishMaxInFlight
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultPublishTimeout
	}
}

// Publisher is a watermill message.Publisher that persists messages in JetStream. The topic is
// the NATS subject; metadata become headers; msg.UUID becomes Nats-Msg-Id so the stream's
// duplicate window drops re-publishes of the same event (our ids are deterministic, events.ID).
type Publisher struct {
	opts PublisherOptions
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher on opts.JS.
func NewPublisher(opts PublisherOptions) (*Publisher, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &Publisher{opts: opts}, nil
}

// Publish is PublishCtx with a context bounded by PublisherOptions.Timeout.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.Timeout)
	defer cancel()
	return p.PublishCtx(ctx, topic, msgs...)
}

// PublishCtx publishes msgs to the subject topic and returns only when the stream has stored
// every one of them (a duplicate PubAck counts: the event is already stored). Messages are
// sent asynchronously, at most MaxInFlight unconfirmed at a time, so a batch costs about one
// round trip instead of one per message. The error names the ids that were not confirmed;
// re-publishing the whole batch is safe because of Nats-Msg-Id.
func (p *Publisher) PublishCtx(ctx context.Context, topic string, msgs ...*message.Message) error {
	if topic == "" {
		return fmt.Errorf("%w: empty topic", ErrPublish)
	}
	type pending struct {
		id  string
		fut jetstream.PubAckFuture
	}
	var (
		window []pending
		failed []string
		errs   []error
	)
	fail := func(id string, err error) {
		failed = append(failed, id)
		if len(errs) < 3 { // keep the error short; the ids say which messages
			errs = append(errs, err)
		}
	}
	// wait resolves the oldest future; JetStream acks in order per connection, so waiting
	// FIFO costs nothing.
	wait := func() {
		f := window[0]
		window = window[1:]
		select {
		case <-f.fut.Ok():
		case err := <-f.fut.Err():
			fail(f.id, err)
		case <-ctx.Done():
			fail(f.id, ctx.Err())
		}
	}
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			fail(m.UUID, err)
			continue
		}
		if len(window) >= p.opts.MaxInFlight {
			wait()
		}
		nm := toNATS(topic, m)
		fut, err := p.opts.JS.PublishMsgAsync(nm, jetstream.WithMsgID(m.UUID))
		if err != nil {
			fail(m.UUID, err)
			continue
		}
		window = append(window, pending{id: m.UUID, fut: fut})
	}
	for len(window) > 0 {
		wait()
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %d of %d messages on %s (ids %s): %w",
			ErrPublish, len(failed), len(msgs), topic, strings.Join(failed, ","), errors.Join(errs...))
	}
	p.opts.Logger.Debug("published", "subject", topic, "messages", len(msgs))
	return nil
}

// Close does nothing. The Publisher owns no connection, and the watermill router closes a
// handler's publisher while other goroutines may still publish with it (router.go handler.run),
// so closing must not break later publishes.
func (p *Publisher) Close() error { return nil }

// toNATS builds the NATS message: metadata → headers, except keys starting with "_", which are
// transport-local (the _nats_* keys our Subscriber adds, watermill internals).
func toNATS(subject string, m *message.Message) *nats.Msg {
	nm := nats.NewMsg(subject)
	nm.Data = m.Payload
	for k, v := range m.Metadata {
		if k == "" || strings.HasPrefix(k, "_") {
			continue
		}
		nm.Header.Set(k, v)
	}
	return nm
}
