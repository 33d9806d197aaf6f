package billing

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/events"
)

// ChargeClassCorrection is the FOCUS ChargeClass of a delta row that corrects a closed period.
const ChargeClassCorrection = "Correction"

// ClosingDayFunc returns the closing day (1..28) of an account's periods (config.Account.ClosingDay),
// or 0 when the account's periods never close.
type ClosingDayFunc func(account string) (int, error)

// Correction is the decision, pinned in a pending Member, to deliver a revision of a closed
// period as a delta row (DESIGN.md "Delivery semantics"). It is taken once, with the clock at
// acceptance; a rebuild after a crash reads it back and never asks the clock again.
type Correction struct {
	// Period is the invoice period of the row ("YYYY-MM"): the oldest open period at acceptance.
	Period string `json:"p"`
	// HeldStreamSeq is the USAGE stream sequence of the held revision corrected (Member.Replaces);
	// 0 for a line new in the restatement, whose delta is the whole line.
	HeldStreamSeq uint64 `json:"q,omitempty"`
	// Revision is the row's x_Revision (its ContentHash); a rebuild must reproduce it.
	Revision string `json:"h"`
}

// CorrectionRecordID is the x_RecordId of the Correction row that brings record to revision as
// its seq-th accepted revision (x_RevisionSeq): its own id, so the sink keeps the original row
// next to the delta instead of upserting over it. seq makes it unique per record: a record that
// goes back to an earlier revision (A→B→A→B) corrects again under a new id, never the first one's.
func CorrectionRecordID(record uuid.UUID, seq int64, revision string) uuid.UUID {
	return events.ID("correction", record.String(), fmt.Sprint(seq), revision)
}

// ReasonCorrectionBaseExpired is the dead-letter reason (and ledger Dead.Reason) of a revision
// whose Correction cannot be built because the held revision it corrects is no longer in USAGE.
const ReasonCorrectionBaseExpired = "correction-base-expired"

// ReasonSinkRejected is the dead-letter reason (and ledger Dead.Reason) of a revision a sink refused.
const ReasonSinkRejected = "sink-rejected"

// ReasonPendingExpired is the ledger Dead.Reason of a revision whose pending delivery cannot be
// rebuilt because the revision's own event is no longer in USAGE.
const ReasonPendingExpired = "pending-record-expired"

// BaseExpiredError is the permanent failure of a Correction whose held revision has aged out of
// the USAGE stream (streams.max_age): no retry can bring it back.
type BaseExpiredError struct {
	RecordID  uuid.UUID
	Held      string // the held revision the Correction is against
	StreamSeq uint64 // its USAGE stream sequence
	Err       error
}

func (e *BaseExpiredError) Error() string {
	return fmt.Sprintf("billing: correction of %s: held revision %.12s (USAGE seq %d) is no longer in the stream: %v; "+
		"keep streams.max_age longer than the oldest period you re-read (sync, backfill, replay)", e.RecordID, e.Held, e.StreamSeq, e.Err)
}

func (e *BaseExpiredError) Unwrap() error { return e.Err }

// PendingExpiredError is the permanent failure of a pending delivery (written, then interrupted)
// whose member's own event aged out of USAGE before the delivery was finished: the body can no
// longer be rebuilt byte for byte, and no retry can bring it back.
type PendingExpiredError struct {
	Delivery  uuid.UUID // the pending delivery
	RecordID  uuid.UUID
	Revision  string
	StreamSeq uint64
	Err       error
}

func (e *PendingExpiredError) Error() string {
	return fmt.Sprintf("billing: rebuild pending delivery %s: record %s revision %.12s (USAGE seq %d) is no longer in the stream: %v; "+
		"keep streams.max_age longer than any publisher outage", e.Delivery, e.RecordID, e.Revision, e.StreamSeq, e.Err)
}

func (e *PendingExpiredError) Unwrap() error { return e.Err }

// row is the (record id, revision, seq, replaces) the member's row carries at the sinks: the
// record's own for a supersede, the Correction row's (a first revision of its own id) otherwise.
func (m Member) row() events.DeliveredRecord {
	if m.Correction != nil {
		return events.DeliveredRecord{RecordID: CorrectionRecordID(m.RecordID, m.Seq, m.Revision), Revision: m.Correction.Revision, RevisionSeq: 1}
	}
	return events.DeliveredRecord{RecordID: m.RecordID, Revision: m.Revision, RevisionSeq: m.Seq, Replaces: m.Replaces}
}

