package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/events/schematest"
	"github.com/ionusage/connector/pkg/summaries"
	"github.com/ionusage/connector/services/publisher"
)

const reconPeriod = "2025-03"

// scenario is a hand-built sync of two customers with usage and one without: records for the
// publisher, the transformer summaries of its two pages, and its completion with control totals
// that reconcile (c1 also has a held row and a dead-lettered line).
type scenario struct {
	records   []events.UsageRecord
	summaries []events.PageSummary
	completed events.SyncCompleted
}

func newScenario() scenario {
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	var s scenario
	sums := map[string]decimal.Decimal{}
	for i, b := range []string{"10.1234567891", "0.0000000001", "7.5"} {
		r := record("c1", i, b, t0)
		s.records = append(s.records, r)
		sums["c1"] = sums["c1"].Add(r.BilledCost)
	}
	for i, b := range []string{"3.3333333333", "-1.0000000003"} {
		r := record("c2", i, b, t0)
		s.records = append(s.records, r)
		sums["c2"] = sums["c2"].Add(r.BilledCost)
	}
	syncID := events.ID("test-sync", "1")
	page := func(cust string) events.PageSummary {
		ps := events.PageSummary{Stage: events.StageTransformer, PageID: events.ID("test-page", cust), SyncID: syncID,
			Account: acct, Period: reconPeriod, Customer: cust, ProcessedAt: t0}
		for _, r := range s.records {
			if r.IonCustomerID == cust {
				ps.Good.Add(r.BillingCurrency, r.BilledCost)
			}
		}
		return ps
	}
	p1, p2 := page("c1"), page("c2")
	p1.Held.Add("EUR", decimal.RequireFromString("5.0000000001")) // out-of-period row
	p1.Bad.Add("EUR", decimal.RequireFromString("-0.25"))         // dead-lettered line
	s.summaries = []events.PageSummary{p1, p2}
	s.completed = events.SyncCompleted{
		SyncID: syncID, RequestID: "manual/test", Account: acct, Period: reconPeriod, Mode: events.ModeV3,
		Status:   events.SyncSucceeded,
		Manifest: events.Manifest{Pages: []uuid.UUID{p1.PageID, p2.PageID}, Customers: []string{"c1", "c2", "c3"}},
		ControlTotals: []events.ControlTotal{
			{Customer: "c1", Currency: "EUR", BilledCost: sums["c1"].Add(decimal.RequireFromString("4.7500000001"))},
			{Customer: "c2", Currency: "EUR", BilledCost: sums["c2"]},
			{Customer: "c3", Currency: "EUR", BilledCost: decimal.Zero},
		},
		StartedAt: t0.Add(-time.Minute), FinishedAt: t0,
	}
	return s
}

func (h *harness) publishEvent(t *testing.T, meta events.Meta, subject string, v any, fresh bool) {
	t.Helper()
	m, err := events.NewMessage(meta, v)
	if err != nil {
		t.Fatal(err)
	}
	if fresh {
		m.UUID = uuid.NewString() // as a redelivery after the duplicate window
	}
	if err := h.pub.Publish(subject, m); err != nil {
		t.Fatal(err)
	}
}

// publishSummary publishes a transformer page summary and indexes it, as the transformer does.
// (TestReconcileCompletedSync publishes its summaries without indexing them: a summary from
// before the index, found in USAGE.)
func (h *harness) publishSummary(t *testing.T, s events.PageSummary) {
	t.Helper()
	h.publishEvent(t, s.EventMeta("test"), s.NATSSubject(), s, false)
	idx, err := summaries.Open(context.Background(), h.js)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.Put(context.Background(), s, body); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) reconOpts() billing.ReconcileOptions {
	return billing.ReconcileOptions{JS: h.js, Logger: h.deps.Logger}
}

