package billing_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/events"
)

var secret = []byte("test-secret")

const (
	acct   = "acct1"
	period = "2025-03"
	cust   = "c1"
)

var fetched = time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)

// record builds a normalized record the way the transformer would.
func record(n int, billed string, fetchedAt time.Time) events.UsageRecord {
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	r := events.UsageRecord{
		BilledCost: decimal.RequireFromString(billed), EffectiveCost: decimal.RequireFromString(billed),
		ListCost: decimal.RequireFromString(billed), ContractedCost: decimal.RequireFromString(billed),
		BillingCurrency: "EUR", BillingAccountID: acct, BillingPeriodStart: start, BillingPeriodEnd: start.AddDate(0, 1, 0),
		ChargePeriodStart: start, ChargePeriodEnd: start.AddDate(0, 0, 1), ChargeCategory: "Usage",
		InvoiceIssuerName: "TD SYNNEX", ProviderName: "Microsoft", PublisherName: "Microsoft",
		ServiceName: "Virtual Machines", ServiceCategory: "Compute",
		RecordID:  events.RecordID(acct, start, events.ModeV3, "apb-1", cust, fmt.Sprint(n)),
		FetchedAt: fetchedAt, ColumnSetVersion: "apb-1", SourceMode: events.ModeV3,
		IonCustomerID: cust, CustomerName: "Customer One",
	}
	r.Revision = r.ContentHash()
	return r
}

type env struct {
	js     jetstream.JetStream
	ledger *billing.Ledger
	sim    *billingsim.Server
	url    string
	csvDir string
}

func newEnv(t *testing.T, simOpts billingsim.Options) *env {
	t.Helper()
	js, l := billing.ProvisionedLedger(t)
	if simOpts.Secret == nil {
		simOpts.Secret = secret
	}
	sim, err := billingsim.New(simOpts)
	if err != nil {
		t.Fatal(err)
	}
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close(context.Background()) })
	return &env{js: js, ledger: l, sim: sim, url: url, csvDir: t.TempDir()}
}

// publish stores records in the USAGE stream and returns them as items.
func (e *env) publish(t *testing.T, recs ...events.UsageRecord) []billing.Item {
	t.Helper()
	var items []billing.Item
	for _, r := range recs {
		msg, err := events.NewMessage(r.EventMeta("test"), r)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := e.js.PublishMsg(context.Background(), nats2Msg{subject: r.NATSSubject(), body: msg.Payload, typ: events.TypeUsageRecord, id: msg.UUID}.msg())
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, billing.Item{Record: r, StreamSeq: ack.Sequence})
	}
	return items
}

type receipts struct{ got []events.Delivery }

