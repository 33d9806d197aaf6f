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
// DefaultReconcileMaxWait for the sync to complete, without in-process retries (a retry would
// only wait again). Once complete, the reversal pass and the reconciliation may take longer
// than the durable's AckWait of 30s at millions of records, so the handler keeps its message
// alive (bus.KeepAlive) up to reconcileHandlerTimeout, and what a delivery cut short has done
// (summaries read, customers checked for reversals) is kept for the next one. An incomplete
// sync is NAKed with the usual growing delay and dead-lettered (handler-failed; `dlq redrive`
// replays it) on its reconcileMaxDeliver-th delivery, which must stay below the durable's
// MaxDeliver (bus.DefaultMaxDeliver): about 9×20s waiting plus 2 minutes of NAK delays, some
// 5 minutes after the completion.
const (
	DefaultReconcilePoll    = 200 * time.Millisecond
	DefaultReconcileMaxWait = 20 * time.Second

	reconcileHandlerTimeout = 5 * time.Minute
	reconcileMargin         = 4 * time.Second // left after a cut-short wait or pass to hand the message back
	reconcileKeepAlive      = 10 * time.Second
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

	// syncs keep each sync's progress across redeliveries, so a sync whose summaries or
	// reversal pass take longer than one delivery (millions of records) still gets there.
	mu    sync.Mutex
	syncs map[uuid.UUID]*syncProgress
}

// syncProgress is what the deliveries of one completion event have done so far.
type syncProgress struct {
	completion *billing.Completion // the summaries read
	checked    int                 // manifest customers checked for reversals
	reversed   int                 // reversals published
	present    []uuid.UUID         // the re-read's record ids, sorted, while reversals are checked
	touched    time.Time           // last delivery: progress untouched for syncProgressTTL is dropped
}

// syncProgressTTL drops the progress of a sync whose completion has not been delivered for this
// long (dead-lettered, or reconciled by another replica): deliveries come back within a minute.
const syncProgressTTL = time.Hour

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
	return &Reconciler{o: o, log: o.Deps.Logger, pub: pub, stop: make(chan struct{}), syncs: map[uuid.UUID]*syncProgress{}}, nil
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
		// Handle keeps its message alive (bus.KeepAlive), so one delivery may outlast the
		// durable's AckWait: the router's AckWait check does not apply.
		o.AckWait = 0
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
	stop := bus.KeepAlive(reconcileKeepAlive, func() { _ = bus.InProgress(msg) }) // ErrNotJetStream outside a subscriber is fine
	defer stop()
	sp := r.progress(c)
	if err := r.waitComplete(ctx, sp, c); err != nil {
		return err
	}
	if reversible(c) {
		if err := r.reverse(ctx, sp, c); err != nil {
			return err
		}
		if sp.reversed > 0 {
			// Reconcile counts reversed records at zero: let the publisher deliver them first.
			if err := r.waitComplete(ctx, sp, c); err != nil {
				return err
			}
		}
	}
	rec, err := sp.completion.Reconcile(ctx)
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
	delete(r.syncs, c.SyncID)
	r.mu.Unlock()
	return nil
}

// progress returns the sync's progress, kept from an earlier delivery of the same completion
// event when there was one.
func (r *Reconciler) progress(c events.SyncCompleted) *syncProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for id, sp := range r.syncs {
		if now.Sub(sp.touched) > syncProgressTTL {
			delete(r.syncs, id)
		}
	}
	sp, ok := r.syncs[c.SyncID]
	if !ok {
		sp = &syncProgress{completion: billing.NewCompletion(r.opts(), c)}
		r.syncs[c.SyncID] = sp
	}
	sp.touched = now
	return sp
}

// waitComplete polls the sync's completion until it is complete, MaxWait passes, the message's
// deadline nears or the service stops.
func (r *Reconciler) waitComplete(ctx context.Context, sp *syncProgress, c events.SyncCompleted) error {
	deadline := time.Now().Add(r.o.MaxWait)
	if d, ok := ctx.Deadline(); ok && d.Add(-reconcileMargin).Before(deadline) {
		deadline = d.Add(-reconcileMargin) // leave time to hand the message back before the handler timeout
	}
	for {
		ok, missing, err := sp.completion.Check(ctx)
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
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: sync %s: %s: %w", errIncomplete, c.SyncID, missing, ctx.Err())
		case <-r.stop:
			return fmt.Errorf("%w: sync %s: stopping", errIncomplete, c.SyncID)
		case <-time.After(r.o.Poll):
		}
	}
}
