package fetcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/service"
)

// CollectOptions configure Collect.
type CollectOptions struct {
	Config  *config.Config // the deployment's config: the account's credentials, Ion limits, token key
	Account string
	Period  string // "YYYY-MM"
	// Tokens is the token-store bucket (bus.BucketTokens), v3 only: the rotating refresh token
	// is spent under the same lease as the fetcher's, so a dry run never races a sync for it.
	Tokens jetstream.KeyValue
	// Periods (bus.BucketPeriods) is read, when set, to refuse a period pinned to the other
	// source mode, as a sync would.
	Periods jetstream.KeyValue
	// Holder names this process in token-refresh leases; default a random id.
	Holder        string
	HTTPClient    *http.Client
	Logger        *slog.Logger
	RequestBudget int // as Options.RequestBudget
	Now           func() time.Time
	// Page receives every complete page as it is read, in the order fetched; an error stops
	// Collect and is returned.
	Page func(ctx context.Context, p CollectedPage) error
	// Progress, optional, is told after every task.
	Progress func(CollectProgress)
}

// CollectedPage is one page exactly as the fetcher would publish it (Page, without a body or
// body reference) and its body.
type CollectedPage struct {
	Page events.RawPage
	Body []byte
}

// CollectProgress counts a Collect's work so far.
type CollectProgress struct {
	Tasks, Done, Pages, Requests int
}

// CollectResult is what a Collect read.
type CollectResult struct {
	Mode      string
	Directory []events.Customer     // the customer directory Ion listed
	Customers []string              // every customer read: directory plus control query, sorted
	Control   []events.ControlTotal // Ion's control totals (v1: the sum of the pages)
	Pages     int
	Requests  int // Ion HTTP requests spent
	// Complete is true when every task succeeded and (v3) the pages add up to Ion's control
	// totals: the condition under which a sync succeeds and may reverse what it no longer sees.
	Complete bool
	Reason   string // why it is not complete
}