func (e *env) deliverer(t *testing.T, rc *receipts, hooks billing.Hooks) *billing.Deliverer {
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
		Receipt: func(_ context.Context, d events.Delivery) error { rc.got = append(rc.got, d); return nil },
		Hooks:   hooks, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDeliverOnceThenIdenticalDeliversNothing(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	var rc receipts
	d := e.deliverer(t, &rc, billing.Hooks{})
	items := e.publish(t, record(1, "1.0000000001", fetched), record(2, "2.5", fetched), record(3, "0.1234567891", fetched))
	out, err := d.Deliver(ctx, acct, period, cust, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Delivered) != 3 || out.DeliveryID == uuid.Nil {
		t.Fatalf("outcome %+v, want 3 delivered", out)
	}
	st := e.sim.State()
	if st.Deliveries != 1 || len(st.Records) != 3 {
		t.Fatalf("receiver %+v, want 1 delivery of 3 records", st)
	}
	if got := st.Totals[cust]["EUR"].String(); got != "3.6234567892" {
		t.Errorf("receiver total %s, want 3.6234567892 (full precision)", got)
	}
	if len(rc.got) != 1 || rc.got[0].DeliveryID != out.DeliveryID || rc.got[0].Totals["EUR"].String() != "3.6234567892" {
		t.Fatalf("receipts %+v", rc.got)
	}
	if _, err := os.Stat(filepath.Join(e.csvDir, out.DeliveryID.String()+".csv")); err != nil {
		t.Fatalf("csv file: %v", err)
	}

	out2, err := d.Deliver(ctx, acct, period, cust, items)
	if err != nil {
		t.Fatal(err)
	}
	if out2.DeliveryID != uuid.Nil || out2.Skipped != 3 {
		t.Fatalf("identical re-publish: %+v, want nothing delivered and 3 skipped", out2)
	}
	if st := e.sim.State(); st.Deliveries != 1 || st.Replays != 0 {
		t.Fatalf("receiver after identical re-publish %+v", st)
	}
	files, _ := filepath.Glob(filepath.Join(e.csvDir, "*.csv"))
	if len(files) != 1 || len(rc.got) != 1 {
		t.Fatalf("files %v receipts %d, want 1 and 1", files, len(rc.got))
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pending != nil || p.Receipt != nil || len(p.Records) != 3 || p.Records[items[0].Record.RecordID.String()].Sinks["http"] != out.DeliveryID {
		t.Fatalf("ledger %+v", p)
	}
}

func TestNewerRevisionSupersedesOlderIsIgnored(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	var rc receipts
	d := e.deliverer(t, &rc, billing.Hooks{})
	v1 := record(1, "10", fetched)
	if _, err := d.Deliver(ctx, acct, period, cust, e.publish(t, v1)); err != nil {
		t.Fatal(err)
	}
	v2 := record(1, "12.5", fetched.Add(time.Hour))
	out, err := d.Deliver(ctx, acct, period, cust, e.publish(t, v2))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Delivered) != 1 || out.Delivered[0].Replaces == nil || *out.Delivered[0].Replaces != v1.Revision || out.Delivered[0].RevisionSeq != 2 {
		t.Fatalf("supersede outcome %+v", out.Delivered)
	}
	st := e.sim.State()
	h := st.Records[v1.RecordID.String()]
	if h.Revision != v2.Revision || h.RevisionSeq != 2 || st.Superseded != 1 || st.Totals[cust]["EUR"].String() != "12.5" {
		t.Fatalf("receiver %+v", st)
	}
	// An older as-of (a late redelivery of a stale read) never replaces the newer revision.
	old := record(1, "9", fetched.Add(-time.Hour))
	out, err = d.Deliver(ctx, acct, period, cust, e.publish(t, old))
	if err != nil {
		t.Fatal(err)
	}
	if out.DeliveryID != uuid.Nil || out.Skipped != 1 {
		t.Fatalf("older revision: %+v", out)
	}
}

// A crash between a sink's acceptance and the ledger commit resends the same delivery (same
// id, same body): the receiver answers a replay and bills nothing twice.
func TestCrashBetweenSinkAcceptanceAndCommit(t *testing.T) {
	for _, point := range []string{"after-http-accepted", "after-all-sinks"} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t, billingsim.Options{})
			ctx := context.Background()
			crash := errors.New("simulated crash")
			var hooks billing.Hooks
			if point == "after-http-accepted" {
				hooks.AfterSinkAccepted = func(sink string, _ uuid.UUID) error {
					if sink == "http" {
						return crash
					}
					return nil
				}
			} else {
				hooks.AfterSinks = func(uuid.UUID) error { return crash }
			}
			var rc receipts
			items := e.publish(t, record(1, "1", fetched), record(2, "2", fetched), record(3, "3", fetched))
			if _, err := e.deliverer(t, &rc, hooks).Deliver(ctx, acct, period, cust, items); !errors.Is(err, crash) {
				t.Fatalf("err %v, want the crash", err)
			}
			p, _, _ := e.ledger.Load(ctx, acct, period, cust)
			if p.Pending == nil || len(p.Records) != 0 {
				t.Fatalf("after crash the ledger must hold the pending delivery only: %+v", p)
			}
			pendingID := p.Pending.ID
			// The restarted publisher gets only one of the messages back first; the pending
			// delivery is rebuilt from the stream and finished as it was.
			out, err := e.deliverer(t, &rc, billing.Hooks{}).Deliver(ctx, acct, period, cust, items[2:])
			if err != nil {
				t.Fatal(err)
			}
			if out.Recovered != pendingID || out.DeliveryID != uuid.Nil || out.Skipped != 1 {
				t.Fatalf("outcome %+v, want recovered %s and the item skipped", out, pendingID)
			}
			st := e.sim.State()
			if st.Deliveries != 1 || st.DuplicateRecords != 0 || st.Conflicts != 0 || len(st.Records) != 3 {
				t.Fatalf("receiver %+v", st)
			}
			if point == "after-http-accepted" && st.Replays != 1 {
				t.Errorf("replays %d, want 1 (the resent body matched)", st.Replays)
			}
			if len(rc.got) != 1 || rc.got[0].DeliveryID != pendingID {
				t.Fatalf("receipts %+v", rc.got)
			}
			out, err = e.deliverer(t, &rc, billing.Hooks{}).Deliver(ctx, acct, period, cust, items)
			if err != nil || out.Skipped != 3 {
				t.Fatalf("rest of the redelivery: %+v %v", out, err)
			}
		})
	}
}

