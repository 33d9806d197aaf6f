// Package publisher delivers usage records to billing sinks through the delivery ledger
// (DESIGN.md "Delivery semantics").
package publisher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

// Name is the stage name: durable consumer and dead-letter subject token.
const Name = "publisher"

// source is the ce-source of what the publisher emits.
const source = "ionconnector/" + Name

// Run consumes usage.v1.record.> until ctx ends.
func Run(ctx context.Context, deps service.Deps) error {
	if err := deps.Validate(); err != nil {
		return err
	}
	if deps.Config.Sinks.HTTP == nil && deps.Config.Sinks.CSV == nil {
		// Records wait in USAGE (un-consumed) until a sink is configured; the other stages keep
		// running, so a fetch-only deployment works.
		deps.Logger.Warn("no billing sinks configured (sinks.http, sinks.csv): publisher idle")
		<-ctx.Done()
		return nil
	}
	p, err := New(ctx, Options{Deps: deps})
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// Options configures New.
type Options struct {
	Deps service.Deps
	// Sinks overrides the sinks built from Deps.Config.Sinks (tests, the demo).
	Sinks []billing.Sink
	// Hooks are the ledger's crash-point seams (tests).
	Hooks billing.Hooks
	// NoReconciler leaves the reconciler durable to another process (Run then only delivers).
	NoReconciler bool
	// Now is the acceptance clock that decides whether a period is closed (tests); default time.Now.
	Now func() time.Time
}

// Publisher batches usage records per account, period and customer and delivers each batch.
// It pulls from the durable itself rather than through a watermill router: a record's message
// is acked only after its batch is committed, so one worker holds a whole batch un-acked.
type Publisher struct {
	deps service.Deps
	log  *slog.Logger
	pub  *bus.Publisher
	dl   *billing.Deliverer
	cons jetstream.Consumer
	rec  *Reconciler // nil with Options.NoReconciler
	// slots bounds the deliveries running at once across the pull loops (publisher.workers);
	// set by Run, nil: a pull delivers its groups one after another.
	slots chan struct{}
	// approvals holds back what an approval_required account has not approved (approval.go).
	approvals approvalGate
}

// New builds the sinks, the ledger and the deliverer.
func New(ctx context.Context, o Options) (*Publisher, error) {
	if err := o.Deps.Validate(); err != nil {
		return nil, err
	}
	d := o.Deps
	sinks := o.Sinks
	if sinks == nil {
		var err error
		if sinks, err = SinksFromConfig(d); err != nil {
			return nil, err
		}
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: d.JS, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	ledger, err := billing.OpenLedger(ctx, d.JS)
	if err != nil {
		return nil, err
	}
	cons, err := d.JS.Consumer(ctx, events.StreamUsage, Name)
	if err != nil {
		return nil, fmt.Errorf("publisher: durable %s on %s: %w", Name, events.StreamUsage, err)
	}
	p := &Publisher{deps: d, log: d.Logger, pub: pub, cons: cons}
	if !o.NoReconciler {
		if p.rec, err = NewReconciler(ReconcilerOptions{Deps: d}); err != nil {
			return nil, err
		}
	}
	p.dl, err = billing.NewDeliverer(billing.DelivererOptions{
		Ledger: ledger, Sinks: sinks, Load: billing.StreamLoader(d.JS), Hooks: o.Hooks, Logger: d.Logger, Now: o.Now,
		ClosingDay: closingDay(d.Config),
		Receipt: func(ctx context.Context, rc events.Delivery) error {
			msg, err := events.NewMessage(rc.EventMeta(source), rc)
			if err != nil {
				return err
			}
			return pub.PublishCtx(ctx, rc.NATSSubject(), msg)
		},
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// SinksFromConfig builds the configured sinks; it is an error to configure none.
func SinksFromConfig(d service.Deps) ([]billing.Sink, error) {
	var sinks []billing.Sink
	if h := d.Config.Sinks.HTTP; h != nil {
		sec, err := h.Secret()
		if err != nil {
			return nil, fmt.Errorf("publisher: sinks.http: %w", err)
		}
		s, err := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: h.URL, Secret: []byte(sec.Reveal()), Timeout: h.Timeout, Logger: d.Logger})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	if c := d.Config.Sinks.CSV; c != nil {
		s, err := billing.NewCSVSink(billing.CSVSinkOptions{Dir: c.Dir})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	if len(sinks) == 0 {
		return nil, errors.New("publisher: no sinks configured (sinks.http or sinks.csv)")
	}
	return sinks, nil
}

// Run runs Workers pull loops and the reconciler until ctx ends. Messages of an unfinished
// batch stay un-acked and come back after AckWait, exactly as after a crash. A reconciler that
// cannot run (its durable is missing) stops the publisher with its error.
func (p *Publisher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := p.deps.Config.Publisher
	p.slots = make(chan struct{}, max(cfg.Workers, 1))
	var wg sync.WaitGroup
	var recErr error
	if p.rec != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.rec.Run(ctx); err != nil && ctx.Err() == nil {
				recErr = fmt.Errorf("publisher: reconciler: %w", err)
				p.log.Error("reconciler stopped; stopping the publisher", "err", err)
				cancel()
			}
		}()
	}
	for range max(cfg.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := p.pull(ctx, max(cfg.BatchSize, 1), cfg.BatchWait); err != nil && ctx.Err() == nil {
					p.log.Warn("publisher pull failed", "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		}()
	}
	wg.Wait()
	return recErr
}

type item struct {
	msg jetstream.Msg
	rec events.UsageRecord
	seq uint64
}

// pull fetches up to size messages, waiting at most wait (the batch's size and time bounds),
// and delivers them grouped by partition.
func (p *Publisher) pull(ctx context.Context, size int, wait time.Duration) error {
	batch, err := p.cons.Fetch(size, jetstream.FetchMaxWait(max(wait, 100*time.Millisecond)))
	if err != nil {
		return err
	}
	groups := map[string][]item{}
	var order []string
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			p.deadLetter(ctx, m, bus.ReasonUndecodable, err)
			continue
		}
		var rec events.UsageRecord
		if t := m.Headers().Get(events.HeaderType); t != events.TypeUsageRecord {
			p.deadLetter(ctx, m, bus.ReasonUndecodable, fmt.Errorf("ce-type %q, want %q", t, events.TypeUsageRecord))
			continue
		}
		if err := events.DecodeUsageRecord(m.Data(), &rec); err != nil {
			p.deadLetter(ctx, m, bus.ReasonUndecodable, err)
			continue
		}
		k := billing.Key(rec.BillingAccountID, events.PeriodOf(rec.BillingPeriodStart), rec.IonCustomerID)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], item{msg: m, rec: rec, seq: md.Sequence.Stream})
	}
	// Sinks may retry for a while: keep the whole batch's AckWait from expiring until every
	// group is settled, not only the group being delivered, or the later groups are redelivered
	// to another worker meanwhile and posted twice.
	var all []item
	for _, k := range order {
		all = append(all, groups[k]...)
	}
	stop := p.keepAlive(all)
	if p.slots == nil {
		for _, k := range order {
			p.deliver(ctx, groups[k])
		}
	} else {
		// Groups are different partitions (the deliverer locks each): deliver them at once, as
		// far as slots allow, rather than waiting on one group's ledger writes and sink fsyncs
		// before starting the next.
		var wg sync.WaitGroup
		for _, k := range order {
			p.slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-p.slots }()
				p.deliver(ctx, groups[k])
			})
		}
		wg.Wait()
	}
	stop()
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// deliver runs one partition's batch through the ledger and settles its messages.
func (p *Publisher) deliver(ctx context.Context, its []item) {
	r0 := its[0].rec
	account, period, customer := r0.BillingAccountID, events.PeriodOf(r0.BillingPeriodStart), r0.IonCustomerID
	if its = p.holdUnapproved(ctx, account, period, customer, its); len(its) == 0 {
		return
	}
	items := make([]billing.Item, len(its))
	for i, it := range its {
		items[i] = billing.Item{Record: it.rec, StreamSeq: it.seq}
	}
	out, err := p.dl.Deliver(ctx, account, period, customer, items) // pull keeps its AckWait alive
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: leave them un-acked, as a crash would
		}
		p.log.Warn("delivery failed; batch will be redelivered", "account", account, "customer", customer, "period", period, "err", err)
		nakAll(its)
		return
	}
	// Items whose dead letter is published are acked by deadLetter; the ones whose dead letter
	// failed are NAKed, and their redelivery finds the revision dead in the ledger (out.Dead)
	// and publishes the dead letter again (its id is deterministic, so a copy is dropped).
	// now: dead-lettered by this Deliver (not only found dead in the ledger).
	type why struct {
		reason string
		cause  error
		now    bool
	}
	dead := map[string]why{}
	key := func(r events.UsageRecord) string { return r.RecordID.String() + "/" + r.Revision }
	if out.Rejected != nil {
		for _, ri := range out.RejectedItems {
			dead[key(ri.Record)] = why{billing.ReasonSinkRejected, out.Rejected, true}
		}
	}
	for _, ei := range out.Expired {
		dead[key(ei.Record)] = why{ei.Reason, ei.Err, true}
	}
	for _, di := range out.Dead {
		if _, ok := dead[key(di.Record)]; ok {
			continue
		}
		reason := cmp.Or(di.Reason, billing.ReasonSinkRejected)
		dead[key(di.Record)] = why{reason, fmt.Errorf("dead-lettered earlier (%s): dead letter re-published on redelivery", reason), false}
	}
	var ack []item
	for _, it := range its {
		w, ok := dead[key(it.rec)]
		if !ok {
			ack = append(ack, it)
			continue
		}
		if !w.now && numDelivered(it.msg) <= 1 {
			// A fresh re-read of a revision dead-lettered earlier: its dead letter exists.
			ack = append(ack, it)
			continue
		}
		if !p.deadLetter(ctx, it.msg, w.reason, w.cause) {
			nakAll([]item{it})
		}
	}
	// One round trip per batch, not per record: the acks go out in order on one connection, and
	// the last one waits for the server's confirmation. A lost ack only means a redelivery,
	// which the ledger skips.
	for i, it := range ack {
		var err error
		if i == len(ack)-1 {
			err = it.msg.DoubleAck(ctx)
		} else {
			err = it.msg.Ack()
		}
		if err != nil {
			p.log.Warn("ack failed; the record will be redelivered and skipped by the ledger", "err", err)
		}
	}
	if out.DeliveryID.String() != "00000000-0000-0000-0000-000000000000" {
		p.log.Debug("batch delivered", "delivery", out.DeliveryID, "records", len(out.Delivered), "skipped", out.Skipped)
	}
}

