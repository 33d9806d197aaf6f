package publisher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/events"
)

// reversible reports whether a completed sync is a complete re-read that may produce reversals
// (DESIGN.md "Delivery semantics"): it succeeded, delivers, and covered every customer.
func reversible(c events.SyncCompleted) bool {
	return c.Status == events.SyncSucceeded && !c.DryRun && !c.Filtered
}

// reverse publishes a reversal revision (zero amounts, FlagReversal) of every record the ledger
// holds for a customer of c's manifest that none of the manifest's pages produced, counting
// them in sp.reversed. Call it only once c is Complete, and for a reversible sync. It checks
// one customer after the other and stops, with errIncomplete, when the message's deadline
// nears; the next delivery goes on from the first customer not checked (sp.checked).
//
// It is idempotent: a reversal is a pure function of the held revision and c (event id from
// record id + revision, as-of = c.FinishedAt), so a redelivered completion republishes the
// same events (deduplicated, or skipped by the ledger as identical), and once the reversal is
// the held revision it is not reversed again. A record whose held revision is as new as the
// sync's end or newer came from a later sync and is left alone.
func (r *Reconciler) reverse(ctx context.Context, sp *syncProgress, c events.SyncCompleted) error {
	customers := c.Manifest.Customers
	if sp.checked >= len(customers) {
		return nil
	}
	present, ok, err := r.presentIDs(sp, c)
	if err != nil || !ok {
		return err
	}
	ledger, err := billing.OpenLedger(ctx, r.o.Deps.JS)
	if err != nil {
		return err
	}
	load := billing.StreamLoader(r.o.Deps.JS)
	deadline, hasDeadline := ctx.Deadline()
	for ; sp.checked < len(customers); sp.checked++ {
		if hasDeadline && time.Until(deadline) < reconcileMargin {
			return fmt.Errorf("%w: sync %s (%s %s): reversals: %d of %d customers checked",
				errIncomplete, c.SyncID, c.Account, c.Period, sp.checked, len(customers))
		}
		n, err := r.reverseCustomer(ctx, ledger, load, present, c, customers[sp.checked])
		sp.reversed += n
		if err != nil {
			return err
		}
	}
	sp.present = nil // the pass is done: free the id set
	return nil
}

// presentIDs returns the ids of every record the manifest's pages produced, sorted, building
// them once per sync. ok is false when they are not known (a summary without its record ids):
// then nothing may be reversed, and the pass is marked done.
func (r *Reconciler) presentIDs(sp *syncProgress, c events.SyncCompleted) (ids []uuid.UUID, ok bool, err error) {
	if sp.present != nil {
		return sp.present, true, nil
	}
	sums := sp.completion.Summaries()
	n := 0
	for _, id := range c.Manifest.Pages {
		s, ok := sums[id]
		if !ok {
			return nil, false, fmt.Errorf("reversals of sync %s: page %s has no transformer summary", c.SyncID, id)
		}
		if !s.Lists() {
			// An older transformer, or a page above events.MaxSummaryRecordIDs: what the re-read
			// contains is unknown, so nothing may be reversed.
			r.log.Warn("sync makes no reversals: a page summary does not list its record ids",
				"account", c.Account, "period", c.Period, "sync", c.SyncID, "page", id, "good", s.Good.Count, "listed", len(s.RecordIDs))
			sp.checked = len(c.Manifest.Customers)
			return nil, false, nil
		}
		n += len(s.RecordIDs)
	}
	// A sorted slice, not a map: 16 bytes an id, some 75 MB for five million records.
	ids = make([]uuid.UUID, 0, n)
	for _, id := range c.Manifest.Pages {
		ids = append(ids, sums[id].RecordIDs...)
	}
	slices.SortFunc(ids, compareUUID)
	sp.present = slices.Compact(ids)
	return sp.present, true, nil
}

func compareUUID(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }

