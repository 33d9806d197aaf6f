package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

// Summary is the last stdout line of demo and sync: one JSON object for scripts.
type Summary struct {
	Accounts    int               `json:"accounts"`
	Period      string            `json:"period"`
	Pages       int               `json:"pages"`
	Records     int               `json:"records"`      // records of the period after this run
	Delivered   int               `json:"delivered"`    // records newly delivered by this run
	Deliveries  int               `json:"deliveries"`   // deliveries made by this run
	Held        int               `json:"held"`         // lines held (out of period)
	DeadLetters int               `json:"dead_letters"` // lines dead-lettered
	Totals      map[string]string `json:"totals"`       // currency → BilledCost over the period
	Reconciled  bool              `json:"reconciled"`
	ElapsedMS   int64             `json:"elapsed_ms"`
}

// followResult is what following a sync to its reconciliation yields.
type followResult struct {
	Summary        Summary
	Completed      events.SyncCompleted
	Reconciliation events.Reconciliation
}

type followOptions struct {
	Account, Period, Mode, Reason, RequestedBy string
	// RequestIDFile, when set, remembers the request until it is reconciled, so a run that was
	// interrupted resumes the same sync instead of starting another.
	RequestIDFile string
	// RequestID, when set, is the request's id (a caller that remembers its requests elsewhere,
	// such as backfill); it wins over RequestIDFile.
	RequestID string
	Customers []string // only these Ion customers; empty = all
	DryRun    bool
	Progress  *progress
}

// followSync publishes a sync request (or resumes the remembered one) and follows it through
// fetch, transform, delivery and reconciliation.
func followSync(ctx context.Context, deps service.Deps, o followOptions) (followResult, error) {
	var res followResult
	reqID := o.RequestID
	if reqID == "" && o.RequestIDFile != "" {
		if b, err := os.ReadFile(o.RequestIDFile); err == nil {
			reqID = strings.TrimSpace(string(b))
		}
	}
	if reqID == "" {
		reqID = newRequestID()
		if o.RequestIDFile != "" {
			if err := os.WriteFile(o.RequestIDFile, []byte(reqID), 0o600); err != nil {
				return res, err
			}
		}
	}
	req := events.SyncRequest{RequestID: reqID, Account: o.Account, Period: o.Period, Mode: o.Mode,
		Reason: o.Reason, RequestedBy: o.RequestedBy, RequestedAt: time.Now().UTC(), Customers: o.Customers, DryRun: o.DryRun}
	syncID := req.SyncID()

	billingStart, err := lastSeq(ctx, deps.JS, events.StreamBilling)
	if err != nil {
		return res, err
	}
	usageStart, err := lastSeq(ctx, deps.JS, events.StreamUsage)
	if err != nil {
		return res, err
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: deps.JS, Logger: deps.Logger})
	if err != nil {
		return res, err
	}
	msg, err := events.NewMessage(req.EventMeta("ionconnector/cli"), req)
	if err != nil {
		return res, err
	}
	if err := pub.PublishCtx(ctx, req.NATSSubject(), msg); err != nil {
		return res, fmt.Errorf("publish sync request: %w", err)
	}

	w := &watcher{js: deps.JS, account: o.Account, syncID: syncID, billingStart: billingStart, usageStart: usageStart}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := w.poll(ctx); err != nil {
			return res, err
		}
		o.Progress.update(w)
		if w.recon != nil {
			o.Progress.done()
			break
		}
		select {
		case <-ctx.Done():
			o.Progress.done()
			return res, ctx.Err()
		case <-tick.C:
		}
	}
	if o.RequestIDFile != "" {
		_ = os.Remove(o.RequestIDFile)
	}
	r := *w.recon
	res.Reconciliation = r
	if w.completed != nil {
		res.Completed = *w.completed
	}
	res.Summary = Summary{
		Accounts: 1, Period: o.Period, Pages: len(res.Completed.Manifest.Pages), Records: r.Records,
		Delivered: w.delivered, Deliveries: w.deliveries, Held: r.HeldLines, DeadLetters: r.DeadLetters,
		Totals: map[string]string{}, Reconciled: r.Reconciled,
	}
	for cur, v := range r.Totals {
		res.Summary.Totals[cur] = v.String()
	}
	return res, nil
}

func lastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// watcher reads the streams a sync leaves its traces in.
type watcher struct {
	js                       jetstream.JetStream
	account                  string
	syncID                   uuid.UUID
	billingStart, usageStart uint64

	billingSeq, usageSeq uint64 // read up to
	syncSeq, reconSeq    uint64
	records              int // usage records published since start (by transformer page summaries)
	summaries            map[string]bool
	delivered            int
	deliveries           int
	completed            *events.SyncCompleted
	recon                *events.Reconciliation
	// consumers are kept across polls: one ordered consumer per subject for the whole follow.
	// Creating one per poll left hundreds of ephemerals waiting for their inactivity timeout and
	// hit the server's consumer limit on long runs.
	consumers map[string]jetstream.Consumer
}

// poll reads what is new since the last poll, without waiting.
func (w *watcher) poll(ctx context.Context) error {
	if w.summaries == nil {
		w.summaries = map[string]bool{}
		w.billingSeq, w.usageSeq = w.billingStart, w.usageStart
	}
	if err := w.read(ctx, events.StreamSync, events.SyncCompletedSubject(w.account), &w.syncSeq, func(m jetstream.Msg) {
		var c events.SyncCompleted
		if json.Unmarshal(m.Data(), &c) == nil && c.SyncID == w.syncID {
			w.completed = &c
		}
	}); err != nil {
		return err
	}
	// Only the page summaries: reading every record event would cost the process as much as the
	// publisher's own read of them. Records are counted per transformed page.
	if err := w.read(ctx, events.StreamUsage, events.PageSummarySubject(w.account), &w.usageSeq, func(m jetstream.Msg) {
		var s events.PageSummary
		if m.Headers().Get(events.HeaderType) == events.TypePageSummary && json.Unmarshal(m.Data(), &s) == nil &&
			s.Account == w.account && s.Stage == events.StageTransformer {
			if !w.summaries[s.PageID.String()] {
				w.records += s.Good.Count
			}
			w.summaries[s.PageID.String()] = true
		}
	}); err != nil {
		return err
	}
	// Reconciliations are few: the first poll reads them all, so one published before an
	// interruption is found; later polls go on from there (BILLING also holds every receipt).
	if err := w.read(ctx, events.StreamBilling, events.ReconciliationSubject(w.account), &w.reconSeq, func(m jetstream.Msg) {
		var r events.Reconciliation
		if json.Unmarshal(m.Data(), &r) == nil && r.SyncID == w.syncID {
			w.recon = &r
		}
	}); err != nil {
		return err
	}
	return w.read(ctx, events.StreamBilling, events.DeliverySubject(w.account), &w.billingSeq, func(m jetstream.Msg) {
		var d events.Delivery
		if json.Unmarshal(m.Data(), &d) == nil {
			w.deliveries++
			w.delivered += d.RecordCount
		}
	})
}

// read hands every message of subject after *seq to fn, advancing *seq, without waiting for more.
func (w *watcher) read(ctx context.Context, stream, subject string, seq *uint64, fn func(jetstream.Msg)) error {
	key := stream + " " + subject
	cons := w.consumers[key]
	if cons == nil {
		var err error
		cons, err = w.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: *seq + 1,
		})
		if err != nil {
			return err
		}
		if w.consumers == nil {
			w.consumers = map[string]jetstream.Consumer{}
		}
		w.consumers[key] = cons
	}
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			delete(w.consumers, key) // recreated from *seq on the next poll
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err == nil {
				*seq = md.Sequence.Stream
			}
			fn(m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			delete(w.consumers, key)
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
