// Package transformer turns raw Ion pages into normalized usage records (DESIGN.md "Normalized record").
package transformer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/pkg/summaries"
	"github.com/ionusage/connector/pkg/usage"
)

// Name is the stage name: router, durable consumer and dead-letter subject token.
const Name = "transformer"

// Source is the ce-source of every event the transformer emits.
const Source = "ionconnector/" + Name

// Run consumes ion.raw.v1.page.> until ctx ends.
func Run(ctx context.Context, deps service.Deps) error {
	st, err := service.NewStage(deps, Name)
	if err != nil {
		return err
	}
	t, err := New(Options{JS: deps.JS, Publisher: st.Publisher, Logger: deps.Logger, Accounts: deps.Config.Accounts})
	if err != nil {
		return err
	}
	backlog, err := publisherBacklog(deps)
	if err != nil {
		return err
	}
	var gate func(context.Context) error
	if backlog != nil {
		gate = backlog.Wait
	}
	if err := st.ConsumeGated(events.StreamRaw, Name, "ion.raw.v1.page.>", gate, t.Handle); err != nil {
		return err
	}
	return st.Run(ctx)
}

// publisherBacklog is the transformer's backpressure: take no new raw page while more than
// transformer.max_backlog records wait for the publisher, so the publisher reads records from
// the server's cache rather than old compressed blocks (bus.Backlog; nil when off).
func publisherBacklog(deps service.Deps) (*bus.Backlog, error) {
	n := deps.Config.Transformer.MaxBacklog
	if n == config.BacklogOff {
		return nil, nil
	}
	b, err := bus.NewBacklog(bus.BacklogOptions{
		JS: deps.JS, Stream: events.StreamUsage, Durable: publisherDurable, Max: n, Refresh: backlogRefresh, Logger: deps.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("transformer: %w", err)
	}
	return b, nil
}

// backlogRefresh is how old the publisher's backlog may be (0: bus.DefaultBacklogRefresh).
// Tests shorten it: their small pages all pass within one default refresh.
var backlogRefresh time.Duration

// publisherDurable is the publisher's durable on USAGE (bus.DefaultConsumers).
const publisherDurable = "publisher"

// Publisher is what the transformer publishes with (*bus.Publisher).
type Publisher interface {
	PublishCtx(ctx context.Context, topic string, msgs ...*message.Message) error
}

// Options configure a Transformer.
type Options struct {
	JS        jetstream.JetStream // object store access for bodies stored by reference
	Publisher Publisher
	Logger    *slog.Logger
	// Accounts give each account's display name and currency (used when a page's request
	// names no currency).
	Accounts []config.Account
	// Charges maps Ion charge types to ChargeCategory; zero value means usage.DefaultChargeTable.
	Charges *usage.ChargeTable
	Now     func() time.Time // default time.Now
}

// Transformer is the stage's handler.
type Transformer struct {
	opts     Options
	charges  usage.ChargeTable
	accounts map[string]config.Account

	mu  sync.Mutex
	idx *summaries.Index // opened on first use
}

// New returns a Transformer.
func New(opts Options) (*Transformer, error) {
	var errs []error
	if opts.JS == nil {
		errs = append(errs, errors.New("JS is required"))
	}
	if opts.Publisher == nil {
		errs = append(errs, errors.New("Publisher is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("transformer: options: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &Transformer{opts: opts, charges: usage.DefaultChargeTable(), accounts: map[string]config.Account{}}
	if opts.Charges != nil {
		t.charges = *opts.Charges
	}
	for _, a := range opts.Accounts {
		t.accounts[a.ID] = a
	}
	return t, nil
}

// Handle transforms one raw page event. Records, line dead letters and held rows are
// published first and the page summary last, so a summary means the page is fully out. Every
// id is deterministic: a redelivery or replay republishes the same events, which JetStream's
// duplicate window and then the ledger ignore. A page that can never be parsed returns an
// error wrapping events.ErrUndecodable and is dead-lettered whole by the router; publish
// failures are returned as they are, so the page is retried.
func (t *Transformer) Handle(msg *message.Message) error {
	ctx := msg.Context()
	var page events.RawPage
	if err := events.Decode(msg, events.TypeRawPage, &page); err != nil {
		return err
	}
	if err := page.Validate(); err != nil {
		return fmt.Errorf("%w: %v", events.ErrUndecodable, err)
	}
	log := t.opts.Logger.With("account", page.Account, "period", page.Period, "page_id", page.PageID)
	body, err := t.readBody(ctx, page)
	if err != nil {
		return err
	}
	acct := t.accounts[page.Account]
	seq, _ := strconv.ParseUint(msg.Metadata.Get(bus.MetaStreamSeq), 10, 64)
	attempts, _ := strconv.Atoi(msg.Metadata.Get(bus.MetaNumDelivered))
	in := pageInput{
		Page: page, Body: body, Charges: t.charges, Currency: acct.Currency, AccountName: acct.Name,
		Source: Source, Now: t.opts.Now(),
		Origin: origin{Subject: msg.Metadata.Get(bus.MetaSubject), Stream: msg.Metadata.Get(bus.MetaStream), Seq: seq, Attempt: attempts},
	}
	out, err := transformPage(in)
	if err != nil {
		if errors.Is(err, events.ErrUndecodable) {
			// The page still ends with a summary, counting it bad, so the sync's manifest sees
			// it; the router then dead-letters the page whole.
			if perr := t.publishSummary(ctx, undecodableSummary(in)); perr != nil {
				return errors.Join(err, perr)
			}
		}
		return err
	}
	if out.Decoded.Truncated {
		log.Warn("raw page is truncated: Ion had more rows than it returned", "rows", len(out.Decoded.Lines))
	}
	for _, b := range out.Messages {
		if err := t.opts.Publisher.PublishCtx(ctx, b.Subject, b.Msgs...); err != nil {
			return fmt.Errorf("%w: %w", errPublish, err)
		}
	}
	if err := t.publishSummaryMsg(ctx, out.Summary, out.SummaryM); err != nil {
		return err
	}
	log.Debug("page transformed", "lines", len(out.Decoded.Lines), "records", len(out.Records),
		"held", len(out.Held), "bad", len(out.Bad), "subtotals_skipped", out.Decoded.Subtotals)
	return nil
}

func undecodableSummary(in pageInput) events.PageSummary {
	s := events.PageSummary{
		Stage: events.StageTransformer, PageID: in.Page.PageID, SyncID: in.Page.SyncID,
		Account: in.Page.Account, Period: in.Page.Period, Customer: in.Page.PageKey.Customer, ProcessedAt: in.Now.UTC(),
	}
	s.Bad.Count = max(in.Page.RowCount, 1)
	return s
}

func (t *Transformer) publishSummary(ctx context.Context, s events.PageSummary) error {
	m, err := events.NewMessage(s.EventMeta(Source), s)
	if err != nil {
		return err
	}
	return t.publishSummaryMsg(ctx, s, m)
}

// publishSummaryMsg publishes a page's summary event, then indexes it (package summaries): an
// error from either retries the page, which republishes the same event (deduplicated).
func (t *Transformer) publishSummaryMsg(ctx context.Context, s events.PageSummary, m *message.Message) error {
	if err := t.opts.Publisher.PublishCtx(ctx, s.NATSSubject(), m); err != nil {
		return fmt.Errorf("%w: summary: %w", errPublish, err)
	}
	idx, err := t.index(ctx)
	if err != nil {
		return err
	}
	return idx.Put(ctx, s, m.Payload)
}

func (t *Transformer) index(ctx context.Context) (*summaries.Index, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idx == nil {
		idx, err := summaries.Open(ctx, t.opts.JS)
		if err != nil {
			return nil, err
		}
		t.idx = idx
	}
	return t.idx, nil
}

// readBody returns the page's body, inline or from the object store; a stored body must match
// its SHA-256 and size, else it is never trusted.
func (t *Transformer) readBody(ctx context.Context, page events.RawPage) ([]byte, error) {
	if page.BodyRef == nil {
		return []byte(page.Body), nil
	}
	ref := page.BodyRef
	store, err := t.opts.JS.ObjectStore(ctx, ref.Bucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, bus.Permanent(fmt.Errorf("%w: bucket %q: %v", errBody, ref.Bucket, err))
		}
		return nil, fmt.Errorf("%w: bucket %q: %w", errBody, ref.Bucket, err)
	}
	b, err := getObject(ctx, store, ref)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			// The fetcher stores a body before publishing its event: a missing one is lost.
			return nil, bus.Permanent(fmt.Errorf("%w: object %s/%s: %v", errBody, ref.Bucket, ref.Name, err))
		}
		return nil, fmt.Errorf("%w: object %s/%s: %w", errBody, ref.Bucket, ref.Name, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != ref.SHA256 || (ref.Size > 0 && int64(len(b)) != ref.Size) {
		return nil, bus.Permanent(fmt.Errorf("%w: object %s/%s: sha256 %s size %d, want %s size %d",
			errBody, ref.Bucket, ref.Name, got, len(b), ref.SHA256, ref.Size))
	}
	return b, nil
}

// getObject is ObjectStore.GetBytes reading into a buffer sized from the reference once:
// growing it by doubling copied a multi-megabyte page about twice and left that as garbage.
func getObject(ctx context.Context, store jetstream.ObjectStore, ref *events.ObjectRef) ([]byte, error) {
	r, err := store.Get(ctx, ref.Name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var buf bytes.Buffer
	if ref.Size > 0 && ref.Size <= ion.MaxRawBody {
		buf.Grow(int(ref.Size) + bytes.MinRead) // ReadFrom wants MinRead free to see the end
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
