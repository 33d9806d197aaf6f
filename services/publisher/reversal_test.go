package publisher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/services/publisher"
)

// syncOf builds one sync over pages (customer → its records, as the transformer would summarise
// them, with record_ids) plus unchanged pages listed by their earlier ids, with control totals
// that match the given records.
func syncOf(n int, finished time.Time, pages map[string][]events.UsageRecord, unchanged []events.PageSummary) ([]events.PageSummary, events.SyncCompleted) {
	syncID := events.ID("test-sync", fmt.Sprint(n))
	c := events.SyncCompleted{SyncID: syncID, RequestID: fmt.Sprintf("manual/%d", n), Account: acct, Period: reconPeriod,
		Mode: events.ModeV3, Status: events.SyncSucceeded, StartedAt: finished.Add(-time.Minute), FinishedAt: finished}
	var sums []events.PageSummary
	totals := map[string]decimal.Decimal{}
	for cust, recs := range pages {
		ps := events.PageSummary{Stage: events.StageTransformer, PageID: events.ID("test-page", fmt.Sprint(n), cust), SyncID: syncID,
			Account: acct, Period: reconPeriod, Customer: cust, ProcessedAt: finished}
		for _, r := range recs {
			ps.Good.Add(r.BillingCurrency, r.BilledCost)
			ps.RecordIDs = append(ps.RecordIDs, r.RecordID)
			totals[cust] = totals[cust].Add(r.BilledCost)
		}
		slices.SortFunc(ps.RecordIDs, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
		sums = append(sums, ps)
		c.Manifest.Pages = append(c.Manifest.Pages, ps.PageID)
	}
	for _, ps := range unchanged {
		c.Manifest.Pages = append(c.Manifest.Pages, ps.PageID)
		totals[ps.Customer] = totals[ps.Customer].Add(ps.Good.BilledCost["EUR"])
	}
	for cust, v := range totals {
		c.Manifest.Customers = append(c.Manifest.Customers, cust)
		c.ControlTotals = append(c.ControlTotals, events.ControlTotal{Customer: cust, Currency: "EUR", BilledCost: v})
	}
	slices.Sort(c.Manifest.Customers)
	slices.SortFunc(c.ControlTotals, func(a, b events.ControlTotal) int { return cmpString(a.Customer, b.Customer) })
	slices.SortFunc(c.Manifest.Pages, func(a, b uuid.UUID) int { return cmpString(a.String(), b.String()) })
	return sums, c
}

func cmpString(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) }

// runSync publishes a sync's records, summaries and completion, and waits for its reconciliation.
func (h *harness) runSync(t *testing.T, recs []events.UsageRecord, sums []events.PageSummary, c events.SyncCompleted) events.Reconciliation {
	t.Helper()
	h.publish(t, false, recs...)
	for _, s := range sums {
		h.publishSummary(t, s)
	}
	h.publishEvent(t, c.EventMeta("test"), c.NATSSubject(), c, false)
	return h.waitReconciliation(t, c.SyncID)
}

func (h *harness) waitReconciliation(t *testing.T, sync uuid.UUID) events.Reconciliation {
	t.Helper()
	var got events.Reconciliation
	bustest.Eventually(t, 45*time.Second, func() error {
		for _, r := range h.reconciliations(t) {
			if r.SyncID == sync {
				got = r
				return nil
			}
		}
		return fmt.Errorf("no reconciliation of sync %s yet", sync)
	})
	return got
}

// reversals returns the reversal revisions in the USAGE stream (as published, not deduplicated
// ones).
func (h *harness) reversals(t *testing.T) []events.UsageRecord {
	t.Helper()
	ctx := context.Background()
	cons, err := billing.ReadConsumer(ctx, h.js, events.StreamUsage, "usage.v1.record.>")
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Delete()
	var out []events.UsageRecord
	for range cons.Info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var r events.UsageRecord
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(r.Flags, events.FlagReversal) {
			out = append(out, r)
		}
	}
	return out
}

