package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/events"
)

// Item is one usage record event handed to the Deliverer, with where it sits in the USAGE
// stream (pending deliveries name their members by stream sequence, so a crash can rebuild them).
type Item struct {
	Record    events.UsageRecord
	StreamSeq uint64
}

// RecordLoader reads the record event at a USAGE stream sequence.
type RecordLoader func(ctx context.Context, streamSeq uint64) (events.UsageRecord, error)

// Hooks are test seams at the crash points of a delivery. A hook returning an error aborts
// the delivery at that point, leaving the ledger exactly as a crash there would.
type Hooks struct {
	// AfterSinkAccepted runs after a sink accepted the delivery and before the ledger marks
	// that sink done.
	AfterSinkAccepted func(sink string, deliveryID uuid.UUID) error
	// AfterSinks runs after every sink accepted the delivery and before the ledger commit.
	AfterSinks func(deliveryID uuid.UUID) error
}

// DelivererOptions configures NewDeliverer.
type DelivererOptions struct {
	Ledger  *Ledger
	Sinks   []Sink
	Load    RecordLoader
	Receipt func(ctx context.Context, d events.Delivery) error // publishes billing.v1.delivery
	// ClosingDay gives an account's closing day: a revision accepted after its period closed is
	// delivered as a Correction delta row (correction.go). nil: periods never close.
	ClosingDay ClosingDayFunc
	Hooks      Hooks
	Logger     *slog.Logger
	Now        func() time.Time // the acceptance clock: decides whether a period is closed
}

// Deliverer runs the ledger protocol: pending → every sink → per-sink done → commit → receipt.
// The commit marks the last sink done, and the queued receipt is cleared by the next write, so
// a delivery to one sink writes its partition twice.
type Deliverer struct {
	o     DelivererOptions
	locks sync.Map // partition key → *sync.Mutex: one delivery per partition per process
	// published is partition key → id of the last receipt this process published, so that the
	// receipt left queued in the ledger is not published again by the next delivery.
	published sync.Map
}

