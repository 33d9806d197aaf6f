package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

// ReconcilerName is the reconciler's durable on SYNC and its dead-letter stage token.
const ReconcilerName = "reconciler"

// reconcilerFilter is the reconciler durable's filter subject.
const reconcilerFilter = "ion.sync.v1.completed.>"

// Defaults of ReconcilerOptions, and the reconciler's router: one delivery waits at most
// DefaultReconcileMaxWait inside a handler timeout of reconcileHandlerTimeout, without
// in-process retries (a retry would only wait again), so Budget stays inside the durable's
// AckWait of 30s. An incomplete sync is NAKed with the usual growing delay and dead-lettered
// (handler-failed; `dlq redrive` replays it) on its reconcileMaxDeliver-th delivery, which
// must stay below the durable's MaxDeliver (bus.DefaultMaxDeliver): about 9×20s waiting plus
// 2 minutes of NAK delays, some 5 minutes after the completion.
const (
	DefaultReconcilePoll    = 200 * time.Millisecond
	DefaultReconcileMaxWait = 20 * time.Second

	reconcileHandlerTimeout = 25 * time.Second
	reconcileMargin         = 4 * time.Second // left after the wait to reconcile, publish and store
	reconcileMaxDeliver     = bus.DefaultMaxDeliver - 1
)

// ReconcilerOptions configures NewReconciler.
type ReconcilerOptions struct {
	Deps service.Deps
	// PublisherDurable is the durable whose backlog must drain first; default "publisher".
	PublisherDurable string
	// Poll and MaxWait bound the in-handler wait for a sync to complete. The handler also stops
	// at its message deadline (the router's handler timeout); an incomplete sync is then
	// returned as an error and redelivered with a delay.
	Poll    time.Duration
	MaxWait time.Duration
}

// Reconciler consumes ion.sync.v1.completed.> and, once everything the sync started has
// settled (billing.Complete), publishes reversals of records a complete re-read no longer
// contains (reversal.go; then waits for them to be delivered), publishes
// billing.v1.reconciliation.<account> and keeps the latest result in the "periods" bucket under
// recon.<account>.<period>.
type Reconciler struct {
	o    ReconcilerOptions
	log  *slog.Logger
	pub  *bus.Publisher
	stop <-chan struct{} // closed when Run's context ends: stop waiting, hand the message back

	// completions keep each sync's summary scan across redeliveries, so a sync whose summaries
	// take longer than one handler budget to read (millions of records) still gets there.
	mu          sync.Mutex
	completions map[uuid.UUID]*billing.Completion
}

// NewReconciler checks the options.
func NewReconciler(o ReconcilerOptions) (*Reconciler, error) {
	if err := o.Deps.Validate(); err != nil {
		return nil, err
	}
	if o.Poll <= 0 {
		o.Poll = DefaultReconcilePoll
	}
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultReconcileMaxWait
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: o.Deps.JS, Logger: o.Deps.Logger})
	if err != nil {
		return nil, err
	}
	return &Reconciler{o: o, log: o.Deps.Logger, pub: pub, stop: make(chan struct{}), completions: map[uuid.UUID]*billing.Completion{}}, nil
}

func (r *Reconciler) opts() billing.ReconcileOptions {
	return billing.ReconcileOptions{JS: r.o.Deps.JS, Logger: r.log, PublisherDurable: r.o.PublisherDurable}
}

// Run consumes the reconciler durable until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	stage, err := service.NewStageWith(r.o.Deps, ReconcilerName, func(o *bus.RouterOptions) {
		o.HandlerTimeout = reconcileHandlerTimeout
		o.Retry.MaxRetries = -1
		o.MaxDeliver = reconcileMaxDeliver
		// o.AckWait stays the durable's (bus.DefaultAckWait): Validate proves that one delivery,
		// without retries, takes at most reconcileHandlerTimeout (25s) inside it.
	})
	if err != nil {
		return err
	}
	if err := stage.Consume(events.StreamSync, ReconcilerName, reconcilerFilter, r.Handle); err != nil {
		return err
	}
	stop := make(chan struct{})
	r.stop = stop
	go func() { <-ctx.Done(); close(stop) }()
	return stage.Run(ctx)
}

// errIncomplete is returned while a sync's data is still moving; the message is redelivered.
var errIncomplete = errors.New("sync not complete yet")

// Handle reconciles one completed sync.
func (r *Reconciler) Handle(msg *message.Message) error {
	ctx := msg.Context()
	var c events.SyncCompleted
	if err := events.Decode(msg, events.TypeSyncCompleted, &c); err != nil {
		return err
	}
	if err := events.CheckToken(c.Account); err != nil {
		return fmt.Errorf("%w: account: %v", events.ErrUndecodable, err)
	}
	if _, _, err := events.ParsePeriod(c.Period); err != nil {
		return fmt.Errorf("%w: %v", events.ErrUndecodable, err)
	}
	if err := r.waitComplete(ctx, msg, c); err != nil {
		return err
	}
	if reversible(c) {
		n, err := r.reverse(ctx, c)
		if err != nil {
			return err
		}
		if n > 0 {
			// Reconcile counts reversed records at zero: let the publisher deliver them first.
			if err := r.waitComplete(ctx, msg, c); err != nil {
				return err
			}
		}
	}
	rec, err := billing.Reconcile(ctx, r.opts(), c)
	if err != nil {
		return err
	}
	m, err := events.NewMessage(rec.EventMeta(source), rec)
	if err != nil {
		return err
	}
	if err := r.pub.PublishCtx(ctx, rec.NATSSubject(), m); err != nil {
		return fmt.Errorf("publish reconciliation: %w", err)
	}
	if err := billing.StoreReconciliation(ctx, r.o.Deps.JS, rec); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.completions, c.SyncID)
	r.mu.Unlock()
	return nil
}

// completion returns the sync's Completion, kept from an earlier delivery of the same
// completion event when there was one.
func (r *Reconciler) completion(c events.SyncCompleted) *billing.Completion {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp, ok := r.completions[c.SyncID]
	if !ok {
		cp = billing.NewCompletion(r.opts(), c)
		r.completions[c.SyncID] = cp
	}
	return cp
}

// waitComplete polls billing.Complete until the sync is complete, MaxWait passes, the message's
// deadline nears or the service stops; it keeps the message's AckWait alive meanwhile.
func (r *Reconciler) waitComplete(ctx context.Context, msg *message.Message, c events.SyncCompleted) error {
	deadline := time.Now().Add(r.o.MaxWait)
	if d, ok := ctx.Deadline(); ok && d.Add(-reconcileMargin).Before(deadline) {
		deadline = d.Add(-reconcileMargin) // leave time to reconcile and publish before the handler timeout
	}
	lastTouch := time.Now()
	completion := r.completion(c)
	for {
		ok, missing, err := completion.Check(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if !time.Now().Add(r.o.Poll).Before(deadline) {
			r.log.Debug("sync not complete; redelivering later", "account", c.Account, "period", c.Period, "sync", c.SyncID, "missing", missing)
			return fmt.Errorf("%w: sync %s (%s %s): %s", errIncomplete, c.SyncID, c.Account, c.Period, missing)
		}
		if time.Since(lastTouch) > 5*time.Second {
			_ = bus.InProgress(msg) // restart AckWait; ErrNotJetStream outside a subscriber is fine
			lastTouch = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: sync %s: %s: %w", errIncomplete, c.SyncID, missing, ctx.Err())
		case <-r.stop:
			return fmt.Errorf("%w: sync %s: stopping", errIncomplete, c.SyncID)
		case <-time.After(r.o.Poll):
		}
	}
}