// correctionRow is the delta row of cur, accepted as the record's seq-th revision, against held
// (nil: nothing held): every money amount and quantity cur − held, ChargeClass Correction, billed
// in period, ChargePeriod unchanged, under its own record id, naming the record and the held
// revision it corrects. nonZero reports whether any amount changed.
func correctionRow(cur events.UsageRecord, seq int64, held *events.UsageRecord, period string) (row events.UsageRecord, nonZero bool, err error) {
	start, end, err := events.ParsePeriod(period)
	if err != nil {
		return row, false, fmt.Errorf("billing: correction of %s: invoice period: %w", cur.RecordID, err)
	}
	var h events.UsageRecord // zero amounts: a line new in the restatement is corrected in full
	if held != nil {
		h = *held
	}
	row = cur
	sub := func(a, b decimal.Decimal) decimal.Decimal {
		d := a.Sub(b)
		nonZero = nonZero || !d.IsZero()
		return d
	}
	subPtr := func(a, b *decimal.Decimal) *decimal.Decimal {
		if a == nil && b == nil {
			return nil
		}
		var x, y decimal.Decimal
		if a != nil {
			x = *a
		}
		if b != nil {
			y = *b
		}
		d := sub(x, y) // a fresh value: never write through a pointer the records share
		return &d
	}
	row.BilledCost = sub(cur.BilledCost, h.BilledCost)
	row.EffectiveCost = sub(cur.EffectiveCost, h.EffectiveCost)
	row.ListCost = sub(cur.ListCost, h.ListCost)
	row.ContractedCost = sub(cur.ContractedCost, h.ContractedCost)
	row.ConsumedQuantity = subPtr(cur.ConsumedQuantity, h.ConsumedQuantity)
	row.PricingQuantity = subPtr(cur.PricingQuantity, h.PricingQuantity)
	row.CustomerCost = subPtr(cur.CustomerCost, h.CustomerCost)
	row.Margin = subPtr(cur.Margin, h.Margin)

	cc := ChargeClassCorrection
	row.ChargeClass = &cc
	row.BillingPeriodStart, row.BillingPeriodEnd = start, end
	id := cur.RecordID
	row.CorrectsRecordID, row.CorrectsRevision = &id, nil
	if held != nil {
		rev := held.Revision
		row.CorrectsRevision = &rev
	}
	row.RecordID = CorrectionRecordID(cur.RecordID, seq, cur.Revision)
	row.RevisionSeq, row.Replaces = 1, nil
	row.Revision = row.ContentHash()
	return row, nonZero, nil
}

// closure is whether a partition's period is closed at acceptance, and where its corrections go.
type closure struct {
	closed bool
	// invoice is the oldest open period at acceptance: where a Correction row is billed.
	invoice string
	// billedOpen: the partition holds a revision read before the close, so the customer's period
	// was billed while open and a line new after the close is a correction too. Without one
	// (a first delivery of a closed period: a backfill of history) new lines are ordinary rows.
	billedOpen bool
}

// closure reads the clock once for a batch of p: every member of one delivery is decided alike.
func (d *Deliverer) closure(p *Partition) (closure, error) {
	if d.o.ClosingDay == nil {
		return closure{}, nil
	}
	day, err := d.o.ClosingDay(p.Account)
	if err != nil {
		return closure{}, fmt.Errorf("billing: closing day of account %s: %w", p.Account, err)
	}
	if day < 0 || day > 28 {
		return closure{}, fmt.Errorf("billing: closing day of account %s: %d is not a day from 1 to 28", p.Account, day)
	}
	start, _, err := events.ParsePeriod(p.Period)
	if err != nil {
		return closure{}, fmt.Errorf("billing: ledger partition %s: %w", Key(p.Account, p.Period, p.Customer), err)
	}
	now, closes := d.o.Now().UTC(), events.PeriodCloses(start, day)
	if day == 0 || now.Before(closes) {
		return closure{}, nil
	}
	c := closure{closed: true, invoice: events.OldestOpenPeriod(now, day)}
	for _, h := range p.Records {
		if h.AsOf.Before(closes) {
			c.billedOpen = true
			break
		}
	}
	return c, nil
}

// correction decides whether r, accepted as the record's seq-th revision over held (ok: one is
// held), is a Correction: its period is closed and a revision is held, or the line is new in a
// period billed while open. zero reports a delta without any changed amount.
func (d *Deliverer) correction(ctx context.Context, cl closure, r events.UsageRecord, seq int64, held Held, ok bool) (c *Correction, zero bool, err error) {
	if !cl.closed || (!ok && !cl.billedOpen) {
		return nil, false, nil
	}
	c = &Correction{Period: cl.invoice}
	var hr *events.UsageRecord
	if ok {
		c.HeldStreamSeq = held.StreamSeq
		if hr, err = d.loadHeld(ctx, r.RecordID, held.Revision, held.StreamSeq); err != nil {
			return nil, false, err
		}
	}
	row, nonZero, err := correctionRow(r, seq, hr, c.Period)
	if err != nil {
		return nil, false, err
	}
	c.Revision = row.Revision
	return c, !nonZero, nil
}

// loadHeld reads the held revision a correction is against and checks it is that revision. A
// revision gone from USAGE (deleted, or aged out: below the stream's first sequence) is a
// *BaseExpiredError; any other failure stays transient.
func (d *Deliverer) loadHeld(ctx context.Context, id uuid.UUID, revision string, seq uint64) (*events.UsageRecord, error) {
	h, err := d.o.Load(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, &BaseExpiredError{RecordID: id, Held: revision, StreamSeq: seq, Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("billing: correction of %s: held revision: %w", id, err)
	}
	if h.RecordID != id || h.Revision != revision {
		return nil, fmt.Errorf("billing: correction of %s: stream seq %d holds %s/%.12s, want held revision %.12s",
			id, seq, h.RecordID, h.Revision, revision)
	}
	return &h, nil
}

// correctionOf rebuilds the pinned Correction row of member m from its record r.
func (d *Deliverer) correctionOf(ctx context.Context, m Member, r events.UsageRecord) (events.UsageRecord, error) {
	var hr *events.UsageRecord
	if m.Correction.HeldStreamSeq != 0 {
		if m.Replaces == nil {
			return r, fmt.Errorf("billing: correction of %s: held stream seq %d without a replaced revision", m.RecordID, m.Correction.HeldStreamSeq)
		}
		var err error
		if hr, err = d.loadHeld(ctx, m.RecordID, *m.Replaces, m.Correction.HeldStreamSeq); err != nil {
			return r, err
		}
	}
	row, _, err := correctionRow(r, m.Seq, hr, m.Correction.Period)
	if err != nil {
		return r, err
	}
	if row.Revision != m.Correction.Revision {
		return r, fmt.Errorf("billing: correction of %s rebuilt as revision %.12s, pending has %.12s", m.RecordID, row.Revision, m.Correction.Revision)
	}
	return row, nil
}