// NewDeliverer checks the options.
func NewDeliverer(o DelivererOptions) (*Deliverer, error) {
	var errs []error
	if o.Ledger == nil {
		errs = append(errs, errors.New("Ledger is required"))
	}
	if len(o.Sinks) == 0 {
		errs = append(errs, errors.New("at least one sink is required"))
	}
	if o.Load == nil {
		errs = append(errs, errors.New("Load is required (pending deliveries are rebuilt from the stream)"))
	}
	if o.Receipt == nil {
		errs = append(errs, errors.New("Receipt is required"))
	}
	seen := map[string]bool{}
	for _, s := range o.Sinks {
		if seen[s.Name()] {
			errs = append(errs, fmt.Errorf("sink name %q used twice", s.Name()))
		}
		seen[s.Name()] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("billing: deliverer options: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Deliverer{o: o}, nil
}

// Outcome is what Deliver did with a batch.
type Outcome struct {
	Delivered  []events.DeliveredRecord // members of the delivery made now (nil when nothing was new)
	DeliveryID uuid.UUID                // uuid.Nil when nothing was delivered
	Skipped    int                      // identical or older revisions: acked, nothing delivered
	Recovered  uuid.UUID                // a pending delivery from an earlier attempt, finished first
	// Rejected is set when a sink refused the delivery for good: the members are recorded as
	// dead-lettered in the ledger and the caller dead-letters their messages.
	Rejected *RejectedError
	// RejectedItems are the records of the rejected delivery (for the dead letters).
	RejectedItems []Item
	// Expired are revisions whose Correction cannot be built, its held revision being gone from
	// USAGE (Err is a *BaseExpiredError), or members of an interrupted pending delivery whose own
	// event is gone (a *PendingExpiredError): recorded as dead-lettered in the ledger like a sink
	// rejection, while the rest of the batch is delivered; the caller dead-letters their messages.
	// An item of a dropped pending delivery that was not among the items carries only its record
	// id and revision (its event being gone, there is no message to dead-letter).
	Expired []DeadItem
	// Dead are items skipped because the ledger holds their exact revision as dead-lettered (a
	// redelivered message whose dead letter may not have been published yet), with the ledger's
	// reason.
	Dead []DeadItem
}

// DeadItem is an item the ledger holds as dead-lettered, with why.
type DeadItem struct {
	Item
	Reason string // the ledger's Dead.Reason (ReasonSinkRejected, ReasonCorrectionBaseExpired)
	Err    error  // the failure, when it happened in this Deliver; nil for Outcome.Dead
}

const maxConflicts = 20

// Deliver delivers the new revisions among items, all of one account, period and customer.
// A nil error means every item is settled (delivered, skipped or dead-lettered) and its
// message may be acked; any error leaves the ledger consistent for a retry.
func (d *Deliverer) Deliver(ctx context.Context, account, period, customer string, items []Item) (Outcome, error) {
	mu, _ := d.locks.LoadOrStore(Key(account, period, customer), new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()

	var out Outcome
	for range maxConflicts {
		p, rev, err := d.o.Ledger.Load(ctx, account, period, customer)
		if err != nil {
			return out, err
		}
		// A committed delivery's receipt stays queued in the value until the partition's next
		// write clears it (one write less per delivery); publishing it is idempotent.
		queued := p.Receipt != nil
		if queued {
			if err := d.publishReceipt(ctx, p); err != nil {
				return out, err
			}
		}
		if p.Pending != nil {
			// An earlier attempt (ours, crashed, or another replica's) stopped after writing
			// pending: finish that exact delivery before deciding anything new.
			id := p.Pending.ID
			res, err := d.finish(ctx, p, rev, items)
			if errors.Is(err, ErrConflict) {
				continue
			}
			if err != nil {
				return out, err
			}
			if len(res.Expired) > 0 {
				out.Expired = append(out.Expired, res.Expired...) // dropped, not recovered
				continue
			}
			out.Recovered = id
			if res.Rejected != nil {
				out.Rejected, out.RejectedItems = res.Rejected, res.RejectedItems
			}
			continue
		}
		members, quiet, expired, skipped, dead, err := d.choose(ctx, p, items)
		if err != nil {
			return out, err
		}
		if len(quiet) > 0 || len(expired) > 0 {
			// Zero-delta corrections have no row to deliver and expired ones cannot have one: the
			// ledger takes them at once, and the next round chooses the rest against the updated
			// partition.
			err := d.commitQuiet(ctx, p, rev, quiet, expired)
			if errors.Is(err, ErrConflict) {
				continue
			}
			if err != nil {
				return out, err
			}
			out.Expired = append(out.Expired, expired...)
			continue
		}
		if len(members) == 0 {
			if queued {
				// Nothing else to write: clear the receipt now, or every later load of this
				// partition in another process publishes it again.
				if _, err := d.o.Ledger.Save(ctx, p, rev); errors.Is(err, ErrConflict) {
					continue
				} else if err != nil {
					return out, err
				}
			}
			out.Skipped, out.Dead = skipped, notExpired(dead, out.Expired)
			return out, nil
		}
		p.Pending = &Pending{ID: deliveryID(members), Members: members, Done: map[string]events.SinkResult{}, Created: d.o.Now().UTC()}
		rev, err = d.o.Ledger.Save(ctx, p, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return out, err
		}
		res, err := d.finish(ctx, p, rev, items)
		if errors.Is(err, ErrConflict) {
			continue // reload: whoever won has finished or will finish this delivery
		}
		if err != nil {
			return out, err
		}
		res.Skipped, res.Dead = skipped, notExpired(dead, out.Expired)
		res.Recovered, res.Expired = out.Recovered, out.Expired
		if out.Rejected != nil && res.Rejected == nil {
			res.Rejected, res.RejectedItems = out.Rejected, out.RejectedItems
		}
		return res, nil
	}
	return out, fmt.Errorf("billing: ledger partition %s: too many concurrent writers", Key(account, period, customer))
}

// notExpired is dead without the items dead-lettered as expired in this Deliver (the round after
// that write finds them dead in the ledger).
func notExpired(dead, expired []DeadItem) []DeadItem {
	if len(expired) == 0 {
		return dead
	}
	out := dead[:0:0]
	for _, di := range dead {
		if !slices.ContainsFunc(expired, func(e DeadItem) bool { return e.StreamSeq == di.StreamSeq }) {
			out = append(out, di)
		}
	}
	return out
}

func deliveryID(ms []Member) uuid.UUID {
	dr := make([]events.DeliveredRecord, len(ms))
	for i, m := range ms {
		dr[i] = m.row()
	}
	return events.DeliveryID(dr)
}

// choose picks the revisions to deliver: per record id the newest as-of among items, and
// only if it is newer than what the ledger holds; an identical revision is skipped (and
// returned in dead when the ledger holds it as dead-lettered). A revision of a closed period
// becomes a Correction member, or a quiet one when its delta is zero (no row, ledger only), or
// an expired one when the held revision it corrects is gone from USAGE.
func (d *Deliverer) choose(ctx context.Context, p *Partition, items []Item) (ms, quiet []Member, expired []DeadItem, skipped int, dead []DeadItem, err error) {
	best := map[uuid.UUID]Item{}
	for _, it := range items {
		r := it.Record
		if b, ok := best[r.RecordID]; !ok || r.FetchedAt.After(b.Record.FetchedAt) ||
			(r.FetchedAt.Equal(b.Record.FetchedAt) && r.Revision > b.Record.Revision) {
			best[r.RecordID] = it
		}
	}
	skipped = len(items) - len(best)
	cl, err := d.closure(p)
	if err != nil {
		return nil, nil, nil, 0, nil, err
	}
	for _, it := range best {
		r := it.Record
		id := r.RecordID.String()
		held, ok := p.Records[id]
		if ok && (held.Revision == r.Revision || !r.FetchedAt.After(held.AsOf)) {
			skipped++
			continue
		}
		if dl, ok := p.Dead[id]; ok && (dl.Revision == r.Revision || !r.FetchedAt.After(dl.AsOf)) {
			skipped++
			if dl.Revision == r.Revision {
				dead = append(dead, DeadItem{Item: it, Reason: dl.Reason})
			}
			continue
		}
		m := Member{RecordID: r.RecordID, Revision: r.Revision, Seq: 1, AsOf: r.FetchedAt.UTC(),
			Currency: r.BillingCurrency, Billed: r.BilledCost, StreamSeq: it.StreamSeq}
		if ok {
			m.Seq = held.Seq + 1
			rep := held.Revision
			m.Replaces = &rep // supersede: the sink upserts by x_RecordId
		}
		c, zero, err := d.correction(ctx, cl, r, m.Seq, held, ok)
		var bex *BaseExpiredError
		if errors.As(err, &bex) {
			expired = append(expired, DeadItem{Item: it, Reason: ReasonCorrectionBaseExpired, Err: bex})
			continue
		}
		if err != nil {
			return nil, nil, nil, 0, nil, err
		}
		m.Correction = c
		if zero {
			quiet = append(quiet, m)
			continue
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Member) int { return compareStrings(a.RecordID.String(), b.RecordID.String()) })
	return ms, quiet, expired, skipped, dead, nil
}

// commitQuiet makes the quiet members (zero-delta corrections) the held revisions, keeping the
// sinks' delivery ids of the revisions they supersede: no sink sees them. The expired revisions
// are recorded as dead-lettered in the same write.
func (d *Deliverer) commitQuiet(ctx context.Context, p *Partition, rev uint64, quiet []Member, expired []DeadItem) error {
	for _, m := range quiet {
		id := m.RecordID.String()
		var sinks map[string]uuid.UUID
		if old, ok := p.Records[id]; ok {
			sinks = old.Sinks
		}
		p.Records[id] = Held{Revision: m.Revision, Seq: m.Seq, AsOf: m.AsOf, Currency: m.Currency, Billed: m.Billed, StreamSeq: m.StreamSeq, Sinks: sinks}
		delete(p.Dead, id)
	}
	for _, e := range expired {
		r := e.Record
		markDead(p, r.RecordID, Dead{Revision: r.Revision, AsOf: r.FetchedAt.UTC(), Currency: r.BillingCurrency, Billed: r.BilledCost, Reason: e.Reason})
	}
	if _, err := d.o.Ledger.Save(ctx, p, rev); err != nil {
		return err
	}
	if len(quiet) > 0 {
		d.o.Logger.Info("closed-period revisions without an amount change: ledger updated, no correction row",
			"account", p.Account, "customer", p.Customer, "period", p.Period, "records", len(quiet))
	}
	for _, e := range expired {
		d.o.Logger.Warn("correction impossible, held revision gone from USAGE; dead-lettered", "account", p.Account,
			"customer", p.Customer, "period", p.Period, "reason", e.Reason, "err", e.Err)
	}
	return nil
}

// markDead records revision dl of record id as dead-lettered (reconcile reports its amount so).
func markDead(p *Partition, id uuid.UUID, dl Dead) {
	if p.Dead == nil {
		p.Dead = map[string]Dead{}
	}
	p.Dead[id.String()] = dl
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// payload rebuilds the delivery body from the pending members. Records come from items when
// present, else from the USAGE stream; the publisher-owned fields come from the members, so
// the body is byte-identical however often it is rebuilt.
func (d *Deliverer) payload(ctx context.Context, p *Partition, items []Item) (Payload, []Item, error) {
	// By stream sequence, not (record id, revision): the same revision from a later read has
	// another x_FetchedAt and source page, so only the member's own event gives the same bytes.
	have := map[uint64]Item{}
	for _, it := range items {
		have[it.StreamSeq] = it
	}
	recs := make([]events.UsageRecord, 0, len(p.Pending.Members))
	its := make([]Item, 0, len(p.Pending.Members))
	for _, m := range p.Pending.Members {
		it, ok := have[m.StreamSeq]
		if !ok || it.Record.RecordID != m.RecordID || it.Record.Revision != m.Revision {
			r, err := d.o.Load(ctx, m.StreamSeq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return Payload{}, nil, &PendingExpiredError{Delivery: p.Pending.ID, RecordID: m.RecordID, Revision: m.Revision, StreamSeq: m.StreamSeq, Err: err}
			}
			if err != nil {
				return Payload{}, nil, fmt.Errorf("billing: rebuild pending delivery %s: %w", p.Pending.ID, err)
			}
			if r.RecordID != m.RecordID || r.Revision != m.Revision {
				return Payload{}, nil, fmt.Errorf("billing: rebuild pending delivery %s: stream seq %d holds %s/%s, want %s/%s",
					p.Pending.ID, m.StreamSeq, r.RecordID, r.Revision, m.RecordID, m.Revision)
			}
			it = Item{Record: r, StreamSeq: m.StreamSeq}
		}
		r := it.Record
		r.RevisionSeq, r.Replaces, r.ChargeClass = m.Seq, m.Replaces, nil
		// its name the accepted revision (its message); the body carries the row.
		its = append(its, Item{Record: r, StreamSeq: m.StreamSeq})
		if m.Correction != nil {
			row, err := d.correctionOf(ctx, m, r)
			if err != nil {
				return Payload{}, nil, fmt.Errorf("billing: rebuild pending delivery %s: %w", p.Pending.ID, err)
			}
			r = row
		}
		recs = append(recs, r)
	}
	pl := NewPayload(p.Account, p.Customer, p.Period, recs)
	if pl.DeliveryID != p.Pending.ID {
		return Payload{}, nil, fmt.Errorf("billing: pending delivery %s rebuilt as %s", p.Pending.ID, pl.DeliveryID)
	}
	return pl, its, nil
}

// finish hands the pending delivery of p to every sink not yet done, then commits.
func (d *Deliverer) finish(ctx context.Context, p *Partition, rev uint64, items []Item) (Outcome, error) {
	pl, its, err := d.payload(ctx, p, items)
	var bex *BaseExpiredError
	if errors.As(err, &bex) {
		return d.expire(ctx, p, rev, bex.RecordID, ReasonCorrectionBaseExpired, err, items)
	}
	var pex *PendingExpiredError
	if errors.As(err, &pex) {
		return d.expire(ctx, p, rev, pex.RecordID, ReasonPendingExpired, err, items)
	}
	if err != nil {
		return Outcome{}, err
	}
	var body []byte
	if needsBody(d.o.Sinks) {
		if body, err = pl.Body(); err != nil {
			return Outcome{}, err
		}
	}
	last := "" // the last sink not done yet
	for _, s := range d.o.Sinks {
		if _, done := p.Pending.Done[s.Name()]; !done {
			last = s.Name()
		}
	}
	for _, s := range d.o.Sinks {
		if _, done := p.Pending.Done[s.Name()]; done {
			continue
		}
		res, err := s.Deliver(ctx, pl, body)
		var rej *RejectedError
		if errors.As(err, &rej) {
			return d.reject(ctx, p, rev, rej, its)
		}
		if err != nil {
			return Outcome{}, err
		}
		if h := d.o.Hooks.AfterSinkAccepted; h != nil {
			if err := h(s.Name(), pl.DeliveryID); err != nil {
				return Outcome{}, err
			}
		}
		p.Pending.Done[s.Name()] = res
		if last == s.Name() {
			break // the commit marks the last sink done: a crash before it resends the same body
		}
		if rev, err = d.o.Ledger.Save(ctx, p, rev); err != nil {
			return Outcome{}, err
		}
	}
	if h := d.o.Hooks.AfterSinks; h != nil {
		if err := h(pl.DeliveryID); err != nil {
			return Outcome{}, err
		}
	}
	// Commit: the members become the held revisions (and the last sink done), the receipt is
	// queued in the same write.
	now := d.o.Now().UTC()
	rc := events.Delivery{
		DeliveryID: pl.DeliveryID, Account: p.Account, Customer: p.Customer, Period: p.Period,
		Records: pl.Members(), RecordCount: len(pl.Records), Totals: pl.Totals,
		DeliveredAt: now, Status: events.DeliveryDelivered,
	}
	for _, s := range d.o.Sinks {
		rc.Sinks = append(rc.Sinks, p.Pending.Done[s.Name()])
	}
	for _, m := range p.Pending.Members {
		id := m.RecordID.String()
		sinks := map[string]uuid.UUID{}
		if old, ok := p.Records[id]; ok {
			maps.Copy(sinks, old.Sinks)
		}
		for name := range p.Pending.Done {
			sinks[name] = pl.DeliveryID
		}
		p.Records[id] = Held{Revision: m.Revision, Seq: m.Seq, AsOf: m.AsOf, Currency: m.Currency, Billed: m.Billed, StreamSeq: m.StreamSeq, Sinks: sinks}
		delete(p.Dead, id)
	}
	p.Pending, p.Receipt = nil, &rc
	if _, err = d.o.Ledger.Save(ctx, p, rev); err != nil {
		return Outcome{}, err
	}
	d.o.Logger.Info("delivery committed", "delivery", pl.DeliveryID, "account", p.Account, "customer", p.Customer,
		"period", p.Period, "records", len(pl.Records))
	if err := d.publishReceipt(ctx, p); err != nil {
		// Committed: the receipt stays queued in the ledger and is published on the next load.
		d.o.Logger.Warn("receipt not published yet", "delivery", pl.DeliveryID, "err", err)
	}
	return Outcome{Delivered: rc.Records, DeliveryID: pl.DeliveryID}, nil
}

// reject records the members as dead-lettered and drops the pending delivery: no retry can
// make the sink accept this body.
func (d *Deliverer) reject(ctx context.Context, p *Partition, rev uint64, rej *RejectedError, its []Item) (Outcome, error) {
	for _, m := range p.Pending.Members {
		markDead(p, m.RecordID, Dead{Revision: m.Revision, AsOf: m.AsOf, Currency: m.Currency, Billed: m.Billed, Reason: ReasonSinkRejected})
	}
	id := p.Pending.ID
	p.Pending = nil
	if _, err := d.o.Ledger.Save(ctx, p, rev); err != nil {
		return Outcome{}, err
	}
	d.o.Logger.Warn("delivery rejected by sink; dead-lettered", "delivery", id, "sink", rej.Sink, "status", rej.Status)
	return Outcome{Rejected: rej, RejectedItems: its}, nil
}

// expire drops the pending delivery of p, whose body cannot be rebuilt because an event it
// needs is gone from USAGE (cause): the member record's own revision (ReasonPendingExpired) or
// the held revision its Correction is against (ReasonCorrectionBaseExpired). That member is
// recorded as dead-lettered, and the caller chooses the other members again (their messages are
// not acked until then). A sink that had already accepted the body keeps it; the ledger no
// longer counts it.
func (d *Deliverer) expire(ctx context.Context, p *Partition, rev uint64, record uuid.UUID, reason string, cause error, items []Item) (Outcome, error) {
	i := slices.IndexFunc(p.Pending.Members, func(m Member) bool { return m.RecordID == record })
	if i < 0 {
		return Outcome{}, fmt.Errorf("billing: pending delivery %s: %w", p.Pending.ID, cause)
	}
	m := p.Pending.Members[i]
	markDead(p, m.RecordID, Dead{Revision: m.Revision, AsOf: m.AsOf, Currency: m.Currency, Billed: m.Billed, Reason: reason})
	it := Item{Record: events.UsageRecord{RecordID: m.RecordID, Revision: m.Revision}, StreamSeq: m.StreamSeq}
	for _, x := range items {
		if x.StreamSeq == m.StreamSeq {
			it = x
		}
	}
	id, done := p.Pending.ID, slices.Sorted(maps.Keys(p.Pending.Done))
	p.Pending = nil
	if _, err := d.o.Ledger.Save(ctx, p, rev); err != nil {
		return Outcome{}, err
	}
	d.o.Logger.Warn("pending delivery dropped: an event it needs is gone from USAGE; that record is dead-lettered",
		"delivery", id, "reason", reason, "sinks_done", done, "account", p.Account, "customer", p.Customer, "period", p.Period, "err", cause)
	return Outcome{Expired: []DeadItem{{Item: it, Reason: reason, Err: cause}}}, nil
}

// publishReceipt publishes p's queued receipt, unless this process already did, and clears it
// in p (not in the ledger: the partition's next write does). Another process may publish it
// again; the receipt's event id is the delivery's, so the duplicate window drops the copy.
func (d *Deliverer) publishReceipt(ctx context.Context, p *Partition) error {
	key := Key(p.Account, p.Period, p.Customer)
	if id, ok := d.published.Load(key); !ok || id.(uuid.UUID) != p.Receipt.DeliveryID {
		if err := d.o.Receipt(ctx, *p.Receipt); err != nil {
			return fmt.Errorf("billing: publish receipt %s: %w", p.Receipt.DeliveryID, err)
		}
		d.published.Store(key, p.Receipt.DeliveryID)
	}
	p.Receipt = nil
	return nil
}
