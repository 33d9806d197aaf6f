package transformer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/service"
)

// backpressureRig is an embedded JetStream with the pipeline's topology and 20 raw pages of
// distinct rows (5 customers × 4 date ranges) waiting for the transformer, which runs with
// one worker and transformer.max_backlog = max.
type backpressureRig struct {
	js    jetstream.JetStream
	deps  service.Deps
	pages int
}

func newBackpressureRig(t *testing.T, max int) *backpressureRig {
	t.Helper()
	ctx := context.Background()
	const period = "2025-01"
	sb := startSandbox(t, ionsim.Options{Seed: 5, Customers: 5, Meters: 2, Periods: []string{period},
		Now: func() time.Time { return goldenNow }, Variant: ionsim.Variant{Daily: true}})
	_, nc := bustest.StartServer(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config.Default()
	cfg.Accounts = []config.Account{{ID: sb.account, Auth: config.AuthV3, Currency: "EUR"}}
	cfg.Transformer.Workers = 1
	cfg.Transformer.MaxBacklog = max
	if err := bus.Provision(ctx, js, service.Topology(cfg, logger)); err != nil {
		t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	r := &backpressureRig{js: js, deps: service.Deps{Config: cfg, Logger: logger, Conn: nc, JS: js}}
	for _, c := range sb.sim.GroundTruth(period).Customers {
		for w := range 4 {
			from := time.Date(2025, 1, 1+7*w, 0, 0, 0, 0, time.UTC)
			to := from.AddDate(0, 0, 7).Add(-time.Second)
			req := sb.v3Request(t, leafColumns, c.CustomerID, from, to)
			p := rawPage(sb.account, period, events.ModeV3, "POST /api/v3/accounts/"+sb.account+"/reports/"+ionsim.AzurePlanReportID+"/data",
				req, events.PageKey{Customer: c.CustomerID, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly)},
				sb.fetchV3(t, req, false), time.Date(2025, 2, 2, 0, 0, 0, 0, time.UTC))
			m, err := events.NewMessage(p.EventMeta("test/fetcher"), p)
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.PublishCtx(ctx, p.NATSSubject(), m); err != nil {
				t.Fatal(err)
			}
			r.pages++
		}
	}
	return r
}

// run starts the transformer until the test ends.
func (r *backpressureRig) run(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, r.deps) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
}

func (r *backpressureRig) info(t *testing.T, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := context.Background()
	cons, err := r.js.Consumer(ctx, stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// allTransformed: every raw page acked by the transformer.
func (r *backpressureRig) allTransformed(t *testing.T) error {
	i := r.info(t, events.StreamRaw, Name)
	if i.NumPending > 0 || i.NumAckPending > 0 || i.AckFloor.Stream < uint64(r.pages) {
		return fmt.Errorf("raw pages: pending %d, ack pending %d, ack floor %d of %d", i.NumPending, i.NumAckPending, i.AckFloor.Stream, r.pages)
	}
	return nil
}

// With no publisher consuming USAGE (none running, or one without sinks), the bound never
// stops the transformer: every page is transformed although the records far exceed it.
func TestBackpressureIdlePublisherDoesNotBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the transformer on 20 sandbox pages")
	}
	r := newBackpressureRig(t, 1)
	r.run(t)
	bustest.Eventually(t, time.Minute, func() error { return r.allTransformed(t) })
	if i := r.info(t, events.StreamUsage, publisherDurable); i.NumPending <= 1 {
		t.Fatalf("USAGE backlog %d: the test needs more than the bound", i.NumPending)
	}
}

// A live publisher that falls behind pauses the transformer between pages (no raw page held,
// so no AckWait runs), and its catching up resumes it until every page is transformed.
func TestBackpressurePausesAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the transformer on 20 sandbox pages")
	}
	const max = 50
	r := newBackpressureRig(t, max)
	backlogRefresh = time.Millisecond // pages of ~30 records take a few ms each
	t.Cleanup(func() { backlogRefresh = 0 })
	ctx := context.Background()
	usage, err := r.js.Consumer(ctx, events.StreamUsage, publisherDurable)
	if err != nil {
		t.Fatal(err)
	}
	// A publisher that is live (its pull waits, then it holds what it got) but makes no progress.
	held := make(chan jetstream.MessageBatch, 1)
	go func() {
		b, err := usage.Fetch(1, jetstream.FetchMaxWait(time.Minute))
		if err == nil {
			held <- b
		}
	}()
	bustest.Eventually(t, 10*time.Second, func() error {
		if n := r.info(t, events.StreamUsage, publisherDurable).NumWaiting; n == 0 {
			return errors.New("the publisher's pull is not waiting yet")
		}
		return nil
	})
	r.run(t)
	// Paused: pages left, none held, the publisher over the bound, and the transformer's
	// position unchanged over 20 polls in a row (between two pages of a running transformer
	// that state lasts a pull's round trip, not 20 polls).
	var floor uint64
	streak := 0
	bustest.Eventually(t, time.Minute, func() error {
		raw := r.info(t, events.StreamRaw, Name)
		u := r.info(t, events.StreamUsage, publisherDurable)
		if raw.NumAckPending != 0 || raw.NumPending == 0 || u.NumPending+uint64(u.NumAckPending) <= max || raw.AckFloor.Stream != floor {
			floor, streak = raw.AckFloor.Stream, 0
			return fmt.Errorf("not paused: raw pending %d, ack pending %d; usage backlog %d", raw.NumPending, raw.NumAckPending,
				u.NumPending+uint64(u.NumAckPending))
		}
		if streak++; streak < 20 {
			return errors.New("paused for a moment only")
		}
		return nil
	})
	// The publisher catches up: the transformer resumes and finishes.
	for m := range (<-held).Messages() {
		_ = m.Ack()
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for r.allTransformed(t) != nil || r.info(t, events.StreamUsage, publisherDurable).NumPending > 0 {
			b, err := usage.Fetch(100, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return
			}
			for m := range b.Messages() {
				_ = m.Ack()
			}
		}
	}()
	bustest.Eventually(t, time.Minute, func() error { return r.allTransformed(t) })
	<-drained
}
