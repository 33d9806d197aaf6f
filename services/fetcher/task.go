package fetcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
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

// ColumnSetVersion names PinnedColumns; bump it whenever the list changes, since it is part of
// every record id.
const ColumnSetVersion = "aplan-v1"

// PinnedColumns is the explicit column list of every v3 data request (template keys of the
// azure_plan_billing report): every grouping column the normalizer reads, then the measures.
// The report's saved selection is never used.
var PinnedColumns = []string{
	"customer_id", "customer_company_name", "azure_customer_id", "reseller_id",
	"cloud_account_number", "entitlement_id", "entitlement_description",
	"product_id", "product_name", "sku_id", "sku_name", "publisher_name",
	"meter_category", "meter_sub_category", "meter_name", "meter_id", "region", "metered_region",
	"resource_group", "resource_uri", "unit", "usage_starttime", "usage_endtime", "charge_type",
	"invoice_number", "unit_price", "effective_unit_price", "invoice_currency",
	"usage", "seat_count", "seller_cost_invoice", "customer_cost_invoice", "margin_invoice", "msrp_cost",
}

// controlColumns is the control query: Ion groups by customer and currency and does the adding.
var controlColumns = []string{"customer_id", "invoice_currency", "seller_cost_invoice"}

// entitlementColumns lists a customer's entitlements when its data must be split.
var entitlementColumns = []string{"customer_id", "entitlement_id", "seller_cost_invoice"}

// NoEntitlement is the page key's entitlement of rows without one (licences): Ion filters them
// with an empty entitlement_id, which a page key cannot carry.
const NoEntitlement = "none"

// outcome of one task.
type outcome struct {
	children []events.PageKey
	pageID   uuid.UUID
	sums     map[string]string
}

func (s *Service) runTask(msg *message.Message) error {
	var m taskMsg
	if err := events.Decode(msg, typeTask, &m); err != nil {
		return err
	}
	err := s.runTaskMsg(msg, m)
	if err == nil {
		return nil
	}
	if attempts, _ := strconv.Atoi(msg.Metadata.Get(bus.MetaNumDelivered)); bus.IsPermanent(err) || attempts >= s.opts.MaxDeliver {
		return s.failTask(msg, m, err)
	}
	return err // redelivered
}

// failTask handles a task that fails for good: permanently, or on the last delivery the router
// allows before it dead-letters the message. The task is marked failed in the plan and what
// follows a finished task runs, so the sync completes (as failed, with the reason) instead of
// waiting forever for a task nobody will run. The error is still returned, marked permanent,
// so the message is dead-lettered too (a retry would find the task failed and ack it).
func (s *Service) failTask(msg *message.Message, m taskMsg, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), 20*time.Second)
	defer cancel()
	p, err := s.updatePlan(ctx, m.SyncID, func(p *plan) (bool, error) {
		t := p.Tasks[m.Task]
		if t == nil || t.State != statePending {
			return false, nil
		}
		t.State, t.Error = stateFailed, trimErr(cause)
		return true, nil
	})
	if err == nil {
		if t := p.Tasks[m.Task]; t != nil {
			err = s.finished(ctx, p, t)
		}
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		err = nil // no plan: no sync to complete
	}
	if err != nil {
		// Not marked permanent: unless this was the last delivery, the message is redelivered
		// and recording the failure is tried again.
		return fmt.Errorf("%v (recording the failure in the plan: %w)", cause, err)
	}
	s.log.Warn("fetch task failed for good", "account", m.Account, "period", m.Period, "sync_id", m.SyncID, "task", m.Task, "err", cause)
	return bus.Permanent(cause)
}

