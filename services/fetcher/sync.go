package fetcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ion"
)

// leaseWait is how long a handler waits for another replica's account-period lease before
// handing the message back for redelivery. One task holds it for one Ion request (and its
// retries), so the wait is short unless Ion asks us to back off.
const leaseWait = 20 * time.Second

// taskMsg is the body of ion.sync.v1.task.<account>: a pointer into the plan in KV.
type taskMsg struct {
	SyncID  uuid.UUID `json:"sync_id"`
	Account string    `json:"account"`
	Period  string    `json:"period"`
	Task    string    `json:"task"`
}

// workContext detaches long Ion work from the router's per-attempt timeout and from shutdown,
// so an in-flight fetch finishes (and checkpoints) instead of being requested again later;
// InProgress keeps the message's AckWait from expiring meanwhile.
func (s *Service) workContext(msg *message.Message) (context.Context, func()) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), s.opts.TaskTimeout)
	stop := bus.KeepAlive(10*time.Second, func() { _ = bus.InProgress(msg) })
	return ctx, func() { stop(); cancel() }
}

// syncRequested plans a sync, stores the plan and fans out its tasks; the request is acked
// only once the plan is in KV.
func (s *Service) syncRequested(msg *message.Message) error {
	var req events.SyncRequest
	if err := events.Decode(msg, events.TypeSyncRequested, &req); err != nil {
		return err
	}
	if req.DryRun {
		// The pipeline does not honour DryRun (fetching would deliver the data and record page
		// hashes); a dry run runs in the CLI on Collect. Refused before any Ion call or KV write.
		return bus.Permanent(fmt.Errorf("sync request %s for account %s period %s: a published request cannot be a dry run (the pipeline would deliver): nothing was fetched; use `ionconnector sync --dry-run`, which reads and compares without delivering",
			req.RequestID, req.Account, req.Period))
	}
	if held, err := s.parked(msg.Context(), msg, req.Account); err != nil || held {
		return err
	}
	acct, ok := s.deps.Config.Account(req.Account)
	if !ok {
		return fmt.Errorf("%w: sync request %s names account %q, which is not configured", events.ErrUndecodable, req.RequestID, req.Account)
	}
	if _, _, err := events.ParsePeriod(req.Period); err != nil {
		return fmt.Errorf("%w: sync request %s: %v", events.ErrUndecodable, req.RequestID, err)
	}
	if req.Mode != events.ModeV1 && req.Mode != events.ModeV3 {
		return fmt.Errorf("%w: sync request %s: mode %q", events.ErrUndecodable, req.RequestID, req.Mode)
	}
	if req.Mode != acct.Auth {
		return bus.Permanent(fmt.Errorf("account %s has %s credentials; a %s sync cannot run", acct.ID, acct.Auth, req.Mode))
	}
	ctx := msg.Context()
	if err := s.pinMode(ctx, req.Account, req.Period, req.Mode); err != nil {
		if errors.Is(err, errModeMismatch) {
			return bus.Permanent(err)
		}
		return err
	}
	sync := req.SyncID()
	if p, _, err := s.loadPlan(ctx, sync); err == nil {
		return s.resume(ctx, p) // redelivered after the plan was stored
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	wctx, done := s.workContext(msg)
	defer done()
	release, err := s.acquire(wctx, req.Account, req.Period, s.opts.Holder, leaseWait)
	if err != nil {
		return err
	}
	defer release()
	s.log.Info("sync planning", "account", req.Account, "period", req.Period, "mode", req.Mode, "sync_id", sync)
	p := s.plan(wctx, acct, req)
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if _, err := s.state.Create(wctx, planKey(sync), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	if p, _, err = s.loadPlan(wctx, sync); err != nil {
		return err
	}
	return s.resume(wctx, p)
}

// plan reads the customer list and (v3) the control totals and lists one task per customer.
// An Ion failure becomes plan.Error: the sync then completes as failed, with the reason.
func (s *Service) plan(ctx context.Context, acct config.Account, req events.SyncRequest) *plan {
	p := &plan{SyncID: req.SyncID(), Request: req, Tasks: map[string]*task{}, StartedAt: s.opts.Now().UTC(),
		Customers: []string{}, Control: []events.ControlTotal{}}
	bctx, b := withBudget(ctx, 0, s.opts.RequestBudget)
	err := s.planFetch(bctx, acct, req, p)
	p.Requests = int(b.used.Load())
	if err != nil {
		p.Error = "planning: " + err.Error()
		s.log.Warn("sync planning failed", "account", req.Account, "period", req.Period, "err", err)
		return p
	}
	from, to := periodDays(req.Period)
	for _, c := range p.Customers {
		k := events.PageKey{Customer: c, From: from, To: to}
		p.Tasks[taskID(k)] = &task{ID: taskID(k), Key: k, State: statePending}
	}
	return p
}

func (s *Service) planFetch(ctx context.Context, acct config.Account, req events.SyncRequest, p *plan) error {
	c, err := s.client(ctx, acct.ID)
	if err != nil {
		return err
	}
	now := s.opts.Now().UTC()
	seen := map[string]bool{}
	var dir []events.Customer
	if req.Mode == events.ModeV3 {
		cs, err := c.ListCustomers(ctx, 0)
		if err != nil {
			return fmt.Errorf("list customers: %w", err)
		}
		for _, cu := range cs {
			dir = append(dir, events.Customer{ID: cu.ID, Name: cu.ContactName, Company: strPtr(cu.Organization), Status: strPtr(cu.Status)})
		}
	} else {
		cs, err := c.ListCustomersV1(ctx)
		if err != nil {
			return fmt.Errorf("list customers: %w", err)
		}
		for _, cu := range cs {
			dir = append(dir, events.Customer{ID: string(cu.ID), Name: cu.Name, Company: strPtr(cu.Company)})
		}
	}
	endpoint := "GET /api/v3/accounts/" + acct.ID + "/customers"
	if req.Mode == events.ModeV1 {
		endpoint = "GET /api/v1/customers"
	}
	// The client pages internally; the directory is published in slices of 1000 as Ion pages it.
	for i := 0; i == 0 || i*1000 < len(dir); i++ {
		part := dir[i*1000 : min(len(dir), (i+1)*1000)]
		cp := events.CustomerPage{SyncID: p.SyncID, Account: acct.ID, Period: req.Period, Endpoint: endpoint,
			PageKey: events.CustomerPageKey{Index: i}, FetchedAt: now, Customers: part}
		if err := s.publish(ctx, cp.NATSSubject(), cp.EventMeta(source), cp); err != nil {
			return err
		}
	}
	for _, cu := range dir {
		seen[cu.ID] = true
	}
	if req.Mode == events.ModeV3 {
		reportID := acct.ReportID
		if reportID == "" {
			r, err := c.FindReport(ctx, ion.TemplateAzurePlanBilling)
			if err != nil {
				return fmt.Errorf("find report: %w", err)
			}
			reportID = string(r.ReportID)
		}
		p.ReportID = reportID
		from, to := periodDays(req.Period)
		raw, err := c.ReportDataRaw(ctx, reportID, ion.ReportRequest{Columns: controlColumns, Currency: acct.Currency, Range: dayRange(from, to)})
		if err != nil {
			return fmt.Errorf("control query: %w", err)
		}
		if raw.Meta.Truncated {
			return fmt.Errorf("control query truncated (%d of %d rows): Ion's row limit is below the account's customer count", raw.Meta.ResultCount, raw.Meta.AvailableRowsCount)
		}
		sums := map[[2]string]decimal.Decimal{}
		for _, r := range raw.Rows {
			k := [2]string{r.String("customer_id"), currencyOf(r)}
			sums[k] = sums[k].Add(r.Decimal("seller_cost_invoice"))
		}
		for k, v := range sums {
			p.Control = append(p.Control, events.ControlTotal{Customer: k[0], Currency: k[1], BilledCost: v})
			seen[k[0]] = true // customers with data that /customers does not list
		}
		sortControl(p.Control)
	}
	for id := range seen {
		if len(req.Customers) == 0 || slices.Contains(req.Customers, id) {
			p.Customers = append(p.Customers, id)
		}
	}
	sort.Strings(p.Customers)
	if len(req.Customers) > 0 {
		p.Control = slices.DeleteFunc(p.Control, func(c events.ControlTotal) bool { return !slices.Contains(req.Customers, c.Customer) })
	}
	return nil
}

// resume publishes the plan's pending tasks (ids are deterministic, so a re-publish is
// deduplicated and a duplicate delivery finds its task done) and completes a finished plan.
func (s *Service) resume(ctx context.Context, p *plan) error {
	for _, t := range p.pending() {
		if err := s.publishTask(ctx, p, t.ID); err != nil {
			return err
		}
	}
	if p.terminal() && !p.Completed {
		return s.complete(ctx, p.SyncID)
	}
	return nil
}

func (s *Service) publishTask(ctx context.Context, p *plan, id string) error {
	m := taskMsg{SyncID: p.SyncID, Account: p.Request.Account, Period: p.Request.Period, Task: id}
	meta := events.Meta{ID: events.ID(typeTask, p.SyncID.String(), id), Type: typeTask, Source: source,
		Subject: p.Request.Account + "/" + p.Request.Period, Time: s.opts.Now()}
	return s.publish(ctx, "ion.sync.v1.task."+p.Request.Account, meta, m)
}

func (s *Service) publish(ctx context.Context, subject string, meta events.Meta, v any) error {
	if s.dry != nil {
		return s.dry.event(v)
	}
	msg, err := events.NewMessage(meta, v)
	if err != nil {
		return err
	}
	return s.pub.PublishCtx(ctx, subject, msg)
}

// complete publishes ion.sync.v1.completed once every task is done or failed: succeeded only
// when nothing failed and every customer's pages add up to Ion's control total.
func (s *Service) complete(ctx context.Context, sync uuid.UUID) error {
	p, _, err := s.loadPlan(ctx, sync)
	if err != nil {
		return err
	}
	if p.Completed || !p.terminal() {
		return nil
	}
	req := p.Request
	c := events.SyncCompleted{SyncID: sync, RequestID: req.RequestID, Account: req.Account, Period: req.Period, Mode: req.Mode,
		DryRun: req.DryRun, Filtered: len(req.Customers) > 0, StartedAt: p.StartedAt, FinishedAt: s.opts.Now().UTC(), Status: events.SyncSucceeded}
	pages, control, reasons, err := verdict(p)
	if err != nil {
		return err
	}
	c.Manifest.Pages, c.ControlTotals = pages, control
	c.Manifest.Customers = p.Customers
	if len(reasons) > 0 {
		c.Status, c.Reason = events.SyncFailed, strings.Join(reasons, "; ")
		if err := s.deadLetterSync(ctx, p, c); err != nil {
			return err
		}
	}
	if err := s.publish(ctx, c.NATSSubject(), c.EventMeta(source), c); err != nil {
		return err
	}
	_, err = s.updatePlan(ctx, sync, func(p *plan) (bool, error) {
		if p.Completed {
			return false, nil
		}
		p.Completed = true
		return true, nil
	})
	s.log.Info("sync completed", "account", req.Account, "period", req.Period, "status", c.Status, "pages", len(c.Manifest.Pages),
		"requests", p.Requests, "reason", c.Reason)
	return err
}

// reconcile compares the parts with Ion's control totals at full precision.
func reconcile(control []events.ControlTotal, parts map[[2]string]decimal.Decimal) []string {
	var out []string
	seen := map[[2]string]bool{}
	for _, ct := range control {
		k := [2]string{ct.Customer, ct.Currency}
		seen[k] = true
		if got := parts[k]; !got.Equal(ct.BilledCost) {
			out = append(out, fmt.Sprintf("customer %s %s: pages add up to %s, Ion's control total is %s", k[0], k[1], got, ct.BilledCost))
		}
	}
	for k, v := range parts {
		if !seen[k] && !v.IsZero() {
			out = append(out, fmt.Sprintf("customer %s %s: pages add up to %s, Ion's control query has no total", k[0], k[1], v))
		}
	}
	sort.Strings(out)
	return out
}

// deadLetterSync records a failed sync in the DLQ, with its request and the reason.
func (s *Service) deadLetterSync(ctx context.Context, p *plan, c events.SyncCompleted) error {
	body, err := json.Marshal(p.Request)
	if err != nil {
		return err
	}
	dl := events.DeadLetter{Stage: Name, Account: c.Account, Reason: "sync-failed", Error: c.Reason,
		OriginalSubject: events.SyncRequestedSubject(c.Account), OriginalID: c.SyncID.String(), OriginalStream: events.StreamSync,
		Attempts: 1, Payload: body, FailedAt: c.FinishedAt}
	meta := events.Meta{ID: events.ID(events.TypeDeadLetter, c.SyncID.String(), "sync-failed"), Type: events.TypeDeadLetter,
		Source: source, Subject: c.Account + "/" + c.Period, Time: c.FinishedAt}
	return s.publish(ctx, dl.NATSSubject(), meta, dl)
}

func sortControl(cs []events.ControlTotal) {
	slices.SortFunc(cs, func(a, b events.ControlTotal) int {
		if c := strings.Compare(a.Customer, b.Customer); c != 0 {
			return c
		}
		return strings.Compare(a.Currency, b.Currency)
	})
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func describe(k events.PageKey) string {
	s := "customer " + k.Customer
	if k.Entitlement != "" {
		s += " entitlement " + k.Entitlement
	}
	return s + " " + k.From + ".." + k.To
}

// periodDays returns the first and last day of a "YYYY-MM" period.
func periodDays(period string) (string, string) {
	start, end, _ := events.ParsePeriod(period)
	return start.Format(time.DateOnly), end.AddDate(0, 0, -1).Format(time.DateOnly)
}

// dayRange is [from 00:00:00Z, to 23:59:59Z]: whole days whatever Ion's end-date convention.
func dayRange(from, to string) ion.DateRange {
	f, _ := time.Parse(time.DateOnly, from)
	t, _ := time.Parse(time.DateOnly, to)
	return ion.DateRange{Start: f, End: t.Add(24*time.Hour - time.Second)}
}

// verdict is what a finished plan amounts to, for complete and for a dry run alike: its
// manifest pages (sorted), Ion's control totals (v1: the sum of the pages, as v1 has no control
// query), and the reasons it failed (none: it succeeded).
func verdict(p *plan) (pages []uuid.UUID, control []events.ControlTotal, reasons []string, err error) {
	if p.Error != "" {
		reasons = append(reasons, p.Error)
	}
	parts := map[[2]string]decimal.Decimal{}
	var failed []string
	for _, t := range p.Tasks {
		switch {
		case t.State == stateFailed:
			failed = append(failed, describe(t.Key)+": "+t.Error)
		case t.PageID != nil:
			pages = append(pages, *t.PageID)
			for cur, v := range t.Sums {
				d, err := decimal.NewFromString(v)
				if err != nil {
					return nil, nil, nil, fmt.Errorf("fetcher: plan task %s: sum %q: %w", describe(t.Key), v, err)
				}
				k := [2]string{t.Key.Customer, cur}
				parts[k] = parts[k].Add(d)
			}
		}
	}
	sort.Strings(failed)
	if len(failed) > 0 {
		more := ""
		if len(failed) > 3 {
			more = fmt.Sprintf(" (and %d more)", len(failed)-3)
			failed = failed[:3]
		}
		reasons = append(reasons, fmt.Sprintf("fetch failed: %s%s", strings.Join(failed, "; "), more))
	}
	if p.Request.Mode == events.ModeV1 {
		for k, v := range parts {
			control = append(control, events.ControlTotal{Customer: k[0], Currency: k[1], BilledCost: v})
		}
		sortControl(control)
	} else {
		control = p.Control
		if p.Error == "" && len(failed) == 0 {
			reasons = append(reasons, reconcile(p.Control, parts)...)
		}
	}
	slices.SortFunc(pages, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	return pages, control, reasons, nil
}
