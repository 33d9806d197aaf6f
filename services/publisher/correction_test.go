package publisher_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/billing"
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
	corr, ok := st.Records[billing.CorrectionRecordID(gone.RecordID, rs[0].Revision).String()]
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
