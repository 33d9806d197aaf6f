package publisher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/services/publisher"
)

// A record that a complete re-read of a closed period no longer contains is reversed as in an
// open period, and the reversal revision reaches the sinks as a negative Correction row in the
// next open period, next to the original row; the ledger holds the reversal, so the closed
// period still reconciles against Ion's totals.
func TestReversalOfClosedPeriodIsNegativeCorrection(t *testing.T) {
	h := newHarness(t, 0)
	h.deps.Config.Accounts = []config.Account{{ID: acct, ClosingDay: 10}} // 2025-03 closes 2025-04-10
	var now atomic.Pointer[time.Time]
	setNow := func(t time.Time) { now.Store(&t) }
	setNow(time.Date(2025, 4, 5, 0, 0, 0, 0, time.UTC))
	ctx, stop := context.WithCancel(context.Background())
	p, err := publisher.New(ctx, publisher.Options{Deps: h.deps, Sinks: h.sinks, Now: func() time.Time { return *now.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { stop(); <-done }()

	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	a, gone := record("c1", 0, "10.5", t0), record("c1", 2, "7.2500000001", t0)
	sums1, c1 := syncOf(1, t0.Add(time.Minute), map[string][]events.UsageRecord{"c1": {a, gone}}, nil)
	if r := h.runSync(t, []events.UsageRecord{a, gone}, sums1, c1); !r.Reconciled {
		t.Fatalf("sync 1 not reconciled: %s", r.Reason)
	}

	setNow(time.Date(2025, 4, 20, 0, 0, 0, 0, time.UTC))
	t2 := time.Date(2025, 4, 19, 6, 0, 0, 0, time.UTC)
	a2 := a
	a2.FetchedAt = t2.Add(-time.Minute)
	sums2, c2 := syncOf(2, t2, map[string][]events.UsageRecord{"c1": {a2}}, nil)
	r2 := h.runSync(t, []events.UsageRecord{a2}, sums2, c2)
	if !r2.Reconciled {
		t.Fatalf("sync 2 not reconciled: %s; rows %+v", r2.Reason, r2.Rows)
	}
	rs := h.reversals(t)
	if len(rs) != 1 || rs[0].RecordID != gone.RecordID {
		t.Fatalf("reversals %+v, want one of %s", rs, gone.RecordID)
	}
	st := h.sim.State()
	corr, ok := st.Records[billing.CorrectionRecordID(gone.RecordID, 2, rs[0].Revision).String()]
	if !ok || !corr.BilledCost.Equal(gone.BilledCost.Neg()) || corr.RevisionSeq != 1 {
		t.Fatalf("receiver holds correction %+v (found %v), want %s at revision seq 1", corr, ok, gone.BilledCost.Neg())
	}
	if orig := st.Records[gone.RecordID.String()]; orig.Revision != gone.Revision || !orig.BilledCost.Equal(gone.BilledCost) {
		t.Errorf("receiver's original row %+v: a closed period's row is never overwritten", orig)
	}
	if got := st.Totals["c1"]["EUR"]; !got.Equal(a.BilledCost) || st.Superseded != 0 {
		t.Errorf("receiver's c1 total %s superseded %d, want %s and 0", got, st.Superseded, a.BilledCost)
	}
	snap, err := billing.Snapshot(context.Background(), h.js, acct, reconPeriod)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range snap {
		if r.RecordID == gone.RecordID {
			found = true
			if r.Revision != rs[0].Revision || !r.BilledCost.IsZero() || !slices.Contains(r.Flags, events.FlagReversal) {
				t.Errorf("ledger snapshot holds %+v for the reversed record, want the zero reversal", r)
			}
		}
	}
	if !found {
		t.Error("ledger snapshot lacks the reversed record")
	}
}

// A restatement of a closed period whose held revision has aged out of USAGE (streams.max_age;
// here deleted) is dead-lettered by the publisher with reason correction-base-expired, naming
// the record, the held revision and its stream seq; the other record of the batch is corrected
// as usual, the durable drains (no endless NAK), and reconciliation counts the expired record's
// amount as dead-lettered.
func TestClosedPeriodCorrectionOfExpiredRevisionIsDeadLettered(t *testing.T) {
	h := newHarness(t, 0)
	h.deps.Config.Accounts = []config.Account{{ID: acct, ClosingDay: 10}} // 2025-03 closes 2025-04-10
	var now atomic.Pointer[time.Time]
	setNow := func(t time.Time) { now.Store(&t) }
	setNow(time.Date(2025, 4, 5, 0, 0, 0, 0, time.UTC))
	ctx, stop := context.WithCancel(context.Background())
	p, err := publisher.New(ctx, publisher.Options{Deps: h.deps, Sinks: h.sinks, Now: func() time.Time { return *now.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { stop(); <-done }()

	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	old, kept := record("c1", 0, "10", t0), record("c1", 1, "3", t0)
	sums1, c1 := syncOf(1, t0.Add(time.Minute), map[string][]events.UsageRecord{"c1": {old, kept}}, nil)
	if r := h.runSync(t, []events.UsageRecord{old, kept}, sums1, c1); !r.Reconciled {
		t.Fatalf("sync 1 not reconciled: %s", r.Reason)
	}
	heldSeq := h.expireHeld(t, old)

	setNow(time.Date(2025, 4, 20, 0, 0, 0, 0, time.UTC))
	t2 := time.Date(2025, 4, 19, 6, 0, 0, 0, time.UTC)
	old2, kept2 := restate(old, "12", t2), restate(kept, "4", t2)
	sums2, c2 := syncOf(2, t2.Add(time.Minute), map[string][]events.UsageRecord{"c1": {old2, kept2}}, nil)
	r2 := h.runSync(t, []events.UsageRecord{old2, kept2}, sums2, c2)
	row, ok := findRow(r2, "c1")
	if !ok || !row.DeadLettered.Equal(old2.BilledCost) || !row.Delivered.Equal(kept2.BilledCost) || !row.Match || r2.DeadLetters != 1 {
		t.Fatalf("sync 2 reconciliation %+v, want %s dead-lettered and %s delivered", r2, old2.BilledCost, kept2.BilledCost)
	}

	var dl events.DeadLetter
	bustest.Eventually(t, 30*time.Second, func() error {
		dls := h.deadLetters(t)
		if len(dls) != 1 {
			return fmt.Errorf("%d dead letters, want 1", len(dls))
		}
		dl = dls[0]
		return nil
	})
	for _, want := range []string{old.RecordID.String(), old.Revision[:12], fmt.Sprint(heldSeq), "streams.max_age"} {
		if !strings.Contains(dl.Error, want) {
			t.Errorf("dead letter error %q does not name %s", dl.Error, want)
		}
	}
	var got events.UsageRecord
	if err := json.Unmarshal(dl.Payload, &got); err != nil || dl.Reason != billing.ReasonCorrectionBaseExpired || got.Revision != old2.Revision {
		t.Fatalf("dead letter reason %q of revision %.12s (%v), want %s of %.12s", dl.Reason, got.Revision, err, billing.ReasonCorrectionBaseExpired, old2.Revision)
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		ci, err := h.js.Consumer(ctx, events.StreamUsage, publisher.Name)
		if err != nil {
			return err
		}
		info, err := ci.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	st := h.sim.State()
	if got := st.Totals["c1"]["EUR"]; !got.Equal(decimal.NewFromInt(14)) || len(st.Records) != 3 {
		t.Errorf("receiver c1 total %s with %d records, want 10 + 3 + the correction 1", got, len(st.Records))
	}
}

// restate is r with another billed cost, read at at.
func restate(r events.UsageRecord, billed string, at time.Time) events.UsageRecord {
	b := decimal.RequireFromString(billed)
	r.BilledCost, r.EffectiveCost, r.ListCost, r.ContractedCost, r.FetchedAt = b, b, b, b, at
	r.Revision = r.ContentHash()
	return r
}

// deadLetters returns the publisher's dead letters in the DLQ stream.
// expireHeld deletes the USAGE event of the revision the ledger holds for r, as streams.max_age
// would once it aged out, and returns its stream sequence.
func (h *harness) expireHeld(t *testing.T, r events.UsageRecord) uint64 {
	t.Helper()
	ctx := context.Background()
	ledger, err := billing.OpenLedger(ctx, h.js)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := ledger.Load(ctx, r.BillingAccountID, events.PeriodOf(r.BillingPeriodStart), r.IonCustomerID)
	if err != nil {
		t.Fatal(err)
	}
	held, ok := p.Records[r.RecordID.String()]
	if !ok {
		t.Fatalf("the ledger holds no revision of %s", r.RecordID)
	}
	usage, err := h.js.Stream(ctx, events.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	if err := usage.DeleteMsg(ctx, held.StreamSeq); err != nil {
		t.Fatal(err)
	}
	return held.StreamSeq
}

func (h *harness) deadLetters(t *testing.T) []events.DeadLetter {
	t.Helper()
	cons, err := billing.ReadConsumer(context.Background(), h.js, events.StreamDLQ, "dlq.v1.publisher.>")
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Delete()
	var out []events.DeadLetter
	for range cons.Info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var dl events.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}