// Collect reads an account-period from Ion exactly as a sync would (same customer list, pinned
// columns and truncation splits, the same code) and hands each page to o.Page instead of
// publishing it. It stores and publishes nothing: no raw page, no page hash, no plan, no lease;
// only a v3 token refresh writes the token store, as it must. `ionconnector sync --dry-run`
// builds its per-customer invoice diff on it.
func Collect(ctx context.Context, o CollectOptions) (CollectResult, error) {
	var errs []error
	if o.Config == nil {
		errs = append(errs, errors.New("Config is required"))
	}
	if o.Page == nil {
		errs = append(errs, errors.New("Page is required"))
	}
	if _, _, err := events.ParsePeriod(o.Period); err != nil {
		errs = append(errs, fmt.Errorf("Period: %w", err))
	}
	if o.RequestBudget < 0 {
		errs = append(errs, errors.New("RequestBudget must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return CollectResult{}, fmt.Errorf("fetcher: collect options: %w", err)
	}
	acct, ok := o.Config.Account(o.Account)
	if !ok {
		return CollectResult{}, fmt.Errorf("fetcher: collect: Account %q is not configured", o.Account)
	}
	if acct.Auth == config.AuthV3 && o.Tokens == nil {
		return CollectResult{}, errors.New("fetcher: collect options: Tokens is required for a v3 account")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	opts := Options{Holder: o.Holder, RequestBudget: o.RequestBudget, HTTPClient: o.HTTPClient, Now: o.Now}
	opts.setDefaults()
	s := &Service{deps: service.Deps{Config: o.Config, Logger: o.Logger}, opts: opts, log: o.Logger,
		tokens: o.Tokens, clients: map[string]*ion.Client{}, dry: &collector{fn: o.Page}}
	s.http = &http.Client{Transport: budgetTransport{next: transportOf(opts.HTTPClient)}, Timeout: opts.HTTPClient.Timeout}

	mode := acct.Auth // the mode a sync request for the account carries
	if o.Periods != nil {
		e, err := o.Periods.Get(ctx, o.Account+"."+o.Period+".mode")
		switch {
		case err == nil && string(e.Value()) != mode:
			return CollectResult{}, fmt.Errorf("%w: account %s period %s is pinned to source mode %s; the account's %s credentials cannot read it",
				errModeMismatch, o.Account, o.Period, e.Value(), mode)
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			return CollectResult{}, fmt.Errorf("fetcher: collect: pinned mode: %w", err)
		}
	}
	req := events.SyncRequest{RequestID: "dry-run", Account: o.Account, Period: o.Period, Mode: mode,
		Reason: "dry-run", RequestedBy: "fetcher.Collect", RequestedAt: opts.Now().UTC(), DryRun: true}
	p := s.plan(ctx, acct, req)
	if err := ctx.Err(); err != nil {
		return CollectResult{}, err
	}
	if p.Error != "" {
		return CollectResult{}, errors.New(p.Error)
	}
	res := CollectResult{Mode: mode, Directory: s.dry.directory, Customers: p.Customers}
	queue := p.pending()
	progress := func() {
		if o.Progress != nil {
			o.Progress(CollectProgress{Tasks: len(p.Tasks), Done: len(p.Tasks) - len(queue), Pages: res.Pages, Requests: p.Requests})
		}
	}
	progress()
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		bctx, b := withBudget(ctx, p.Requests, s.opts.RequestBudget)
		var out outcome
		var err error
		if p.Requests >= s.opts.RequestBudget {
			err = errBudget
		} else {
			out, err = s.fetch(bctx, acct, p, t)
		}
		p.Requests += int(b.used.Load())
		if ctxErr := ctx.Err(); ctxErr != nil {
			return res, ctxErr
		}
		var pe pageError
		if errors.As(err, &pe) {
			return res, pe.err
		}
		switch {
		case err != nil:
			t.State, t.Error = stateFailed, trimErr(err)
			s.log.Warn("dry run: fetch failed", "account", o.Account, "period", o.Period, "page", describe(t.Key), "err", err)
		case out.children != nil:
			t.State = stateDone
			for _, k := range out.children {
				id := taskID(k)
				if p.Tasks[id] == nil {
					c := &task{ID: id, Key: k, State: statePending}
					p.Tasks[id] = c
					queue = append(queue, c)
				}
			}
		default:
			id := out.pageID
			t.State, t.PageID, t.Sums = stateDone, &id, out.sums
			res.Pages++
		}
		progress()
	}
	res.Requests = p.Requests
	_, control, reasons, err := verdict(p)
	if err != nil {
		return res, err
	}
	res.Control, res.Reason = control, strings.Join(reasons, "; ")
	res.Complete = res.Reason == ""
	return res, nil
}

// collector takes what a dry-run Service would store or publish.
type collector struct {
	fn        func(context.Context, CollectedPage) error
	directory []events.Customer
}

// pageError carries the Page callback's error through fetch, so it stops Collect instead of
// failing one task.
type pageError struct{ err error }

func (e pageError) Error() string { return e.err.Error() }

func (c *collector) page(ctx context.Context, rp events.RawPage, body []byte) error {
	// A copy: the fetcher's body buffer goes back to its pool when fetch returns, and what the
	// callback keeps (decoded records) must not alias it.
	if err := c.fn(ctx, CollectedPage{Page: rp, Body: bytes.Clone(body)}); err != nil {
		return pageError{err}
	}
	return nil
}

// event keeps the customer directory and refuses anything else: a dry run publishes nothing.
func (c *collector) event(v any) error {
	if cp, ok := v.(events.CustomerPage); ok {
		c.directory = append(c.directory, cp.Customers...)
		return nil
	}
	return fmt.Errorf("fetcher: a dry run publishes nothing, but was asked to publish %T", v)
}