func TestRejectedDeliveryIsDeadLettered(t *testing.T) {
	e := newEnv(t, billingsim.Options{Secret: []byte("another secret")}) // every signature fails: 401
	ctx := context.Background()
	var rc receipts
	items := e.publish(t, record(1, "1", fetched))
	out, err := e.deliverer(t, &rc, billing.Hooks{}).Deliver(ctx, acct, period, cust, items)
	if err != nil {
		t.Fatal(err)
	}
	if out.Rejected == nil || out.Rejected.Status != http.StatusUnauthorized || len(out.RejectedItems) != 1 {
		t.Fatalf("outcome %+v", out)
	}
	if strings.Contains(out.Rejected.Error(), string(secret)) {
		t.Fatal("rejection text leaks the secret")
	}
	p, _, _ := e.ledger.Load(ctx, acct, period, cust)
	if p.Pending != nil || len(p.Records) != 0 || p.Dead[items[0].Record.RecordID.String()].Billed.String() != "1" {
		t.Fatalf("ledger %+v", p)
	}
	if st := e.sim.State(); st.BadSignature != 1 {
		t.Fatalf("receiver %+v", st)
	}
}

func TestSignatureRejectsTamperedBody(t *testing.T) {
	body := []byte(`{"delivery_id":"x","records":[]}`)
	now := time.Unix(1_700_000_000, 0)
	ts := "1700000000"
	sig := billing.Sign(secret, ts, body)
	if err := billing.Verify(secret, ts, sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(body, []byte("[]"), []byte("[1]"), 1)
	for name, err := range map[string]error{
		"body":      billing.Verify(secret, ts, sig, tampered, now, time.Minute),
		"timestamp": billing.Verify(secret, "1700000001", sig, body, now, time.Minute),
		"secret":    billing.Verify([]byte("other"), ts, sig, body, now, time.Minute),
		"stale":     billing.Verify(secret, ts, sig, body, now.Add(time.Hour), time.Minute),
	} {
		if !errors.Is(err, billing.ErrBadSignature) {
			t.Errorf("%s: err %v, want ErrBadSignature", name, err)
		}
	}

	// Over HTTP: the receiver refuses a tampered body with 401 and stores nothing.
	sim, _ := billingsim.New(billingsim.Options{Secret: secret})
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close(context.Background())
	pl := billing.NewPayload(acct, cust, period, []events.UsageRecord{record(1, "1", fetched)})
	good, _ := pl.Body()
	ts = fmt.Sprint(time.Now().Unix())
	bad := bytes.Replace(good, []byte(`"BilledCost":"1"`), []byte(`"BilledCost":"0"`), 1)
	if bytes.Equal(bad, good) {
		t.Fatal("tampering did not change the body")
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/deliveries", bytes.NewReader(bad))
	req.Header.Set(billing.HeaderIdempotencyKey, pl.DeliveryID.String())
	req.Header.Set(billing.HeaderTimestamp, ts)
	req.Header.Set(billing.HeaderSignature, billing.Sign(secret, ts, good))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(sim.State().Records) != 0 {
		t.Fatalf("tampered body: HTTP %d, records %d", resp.StatusCode, len(sim.State().Records))
	}
}

// 409 is success only when the receiver confirms it holds our body.
func TestConflictCountsOnlyForSameBody(t *testing.T) {
	sim, _ := billingsim.New(billingsim.Options{Secret: secret})
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close(context.Background())
	sink, err := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: url + "/deliveries", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pl := billing.NewPayload(acct, cust, period, []events.UsageRecord{record(1, "1", fetched)})
	body, _ := pl.Body()
	if res, err := sink.Deliver(ctx, pl, body); err != nil || res.Result != events.SinkAccepted {
		t.Fatalf("first: %+v %v", res, err)
	}
	if res, err := sink.Deliver(ctx, pl, body); err != nil || res.Result != events.SinkAccepted {
		t.Fatalf("replay: %+v %v", res, err)
	}
	other := append(bytes.Clone(body[:len(body)-1]), []byte(`,"extra":1}`)...)
	_, err = sink.Deliver(ctx, pl, other)
	var rej *billing.RejectedError
	if !errors.As(err, &rej) || rej.Status != http.StatusConflict {
		t.Fatalf("same key, other body: err %v, want a 409 rejection", err)
	}
	if st := sim.State(); st.Deliveries != 1 || st.Replays != 1 || st.Conflicts != 1 {
		t.Fatalf("receiver %+v", st)
	}
}

func TestHTTPSinkRetriesInjectedFailures(t *testing.T) {
	sim, _ := billingsim.New(billingsim.Options{Secret: secret, FailRate: 0.5, Seed: 7})
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close(context.Background())
	sink, _ := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: url + "/deliveries", Secret: secret, Attempts: 20, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond})
	for i := range 20 {
		pl := billing.NewPayload(acct, cust, period, []events.UsageRecord{record(i, "1", fetched)})
		body, _ := pl.Body()
		if _, err := sink.Deliver(context.Background(), pl, body); err != nil {
			t.Fatal(err)
		}
	}
	st := sim.State()
	if st.Failed == 0 || st.Deliveries != 20 || len(st.Records) != 20 || st.DuplicateRecords != 0 {
		t.Fatalf("receiver %+v", st)
	}
}