// reconciliations returns every reconciliation event of acct in the BILLING stream.
func (h *harness) reconciliations(t *testing.T) []events.Reconciliation {
	t.Helper()
	ctx := context.Background()
	cons, err := billing.ReadConsumer(ctx, h.js, events.StreamBilling, events.ReconciliationSubject(acct))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Delete()
	var out []events.Reconciliation
	for range cons.Info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		schematest.Validate(t, events.TypeReconciliation, m.Data())
		if got := m.Headers().Get(events.HeaderType); got != events.TypeReconciliation {
			t.Errorf("ce-type %q", got)
		}
		var r events.Reconciliation
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func findRow(r events.Reconciliation, customer string) (events.ReconciliationRow, bool) {
	for _, row := range r.Rows {
		if row.Customer == customer {
			return row, true
		}
	}
	return events.ReconciliationRow{}, false
}

// The reconciler stage waits for the sync's data to settle, then publishes one reconciliation
// (per sync and result) and stores it; Reconcile itself tells matching from differing rows and
// never reconciles a failed sync.
func TestReconcileCompletedSync(t *testing.T) {
	h := newHarness(t, 0)
	ctx := context.Background()
	sc := newScenario()
	h.publish(t, false, sc.records...)
	h.publishEvent(t, sc.summaries[0].EventMeta("test"), sc.summaries[0].NATSSubject(), sc.summaries[0], false)

	// One page without a summary: not complete, and it says why. The running publisher may
	// already have taken some of the 5 records, so its backlog is only checked when reported.
	ok, missing, err := billing.Complete(ctx, h.reconOpts(), sc.completed)
	if err != nil {
		t.Fatal(err)
	}
	if ok || !strings.Contains(missing, "1 of 2 pages have no transformer summary") {
		t.Fatalf("Complete before delivery = %v, %q", ok, missing)
	}
	var waiting, inFlight int
	if i := strings.Index(missing, "publisher has "); i >= 0 {
		if _, err := fmt.Sscanf(missing[i:], "publisher has %d records waiting and %d in flight", &waiting, &inFlight); err != nil || waiting+inFlight > 5 || waiting+inFlight == 0 {
			t.Fatalf("publisher backlog in %q: %d waiting + %d in flight, want 1..5", missing, waiting, inFlight)
		}
	}

	// The completion arrives before the publisher ran: the reconciler must wait, not report.
	h.publishEvent(t, sc.completed.EventMeta("test"), sc.completed.NATSSubject(), sc.completed, false)
	stop, done := h.start(t, billing.Hooks{})
	defer func() { stop(); <-done }()
	time.Sleep(time.Second)
	if n := len(h.reconciliations(t)); n != 0 {
		t.Fatalf("%d reconciliations published while a page had no summary", n)
	}
	h.publishEvent(t, sc.summaries[1].EventMeta("test"), sc.summaries[1].NATSSubject(), sc.summaries[1], false)

	var got events.Reconciliation
	bustest.Eventually(t, 30*time.Second, func() error {
		rs := h.reconciliations(t)
		if len(rs) == 0 {
			return errors.New("no reconciliation yet")
		}
		got = rs[0]
		return nil
	})
	if !got.Reconciled || got.Reason != "" {
		t.Fatalf("not reconciled: %s; rows %+v", got.Reason, got.Rows)
	}
	if len(got.Rows) != 3 || got.Records != 5 || got.HeldLines != 1 || got.DeadLetters != 1 || got.SyncID != sc.completed.SyncID {
		t.Errorf("rows %d records %d held %d dead %d sync %s", len(got.Rows), got.Records, got.HeldLines, got.DeadLetters, got.SyncID)
	}
	c1, _ := findRow(got, "c1")
	if !c1.Held.Equal(decimal.RequireFromString("5.0000000001")) || !c1.DeadLettered.Equal(decimal.RequireFromString("-0.25")) ||
		!c1.Delivered.Equal(decimal.RequireFromString("17.6234567892")) || !c1.Difference.IsZero() || !c1.Match {
		t.Errorf("row c1 = %+v", c1)
	}
	if tot := got.Totals["EUR"]; !tot.Equal(decimal.RequireFromString("19.9567901222")) {
		t.Errorf("totals EUR %s", tot)
	}
	stored, err := billing.LoadReconciliation(ctx, h.js, acct, reconPeriod)
	if err != nil {
		t.Fatal(err)
	}
	if stored.ReconciliationID() != got.ReconciliationID() || !stored.Reconciled {
		t.Errorf("stored reconciliation %+v differs from the published one", stored)
	}

	// The same completion again (a redelivery): reconciled again to the same result, which is
	// the same event id, so the stream still holds one reconciliation for this sync.
	h.publishEvent(t, sc.completed.EventMeta("test"), sc.completed.NATSSubject(), sc.completed, true)
	bustest.Eventually(t, 30*time.Second, func() error {
		cons, err := h.js.Consumer(ctx, events.StreamSync, publisher.ReconcilerName)
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != 2 {
			return fmt.Errorf("reconciler: pending %d, ack pending %d, ack floor %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
		}
		return nil
	})
	if n := len(h.reconciliations(t)); n != 1 {
		t.Errorf("%d reconciliation events for one sync, want 1", n)
	}

	// One control total changed: not reconciled, naming that customer.
	bad := sc.completed
	bad.ControlTotals = append([]events.ControlTotal(nil), sc.completed.ControlTotals...)
	bad.ControlTotals[1].BilledCost = bad.ControlTotals[1].BilledCost.Add(decimal.RequireFromString("0.0000000001"))
	r, err := billing.Reconcile(ctx, h.reconOpts(), bad)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := findRow(r, "c2")
	if r.Reconciled || c2.Match || !c2.Difference.Equal(decimal.RequireFromString("0.0000000001")) ||
		!strings.Contains(r.Reason, "c2 EUR") || strings.Contains(r.Reason, "c1") {
		t.Errorf("changed control: reconciled %v, reason %q, row c2 %+v", r.Reconciled, r.Reason, c2)
	}
	if row, _ := findRow(r, "c1"); !row.Match {
		t.Errorf("row c1 stopped matching: %+v", row)
	}

	// A failed sync is never reconciled, even with matching numbers, and carries its reason.
	failed := sc.completed
	failed.Status, failed.Reason = events.SyncFailed, "ion: 503 after 5 attempts"
	if ok, _, err := billing.Complete(ctx, h.reconOpts(), failed); err != nil || !ok {
		t.Errorf("Complete(failed sync) = %v, %v; want complete at once", ok, err)
	}
	r, err = billing.Reconcile(ctx, h.reconOpts(), failed)
	if err != nil {
		t.Fatal(err)
	}
	if r.Reconciled || r.SyncStatus != events.SyncFailed || !strings.Contains(r.Reason, "ion: 503 after 5 attempts") {
		t.Errorf("failed sync: reconciled %v, status %q, reason %q", r.Reconciled, r.SyncStatus, r.Reason)
	}
	b, _ := json.Marshal(r)
	schematest.Validate(t, events.TypeReconciliation, b)
}
