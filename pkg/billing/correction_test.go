package billing_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/events"
)

// Period 2025-03 closes on 2025-04-10 with closing day 10.
var (
	beforeClose = time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	afterClose  = time.Date(2025, 4, 15, 6, 0, 0, 0, time.UTC)
)

// closingDeliverer is e.deliverer with closing day 10 and the clock *now.
func (e *env) closingDeliverer(t *testing.T, rc *receipts, hooks billing.Hooks, now *time.Time) *billing.Deliverer {
	t.Helper()
	hs, err := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: e.url + "/deliveries", Secret: secret, Timeout: 5 * time.Second, RetryInitial: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := billing.NewCSVSink(billing.CSVSinkOptions{Dir: e.csvDir})
	if err != nil {
		t.Fatal(err)
	}
	d, err := billing.NewDeliverer(billing.DelivererOptions{
		Ledger: e.ledger, Sinks: []billing.Sink{hs, cs}, Load: billing.StreamLoader(e.js),
		Receipt:    func(_ context.Context, d events.Delivery) error { rc.got = append(rc.got, d); return nil },
		ClosingDay: func(string) (int, error) { return 10, nil },
		Hooks:      hooks, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return *now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// csvRows reads the CSV sink's file of a delivery as column → value maps.
func (e *env) csvRows(t *testing.T, delivery uuid.UUID) []map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(e.csvDir, delivery.String()+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, h := range rows[0] {
			m[h] = row[i]
		}
		out = append(out, m)
	}
	return out
}

func withQuantity(r events.UsageRecord, q string) events.UsageRecord {
	v := decimal.RequireFromString(q)
	r.ConsumedQuantity, r.PricingQuantity = &v, &v
	r.Revision = r.ContentHash()
	return r
}

func restated(r events.UsageRecord, billed, qty string, at time.Time) events.UsageRecord {
	b := decimal.RequireFromString(billed)
	r.BilledCost, r.EffectiveCost, r.ListCost, r.ContractedCost = b, b, b, b
	r.FetchedAt = at
	return withQuantity(r, qty)
}

// After the period closes, a new revision is delivered as a delta row in the next open period
// (amounts and quantities new − held, its own record id, naming what it corrects), a line new in
// the restatement as a whole-line Correction, a zero-amount revision as a negative one, and a
// change without an amount change updates the ledger without a row. The ledger then holds the
// full new revisions, and a re-read delivers nothing.
func TestClosedPeriodRevisionIsCorrectionDelta(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	now := beforeClose
	var rc receipts
	d := e.closingDeliverer(t, &rc, billing.Hooks{}, &now)
	up := withQuantity(record(1, "10.0000000001", fetched), "4")
	same := withQuantity(record(2, "3", fetched), "1")
	gone := withQuantity(record(3, "5.25", fetched), "2")
	if out, err := d.Deliver(ctx, acct, period, cust, e.publish(t, up, same, gone)); err != nil || len(out.Delivered) != 3 {
		t.Fatalf("open period: %+v %v", out, err)
	}

	now = afterClose
	at := afterClose.Add(-time.Hour)
	up2 := restated(up, "10.5000000002", "4.2", at)
	desc := "restated description"
	same2 := same
	same2.ChargeDescription, same2.FetchedAt = &desc, at
	same2.Revision = same2.ContentHash()
	gone2 := restated(gone, "0", "0", at)
	fresh := restated(record(4, "7", fetched), "7", "3", at)
	items := e.publish(t, up2, same2, gone2, fresh)
	out, err := d.Deliver(ctx, acct, period, cust, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Delivered) != 3 {
		t.Fatalf("delivered %+v, want 3 correction rows (the description-only change has none)", out.Delivered)
	}
	want := map[uuid.UUID]struct {
		billed, qty string
		corrects    *string
	}{
		up.RecordID:    {"0.5000000001", "0.2", &up.Revision},
		gone.RecordID:  {"-5.25", "-2", &gone.Revision},
		fresh.RecordID: {"7", "3", nil},
	}
	rows := e.csvRows(t, out.DeliveryID)
	sum := decimal.Zero
	for _, row := range rows {
		corrected, err := uuid.Parse(row["x_CorrectsRecordId"])
		if err != nil {
			t.Fatalf("row %v: x_CorrectsRecordId: %v", row, err)
		}
		w, ok := want[corrected]
		if !ok {
			t.Fatalf("row corrects %s, not one of the changed records", corrected)
		}
		delete(want, corrected)
		var newRev string
		for _, r := range []events.UsageRecord{up2, gone2, fresh} {
			if r.RecordID == corrected {
				newRev = r.Revision
			}
		}
		if row["ChargeClass"] != billing.ChargeClassCorrection || row["BilledCost"] != w.billed || row["EffectiveCost"] != w.billed ||
			row["ListCost"] != w.billed || row["ContractedCost"] != w.billed || row["ConsumedQuantity"] != w.qty || row["PricingQuantity"] != w.qty {
			t.Errorf("row of %s: class %q billed %s/%s/%s/%s quantity %s/%s, want Correction %s and %s", corrected, row["ChargeClass"],
				row["BilledCost"], row["EffectiveCost"], row["ListCost"], row["ContractedCost"], row["ConsumedQuantity"], row["PricingQuantity"], w.billed, w.qty)
		}
		if !timeIs(row["BillingPeriodStart"], "2025-04-01T00:00:00Z") || !timeIs(row["BillingPeriodEnd"], "2025-05-01T00:00:00Z") ||
			!timeIs(row["ChargePeriodStart"], "2025-03-01T00:00:00Z") {
			t.Errorf("row of %s: billing period %s..%s charge period from %s, want invoiced in 2025-04 for March usage",
				corrected, row["BillingPeriodStart"], row["BillingPeriodEnd"], row["ChargePeriodStart"])
		}
		seq := int64(2) // the accepted revision's x_RevisionSeq: 1 for the new line
		if w.corrects == nil {
			seq = 1
		}
		if row["x_RecordId"] != billing.CorrectionRecordID(corrected, seq, newRev).String() || row["x_RecordId"] == corrected.String() ||
			row["x_RevisionSeq"] != "1" || row["x_Replaces"] != "" {
			t.Errorf("row of %s: id %s seq %s replaces %q, want its own first revision", corrected, row["x_RecordId"], row["x_RevisionSeq"], row["x_Replaces"])
		}
		if (w.corrects == nil) != (row["x_CorrectsRevision"] == "") || (w.corrects != nil && row["x_CorrectsRevision"] != *w.corrects) {
			t.Errorf("row of %s corrects revision %q, want %v", corrected, row["x_CorrectsRevision"], w.corrects)
		}
		sum = sum.Add(decimal.RequireFromString(row["BilledCost"]))
	}
	if len(want) != 0 || len(rows) != 3 {
		t.Fatalf("%d rows; no row for %v", len(rows), want)
	}
	if !sum.Equal(decimal.RequireFromString("2.2500000001")) || !rc.got[len(rc.got)-1].Totals["EUR"].Equal(sum) {
		t.Errorf("rows sum to %s, receipt totals %v; want the change 2.2500000001", sum, rc.got[len(rc.got)-1].Totals)
	}
	// The receiver keeps the original rows and adds the deltas: its total is the restated one.
	st := e.sim.State()
	if got := st.Totals[cust]["EUR"]; !got.Equal(decimal.RequireFromString("20.5000000002")) || st.Superseded != 0 || len(st.Records) != 6 {
		t.Errorf("receiver total %s, superseded %d, records %d; want 20.5000000002, 0, 6", got, st.Superseded, len(st.Records))
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []events.UsageRecord{up2, same2, gone2, fresh} {
		h := p.Records[r.RecordID.String()]
		if h.Revision != r.Revision || !h.Billed.Equal(r.BilledCost) || h.StreamSeq != items[i].StreamSeq {
			t.Errorf("ledger holds %+v for %s, want the full new revision %.12s", h, r.RecordID, r.Revision)
		}
	}
	if h := p.Records[same2.RecordID.String()]; h.Seq != 2 || h.Sinks["http"] == uuid.Nil {
		t.Errorf("description-only change held as %+v: want seq 2 and the sinks of the revision it superseded", h)
	}
	// The same read again, a week later: nothing new.
	now = afterClose.AddDate(0, 0, 7)
	again, err := d.Deliver(ctx, acct, period, cust, items)
	if err != nil || again.DeliveryID != uuid.Nil || again.Skipped != 4 {
		t.Fatalf("re-read: %+v %v, want 4 skipped", again, err)
	}
}

func timeIs(s, want string) bool {
	got, err := time.Parse(time.RFC3339, s)
	w, _ := time.Parse(time.RFC3339, want)
	return err == nil && got.Equal(w)
}

// A crash after a sink accepted a Correction delivery resends the identical body even when the
// clock has meanwhile moved into another open period: the invoice period and the held revision
// are pinned in the pending members, never recomputed.
func TestCorrectionRebuiltIdenticallyAfterCrash(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	now := beforeClose
	var rc receipts
	v1 := record(1, "10", fetched)
	if _, err := e.closingDeliverer(t, &rc, billing.Hooks{}, &now).Deliver(ctx, acct, period, cust, e.publish(t, v1)); err != nil {
		t.Fatal(err)
	}
	now = afterClose
	crash := errors.New("simulated crash")
	hooks := billing.Hooks{AfterSinkAccepted: func(sink string, _ uuid.UUID) error {
		if sink == "http" {
			return crash
		}
		return nil
	}}
	v2 := restated(record(1, "12", fetched), "12", "1", afterClose.Add(-time.Hour))
	items := e.publish(t, v2)
	if _, err := e.closingDeliverer(t, &rc, hooks, &now).Deliver(ctx, acct, period, cust, items); !errors.Is(err, crash) {
		t.Fatalf("err %v, want the crash", err)
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pending == nil || len(p.Pending.Members) != 1 || p.Pending.Members[0].Correction == nil ||
		p.Pending.Members[0].Correction.Period != "2025-04" || p.Pending.Members[0].Correction.HeldStreamSeq == 0 {
		t.Fatalf("pending after the crash: %+v", p.Pending)
	}
	pending := p.Pending.ID

	// Restarted in June (2025-04 closed too), without the item: rebuilt from the stream.
	now = time.Date(2025, 6, 20, 0, 0, 0, 0, time.UTC)
	out, err := e.closingDeliverer(t, &rc, billing.Hooks{}, &now).Deliver(ctx, acct, period, cust, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Recovered != pending {
		t.Fatalf("outcome %+v, want recovered %s", out, pending)
	}
	st := e.sim.State()
	if st.Replays != 1 || st.Conflicts != 0 || st.Deliveries != 2 || st.DuplicateRecords != 0 {
		t.Fatalf("receiver %+v: want the resent body to be a replay", st)
	}
	rows := e.csvRows(t, pending)
	if len(rows) != 1 || rows[0]["BilledCost"] != "2" || !timeIs(rows[0]["BillingPeriodStart"], "2025-04-01T00:00:00Z") {
		t.Fatalf("rows %v, want one delta of 2 invoiced in 2025-04", rows)
	}
	if got := st.Totals[cust]["EUR"]; !got.Equal(decimal.NewFromInt(12)) {
		t.Errorf("receiver total %s, want 12", got)
	}
	p, _, _ = e.ledger.Load(ctx, acct, period, cust)
	if h := p.Records[v1.RecordID.String()]; h.Revision != v2.Revision || !h.Billed.Equal(v2.BilledCost) || p.Pending != nil {
		t.Fatalf("ledger %+v", p)
	}
}

// The first delivery of a customer's closed period (a backfill of history), in however many
// batches, is billed in its own period: nothing was billed while it was open, so nothing is
// corrected. Once delivered, a changed line of it is a Correction.
func TestFirstDeliveryOfClosedPeriodIsNotACorrection(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	now := afterClose
	var rc receipts
	d := e.closingDeliverer(t, &rc, billing.Hooks{}, &now)
	at := afterClose.Add(-time.Hour)
	r1 := record(1, "1", at)
	for _, r := range []events.UsageRecord{r1, record(2, "2", at)} {
		out, err := d.Deliver(ctx, acct, period, cust, e.publish(t, r))
		if err != nil {
			t.Fatal(err)
		}
		rows := e.csvRows(t, out.DeliveryID)
		if len(rows) != 1 || rows[0]["ChargeClass"] != "" || !timeIs(rows[0]["BillingPeriodStart"], "2025-03-01T00:00:00Z") ||
			rows[0]["x_RecordId"] != r.RecordID.String() {
			t.Fatalf("rows %v, want an ordinary row of 2025-03", rows)
		}
	}
	out, err := d.Deliver(ctx, acct, period, cust, e.publish(t, restated(r1, "1.5", "1", at.Add(time.Hour))))
	if err != nil {
		t.Fatal(err)
	}
	if rows := e.csvRows(t, out.DeliveryID); len(rows) != 1 || rows[0]["ChargeClass"] != billing.ChargeClassCorrection || rows[0]["BilledCost"] != "0.5" {
		t.Fatalf("rows %v, want a Correction of 0.5", rows)
	}
}

// The reviewer's scenario: closing day 10, a line billed 10 while open, then restated after the
// close to 12, back to 10 and to 12 again, each time in the same invoice period. Every Correction
// row has its own id (the second +2 is not the first one's id with another body, which the
// receiver refuses with 409), so the receiver ends at Ion's 12 and nothing is dead-lettered.
func TestCorrectionIDsUniqueWhenRecordReturnsToEarlierRevision(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	now := beforeClose
	var rc receipts
	d := e.closingDeliverer(t, &rc, billing.Hooks{}, &now)
	billed := restated(record(1, "10", fetched), "10", "1", fetched)
	if out, err := d.Deliver(ctx, acct, period, cust, e.publish(t, billed)); err != nil || len(out.Delivered) != 1 {
		t.Fatalf("open period: %+v %v", out, err)
	}
	now = afterClose
	ids := map[uuid.UUID]bool{}
	for i, amount := range []string{"12", "10", "12"} {
		r := restated(billed, amount, "1", afterClose.Add(time.Duration(i+1)*time.Minute))
		out, err := d.Deliver(ctx, acct, period, cust, e.publish(t, r))
		if err != nil || out.Rejected != nil || len(out.Delivered) != 1 {
			t.Fatalf("restatement %d to %s: %+v %v", i+1, amount, out, err)
		}
		ids[out.Delivered[0].RecordID] = true
	}
	if len(ids) != 3 {
		t.Errorf("correction row ids %v, want 3 distinct", ids)
	}
	st := e.sim.State()
	if got := st.Totals[cust]["EUR"]; !got.Equal(decimal.NewFromInt(12)) || st.Conflicts != 0 || st.Superseded != 0 || len(st.Records) != 4 {
		t.Errorf("receiver total %s, conflicts %d, superseded %d, records %d; want 12, 0, 0, 4", got, st.Conflicts, st.Superseded, len(st.Records))
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Dead) != 0 || p.Records[billed.RecordID.String()].Seq != 4 {
		t.Errorf("ledger dead %v, held %+v; want nothing dead and revision seq 4", p.Dead, p.Records[billed.RecordID.String()])
	}
}

// deleteUsage removes the event at seq from USAGE, as streams.max_age does once it is old.
func (e *env) deleteUsage(t *testing.T, seq uint64) {
	t.Helper()
	st, err := e.js.Stream(context.Background(), events.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(context.Background(), seq); err != nil {
		t.Fatal(err)
	}
}

// A restatement of a closed period whose held revision has aged out of USAGE cannot be
// corrected: that record is dead-lettered (ledger Dead, reason correction-base-expired, naming
// the record, held revision and stream seq), the rest of the batch is delivered, and a
// redelivery of the same message settles at once instead of failing for ever.
func TestCorrectionOfExpiredHeldRevisionIsDeadLettered(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	now := beforeClose
	var rc receipts
	d := e.closingDeliverer(t, &rc, billing.Hooks{}, &now)
	old, kept := record(1, "10", fetched), record(2, "3", fetched)
	first := e.publish(t, old, kept)
	if out, err := d.Deliver(ctx, acct, period, cust, first); err != nil || len(out.Delivered) != 2 {
		t.Fatalf("open period: %+v %v", out, err)
	}
	e.deleteUsage(t, first[0].StreamSeq)

	now = afterClose
	at := afterClose.Add(-time.Hour)
	items := e.publish(t, restated(old, "12", "1", at), restated(kept, "4", "1", at))
	out, err := d.Deliver(ctx, acct, period, cust, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Delivered) != 1 || out.Delivered[0].RecordID != billing.CorrectionRecordID(kept.RecordID, 2, items[1].Record.Revision) {
		t.Errorf("delivered %+v, want the other record's correction", out.Delivered)
	}
	if len(out.Expired) != 1 || out.Expired[0].StreamSeq != items[0].StreamSeq || out.Expired[0].Reason != billing.ReasonCorrectionBaseExpired {
		t.Fatalf("expired %+v, want the record whose held revision is gone", out.Expired)
	}
	var bex *billing.BaseExpiredError
	if !errors.As(out.Expired[0].Err, &bex) || bex.RecordID != old.RecordID || bex.Held != old.Revision || bex.StreamSeq != first[0].StreamSeq {
		t.Fatalf("expired error %v, want the record, held revision and stream seq", out.Expired[0].Err)
	}
	for _, want := range []string{old.RecordID.String(), old.Revision[:12], fmt.Sprint(first[0].StreamSeq), "streams.max_age"} {
		if !strings.Contains(bex.Error(), want) {
			t.Errorf("error %q does not name %s", bex, want)
		}
	}
	if len(out.Dead) != 0 {
		t.Errorf("dead %+v: the expired item is reported once, as expired", out.Dead)
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	dl := p.Dead[old.RecordID.String()]
	if dl.Reason != billing.ReasonCorrectionBaseExpired || dl.Revision != items[0].Record.Revision || !dl.Billed.Equal(decimal.NewFromInt(12)) {
		t.Errorf("ledger dead entry %+v, want the new revision of 12, correction-base-expired", dl)
	}
	if s := p.Sum; s == nil || s.Dead != 1 || !s.DeadBilled["EUR"].Equal(decimal.NewFromInt(12)) || s.Records != 1 || !s.Billed["EUR"].Equal(decimal.NewFromInt(4)) {
		t.Errorf("ledger sum %+v, want 4 delivered and 12 dead-lettered", p.Sum)
	}
	if got := e.sim.State().Totals[cust]["EUR"]; !got.Equal(decimal.NewFromInt(14)) {
		t.Errorf("receiver total %s, want 10 + 3 + 1", got)
	}
	again, err := d.Deliver(ctx, acct, period, cust, items)
	if err != nil || again.DeliveryID != uuid.Nil || len(again.Dead) != 1 || again.Dead[0].Reason != billing.ReasonCorrectionBaseExpired {
		t.Fatalf("redelivery: %+v %v, want settled with the dead revision and its reason", again, err)
	}
}

// A failure to read the held revision other than "not in the stream" stays transient: Deliver
// fails and the ledger is unchanged, so a redelivery tries again.
func TestCorrectionHeldLoadFailureIsRetried(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	now := beforeClose
	var rc receipts
	v1 := record(1, "10", fetched)
	if _, err := e.closingDeliverer(t, &rc, billing.Hooks{}, &now).Deliver(ctx, acct, period, cust, e.publish(t, v1)); err != nil {
		t.Fatal(err)
	}
	now = afterClose
	hs, err := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: e.url + "/deliveries", Secret: secret, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("nats: no responders available for request")
	d, err := billing.NewDeliverer(billing.DelivererOptions{
		Ledger: e.ledger, Sinks: []billing.Sink{hs}, Receipt: func(context.Context, events.Delivery) error { return nil },
		Load:       func(context.Context, uint64) (events.UsageRecord, error) { return events.UsageRecord{}, down },
		ClosingDay: func(string) (int, error) { return 10, nil }, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.Deliver(ctx, acct, period, cust, e.publish(t, restated(v1, "12", "1", afterClose.Add(-time.Hour))))
	var bex *billing.BaseExpiredError
	if !errors.Is(err, down) || errors.As(err, &bex) || len(out.Expired) != 0 {
		t.Fatalf("outcome %+v err %v, want the transient error", out, err)
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Dead) != 0 || p.Records[v1.RecordID.String()].Revision != v1.Revision {
		t.Errorf("ledger changed by a transient failure: dead %v held %+v", p.Dead, p.Records)
	}
}

// A pending Correction whose held revision leaves USAGE before the delivery is finished (a crash,
// then a long outage) cannot be rebuilt: the pending delivery is dropped, that record is
// dead-lettered, and the other members are chosen again and delivered.
func TestPendingCorrectionWithExpiredHeldRevisionIsDropped(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	now := beforeClose
	var rc receipts
	old, kept := record(1, "10", fetched), record(2, "3", fetched)
	first := e.publish(t, old, kept)
	if _, err := e.closingDeliverer(t, &rc, billing.Hooks{}, &now).Deliver(ctx, acct, period, cust, first); err != nil {
		t.Fatal(err)
	}
	now = afterClose
	crash := errors.New("simulated crash")
	hooks := billing.Hooks{AfterSinks: func(uuid.UUID) error { return crash }}
	at := afterClose.Add(-time.Hour)
	items := e.publish(t, restated(old, "12", "1", at), restated(kept, "4", "1", at))
	if _, err := e.closingDeliverer(t, &rc, hooks, &now).Deliver(ctx, acct, period, cust, items); !errors.Is(err, crash) {
		t.Fatalf("err %v, want the crash", err)
	}
	e.deleteUsage(t, first[0].StreamSeq)

	out, err := e.closingDeliverer(t, &rc, billing.Hooks{}, &now).Deliver(ctx, acct, period, cust, items)
	if err != nil {
		t.Fatal(err)
	}
	if out.Recovered != uuid.Nil || len(out.Expired) != 1 || out.Expired[0].StreamSeq != items[0].StreamSeq || len(out.Delivered) != 1 {
		t.Fatalf("outcome %+v, want the pending dropped, one expired and the other delivered", out)
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pending != nil || p.Dead[old.RecordID.String()].Reason != billing.ReasonCorrectionBaseExpired ||
		p.Records[kept.RecordID.String()].Revision != items[1].Record.Revision {
		t.Fatalf("ledger pending %+v dead %v held %+v", p.Pending, p.Dead, p.Records)
	}
}