// keepAlive sends InProgress for its every third of the durable's AckWait (at most every 5 s)
// until the returned stop is called; settled messages ignore it.
func (p *Publisher) keepAlive(its []item) func() {
	every := 5 * time.Second
	if ci := p.cons.CachedInfo(); ci != nil && ci.Config.AckWait > 0 {
		every = min(every, max(ci.Config.AckWait/3, 100*time.Millisecond))
	}
	return bus.KeepAlive(every, func() {
		for _, it := range its {
			_ = it.msg.InProgress()
		}
	})
}

// deadLetter publishes m to dlq.v1.publisher.<account> and acks it only when that worked; it
// reports whether the dead letter was published.
func (p *Publisher) deadLetter(ctx context.Context, m jetstream.Msg, reason string, cause error) bool {
	headers := map[string]string{}
	for k, v := range m.Headers() {
		if len(v) > 0 {
			headers[k] = v[0]
		}
	}
	var seq uint64
	attempts := 1
	if md, err := m.Metadata(); err == nil {
		seq, attempts = md.Sequence.Stream, int(md.NumDelivered)
	}
	id := m.Headers().Get(events.HeaderID)
	now := time.Now().UTC()
	dl := events.DeadLetter{
		Stage: Name, Account: events.AccountOf(m.Subject()), Reason: reason, Error: cause.Error(),
		OriginalSubject: m.Subject(), OriginalID: id, OriginalStream: events.StreamUsage, OriginalSeq: seq,
		Attempts: attempts, Headers: headers, Payload: m.Data(), FailedAt: now,
	}
	msg, err := events.NewMessage(events.Meta{ID: events.ID("deadletter", Name, id, fmt.Sprint(seq), reason),
		Type: events.TypeDeadLetter, Source: source, Subject: m.Subject(), Time: now}, dl)
	if err == nil {
		err = p.pub.PublishCtx(ctx, dl.NATSSubject(), msg)
	}
	if err != nil {
		p.log.Error("dead letter not published; message left for redelivery", "subject", m.Subject(), "err", err)
		return false
	}
	p.log.Warn("record dead-lettered", "reason", reason, "subject", m.Subject(), "err", cause)
	if err := m.DoubleAck(ctx); err != nil {
		p.log.Warn("ack of dead-lettered message failed", "err", err)
	}
	return true
}

// nakAll hands messages back with the usual growing delay for their delivery count.
func nakAll(its []item) {
	for _, it := range its {
		_ = it.msg.NakWithDelay(bus.DefaultNakDelay(numDelivered(it.msg)))
	}
}

// numDelivered is m's delivery count (1 when its metadata is unreadable).
func numDelivered(m jetstream.Msg) uint64 {
	if md, err := m.Metadata(); err == nil {
		return md.NumDelivered
	}
	return 1
}
