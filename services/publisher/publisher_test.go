package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/publisher"
)

var secret = []byte("s3cret")

const acct = "acct1"

func record(cust string, n int, billed string, fetchedAt time.Time) events.UsageRecord {
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	b := decimal.RequireFromString(billed)
	r := events.UsageRecord{
		BilledCost: b, EffectiveCost: b, ListCost: b, ContractedCost: b,
		BillingCurrency: "EUR", BillingAccountID: acct, BillingPeriodStart: start, BillingPeriodEnd: start.AddDate(0, 1, 0),
		ChargePeriodStart: start, ChargePeriodEnd: start.AddDate(0, 0, 1), ChargeCategory: "Usage",
		InvoiceIssuerName: "TD SYNNEX", ProviderName: "Microsoft", PublisherName: "Microsoft",
		ServiceName: "Virtual Machines", ServiceCategory: "Compute",
		RecordID:  events.RecordID(acct, start, events.ModeV3, "apb-1", cust, fmt.Sprint(n)),
		FetchedAt: fetchedAt, ColumnSetVersion: "apb-1", SourceMode: events.ModeV3, IonCustomerID: cust, CustomerName: cust,
	}
	r.Revision = r.ContentHash()
	return r
}

type harness struct {
	deps  service.Deps
	sim   *billingsim.Server
	sinks []billing.Sink
	pub   *bus.Publisher
	js    jetstream.JetStream
}

