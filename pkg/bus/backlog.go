package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of BacklogOptions.
const (
	DefaultBacklogRefresh = 250 * time.Millisecond
	DefaultBacklogIdle    = DefaultAckWait
)

// BacklogOptions configures NewBacklog.
type BacklogOptions struct {
	JS jetstream.JetStream
	// Stream and Durable name the downstream consumer whose backlog is watched.
	Stream, Durable string
	// Max is the backlog (NumPending + NumAckPending) above which Wait blocks; at least 1.
	Max int
	// Refresh is the longest a consumer info is reused: Wait asks the server at most this
	// often, however many workers call it (default 250ms).
	Refresh time.Duration
	// Idle: a durable with no pull request waiting and no delivery for this long is not being
	// consumed (no process runs it, or it runs without a sink), so Wait does not block on it
	// (default DefaultBacklogIdle).
	Idle   time.Duration
	Logger *slog.Logger
}

// Backlog is backpressure between two stages: the upstream stage calls Wait before it takes
// its next message, and Wait blocks while the downstream durable is being consumed and has more
// than Max messages left. A consumer that stays close behind its producer reads from the
// server's write cache; one left far behind makes the server load and decompress old file-store
// blocks, which costs memory in proportion to how far behind it is.
//
// Backpressure is an optimisation, never a reason to stop: an unreadable consumer info, or a
// durable that nobody consumes, lets Wait return at once.
type Backlog struct {
	opts BacklogOptions
	log  *slog.Logger

	mu      sync.Mutex
	cons    jetstream.Consumer
	checked time.Time
	over    bool
	paused  bool // for logging the start and end of a pause once
	failing bool // the last info request failed (logged once)
}

// NewBacklog returns a Backlog on an existing durable (it is looked up lazily, so it may be
// provisioned after this call).
func NewBacklog(opts BacklogOptions) (*Backlog, error) {
	var errs []error
	if opts.JS == nil {
		errs = append(errs, errors.New("JS is required"))
	}
	if opts.Stream == "" || opts.Durable == "" {
		errs = append(errs, errors.New("Stream and Durable are required"))
	}
	if opts.Max < 1 {
		errs = append(errs, fmt.Errorf("Max %d, want at least 1", opts.Max))
	}
	if opts.Refresh < 0 || opts.Idle < 0 {
		errs = append(errs, errors.New("Refresh and Idle must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bus: backlog options: %w", err)
	}
	if opts.Refresh == 0 {
		opts.Refresh = DefaultBacklogRefresh
	}
	if opts.Idle == 0 {
		opts.Idle = DefaultBacklogIdle
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Backlog{opts: opts, log: opts.Logger.With("stream", opts.Stream, "consumer", opts.Durable, "max_backlog", opts.Max)}, nil
}

// Wait returns nil once the downstream backlog is at most Max or the durable is not being
// consumed, and ctx's error if ctx ends first.
func (b *Backlog) Wait(ctx context.Context) error {
	for {
		if !b.Over(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.opts.Refresh):
		}
	}
}

// Over reports whether the upstream should pause now, from a consumer info at most Refresh old.
func (b *Backlog) Over(ctx context.Context) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.checked) < b.opts.Refresh {
		return b.over
	}
	info, err := b.info(ctx)
	b.checked = time.Now()
	if err != nil {
		// A durable not provisioned yet is simply not consumed; other failures are logged
		// when they start, not on every refresh.
		if ctx.Err() == nil && !b.failing && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			b.log.Warn("downstream backlog unknown; not pausing", "err", err)
		}
		b.failing = ctx.Err() == nil
		b.over = false
		return false
	}
	b.failing = false
	backlog := info.NumPending + uint64(max(info.NumAckPending, 0))
	b.over = backlog > uint64(b.opts.Max) && b.consumed(info)
	if b.over != b.paused {
		b.paused = b.over
		b.log.Debug("downstream backlog", "paused", b.over, "backlog", backlog)
	}
	return b.over
}

func (b *Backlog) info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if b.cons == nil {
		c, err := b.opts.JS.Consumer(ctx, b.opts.Stream, b.opts.Durable)
		if err != nil {
			return nil, err
		}
		b.cons = c
	}
	return b.cons.Info(ctx)
}

// consumed: a pull request is waiting, or something was delivered within Idle. A durable with
// neither has no live consumer (or one that delivers nowhere); waiting for it could be forever.
func (b *Backlog) consumed(info *jetstream.ConsumerInfo) bool {
	if info.NumWaiting > 0 {
		return true
	}
	last := info.Delivered.Last
	return last != nil && time.Since(*last) < b.opts.Idle
}