func TestCSVSinkWritesFOCUSThenXColumnsAtomically(t *testing.T) {
	dir := t.TempDir()
	sink, err := billing.NewCSVSink(billing.CSVSinkOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r := record(1, "1.2345678901", fetched)
	pl := billing.NewPayload(acct, cust, period, []events.UsageRecord{r})
	res, err := sink.Deliver(context.Background(), pl, nil)
	if err != nil || res.Result != events.SinkAccepted || res.Ref != pl.DeliveryID.String()+".csv" {
		t.Fatalf("%+v %v", res, err)
	}
	f, err := os.Open(filepath.Join(dir, res.Ref))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows %d err %v", len(rows), err)
	}
	head, row := rows[0], rows[1]
	seenX := false
	col := map[string]string{}
	for i, h := range head {
		if strings.HasPrefix(h, "x_") {
			seenX = true
		} else if seenX {
			t.Fatalf("FOCUS column %s after x_ columns", h)
		}
		col[h] = row[i]
	}
	if head[0] != "BilledCost" || col["BilledCost"] != "1.2345678901" || col["x_RecordId"] != r.RecordID.String() || col["ChargeClass"] != "" {
		t.Fatalf("columns %v", col)
	}
	if res, err := sink.Deliver(context.Background(), pl, nil); err != nil || res.Result != events.SinkDuplicate {
		t.Fatalf("second write: %+v %v", res, err)
	}
	tmp, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(tmp) != 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
}

func TestPayloadBodyIsDeterministic(t *testing.T) {
	a := billing.NewPayload(acct, cust, period, []events.UsageRecord{record(1, "1", fetched), record(2, "2", fetched)})
	b := billing.NewPayload(acct, cust, period, []events.UsageRecord{record(2, "2", fetched), record(1, "1", fetched)})
	ab, _ := a.Body()
	bb, _ := b.Body()
	if !bytes.Equal(ab, bb) || a.DeliveryID != b.DeliveryID {
		t.Fatal("order of records changes the body")
	}
	var m map[string]any
	if err := json.Unmarshal(ab, &m); err != nil || m["totals"].(map[string]any)["EUR"] != "3" {
		t.Fatalf("body %s", ab)
	}
}