// A record that a complete, reconciled re-read no longer contains gets exactly one reversal
// revision (zero amounts, newer as-of, naming the revision it replaces), and the sync then
// reconciles; a failed or customer-filtered sync reverses nothing, and a redelivered completion
// reverses nothing again.
func TestReversalOfVanishedRecord(t *testing.T) {
	h := newHarness(t, 0)
	stop, done := h.start(t, billing.Hooks{})
	defer func() { stop(); <-done }()
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	a, b, gone := record("c1", 0, "10.5", t0), record("c1", 1, "2.0000000001", t0), record("c1", 2, "7.25", t0)
	other := record("c2", 0, "3", t0)

	// Sync 1 reads everything.
	sums1, c1 := syncOf(1, t0.Add(time.Minute), map[string][]events.UsageRecord{"c1": {a, b, gone}, "c2": {other}}, nil)
	if r := h.runSync(t, []events.UsageRecord{a, b, gone, other}, sums1, c1); !r.Reconciled {
		t.Fatalf("sync 1 not reconciled: %s", r.Reason)
	}
	var c2Page events.PageSummary
	for _, s := range sums1 {
		if s.Customer == "c2" {
			c2Page = s
		}
	}
	st := h.sim.State()
	if got := st.Records[gone.RecordID.String()]; !got.BilledCost.Equal(gone.BilledCost) {
		t.Fatalf("after sync 1 the receiver holds %+v for the record", got)
	}
	deliveries := st.Deliveries

	// The record is gone from c1's re-read; c2's page is unchanged (listed by its earlier id).
	t1 := t0.Add(time.Hour)
	reread := func(n int, finished time.Time) ([]events.UsageRecord, []events.PageSummary, events.SyncCompleted) {
		a2, b2 := a, b
		a2.FetchedAt, b2.FetchedAt = finished.Add(-time.Minute), finished.Add(-time.Minute)
		sums, c := syncOf(n, finished, map[string][]events.UsageRecord{"c1": {a2, b2}}, []events.PageSummary{c2Page})
		return []events.UsageRecord{a2, b2}, sums, c
	}

	// Sync 2 failed: nothing is reversed.
	recs, sums, c2 := reread(2, t1)
	c2.Status, c2.Reason = events.SyncFailed, "fetch failed: c1: ion: 503"
	if r := h.runSync(t, recs, sums, c2); r.Reconciled {
		t.Fatal("a failed sync reconciled")
	}
	// Sync 3 succeeded but was limited to c1: not a complete re-read either.
	recs, sums, c3 := reread(3, t1.Add(time.Hour))
	c3.Filtered = true
	h.runSync(t, recs, sums, c3)
	if rs := h.reversals(t); len(rs) != 0 {
		t.Fatalf("failed or filtered sync published %d reversals", len(rs))
	}
	st = h.sim.State()
	if got := st.Records[gone.RecordID.String()]; got.Revision != gone.Revision || !got.BilledCost.Equal(gone.BilledCost) {
		t.Fatalf("after a failed and a filtered sync the receiver holds %+v, want the original revision", got)
	}
	if st.Deliveries != deliveries {
		t.Fatalf("deliveries %d → %d without any change", deliveries, st.Deliveries)
	}

	// Sync 4: a complete, succeeded re-read without the record. One reversal, then reconciled.
	t4 := t1.Add(2 * time.Hour)
	recs, sums, c4 := reread(4, t4)
	r4 := h.runSync(t, recs, sums, c4)
	if !r4.Reconciled {
		t.Fatalf("sync 4 not reconciled: %s; rows %+v", r4.Reason, r4.Rows)
	}
	row, _ := findRow(r4, "c1")
	if want := a.BilledCost.Add(b.BilledCost); !row.Delivered.Equal(want) {
		t.Errorf("c1 delivered %s, want %s (the reversed record at zero)", row.Delivered, want)
	}
	rs := h.reversals(t)
	if len(rs) != 1 || rs[0].RecordID != gone.RecordID {
		t.Fatalf("reversals %+v, want one of %s", rs, gone.RecordID)
	}
	rev := rs[0]
	if !rev.BilledCost.IsZero() || !rev.EffectiveCost.IsZero() || !rev.ListCost.IsZero() || !rev.ContractedCost.IsZero() ||
		rev.Revision != rev.ContentHash() || rev.Revision == gone.Revision || !rev.FetchedAt.Equal(t4) {
		t.Errorf("reversal %+v", rev)
	}
	st = h.sim.State()
	held := st.Records[gone.RecordID.String()]
	if held.Revision != rev.Revision || !held.BilledCost.IsZero() || held.RevisionSeq != 2 || !held.FetchedAt.After(gone.FetchedAt) {
		t.Errorf("receiver holds %+v, want the reversal %.12s at zero, revision seq 2", held, rev.Revision)
	}
	if got := st.Totals["c1"]["EUR"]; !got.Equal(a.BilledCost.Add(b.BilledCost)) {
		t.Errorf("receiver's c1 total %s", got)
	}
	if st.Superseded != 1 || st.DuplicateRecords != 0 || st.Stale != 0 || st.Deliveries != deliveries+1 {
		t.Errorf("receiver: superseded %d duplicates %d stale %d deliveries %d (was %d); want one new delivery superseding one record",
			st.Superseded, st.DuplicateRecords, st.Stale, st.Deliveries, deliveries)
	}
	snap, err := billing.Snapshot(context.Background(), h.js, acct, reconPeriod)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range snap {
		if r.RecordID == gone.RecordID && (r.Replaces == nil || *r.Replaces != gone.Revision || !slices.Contains(r.Flags, events.FlagReversal)) {
			t.Errorf("snapshot record %+v: want a reversal replacing %.12s", r, gone.Revision)
		}
	}

	// The same completion again, after the duplicate window (a fresh message id): reconciled the
	// same way, and nothing is reversed or delivered again.
	h.publishEvent(t, c4.EventMeta("test"), c4.NATSSubject(), c4, true)
	bustest.Eventually(t, 45*time.Second, func() error {
		cons, err := h.js.Consumer(context.Background(), events.StreamSync, publisher.ReconcilerName)
		if err != nil {
			return err
		}
		info, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != 5 {
			return fmt.Errorf("reconciler: pending %d, ack pending %d, ack floor %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
		}
		return nil
	})
	if rs := h.reversals(t); len(rs) != 1 {
		t.Errorf("%d reversal events after a redelivered completion, want 1", len(rs))
	}
	if st2 := h.sim.State(); st2.Deliveries != st.Deliveries || st2.Records[gone.RecordID.String()].Revision != rev.Revision {
		t.Errorf("redelivered completion: deliveries %d → %d, record at %.12s", st.Deliveries, st2.Deliveries, st2.Records[gone.RecordID.String()].Revision)
	}
	if r, err := billing.LoadReconciliation(context.Background(), h.js, acct, reconPeriod); err != nil || !r.Reconciled || r.SyncID != c4.SyncID {
		t.Errorf("stored reconciliation %+v, %v", r, err)
	}
}

// A reversal pass that the message's deadline cuts short hands the message back saying how far
// it got, and the next delivery to the same reconciler goes on from there: the record is
// reversed exactly once and the sync reconciles. At millions of records one delivery is too
// short for the pass (docs/performance.md).
func TestReversalPassResumes(t *testing.T) {
	h := newHarness(t, 0)
	stop, done := h.start(t, billing.Hooks{})
	defer func() { stop(); <-done }()
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	a, gone, other := record("c1", 0, "10.5", t0), record("c1", 1, "7.25", t0), record("c2", 0, "3", t0)
	sums1, c1 := syncOf(1, t0.Add(time.Minute), map[string][]events.UsageRecord{"c1": {a, gone}, "c2": {other}}, nil)
	if r := h.runSync(t, []events.UsageRecord{a, gone, other}, sums1, c1); !r.Reconciled {
		t.Fatalf("sync 1 not reconciled: %s", r.Reason)
	}

	// Sync 2 re-reads everything but gone. Its completion goes straight to a reconciler of our
	// own, not through the stream, so the running one never sees it.
	sums2, c2 := syncOf(2, t0.Add(time.Hour), map[string][]events.UsageRecord{"c1": {a}, "c2": {other}}, nil)
	for _, s := range sums2 {
		h.publishSummary(t, s)
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		if ok, missing, err := billing.Complete(context.Background(), h.reconOpts(), c2); err != nil || !ok {
			return fmt.Errorf("sync 2 not complete: %s %v", missing, err)
		}
		return nil
	})
	rec, err := publisher.NewReconciler(publisher.ReconcilerOptions{Deps: h.deps})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMessage(c2.EventMeta("test"), c2)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), time.Second) // inside the reconciler's margin
	defer cancel()
	msg.SetContext(short)
	if err := rec.Handle(msg); err == nil || !strings.Contains(err.Error(), "reversals: 0 of 2 customers checked") {
		t.Fatalf("cut-short delivery: %v, want the pass handed back with its progress", err)
	}
	if rs := h.reversals(t); len(rs) != 0 {
		t.Fatalf("%d reversals before the pass ran", len(rs))
	}
	long, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	msg.SetContext(long)
	if err := rec.Handle(msg); err != nil {
		t.Fatalf("second delivery: %v", err)
	}
	if rs := h.reversals(t); len(rs) != 1 || rs[0].RecordID != gone.RecordID {
		t.Fatalf("reversals %+v, want one of %s", rs, gone.RecordID)
	}
	r, err := billing.LoadReconciliation(context.Background(), h.js, acct, reconPeriod)
	if err != nil || !r.Reconciled || r.SyncID != c2.SyncID {
		t.Fatalf("stored reconciliation %+v, %v", r, err)
	}
	if row, _ := findRow(r, "c1"); !row.Delivered.Equal(a.BilledCost) {
		t.Errorf("c1 delivered %s, want %s (the reversed record at zero)", row.Delivered, a.BilledCost)
	}
}

