package billing_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// ledgerWrites is how many values the ledger bucket has stored so far.
func (e *env) ledgerWrites(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), "KV_"+bus.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// A delivery writes its partition's head once as pending, once per sink but the last, and once
// to commit, after a segment with the delivered records; the receipt stays queued until the partition's next write, and the process that
// published it does not publish it again.
func TestDeliveryWritesAndQueuedReceipt(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	var rc receipts
	d := e.deliverer(t, &rc, billing.Hooks{}) // http, then csv
	before := e.ledgerWrites(t)
	a, err := d.Deliver(ctx, acct, period, cust, e.publish(t, record(1, "1", fetched), record(2, "2", fetched)))
	if err != nil {
		t.Fatal(err)
	}
	if n := e.ledgerWrites(t) - before; n != 4 {
		t.Errorf("%d ledger writes for one delivery to two sinks, want 4 (pending, http done, the records' segment, commit)", n)
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pending != nil || p.Receipt == nil || p.Receipt.DeliveryID != a.DeliveryID || len(rc.got) != 1 {
		t.Fatalf("after commit: pending %v receipt %v receipts %d, want the receipt published and queued", p.Pending, p.Receipt, len(rc.got))
	}

	bItems := e.publish(t, record(3, "3", fetched))
	b, err := d.Deliver(ctx, acct, period, cust, bItems)
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.got) != 2 || rc.got[1].DeliveryID != b.DeliveryID {
		t.Fatalf("receipts %+v, want a's once and b's", rc.got)
	}
	if p, _, _ = e.ledger.Load(ctx, acct, period, cust); p.Receipt == nil || p.Receipt.DeliveryID != b.DeliveryID {
		t.Fatalf("queued receipt %v, want b's (a's cleared by b's pending write)", p.Receipt)
	}

	// Another process finds b's receipt queued: it publishes it (idempotent by delivery id)
	// and clears it, though it has nothing to deliver.
	var rc2 receipts
	out, err := e.deliverer(t, &rc2, billing.Hooks{}).Deliver(ctx, acct, period, cust, bItems)
	if err != nil || out.Skipped != 1 {
		t.Fatalf("redelivery: %+v %v", out, err)
	}
	if len(rc2.got) != 1 || rc2.got[0].DeliveryID != b.DeliveryID {
		t.Fatalf("other process's receipts %+v, want b's", rc2.got)
	}
	if p, _, _ = e.ledger.Load(ctx, acct, period, cust); p.Receipt != nil {
		t.Fatalf("receipt %v still queued", p.Receipt)
	}
	if st := e.sim.State(); st.Deliveries != 2 || len(st.Records) != 3 {
		t.Fatalf("receiver %+v", st)
	}
}

// A crash after the last sink accepted, before the commit (which is what marks that sink done),
// resends the same delivery to that sink only.
func TestCrashAfterLastSinkAccepted(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	crash := errors.New("simulated crash")
	hooks := billing.Hooks{AfterSinkAccepted: func(sink string, _ uuid.UUID) error {
		if sink == "csv" {
			return crash
		}
		return nil
	}}
	var rc receipts
	items := e.publish(t, record(1, "1", fetched), record(2, "2", fetched))
	if _, err := e.deliverer(t, &rc, hooks).Deliver(ctx, acct, period, cust, items); !errors.Is(err, crash) {
		t.Fatalf("err %v, want the crash", err)
	}
	p, _, _ := e.ledger.Load(ctx, acct, period, cust)
	if p.Pending == nil || len(p.Pending.Done) != 1 || p.Pending.Done["http"].Sink != "http" || len(p.Records) != 0 {
		t.Fatalf("after crash the ledger must hold the pending delivery with http done: %+v", p.Pending)
	}
	out, err := e.deliverer(t, &rc, billing.Hooks{}).Deliver(ctx, acct, period, cust, items)
	if err != nil {
		t.Fatal(err)
	}
	if out.Recovered != p.Pending.ID || out.Skipped != 2 {
		t.Fatalf("outcome %+v, want recovered %s", out, p.Pending.ID)
	}
	if st := e.sim.State(); st.Deliveries != 1 || st.Replays != 0 || len(st.Records) != 2 {
		t.Fatalf("receiver %+v: http was done and must not be resent", st)
	}
	if len(rc.got) != 1 || len(rc.got[0].Sinks) != 2 || rc.got[0].Sinks[1].Result != events.SinkDuplicate {
		t.Fatalf("receipt %+v, want csv's resend answered as a duplicate", rc.got)
	}
	if p, _, _ = e.ledger.Load(ctx, acct, period, cust); p.Pending != nil || p.Records[items[0].Record.RecordID.String()].Sinks["csv"] != rc.got[0].DeliveryID {
		t.Fatalf("after recovery: %+v", p)
	}
}

// BenchmarkLedgerSums645 is the reconciler's ledger read at a million records: the sums of
// 645 partitions of 1,500 records each (the bench's shape), against a real server.
func BenchmarkLedgerSums645(b *testing.B) {
	ctx := context.Background()
	_, ledger := billing.ProvisionedLedger(b)
	t0 := fetched
	for c := range 645 {
		p := &billing.Partition{Account: acct, Period: period, Customer: fmt.Sprintf("cust-%04d", c), Records: map[string]billing.Held{}}
		for i := range 1500 {
			id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%d-%d", c, i))
			p.Records[id.String()] = billing.Held{Revision: fmt.Sprintf("%064x", i), Seq: 1, AsOf: t0, Currency: "EUR",
				Billed: decimal.New(int64(i), -10), StreamSeq: uint64(i), Sinks: map[string]uuid.UUID{"csv": id}}
		}
		if _, err := ledger.Save(ctx, p, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		ps, err := ledger.Sums(ctx, acct, period)
		if err != nil || len(ps) != 645 || ps[0].Sum.Records != 1500 {
			b.Fatalf("%d sums, %v", len(ps), err)
		}
	}
}