func (s *Service) runTaskMsg(msg *message.Message, m taskMsg) error {
	ctx := msg.Context()
	if held, err := s.parked(ctx, msg, m.Account); err != nil || held {
		return err
	}
	p, _, err := s.loadPlan(ctx, m.SyncID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return bus.Permanent(fmt.Errorf("task %s of sync %s: no plan", m.Task, m.SyncID))
	} else if err != nil {
		return err
	}
	if t := p.Tasks[m.Task]; t == nil {
		return bus.Permanent(fmt.Errorf("task %s is not in the plan of sync %s", m.Task, m.SyncID))
	} else if t.State != statePending {
		return s.finished(ctx, p, t)
	}
	wctx, done := s.workContext(msg)
	defer done()
	release, err := s.acquire(wctx, m.Account, m.Period, s.opts.Holder, leaseWait)
	if err != nil {
		return fmt.Errorf("account-period lease: %w", err)
	}
	defer release()
	// Re-read under the lease: another replica may have finished the task meanwhile.
	if p, _, err = s.loadPlan(wctx, m.SyncID); err != nil {
		return err
	}
	t := p.Tasks[m.Task]
	if t.State != statePending {
		return s.finished(wctx, p, t)
	}
	acct, ok := s.deps.Config.Account(m.Account)
	if !ok {
		return bus.Permanent(fmt.Errorf("account %q is no longer configured", m.Account))
	}
	bctx, b := withBudget(wctx, p.Requests, s.opts.RequestBudget)
	var out outcome
	if p.Requests >= s.opts.RequestBudget {
		err = errBudget
	} else {
		out, err = s.fetch(bctx, acct, p, t)
	}
	used := int(b.used.Load())
	if err != nil && wctx.Err() != nil {
		return fmt.Errorf("task timed out after %s: %w", s.opts.TaskTimeout, err) // try again later
	}
	if err != nil {
		s.log.Warn("fetch task failed", "account", m.Account, "period", m.Period, "page", describe(t.Key), "err", err)
	}
	p, err = s.updatePlan(wctx, m.SyncID, func(p *plan) (bool, error) {
		t := p.Tasks[m.Task]
		if t.State != statePending {
			return false, nil
		}
		p.Requests += used
		switch {
		case err != nil:
			t.State, t.Error = stateFailed, trimErr(err)
		case out.children != nil:
			t.State = stateDone
			for _, k := range out.children {
				id := taskID(k)
				t.Children = append(t.Children, id)
				if p.Tasks[id] == nil {
					p.Tasks[id] = &task{ID: id, Key: k, State: statePending}
				}
			}
		default:
			id := out.pageID
			t.State, t.PageID, t.Sums = stateDone, &id, out.sums
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	return s.finished(wctx, p, p.Tasks[m.Task])
}

// finished makes sure what follows a finished task happened: its children are published and,
// when it was the last, the sync is completed. A redelivery after a crash lands here.
func (s *Service) finished(ctx context.Context, p *plan, t *task) error {
	for _, id := range t.Children {
		if c := p.Tasks[id]; c != nil && c.State == statePending {
			if err := s.publishTask(ctx, p, id); err != nil {
				return err
			}
		}
	}
	if p.terminal() && !p.Completed {
		return s.complete(ctx, p.SyncID)
	}
	return nil
}

func (s *Service) fetch(ctx context.Context, acct config.Account, p *plan, t *task) (outcome, error) {
	c, err := s.client(ctx, acct.ID)
	if err != nil {
		return outcome{}, err
	}
	if p.Request.Mode == events.ModeV1 {
		raw, err := c.AzurePlanV1Raw(ctx, t.Key.Customer, p.Request.Period, acct.Currency)
		if err != nil {
			return outcome{}, err
		}
		hash, n, sums := hashPlanLines(raw.Lines)
		return s.page(ctx, p, t.Key, raw.Endpoint, raw.Request, ion.BodyOf(raw.Body), "azureplan-v1", hash, n, sums)
	}
	req := ion.ReportRequest{Columns: PinnedColumns, Currency: acct.Currency, Range: dayRange(t.Key.From, t.Key.To),
		Filters: filters(t.Key)}
	// The body is decoded once, into the hash only: no []ion.Row of the page is built.
	var h pageHash
	pg, err := c.ReportDataPage(ctx, p.ReportID, req, h.reset, h.add)
	if err != nil {
		return outcome{}, err
	}
	defer pg.Body.Release()
	if !pg.Meta.Truncated {
		hash, n, sums := h.result(pg.Columns)
		return s.page(ctx, p, t.Key, pg.Endpoint, pg.Request, pg.Body, ColumnSetVersion, hash, n, sums)
	}
	children, err := s.split(ctx, c, p, t.Key, pg.Meta, h.daily())
	return outcome{children: children}, err
}

// split divides a truncated request: by entitlement first, then (daily rows only) by halving
// the date range, until Ion returns everything.
// daily tells whether the truncated page's rows carry one usage day each (not the month's bounds).
func (s *Service) split(ctx context.Context, c *ion.Client, p *plan, k events.PageKey, meta ion.ReportMeta, daily bool) ([]events.PageKey, error) {
	trunc := fmt.Sprintf("%d of %d rows", meta.ResultCount, meta.AvailableRowsCount)
	if k.Entitlement == "" && k.Customer != "" {
		acct, _ := s.deps.Config.Account(p.Request.Account)
		req := ion.ReportRequest{Columns: entitlementColumns, Currency: acct.Currency, Range: dayRange(k.From, k.To), Filters: filters(k)}
		ents, err := c.ReportDataRaw(ctx, p.ReportID, req)
		if err != nil {
			return nil, fmt.Errorf("list entitlements: %w", err)
		}
		if ents.Meta.Truncated {
			return nil, fmt.Errorf("entitlement list truncated (%d of %d rows)", ents.Meta.ResultCount, ents.Meta.AvailableRowsCount)
		}
		seen := map[string]bool{}
		var out []events.PageKey
		for _, r := range ents.Rows {
			e := r.String("entitlement_id")
			if e == "" {
				e = NoEntitlement
			}
			if !seen[e] {
				seen[e] = true
				out = append(out, events.PageKey{Customer: k.Customer, Entitlement: e, From: k.From, To: k.To})
			}
		}
		if len(out) > 1 {
			sort.Slice(out, func(i, j int) bool { return out[i].Entitlement < out[j].Entitlement })
			return out, nil
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("truncated (%s) but Ion lists no entitlement", trunc)
		}
		k.Entitlement = out[0].Entitlement // one entitlement: go on to dates
	}
	if !daily {
		return nil, fmt.Errorf("still truncated (%s) and rows are not daily, so dates cannot be split", trunc)
	}
	from, _ := time.Parse(time.DateOnly, k.From)
	to, _ := time.Parse(time.DateOnly, k.To)
	days := int(to.Sub(from).Hours()/24) + 1
	if days < 2 {
		return nil, fmt.Errorf("still truncated (%s) for a single day", trunc)
	}
	mid := from.AddDate(0, 0, days/2-1)
	a, b := k, k
	a.To = mid.Format(time.DateOnly)
	b.From = mid.AddDate(0, 0, 1).Format(time.DateOnly)
	return []events.PageKey{a, b}, nil
}

func filters(k events.PageKey) map[string][]string {
	f := map[string][]string{}
	if k.Customer != "" {
		f["customer_id"] = []string{k.Customer}
	}
	switch k.Entitlement {
	case "":
	case NoEntitlement:
		f["entitlement_id"] = []string{""}
	default:
		f["entitlement_id"] = []string{k.Entitlement}
	}
	return f
}

// page stores the body (object store for large ones, first), publishes the raw page unless the
// same key already has the same canonical rows, and records the hash.
func (s *Service) page(ctx context.Context, p *plan, k events.PageKey, endpoint string, request []byte, body *ion.Body, colVersion, rowsHash string, rows int, sums map[string]string) (outcome, error) {
	req := p.Request
	rp := events.RawPage{SyncID: p.SyncID, Account: req.Account, Period: req.Period, Mode: req.Mode, Endpoint: endpoint,
		Request: request, ColumnSetVersion: colVersion, PageKey: k, RowsSHA256: rowsHash, RowCount: rows,
		FetchedAt: s.opts.Now().UTC(), ContentType: events.ContentJSON}
	rp.PageID = events.RawPageID(req.Account, req.Period, k, rowsHash)
	out := outcome{pageID: rp.PageID, sums: sums}
	if s.dry != nil {
		return out, s.dry.page(ctx, rp, body.Bytes())
	}
	key := pageStateKey(req.Account, req.Period, k)
	if e, err := s.state.Get(ctx, key); err == nil && string(e.Value()) == rowsHash {
		return out, nil // unchanged since it was last published
	} else if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return out, err
	}
	if body.Len() <= int64(s.opts.InlineMax) {
		rp.Body = string(body.Bytes())
	} else {
		// Named by content (hashed while it was read), streamed to the store chunk by chunk.
		name := body.SHA256()
		if _, err := s.bodies.GetInfo(ctx, name); errors.Is(err, jetstream.ErrObjectNotFound) {
			if _, err := s.bodies.Put(ctx, jetstream.ObjectMeta{Name: name}, body.Reader()); err != nil {
				return out, fmt.Errorf("store body: %w", err)
			}
		} else if err != nil {
			return out, err
		}
		rp.BodyRef = &events.ObjectRef{Bucket: bus.ObjectRawBodies, Name: name, SHA256: name, Size: body.Len()}
	}
	if err := rp.Validate(); err != nil {
		return out, err
	}
	if err := s.publish(ctx, rp.NATSSubject(), rp.EventMeta(source), rp); err != nil {
		return out, err
	}
	if _, err := s.state.Put(ctx, key, []byte(rowsHash)); err != nil {
		return out, err
	}
	return out, nil
}

// hashRows hashes the canonical leaf rows: the column keys, then each row's decoded values
// (decimals normalized, dates in UTC) in sorted order, so volatile response parts and row order
// never change the hash. It also sums seller_cost_invoice by currency. It is the definition:
// fetches compute the same with pageHash while the body decodes (a test holds them equal).
func hashRows(cols []ion.ReportColumn, rows []ion.Row) (string, int, map[string]string) {
	keys := make([]string, len(cols))
	for i, c := range cols {
		keys[i] = c.Key()
	}
	lines := make([]string, 0, len(rows))
	sums := map[string]decimal.Decimal{}
	for _, r := range rows {
		vals := make([]string, len(r.Values))
		for i, v := range r.Values {
			vals[i] = canonical(v)
		}
		lines = append(lines, strings.Join(vals, "\x1f"))
		cur := currencyOf(r)
		sums[cur] = sums[cur].Add(r.Decimal("seller_cost_invoice"))
	}
	return hashLines(strings.Join(keys, "\x1f"), lines), len(rows), sumText(sums)
}

func hashPlanLines(ls []ion.AzurePlanLine) (string, int, map[string]string) {
	lines := make([]string, 0, len(ls))
	sums := map[string]decimal.Decimal{}
	for _, l := range ls {
		lines = append(lines, strings.Join([]string{l.CustomerID, l.SubscriptionID, l.Product, l.SKU, l.CostCurrency, l.PriceCurrency,
			l.Price.String(), l.Cost.String(), l.Usage.String(), l.Unit}, "\x1f"))
		sums[l.CostCurrency] = sums[l.CostCurrency].Add(l.Cost)
	}
	return hashLines("azureplan-v1", lines), len(ls), sumText(sums)
}

func hashLines(header string, lines []string) string {
	sort.Strings(lines)
	h := sha256.New()
	h.Write([]byte(header))
	for _, l := range lines {
		h.Write([]byte{'\n'})
		h.Write([]byte(l))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sumText(m map[string]decimal.Decimal) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v.String()
	}
	return out
}

func canonical(v ion.Value) string {
	switch {
	case v.Null:
		return "\x00"
	case v.Type == "MONEY":
		return v.NumberText() + " " + v.Currency
	case v.Type == "FLOAT" || v.Type == "INT":
		return v.NumberText()
	case v.Type == "DATE" && !v.Time.IsZero():
		return v.Time.UTC().Format(time.RFC3339Nano)
	}
	return v.Text
}

// currencyOf is a row's invoice currency: the column, else the money value's own currency.
func currencyOf(r ion.Row) string {
	if c := r.String("invoice_currency"); c != "" {
		return c
	}
	v, _ := r.Get("seller_cost_invoice")
	return v.Currency
}

func trimErr(err error) string {
	s := err.Error()
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
