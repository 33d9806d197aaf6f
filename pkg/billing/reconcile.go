package billing

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/summaries"
)

// DefaultPublisherDurable is the publisher's durable on USAGE, whose backlog Complete checks.
const DefaultPublisherDurable = "publisher"

// ReconcileOptions configures Complete and Reconcile.
type ReconcileOptions struct {
	JS     jetstream.JetStream
	Logger *slog.Logger
	// PublisherDurable is the durable whose backlog must be empty before a sync is complete;
	// default DefaultPublisherDurable (a host with private durables names its own).
	PublisherDurable string
	Now              func() time.Time // default time.Now
}

func (o *ReconcileOptions) defaults() error {
	if o.JS == nil {
		return errors.New("billing: reconcile: JS is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PublisherDurable == "" {
		o.PublisherDurable = DefaultPublisherDurable
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Complete reports whether everything a completed sync started has settled, so that Reconcile
// sees final numbers: every manifest page has a transformer summary, the publisher's durable has
// no pending or unacknowledged records, and no ledger partition of the period has a pending
// delivery. When it is not complete, missing says what is still outstanding. A failed sync is
// complete at once: it is never reconciled, so there is nothing to wait for.
func Complete(ctx context.Context, o ReconcileOptions, c events.SyncCompleted) (bool, string, error) {
	cp := NewCompletion(o, c)
	cp.lacking = 2 // one look: pages the index lacks are looked for in USAGE at once
	return cp.Check(ctx)
}

// Completion is Complete for a caller that polls: each Check reads only the page summaries
// indexed since the previous one (package summaries), never the USAGE stream they are published
// in unless the index lacks a page (see pageSummaries).
type Completion struct {
	o    ReconcileOptions
	c    events.SyncCompleted
	idx  *summaries.Index
	rev  uint64 // summaries index revision read up to
	seq  uint64 // USAGE stream sequence read up to, once the index lacked pages
	sums map[uuid.UUID]events.PageSummary
	// lacking counts the checks in a row that found pages missing from the index with the
	// publisher idle: at 2 (not 1, so a summary published but not yet indexed is not taken
	// for a missing one) the pages are looked for in USAGE.
	lacking int
}

// NewCompletion starts following the completion of c.
func NewCompletion(o ReconcileOptions, c events.SyncCompleted) *Completion {
	return &Completion{o: o, c: c, sums: map[uuid.UUID]events.PageSummary{}}
}

// Check is Complete, reading summaries incrementally.
func (cp *Completion) Check(ctx context.Context) (bool, string, error) {
	o, c := cp.o, cp.c
	if err := o.defaults(); err != nil {
		return false, "", err
	}
	if c.Status != events.SyncSucceeded {
		return true, "", nil
	}
	if cp.idx == nil {
		idx, err := summaries.Open(ctx, o.JS)
		if err != nil {
			return false, "", err
		}
		cp.idx = idx
	}
	// What was read stays read, even when a read stops early (the caller's deadline): the
	// next Check continues from there.
	rev, err := cp.idx.Read(ctx, c.Account, c.Period, cp.rev, cp.sums)
	cp.rev = rev
	if err != nil {
		return false, "", err
	}
	n := missingPages(c.Manifest.Pages, cp.sums)
	if n > 0 && cp.lacking >= 2 {
		seq, err := summariesFromStream(ctx, o.JS, c.Account, c.Period, cp.seq, c.Manifest.Pages, cp.sums)
		cp.seq = seq
		if err != nil {
			return false, "", err
		}
		n = missingPages(c.Manifest.Pages, cp.sums)
	}
	var missing []string
	if n > 0 {
		missing = append(missing, fmt.Sprintf("%d of %d pages have no transformer summary", n, len(c.Manifest.Pages)))
	}
	cons, err := o.JS.Consumer(ctx, events.StreamUsage, o.PublisherDurable)
	if err != nil {
		return false, "", fmt.Errorf("billing: publisher durable %s: %w", o.PublisherDurable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, "", fmt.Errorf("billing: publisher durable %s: %w", o.PublisherDurable, err)
	}
	if n > 0 && info.NumPending == 0 && info.NumAckPending == 0 {
		cp.lacking++
	} else {
		cp.lacking = 0
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		// Not complete whatever the ledger says: spare reading every partition of the period.
		missing = append(missing, fmt.Sprintf("publisher has %d records waiting and %d in flight", info.NumPending, info.NumAckPending))
		return false, strings.Join(missing, "; "), nil
	}
	if len(missing) > 0 {
		// Pages still to come: the ledger cannot be final yet (the publisher's backlog empties
		// now and then while the transformer is behind), so do not read it on this poll.
		return false, strings.Join(missing, "; "), nil
	}
	ledger, err := OpenLedger(ctx, o.JS)
	if err != nil {
		return false, "", err
	}
	parts, err := ledger.Sums(ctx, c.Account, c.Period)
	if err != nil {
		return false, "", err
	}
	var pending []string
	for _, p := range parts {
		if p.Sum.Pending {
			pending = append(pending, p.Customer)
		}
	}
	if len(pending) > 0 {
		missing = append(missing, "pending delivery for customers "+strings.Join(pending, ", "))
	}
	return len(missing) == 0, strings.Join(missing, "; "), nil
}

func missingPages(pages []uuid.UUID, sums map[uuid.UUID]events.PageSummary) int {
	n := 0
	for _, id := range pages {
		if _, ok := sums[id]; !ok {
			n++
		}
	}
	return n
}

// TransformerSummaries returns the latest transformer summary of each of pages (an account's and
// period's) that has one: from the index (package summaries), and from the USAGE stream for
// pages the index lacks.
func TransformerSummaries(ctx context.Context, js jetstream.JetStream, account, period string, pages []uuid.UUID) (map[uuid.UUID]events.PageSummary, error) {
	out := map[uuid.UUID]events.PageSummary{}
	idx, err := summaries.Open(ctx, js)
	if err != nil {
		return nil, err
	}
	if _, err := idx.Read(ctx, account, period, 0, out); err != nil {
		return nil, err
	}
	if missingPages(pages, out) > 0 {
		if _, err := summariesFromStream(ctx, js, account, period, 0, pages, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// summariesFromStream adds to out the latest summary in USAGE after stream sequence from of
// each of pages that out lacks, and returns the sequence read up to, also with an error. It
// walks every block of the stream after from: the index (package summaries) is the way in;
// this is for summaries published before it existed, or by a transformer that stopped between
// the event and the index.
func summariesFromStream(ctx context.Context, js jetstream.JetStream, account, period string, from uint64, pages []uuid.UUID, out map[uuid.UUID]events.PageSummary) (uint64, error) {
	want := map[uuid.UUID]bool{}
	for _, id := range pages {
		if _, ok := out[id]; !ok {
			want[id] = true
		}
	}
	found := map[uuid.UUID]events.PageSummary{}
	seq, err := readTransformerSummaries(ctx, js, account, period, from, found)
	for id, s := range found {
		if want[id] {
			out[id] = s
		}
	}
	return seq, err
}

// readTransformerSummaries adds to out the summaries in USAGE after stream sequence from and
// returns the sequence read up to, also with an error: out holds everything up to it.
func readTransformerSummaries(ctx context.Context, js jetstream.JetStream, account, period string, from uint64, out map[uuid.UUID]events.PageSummary) (uint64, error) {
	cons, err := readConsumerFrom(ctx, js, events.StreamUsage, events.PageSummarySubject(account), from+1)
	if err != nil {
		return from, fmt.Errorf("billing: read summaries of %s: %w", account, err)
	}
	defer cons.Delete()
	seq, err := cons.Each(ctx, func(m jetstream.Msg) error {
		if m.Headers().Get(events.HeaderType) != events.TypePageSummary {
			return nil
		}
		var s events.PageSummary
		if err := json.Unmarshal(m.Data(), &s); err != nil {
			return nil // the transformer only publishes valid summaries; never trust a stray body
		}
		if s.Stage == events.StageTransformer && s.Period == period {
			out[s.PageID] = s // stream order: a later summary of the same page wins
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("billing: read summaries of %s: %w", account, err)
	}
	return max(seq, from), err
}

// Reader is a short-lived consumer that reads a stream's messages of one filter from the
// start. Unlike an ordered consumer it is deleted as soon as the caller is done (Delete), so
// frequent reads (the reconciler polls) leave no consumers behind; the server drops it after
// a minute of inactivity if the caller dies first.
type Reader struct {
	jetstream.Consumer
	Info *jetstream.ConsumerInfo // at creation: NumPending is how many messages match
	del  func()
}

// Delete removes the consumer from the server.
func (r *Reader) Delete() { r.del() }

// readMaxWait bounds one fetch of Each.
const readMaxWait = 2 * time.Second

// Each hands fn every message on the Reader's filter, in stream order, until it has read all
// there are (those published meanwhile included), and returns the stream sequence of the last
// one (0 for none). It stops at fn's first error or when ctx ends; what fn saw stays seen.
//
// An empty fetch does not mean the end: with a sparse filter over a long stream (page summaries
// among millions of records) the server walks many blocks before the next match, and a no-wait
// fetch then comes back empty long before the end. Only the consumer's own count of what is left
// ends the read.
func (r *Reader) Each(ctx context.Context, fn func(jetstream.Msg) error) (uint64, error) {
	var last uint64
	left := r.Info.NumPending
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return last, err
		}
		// Ask for no more than what is left: a fetch of a fuller batch waits out its MaxWait.
		batch, err := r.Fetch(int(min(left, 1000)), jetstream.FetchMaxWait(readMaxWait))
		if err != nil {
			return last, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if md, err := m.Metadata(); err == nil {
				last, left = md.Sequence.Stream, md.NumPending
			}
			if err := fn(m); err != nil {
				return last, err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return last, err
		}
		if n == 0 {
			info, err := r.Consumer.Info(ctx)
			if err != nil {
				return last, err
			}
			left = info.NumPending // 0: purged meanwhile
		}
	}
	return last, nil
}

// ReadConsumer creates a Reader of stream's messages on filter.
func ReadConsumer(ctx context.Context, js jetstream.JetStream, stream, filter string) (*Reader, error) {
	return readConsumerFrom(ctx, js, stream, filter, 0)
}

// readConsumerFrom is ReadConsumer from stream sequence start (0 or 1: the beginning).
func readConsumerFrom(ctx context.Context, js jetstream.JetStream, stream, filter string, start uint64) (*Reader, error) {
	policy := jetstream.DeliverAllPolicy
	if start <= 1 {
		start = 0
	} else {
		policy = jetstream.DeliverByStartSequencePolicy
	}
	c, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubjects:    []string{filter},
		DeliverPolicy:     policy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, err
	}
	info := c.CachedInfo()
	return &Reader{Consumer: c, Info: info, del: func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, stream, info.Name)
	}}, nil
}

type rowKey struct{ customer, currency string }

type rowSums struct {
	control, delivered, held, dead decimal.Decimal
	hasControl                     bool
}

// maxReasonRows bounds how many mismatching rows the reason names.
const maxReasonRows = 5

// Reconcile compares a completed sync's control totals with what the pipeline did with its
// data, per customer and currency (DESIGN.md "Reconciliation"):
//
//   - control: the sync's ControlTotals (Ion's own sums);
//   - delivered: the current delivered revisions in the ledger partitions of the period;
//   - held and dead-lettered: the transformer summaries of the manifest's pages (held rows,
//     dead-lettered lines), attributed by the summary's customer; plus revisions a sink
//     rejected (the ledger's Dead entries), which replace a stale delivered revision of the
//     same record in the comparison.
//
// A row matches when control equals delivered + held + dead-lettered exactly. Reconciled means
// the sync succeeded and every row matches; a failed sync is never reconciled. Call Complete
// first: before it is true the numbers are not final.
func Reconcile(ctx context.Context, o ReconcileOptions, c events.SyncCompleted) (events.Reconciliation, error) {
	if err := o.defaults(); err != nil {
		return events.Reconciliation{}, err
	}
	var sums map[uuid.UUID]events.PageSummary
	if c.Status == events.SyncSucceeded {
		var err error
		if sums, err = TransformerSummaries(ctx, o.JS, c.Account, c.Period, c.Manifest.Pages); err != nil {
			return events.Reconciliation{}, err
		}
	}
	return reconcile(ctx, o, c, sums)
}

// Reconcile is Reconcile with the page summaries Check has read: at millions of records,
// reading them again means walking every block of the USAGE stream once more.
func (cp *Completion) Reconcile(ctx context.Context) (events.Reconciliation, error) {
	if err := cp.o.defaults(); err != nil {
		return events.Reconciliation{}, err
	}
	return reconcile(ctx, cp.o, cp.c, cp.sums)
}

// Summaries returns the latest transformer summary of each page read so far: every page of
// the manifest once Check has reported the sync complete. The caller must not change them.
func (cp *Completion) Summaries() map[uuid.UUID]events.PageSummary { return cp.sums }

// reconcile is Reconcile with the sync's page summaries (nil for a sync that did not succeed).
func reconcile(ctx context.Context, o ReconcileOptions, c events.SyncCompleted, sums map[uuid.UUID]events.PageSummary) (events.Reconciliation, error) {
	r := events.Reconciliation{
		SyncID: c.SyncID, RequestID: c.RequestID, Account: c.Account, Period: c.Period, Mode: c.Mode,
		SyncStatus: c.Status, Totals: map[string]decimal.Decimal{}, ComputedAt: o.Now().UTC(),
	}
	rows := map[rowKey]*rowSums{}
	row := func(customer, currency string) *rowSums {
		k := rowKey{customer, currency}
		if rows[k] == nil {
			rows[k] = &rowSums{}
		}
		return rows[k]
	}
	customers := map[string]bool{}
	for _, id := range c.Manifest.Customers {
		customers[id] = true
	}
	for _, ct := range c.ControlTotals {
		customers[ct.Customer] = true
		s := row(ct.Customer, ct.Currency)
		s.control = s.control.Add(ct.BilledCost)
		s.hasControl = true
	}

	ledger, err := OpenLedger(ctx, o.JS)
	if err != nil {
		return r, err
	}
	// Per-partition sums kept by the ledger (Sum): a period of a million records is some 650
	// partitions of ~1,500 records, too many to decode inside the reconciler's budget.
	parts, err := ledger.Sums(ctx, c.Account, c.Period)
	if err != nil {
		return r, err
	}
	for _, p := range parts {
		inSync := customers[p.Customer]
		r.Records += p.Sum.Records
		for cur, v := range p.Sum.Billed {
			r.Totals[cur] = r.Totals[cur].Add(v)
			if inSync {
				s := row(p.Customer, cur)
				s.delivered = s.delivered.Add(v)
			}
		}
		r.DeadLetters += p.Sum.Dead
		for cur, v := range p.Sum.DeadBilled {
			if inSync {
				s := row(p.Customer, cur)
				s.dead = s.dead.Add(v)
			}
		}
	}
	// Records the publisher holds until an operator approves the period: held, not missing.
	aw, err := heldForApproval(ctx, o.JS, c.Account, c.Period)
	if err != nil {
		return r, err
	}
	r.HeldLines += aw.count
	for k, v := range aw.held {
		if customers[k.customer] {
			row(k.customer, k.currency).held = row(k.customer, k.currency).held.Add(v)
		}
	}
	for k, v := range aw.superseded {
		if customers[k.customer] {
			row(k.customer, k.currency).delivered = row(k.customer, k.currency).delivered.Sub(v)
		}
	}

	if c.Status == events.SyncSucceeded {
		for _, id := range c.Manifest.Pages {
			s, ok := sums[id]
			if !ok {
				continue // Complete guards this; a missing page shows up as a difference
			}
			r.HeldLines += s.Held.Count
			r.DeadLetters += s.Bad.Count
			for cur, v := range s.Held.BilledCost {
				row(s.Customer, cur).held = row(s.Customer, cur).held.Add(v)
			}
			for cur, v := range s.Bad.BilledCost {
				row(s.Customer, cur).dead = row(s.Customer, cur).dead.Add(v)
			}
		}
	}

	keys := make([]rowKey, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b rowKey) int {
		return cmp.Or(cmp.Compare(a.customer, b.customer), cmp.Compare(a.currency, b.currency))
	})
	var differ []string
	for _, k := range keys {
		s := rows[k]
		sum := s.delivered.Add(s.held).Add(s.dead)
		row := events.ReconciliationRow{
			Customer: k.customer, Currency: k.currency, Control: s.control, Delivered: s.delivered,
			Held: s.held, DeadLettered: s.dead, Difference: s.control.Sub(sum), Match: s.control.Equal(sum),
		}
		r.Rows = append(r.Rows, row)
		if !row.Match {
			name := k.customer
			if name == "" {
				name = "(pages spanning customers)"
			}
			differ = append(differ, fmt.Sprintf("%s %s (difference %s)", name, k.currency, row.Difference.String()))
		}
	}

	switch {
	case c.Status != events.SyncSucceeded:
		r.Reason = "sync " + c.Status
		if c.Reason != "" {
			r.Reason += ": " + c.Reason
		}
	case len(differ) > 0:
		r.Reason = fmt.Sprintf("%d of %d rows differ: %s", len(differ), len(r.Rows), strings.Join(differ[:min(len(differ), maxReasonRows)], ", "))
		if len(differ) > maxReasonRows {
			r.Reason += fmt.Sprintf(", and %d more", len(differ)-maxReasonRows)
		}
	case aw.count > 0:
		r.Reason = aw.reason(c.Account, c.Period) // balanced, but not all of it billed
	default:
		r.Reconciled = true
	}
	o.Logger.Info("sync reconciled", "account", c.Account, "period", c.Period, "sync", c.SyncID,
		"reconciled", r.Reconciled, "rows", len(r.Rows), "reason", r.Reason)
	return r, nil
}

// ErrNoReconciliation means no reconciliation is stored for the account and period yet.
var ErrNoReconciliation = errors.New("billing: no reconciliation stored")

// ReconciliationKey is the key of the latest reconciliation of an account and period in the
// "periods" KV bucket: "recon.<account>.<period>".
func ReconciliationKey(account, period string) string {
	return "recon." + bus.KVToken(account) + "." + period
}

// StoreReconciliation keeps r as the latest reconciliation of its account and period
// (compact JSON in the "periods" bucket), for the CLI and the demo.
func StoreReconciliation(ctx context.Context, js jetstream.JetStream, r events.Reconciliation) error {
	kv, err := js.KeyValue(ctx, bus.BucketPeriods)
	if err != nil {
		return fmt.Errorf("billing: open %s bucket: %w", bus.BucketPeriods, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("billing: encode reconciliation: %w", err)
	}
	if _, err := kv.Put(ctx, ReconciliationKey(r.Account, r.Period), b); err != nil {
		return fmt.Errorf("billing: store reconciliation: %w", err)
	}
	return nil
}

// LoadReconciliation returns the latest stored reconciliation of an account and period, or an
// error wrapping ErrNoReconciliation.
func LoadReconciliation(ctx context.Context, js jetstream.JetStream, account, period string) (events.Reconciliation, error) {
	var r events.Reconciliation
	kv, err := js.KeyValue(ctx, bus.BucketPeriods)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return r, fmt.Errorf("%w for %s %s (no %s bucket)", ErrNoReconciliation, account, period, bus.BucketPeriods)
	}
	if err != nil {
		return r, fmt.Errorf("billing: open %s bucket: %w", bus.BucketPeriods, err)
	}
	e, err := kv.Get(ctx, ReconciliationKey(account, period))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, fmt.Errorf("%w for account %s period %s", ErrNoReconciliation, account, period)
	}
	if err != nil {
		return r, fmt.Errorf("billing: read reconciliation: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, fmt.Errorf("billing: stored reconciliation %s: %w", e.Key(), err)
	}
	return r, nil
}

// Snapshot returns the current delivered revision of every record of an account and period,
// read back from the USAGE stream by the sequence the ledger keeps, sorted by customer then
// record id: what finance imports. x_RevisionSeq is the ledger's.
func Snapshot(ctx context.Context, js jetstream.JetStream, account, period string) ([]events.UsageRecord, error) {
	ledger, err := OpenLedger(ctx, js)
	if err != nil {
		return nil, err
	}
	parts, err := ledger.Partitions(ctx, account, period)
	if err != nil {
		return nil, err
	}
	load := StreamLoader(js)
	var out []events.UsageRecord
	for _, p := range parts { // sorted by customer
		ids := make([]string, 0, len(p.Records))
		for id := range p.Records {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			h := p.Records[id]
			rec, err := load(ctx, h.StreamSeq)
			if err != nil {
				return nil, fmt.Errorf("billing: snapshot record %s: %w", id, err)
			}
			if rec.RecordID.String() != id || rec.Revision != h.Revision {
				return nil, fmt.Errorf("billing: snapshot record %s: stream seq %d holds %s/%.12s, want revision %.12s",
					id, h.StreamSeq, rec.RecordID, rec.Revision, h.Revision)
			}
			rec.RevisionSeq = h.Seq
			out = append(out, rec)
		}
	}
	return out, nil
}