// A pending delivery is resent with the bytes it was first sent with, even when the redelivered
// batch carries the same record revision from a later read (a later x_FetchedAt and source page,
// stored under another stream sequence once the duplicate window has passed).
func TestPendingResentUnchangedWhenBatchHasSameRevisionFromLaterRead(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	crash := errors.New("simulated crash")
	hooks := billing.Hooks{AfterSinkAccepted: func(sink string, _ uuid.UUID) error {
		if sink == "http" {
			return crash
		}
		return nil
	}}
	var rc receipts
	items := e.publish(t, record(1, "1", fetched))
	if _, err := e.deliverer(t, &rc, hooks).Deliver(ctx, acct, period, cust, items); !errors.Is(err, crash) {
		t.Fatalf("err %v, want the crash", err)
	}
	later := record(1, "1", fetched.Add(24*time.Hour))
	later.SourcePageID = uuid.New()
	if later.Revision != items[0].Record.Revision {
		t.Fatal("test setup: same content must give the same revision")
	}
	msg, err := events.NewMessage(later.EventMeta("test"), later)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := e.js.PublishMsg(ctx, nats2Msg{subject: later.NATSSubject(), body: msg.Payload, typ: events.TypeUsageRecord, id: uuid.NewString()}.msg())
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.deliverer(t, &rc, billing.Hooks{}).Deliver(ctx, acct, period, cust, []billing.Item{{Record: later, StreamSeq: ack.Sequence}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Rejected != nil {
		t.Fatalf("the resent pending delivery was rejected: %v", out.Rejected)
	}
	if st := e.sim.State(); st.Conflicts != 0 || st.Replays != 1 || st.Deliveries != 1 {
		t.Fatalf("receiver %+v, want the first body replayed", st)
	}
}

// A pending delivery whose member's own event leaves USAGE before the delivery is finished (a
// crash, then an outage longer than streams.max_age) cannot be rebuilt: instead of failing on
// every later batch of the partition, the pending delivery is dropped, that member is recorded
// as dead-lettered, and the other members are chosen again and delivered.
func TestPendingWithExpiredMemberIsDropped(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	crash := errors.New("simulated crash")
	hooks := billing.Hooks{AfterSinks: func(uuid.UUID) error { return crash }}
	var rc receipts
	items := e.publish(t, record(1, "1", fetched), record(2, "2", fetched), record(3, "3", fetched))
	if _, err := e.deliverer(t, &rc, hooks).Deliver(ctx, acct, period, cust, items); !errors.Is(err, crash) {
		t.Fatalf("err %v, want the crash", err)
	}
	p, _, err := e.ledger.Load(ctx, acct, period, cust)
	if err != nil || p.Pending == nil {
		t.Fatalf("after the crash the ledger must hold the pending delivery: %+v %v", p, err)
	}
	pendingID := p.Pending.ID
	e.deleteUsage(t, items[0].StreamSeq)

	out, err := e.deliverer(t, &rc, billing.Hooks{}).Deliver(ctx, acct, period, cust, items[1:])
	if err != nil {
		t.Fatal(err)
	}
	if out.Recovered != uuid.Nil || len(out.Expired) != 1 || len(out.Delivered) != 2 {
		t.Fatalf("outcome %+v, want the pending dropped, one expired and two delivered", out)
	}
	ex := out.Expired[0]
	var pex *billing.PendingExpiredError
	if ex.Reason != billing.ReasonPendingExpired || ex.StreamSeq != items[0].StreamSeq || ex.Record.RecordID != items[0].Record.RecordID ||
		!errors.As(ex.Err, &pex) || pex.Delivery != pendingID || !errors.Is(ex.Err, jetstream.ErrMsgNotFound) {
		t.Fatalf("expired %+v (%v), want record 1's gone event in pending delivery %s", ex, ex.Err, pendingID)
	}
	p, _, err = e.ledger.Load(ctx, acct, period, cust)
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := items[0].Record, items[1].Record
	if p.Pending != nil || p.Dead[r1.RecordID.String()].Reason != billing.ReasonPendingExpired ||
		p.Dead[r1.RecordID.String()].Revision != r1.Revision || len(p.Records) != 2 || p.Records[r2.RecordID.String()].Revision != r2.Revision {
		t.Fatalf("ledger pending %+v dead %v held %+v", p.Pending, p.Dead, p.Records)
	}
	if st := e.sim.State(); st.Deliveries != 2 || len(st.Records) != 3 {
		t.Errorf("receiver %+v: the dropped body (accepted before the crash) and the new one", st)
	}
	out, err = e.deliverer(t, &rc, billing.Hooks{}).Deliver(ctx, acct, period, cust, items[1:])
	if err != nil || out.Skipped != 2 || len(out.Expired) != 0 {
		t.Fatalf("redelivery: %+v %v, want both skipped", out, err)
	}
}