// A record to reverse whose held revision has aged out of USAGE cannot be reversed (there is
// nothing to build the reversal from). The pass goes on to the next customers and the sync is
// reconciled, showing the record's amount as the difference, instead of the completion failing
// until it is dead-lettered and no later customer being reversed.
func TestReversalOfExpiredRevisionIsSkipped(t *testing.T) {
	h := newHarness(t, 0)
	stop, done := h.start(t, billing.Hooks{})
	defer func() { stop(); <-done }()
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	a, expired := record("c1", 0, "10.5", t0), record("c1", 1, "7.25", t0)
	b, gone := record("c2", 0, "3", t0), record("c2", 1, "4", t0)
	sums1, c1 := syncOf(1, t0.Add(time.Minute), map[string][]events.UsageRecord{"c1": {a, expired}, "c2": {b, gone}}, nil)
	if r := h.runSync(t, []events.UsageRecord{a, expired, b, gone}, sums1, c1); !r.Reconciled {
		t.Fatalf("sync 1 not reconciled: %s", r.Reason)
	}
	h.expireHeld(t, expired)

	// A complete re-read without either record: c1 (checked first) cannot reverse its own, c2
	// still reverses its.
	t1 := t0.Add(time.Hour)
	a2, b2 := a, b
	a2.FetchedAt, b2.FetchedAt = t1.Add(-time.Minute), t1.Add(-time.Minute)
	sums2, c2 := syncOf(2, t1, map[string][]events.UsageRecord{"c1": {a2}, "c2": {b2}}, nil)
	r := h.runSync(t, []events.UsageRecord{a2, b2}, sums2, c2)
	if rs := h.reversals(t); len(rs) != 1 || rs[0].RecordID != gone.RecordID {
		t.Fatalf("reversals %+v, want only c2's %s", rs, gone.RecordID)
	}
	row1, _ := findRow(r, "c1")
	row2, _ := findRow(r, "c2")
	if r.Reconciled || row1.Match || !row1.Difference.Abs().Equal(expired.BilledCost) || !row2.Match {
		t.Fatalf("reconciliation %+v: want c1 off by the unreversed %s and c2 matching", r, expired.BilledCost)
	}
	if held := h.sim.State().Records[expired.RecordID.String()]; !held.BilledCost.Equal(expired.BilledCost) {
		t.Errorf("receiver holds %+v for the unreversible record, want it unchanged", held)
	}
}
