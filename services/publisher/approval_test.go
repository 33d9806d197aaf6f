package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/services/publisher"
)

// TestApprovalGate: records of an approval_required account are dead-lettered with reason
// awaiting-approval while another account's records flow; once approved, records fetched up
// to the approval are delivered; a changed re-read fetched after it waits again, while an
// unchanged re-read (nothing new for the sinks) passes. The approval is written with
// compare-and-set.
func TestApprovalGate(t *testing.T) {
	h := newHarness(t, 0)
	h.deps.Config.Accounts = []config.Account{{ID: acct, ApprovalRequired: true}, {ID: "acct2"}}
	cancel, done := h.start(t, billing.Hooks{})
	defer func() { cancel(); <-done }()
	ctx := context.Background()

	// The current month: open, so every record is delivered as itself (a closed period's
	// late records become corrections in the next open one).
	now := time.Now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	period := events.PeriodOf(start)
	t0 := start.Add(time.Hour)
	rec := func(account, cust string, n int, billed string) events.UsageRecord {
		r := record(cust, n, billed, t0)
		r.BillingAccountID, r.BillingPeriodStart, r.BillingPeriodEnd = account, start, start.AddDate(0, 1, 0)
		r.ChargePeriodStart, r.ChargePeriodEnd = start, start.AddDate(0, 0, 1)
		r.RecordID = events.RecordID(account, start, events.ModeV3, "apb-1", cust, fmt.Sprint(n))
		r.Revision = r.ContentHash()
		return r
	}
	other := rec("acct2", "c9", 0, "2.5")
	held := []events.UsageRecord{rec(acct, "c1", 0, "10.1234567891"), rec(acct, "c1", 1, "0.5"), rec(acct, "c2", 0, "3")}
	h.publish(t, false, held...)
	h.publish(t, false, other)
	h.settled(t, 30*time.Second, map[string]events.UsageRecord{other.RecordID.String(): other})
	waiting := func(want int) map[string]events.UsageRecord {
		t.Helper()
		var got map[string]events.UsageRecord
		bustest.Eventually(t, 30*time.Second, func() error {
			var err error
			if got, err = billing.AwaitingApproval(ctx, h.js, acct, period); err != nil {
				return err
			}
			if len(got) != want {
				return fmt.Errorf("%d records await approval, want %d", len(got), want)
			}
			return nil
		})
		return got
	}
	for _, r := range held {
		if w := waiting(len(held))[r.RecordID.String()]; w.Revision != r.Revision {
			t.Errorf("record %s awaits at revision %.8s, want %.8s", r.RecordID, w.Revision, r.Revision)
		}
	}
	if other, err := billing.AwaitingApproval(ctx, h.js, "acct2", period); err != nil || len(other) != 0 {
		t.Errorf("acct2 (no approval needed): %d awaiting, %v", len(other), err)
	}

	kv, err := h.js.KeyValue(ctx, bus.BucketPeriods)
	if err != nil {
		t.Fatal(err)
	}
	asOf := t0.Add(time.Hour)
	ap := publisher.Approval{Account: acct, Period: period, By: "alice", ApprovedAt: asOf, AsOf: asOf}
	if err := publisher.StoreApproval(ctx, kv, ap, 0); err != nil {
		t.Fatal(err)
	}
	if err := publisher.StoreApproval(ctx, kv, ap, 0); !errors.Is(err, publisher.ErrApprovalChanged) {
		t.Errorf("second create: %v, want ErrApprovalChanged", err)
	}
	got, rev, ok, err := publisher.LoadApproval(ctx, kv, acct, period)
	if err != nil || !ok || got.By != "alice" || !got.AsOf.Equal(asOf) {
		t.Fatalf("LoadApproval: %+v %v %v", got, ok, err)
	}
	if err := publisher.StoreApproval(ctx, kv, ap, rev+1); !errors.Is(err, publisher.ErrApprovalChanged) {
		t.Errorf("update at a stale revision: %v, want ErrApprovalChanged", err)
	}
	if _, _, ok, err := publisher.LoadApproval(ctx, kv, acct, events.PeriodOf(start.AddDate(0, 1, 0))); ok || err != nil {
		t.Errorf("another period is approved: %v %v", ok, err)
	}

	// What the approve command redrives: the held records again, fetched before the approval.
	h.publish(t, true, held...)
	want := map[string]events.UsageRecord{other.RecordID.String(): other}
	for _, r := range held {
		want[r.RecordID.String()] = r
	}
	st := h.settled(t, 30*time.Second, want)
	expectTotal(t, st, want)

	// A re-read after the approval: the changed record waits (the first dead letter of it is
	// still stored, so two revisions of the record are dead letters: the newest counts), the
	// unchanged one passes to the ledger, which skips it.
	t1 := asOf.Add(time.Minute)
	changed := held[0]
	changed.BilledCost = changed.BilledCost.Add(decimal.RequireFromString("1"))
	changed.FetchedAt = t1
	changed.Revision = changed.ContentHash()
	same := held[1]
	same.FetchedAt = t1
	if same.Revision != same.ContentHash() {
		t.Fatalf("fetch time changes the revision: the test's unchanged re-read is not unchanged")
	}
	h.publish(t, true, changed, same)
	st = h.settled(t, 30*time.Second, want) // the publisher has settled both: dead letter or ledger
	expectTotal(t, st, want)
	if w := waiting(len(held))[changed.RecordID.String()]; w.Revision != changed.Revision {
		t.Errorf("changed record awaits at revision %.8s, want %.8s", w.Revision, changed.Revision)
	}
	if w := waiting(len(held))[same.RecordID.String()]; !w.FetchedAt.Equal(t0) {
		t.Errorf("unchanged re-read was dead-lettered (fetched %s)", w.FetchedAt)
	}
}