// reverseCustomer publishes the reversals of one customer's partition and returns how many. It
// reads only the partition's record ids unless one of them is missing from present.
func (r *Reconciler) reverseCustomer(ctx context.Context, ledger *billing.Ledger, load billing.RecordLoader, present []uuid.UUID, c events.SyncCompleted, cust string) (int, error) {
	held, err := ledger.RecordIDs(ctx, c.Account, c.Period, cust)
	if err != nil {
		return 0, err
	}
	isPresent := func(id string) bool {
		u, err := uuid.Parse(id)
		if err != nil {
			return false
		}
		_, found := slices.BinarySearchFunc(present, u, compareUUID)
		return found
	}
	if !slices.ContainsFunc(held, func(id string) bool { return !isPresent(id) }) {
		return 0, nil // the usual case: the re-read still has every record
	}
	p, _, err := ledger.Load(ctx, c.Account, c.Period, cust)
	if err != nil {
		return 0, err
	}
	ids := make([]string, 0, len(p.Records))
	for id := range p.Records {
		if !isPresent(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var msgs []*message.Message
	subject := ""
	for _, id := range ids {
		h := p.Records[id]
		if !h.AsOf.Before(c.FinishedAt) {
			continue // delivered by a later read than this sync
		}
		cur, err := load(ctx, h.StreamSeq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// Permanent: without the held revision there is no reversal to build, and failing
			// would stop every later customer's reversals and the reconciliation with them.
			// The record stays at the sink, so the period shows the difference.
			r.log.Warn("reversal impossible: the held revision is gone from USAGE (streams.max_age); the record stays delivered",
				"account", c.Account, "period", c.Period, "customer", cust, "record", id, "revision", h.Revision,
				"billed", h.Billed.String(), "currency", h.Currency, "sync", c.SyncID, "err", err)
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reversal of record %s: %w", id, err)
		}
		if cur.RecordID.String() != id || cur.Revision != h.Revision {
			return 0, fmt.Errorf("reversal of record %s: stream seq %d holds %s/%.12s, want revision %.12s",
				id, h.StreamSeq, cur.RecordID, cur.Revision, h.Revision)
		}
		rev, ok := reversalOf(cur, h, c)
		if !ok {
			continue
		}
		m, err := events.NewMessage(rev.EventMeta(source), rev)
		if err != nil {
			return 0, err
		}
		msgs = append(msgs, m)
		subject = rev.NATSSubject()
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if err := r.pub.PublishCtx(ctx, subject, msgs...); err != nil {
		return 0, fmt.Errorf("publish reversals of %s %s %s: %w", c.Account, c.Period, cust, err)
	}
	r.log.Info("reversals published: records no longer in a complete re-read",
		"account", c.Account, "period", c.Period, "customer", cust, "sync", c.SyncID, "records", len(msgs))
	return len(msgs), nil
}

// reversalOf is the reversal revision of cur (the held revision h): every money amount and
// quantity zero, FlagReversal added, as of the sync's end. ok is false when there is nothing to
// reverse: cur is already a reversal or has no non-zero amount.
func reversalOf(cur events.UsageRecord, h billing.Held, c events.SyncCompleted) (events.UsageRecord, bool) {
	if slices.Contains(cur.Flags, events.FlagReversal) {
		return cur, false
	}
	nonZero := false
	zero := func(d *decimal.Decimal) {
		if d != nil {
			nonZero = nonZero || !d.IsZero()
			*d = decimal.Zero
		}
	}
	zeroPtr := func(d **decimal.Decimal) {
		if *d != nil {
			v := **d // never write through: the pointer may be shared
			zero(&v)
			*d = &v
		}
	}
	r := cur
	zero(&r.BilledCost)
	zero(&r.EffectiveCost)
	zero(&r.ListCost)
	zero(&r.ContractedCost)
	zeroPtr(&r.ConsumedQuantity)
	zeroPtr(&r.PricingQuantity)
	zeroPtr(&r.CustomerCost)
	zeroPtr(&r.Margin)
	if !nonZero && h.Billed.IsZero() {
		return cur, false
	}
	r.Flags = append(slices.Clone(cur.Flags), events.FlagReversal)
	r.FetchedAt = c.FinishedAt.UTC()
	rep := h.Revision
	r.Replaces, r.RevisionSeq, r.ChargeClass = &rep, h.Seq+1, nil // the deliverer sets these again
	r.Revision = r.ContentHash()
	return r, true
}