func newHarness(t *testing.T, failRate float64) *harness {
	t.Helper()
	_, nc := bustest.StartServer(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Publisher.Workers, cfg.Publisher.BatchSize, cfg.Publisher.BatchWait = 2, 25, 200*time.Millisecond
	logger := slog.New(slog.DiscardHandler)
	topo := service.Topology(cfg, logger)
	for i := range topo.Consumers {
		if topo.Consumers[i].Durable == publisher.Name {
			topo.Consumers[i].AckWait = 2 * time.Second // a "killed" publisher's batch comes back quickly
		}
	}
	if err := bus.Provision(context.Background(), js, topo); err != nil {
		t.Fatal(err)
	}
	sim, err := billingsim.New(billingsim.Options{Secret: secret, FailRate: failRate, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close(context.Background()) })
	hs, err := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: url + "/deliveries", Secret: secret, Timeout: 5 * time.Second,
		Attempts: 3, RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := billing.NewCSVSink(billing.CSVSinkOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{deps: service.Deps{Config: cfg, Logger: logger, Conn: nc, JS: js}, sim: sim, sinks: []billing.Sink{hs, cs}, pub: pub, js: js}
}

// publish sends records as the transformer would; fresh gives each event a new id, as an
// identical re-read published after the duplicate window would have.
func (h *harness) publish(t *testing.T, fresh bool, recs ...events.UsageRecord) {
	t.Helper()
	for _, r := range recs {
		m, err := events.NewMessage(r.EventMeta("test"), r)
		if err != nil {
			t.Fatal(err)
		}
		if fresh {
			m.UUID = uuid.NewString()
		}
		if err := h.pub.Publish(r.NATSSubject(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// start runs a publisher until the returned stop is called.
func (h *harness) start(t *testing.T, hooks billing.Hooks) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	return cancel, h.startCtx(t, ctx, hooks)
}

func (h *harness) startCtx(t *testing.T, ctx context.Context, hooks billing.Hooks) <-chan error {
	t.Helper()
	p, err := publisher.New(ctx, publisher.Options{Deps: h.deps, Sinks: h.sinks, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return done
}

// settled waits until the durable has nothing pending and the receiver holds want.
func (h *harness) settled(t *testing.T, timeout time.Duration, want map[string]events.UsageRecord) billingsim.State {
	t.Helper()
	var st billingsim.State
	bustest.Eventually(t, timeout, func() error {
		ci, err := h.js.Consumer(context.Background(), events.StreamUsage, publisher.Name)
		if err != nil {
			return err
		}
		info, err := ci.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		st = h.sim.State()
		if len(st.Records) != len(want) {
			return fmt.Errorf("receiver holds %d records, want %d", len(st.Records), len(want))
		}
		for id, r := range want {
			if got := st.Records[id]; got.Revision != r.Revision {
				return fmt.Errorf("record %s at revision %.8s, want %.8s", id, got.Revision, r.Revision)
			}
		}
		return nil
	})
	return st
}

func expectTotal(t *testing.T, st billingsim.State, want map[string]events.UsageRecord) {
	t.Helper()
	sums := map[string]decimal.Decimal{}
	for _, r := range want {
		sums[r.IonCustomerID] = sums[r.IonCustomerID].Add(r.BilledCost)
	}
	for c, s := range sums {
		if got := st.Totals[c]["EUR"]; !got.Equal(s) {
			t.Errorf("customer %s total %s, want %s", c, got, s)
		}
	}
	if st.DuplicateRecords != 0 || st.Conflicts != 0 || st.Stale != 0 {
		t.Errorf("receiver saw duplicates %d, conflicts %d, stale %d; want none", st.DuplicateRecords, st.Conflicts, st.Stale)
	}
}

func runExactlyOnce(t *testing.T, customers, perCustomer int) {
	h := newHarness(t, 0.3)
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	want := map[string]events.UsageRecord{}
	var v1 []events.UsageRecord
	for c := range customers {
		for n := range perCustomer {
			r := record(fmt.Sprintf("cust%d", c), n, fmt.Sprintf("%d.%010d", n, 1234567891+c), t0)
			v1 = append(v1, r)
			want[r.RecordID.String()] = r
		}
	}
	h.publish(t, false, v1...)

	// First run: "killed" right after the billing API accepted a delivery, before the ledger
	// marked it: the context is cancelled there and the batch stays un-acked.
	var crashed atomic.Bool
	var once sync.Once
	ctx1, cancel1 := context.WithCancel(context.Background())
	crash := errors.New("killed")
	done1 := h.startCtx(t, ctx1, billing.Hooks{AfterSinkAccepted: func(sink string, _ uuid.UUID) error {
		if sink != "http" {
			return nil
		}
		once.Do(func() { crashed.Store(true); cancel1() })
		return crash
	}})
	select {
	case <-done1:
	case <-time.After(30 * time.Second):
		t.Fatal("first publisher did not stop after the crash")
	}
	if !crashed.Load() {
		t.Fatal("crash hook never ran")
	}

	stop, done2 := h.start(t, billing.Hooks{})
	defer func() { stop(); <-done2 }()
	st := h.settled(t, 60*time.Second, want)
	expectTotal(t, st, want)
	if st.Failed == 0 {
		t.Error("the receiver injected no failures; the test proves nothing about retries")
	}
	deliveries := st.Deliveries

	// An identical re-publish delivers nothing.
	h.publish(t, true, v1...)
	st = h.settled(t, 30*time.Second, want)
	if st.Deliveries != deliveries {
		t.Fatalf("identical re-publish made %d new deliveries", st.Deliveries-deliveries)
	}

	// Newer revisions supersede; the rest stay as they are.
	var v2 []events.UsageRecord
	for i, r := range v1 {
		if i%3 == 0 {
			n := record(r.IonCustomerID, i%perCustomer, "99.0000000001", t0.Add(24*time.Hour))
			v2 = append(v2, n)
			want[n.RecordID.String()] = n
		}
	}
	h.publish(t, false, v2...)
	st = h.settled(t, 60*time.Second, want)
	expectTotal(t, st, want)
	if st.Superseded != len(v2) {
		t.Errorf("superseded %d, want %d", st.Superseded, len(v2))
	}
	t.Logf("receiver: %d deliveries, %d replays, %d injected failures, %d records", st.Deliveries, st.Replays, st.Failed, len(st.Records))
}

// A 30%-failing billing API and a publisher killed between the sink's acceptance and the
// ledger commit still end with every record delivered exactly once at its newest revision.
func TestExactlyOnceUnderFailuresAndCrash(t *testing.T) { runExactlyOnce(t, 3, 10) }

func TestIntegrationExactlyOnceUnderFailuresAndCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	runExactlyOnce(t, 20, 60)
}

// slowSink delays every delivery of the sink it wraps.
type slowSink struct {
	billing.Sink
	delay   time.Duration
	started chan struct{}
	once    sync.Once
	calls   atomic.Int32
}

func (s *slowSink) Deliver(ctx context.Context, p billing.Payload, body []byte) (events.SinkResult, error) {
	s.once.Do(func() { close(s.started) })
	s.calls.Add(1)
	select {
	case <-ctx.Done():
		return events.SinkResult{}, ctx.Err()
	case <-time.After(s.delay):
	}
	return s.Sink.Deliver(ctx, p, body)
}

// A sink slower than AckWait while an earlier group of a pulled batch is delivered must not let
// the later groups' messages expire: a second replica would post them again.
func TestBatchKeptAliveWhileEarlierGroupDelivers(t *testing.T) {
	h := newHarness(t, 0) // the durable's AckWait is 2 s
	slow := &slowSink{Sink: h.sinks[0], delay: 5 * time.Second, started: make(chan struct{})}
	h.sinks = []billing.Sink{slow, h.sinks[1]}
	h.deps.Config.Publisher.Workers = 1
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	want := map[string]events.UsageRecord{}
	var recs []events.UsageRecord
	for _, c := range []string{"custA", "custB"} {
		for n := range 2 {
			r := record(c, n, "1.5", t0)
			recs = append(recs, r)
			want[r.RecordID.String()] = r
		}
	}
	h.publish(t, false, recs...)

	ctx, cancel := context.WithCancel(context.Background())
	var dones []chan error
	defer func() {
		cancel()
		for _, d := range dones {
			<-d
		}
	}()
	run := func(noRec bool) {
		p, err := publisher.New(ctx, publisher.Options{Deps: h.deps, Sinks: h.sinks, NoReconciler: noRec})
		if err != nil {
			t.Fatal(err)
		}
		d := make(chan error, 1)
		dones = append(dones, d)
		go func() { d <- p.Run(ctx) }()
	}
	run(false) // replica 1 pulls both customers in one batch
	select {
	case <-slow.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery started")
	}
	run(true) // replica 2 is idle, ready to take whatever replica 1 lets expire
	st := h.settled(t, 30*time.Second, want)
	expectTotal(t, st, want)
	if n := slow.calls.Load(); n != 2 || st.Deliveries != 2 || st.Replays != 0 {
		t.Errorf("sink called %d times, receiver saw %d deliveries and %d replays; want 2, 2 and 0 (a batch expired while held)",
			n, st.Deliveries, st.Replays)
	}
}
