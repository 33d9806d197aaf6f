package transformer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/events/schematest"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/pkg/summaries"
	"github.com/ionusage/connector/pkg/usage"
)

// TestIntegrationMonthReconcilesAndReplays runs the real service on an embedded JetStream over a
// generated month of sandbox pages (bodies inline and in the object store), then:
//   - every emitted record passes the JSON Schema and the FOCUS 1.2 table;
//   - per customer and currency, records + held + dead-lettered amounts equal the sandbox's
//     control query (customer_id, invoice_currency, seller_cost_invoice) exactly;
//   - replaying ION_RAW from the start through a fresh consumer adds nothing to USAGE.
func TestIntegrationMonthReconcilesAndReplays(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: month-scale integration")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const period = "2025-01"
	sb := startSandbox(t, ionsim.Options{Seed: 11, Customers: 5, Meters: 3, Periods: []string{period},
		Now: func() time.Time { return goldenNow }, Variant: ionsim.Variant{Daily: true, SubtotalRows: true, MoneyAsString: true}})

	_, nc := bustest.StartServer(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config.Default()
	cfg.Accounts = []config.Account{{ID: sb.account, Auth: config.AuthV3, Currency: "EUR"}}
	topo := service.Topology(cfg, logger)
	if err := bus.Provision(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	store, err := js.ObjectStore(ctx, bus.ObjectRawBodies)
	if err != nil {
		t.Fatal(err)
	}

	// One page per customer, as the fetcher splits; JSON and CSV alternate, and every other
	// body travels by reference.
	from, to := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 31, 23, 59, 59, 0, time.UTC)
	truth := sb.sim.GroundTruth(period)
	pages := 0
	for i, c := range truth.Customers {
		csv := i%2 == 1
		req := sb.v3Request(t, leafColumns, c.CustomerID, from, to)
		body := sb.fetchV3(t, req, csv)
		ep := "/data"
		if csv {
			ep = "/reportDataCsv"
		}
		p := rawPage(sb.account, period, events.ModeV3, "POST /api/v3/accounts/"+sb.account+"/reports/"+ionsim.AzurePlanReportID+ep,
			req, events.PageKey{Customer: c.CustomerID, From: "2025-01-01", To: "2025-01-31"}, body, time.Date(2025, 2, 2, 0, 0, 0, 0, time.UTC))
		if i%2 == 0 {
			sum := sha256.Sum256(body)
			name := hex.EncodeToString(sum[:])
			if _, err := store.PutBytes(ctx, name, body); err != nil {
				t.Fatal(err)
			}
			p.Body, p.BodyRef = "", &events.ObjectRef{Bucket: bus.ObjectRawBodies, Name: name, SHA256: name, Size: int64(len(body))}
		}
		m, err := events.NewMessage(p.EventMeta("test/fetcher"), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.PublishCtx(ctx, p.NATSSubject(), m); err != nil {
			t.Fatal(err)
		}
		pages++
	}

	deps := service.Deps{Config: cfg, Logger: logger, Conn: nc, JS: js}
	runOnce := func() {
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- Run(rctx, deps) }()
		bustest.Eventually(t, time.Minute, func() error {
			cons, err := js.Consumer(ctx, events.StreamRaw, Name)
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending > 0 || info.NumAckPending > 0 || info.AckFloor.Stream < uint64(pages) {
				return fmt.Errorf("pending %d, ack pending %d, ack floor %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
			}
			return nil
		})
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	start := time.Now()
	runOnce()
	t.Logf("first run: %d pages in %v", pages, time.Since(start))

	usageMsgs := readAll(ctx, t, js, events.StreamUsage)
	dlqMsgs := readAll(ctx, t, js, events.StreamDLQ)
	got := map[string]decimal.Decimal{} // customer|currency
	records, nSummaries := 0, 0
	ids := map[string]bool{}
	for _, m := range usageMsgs {
		typ := m.Headers().Get(events.HeaderType)
		schematest.Validate(t, typ, m.Data())
		switch typ {
		case events.TypeUsageRecord:
			records++
			ids[m.Headers().Get(events.HeaderID)] = true
			for _, e := range usage.CheckFOCUS(m.Data()) {
				t.Errorf("record %s: %v", m.Headers().Get(events.HeaderID), e)
			}
			var r events.UsageRecord
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Fatal(err)
			}
			if want := events.UsageRecordSubject(sb.account, r.IonCustomerID); m.Subject() != want {
				t.Errorf("record on %s, want %s", m.Subject(), want)
			}
			k := r.IonCustomerID + "|" + r.BillingCurrency
			got[k] = got[k].Add(r.BilledCost)
		case events.TypePageSummary:
			nSummaries++
		}
	}
	for _, m := range dlqMsgs {
		var dl events.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		var l usage.Line
		if err := json.Unmarshal(dl.Payload, &l); err != nil || dl.Line == 0 {
			t.Fatalf("dead letter is not a line: %s (%v)", dl.Error, err)
		}
		k := l.Get(usage.ColCustomerID) + "|" + strings.ToUpper(l.Get(usage.ColInvoiceCurrency))
		got[k] = got[k].Add(decimal.RequireFromString(l.Get(usage.ColSellerCostInvoice)))
	}
	if nSummaries != pages || records == 0 {
		t.Fatalf("%d summaries for %d pages, %d records", nSummaries, pages, records)
	}
	// Every summary is also indexed, where the reconciler reads it.
	idx, err := summaries.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	indexed := map[uuid.UUID]events.PageSummary{}
	if _, err := idx.Read(ctx, sb.account, period, 0, indexed); err != nil || len(indexed) != pages {
		t.Fatalf("%d summaries indexed for %d pages (%v)", len(indexed), pages, err)
	}

	// Ion's own control totals: grouped by customer and currency only, so Ion does the adding.
	control := map[string]decimal.Decimal{}
	req := sb.v3Request(t, []string{"customer_id", "invoice_currency", "seller_cost_invoice"}, "", from, to)
	cols, err := parseV3Request(req)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := decodeV3JSON(cols, sb.fetchV3(t, req, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range dec.Lines {
		control[l.Get("customer_id")+"|"+l.Get("invoice_currency")] = decimal.RequireFromString(l.Get("seller_cost_invoice"))
	}
	if len(control) != len(truth.Customers) {
		t.Fatalf("control query has %d groups, sandbox truth %d customers", len(control), len(truth.Customers))
	}
	for k, want := range control {
		if !got[k].Equal(want) {
			t.Errorf("%s: records+held+dead-lettered %s, control total %s", k, got[k], want)
		}
	}
	for k := range got {
		if _, ok := control[k]; !ok {
			t.Errorf("%s: amounts for a group the control query does not have", k)
		}
	}

	// Replay ION_RAW from the start through a fresh consumer: nothing new may reach USAGE.
	usageBefore := streamMsgs(ctx, t, js, events.StreamUsage)
	if err := js.DeleteConsumer(ctx, events.StreamRaw, Name); err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	runOnce()
	t.Logf("replay: %d pages in %v", pages, time.Since(start))
	if after := streamMsgs(ctx, t, js, events.StreamUsage); after != usageBefore {
		t.Errorf("replay grew USAGE from %d to %d messages", usageBefore, after)
	}
	for _, m := range readAll(ctx, t, js, events.StreamUsage) {
		if m.Headers().Get(events.HeaderType) == events.TypeUsageRecord && !ids[m.Headers().Get(events.HeaderID)] {
			t.Errorf("replay produced a new record event %s", m.Headers().Get(events.HeaderID))
		}
	}
	t.Logf("%d pages, %d records, %d dead letters, %d customers reconciled", pages, records, len(dlqMsgs), len(control))
}

func streamMsgs(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// readAll reads every message of a stream with an ordered consumer.
func readAll(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	n := streamMsgs(ctx, t, js, stream)
	if n == 0 {
		return nil
	}
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for uint64(len(out)) < n {
		batch, err := c.Fetch(int(n)-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if got == 0 {
			t.Fatalf("%s: read %d of %d messages", stream, len(out), n)
		}
	}
	return out
}
