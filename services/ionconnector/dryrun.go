package ionconnector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/fetcher"
	"github.com/ionusage/connector/services/transformer"
)

// reasonUndecodable counts the lines of a page the transformer would dead-letter whole.
const reasonUndecodable = "undecodable-page"

type dryRunOptions struct {
	Account, Period, Mode string
	JSON                  bool
	ConfigPath, DataDir   string
	Timeout               time.Duration
}

// dryRunReport is what `sync --dry-run` found; --json prints it as one object. Amounts are
// exact decimals (JSON strings at full precision).
type dryRunReport struct {
	Account string `json:"account"`
	Period  string `json:"period"`
	Mode    string `json:"mode"`
	DryRun  bool   `json:"dry_run"` // always true: nothing was delivered, stored or published
	// Complete: the read would make a successful sync (every page read, v3 pages equal to Ion's
	// control totals), so records it no longer contains would be reversed ("gone").
	Complete bool   `json:"complete"`
	Reason   string `json:"reason,omitempty"` // why the read is not complete
	// CorrectedIn is set when the period is closed (config closing_day): the changes would be
	// invoiced as Correction rows in this open period, not in the period itself.
	CorrectedIn string      `json:"corrected_in,omitempty"`
	Pages       int         `json:"pages"`
	IonRequests int         `json:"ion_requests"`
	Customers   []dryRunRow `json:"customers"`
	Totals      []dryRunRow `json:"totals"` // one per currency
	ElapsedMS   int64       `json:"elapsed_ms"`
}

// dryRunRow is one customer's invoice in one currency (or, in Totals, every customer's).
type dryRunRow struct {
	Customer  string `json:"customer,omitempty"`
	Name      string `json:"name,omitempty"`
	Currency  string `json:"currency"`
	New       int    `json:"new"`       // not held by the ledger
	Changed   int    `json:"changed"`   // held with another revision
	Unchanged int    `json:"unchanged"` // held with this revision (or rejected by a sink with it)
	Gone      int    `json:"gone"`      // held, not in the complete re-read: would be reversed
	// Kept are held records the re-read lacks that stay because the read is not complete.
	Kept  int             `json:"kept,omitempty"`
	Now   decimal.Decimal `json:"now"`   // sum of the held revisions' BilledCost
	After decimal.Decimal `json:"after"` // the same after the run
	Delta decimal.Decimal `json:"delta"` // After - Now
	// DeadLetters are the lines the run would dead-letter (held out of period included), by reason.
	DeadLetters map[string]int `json:"dead_letters,omitempty"`
}

// dryRead is the normalized re-read of a period, by customer.
type dryRead struct {
	records map[string]map[string]events.UsageRecord // customer → record id → record
	dead    map[string]map[string]int                // customer → reason → lines
	// unlisted: a page summary would not list its record ids, so the publisher would make no
	// reversals (publisher.reverse).
	unlisted bool
}

func (d *dryRead) deadLetter(customer, reason string, n int) {
	if d.dead[customer] == nil {
		d.dead[customer] = map[string]int{}
	}
	d.dead[customer][reason] += n
}

// syncDryRun is `sync --dry-run`: read the period from Ion in this process with the fetcher's
// own code (fetcher.Collect), transform each page with the transformer's (PreviewPage), and
// compare the records with the delivery ledger, read-only. It publishes no request, page or
// record and writes no page hash or ledger entry; only a v3 token refresh writes the token
// store, under its lease, as every Ion client of the deployment does.
func syncDryRun(ctx context.Context, iox IO, o dryRunOptions) int {
	const name = "sync --dry-run"
	if !accountPeriodFlags(iox, "sync", o.Account, o.Period) {
		return service.ExitUsage
	}
	cfg, code := commandConfig(iox, name, o.ConfigPath, o.DataDir)
	if cfg == nil {
		return code
	}
	acct, ok := cfg.Account(o.Account)
	if !ok {
		fmt.Fprintf(iox.Stderr, "%s: account %q is not in the config (--config or ION_CONNECTOR_CONFIG): a dry run reads Ion with its credentials\n", name, o.Account)
		return service.ExitUsage
	}
	if o.Mode != "" && o.Mode != acct.Auth {
		fmt.Fprintf(iox.Stderr, "%s: --auth %s: account %s has %s credentials\n", name, o.Mode, o.Account, acct.Auth)
		return service.ExitUsage
	}
	started := time.Now()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	c, code := commandConnect(ctx, iox, name, cfg)
	if c == nil {
		return code
	}
	defer c.Close()
	rep, err := dryRun(ctx, c, cfg, acct, o.Period, newProgress(iox.Stderr))
	if err != nil {
		fmt.Fprintf(iox.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	rep.ElapsedMS = time.Since(started).Milliseconds()
	if o.JSON {
		if code := printJSON(iox, name, rep); code != service.ExitOK {
			return code
		}
	} else {
		printDryRun(iox.Stdout, rep)
	}
	if !rep.Complete {
		return service.ExitFailed // a sync would fail the same way
	}
	return service.ExitOK
}

// dryRun reads, transforms and compares; see syncDryRun.
func dryRun(ctx context.Context, c *cmdConn, cfg *config.Config, acct config.Account, period string, prog *progress) (dryRunReport, error) {
	rep := dryRunReport{Account: acct.ID, Period: period, Mode: acct.Auth, DryRun: true}
	if start, _, err := events.ParsePeriod(period); err == nil && acct.ClosingDay > 0 && !time.Now().Before(events.PeriodCloses(start, acct.ClosingDay)) {
		rep.CorrectedIn = events.OldestOpenPeriod(time.Now(), acct.ClosingDay)
	}
	ledger, err := billing.OpenLedger(ctx, c.JS)
	if err != nil {
		return rep, err
	}
	var tokens jetstream.KeyValue
	if acct.Auth == config.AuthV3 {
		if tokens, err = c.JS.KeyValue(ctx, bus.BucketTokens); err != nil {
			return rep, fmt.Errorf("KV bucket %s: %w", bus.BucketTokens, err)
		}
	}
	periods, err := c.JS.KeyValue(ctx, bus.BucketPeriods)
	if err != nil {
		return rep, fmt.Errorf("KV bucket %s: %w", bus.BucketPeriods, err)
	}
	read := &dryRead{records: map[string]map[string]events.UsageRecord{}, dead: map[string]map[string]int{}}
	res, err := fetcher.Collect(ctx, fetcher.CollectOptions{
		Config: cfg, Account: acct.ID, Period: period, Tokens: tokens, Periods: periods,
		Holder: "ionconnector-cli", Logger: c.Logger,
		Page: func(_ context.Context, cp fetcher.CollectedPage) error { return read.add(acct, cp) },
		Progress: func(p fetcher.CollectProgress) {
			prog.show(fmt.Sprintf("[%s] dry run: %d/%d data requests · %d pages · %d Ion requests",
				progressBar(p.Done, p.Tasks), p.Done, p.Tasks, p.Pages, p.Requests))
		},
	})
	prog.done()
	if err != nil {
		return rep, err
	}
	rep.Complete, rep.Reason, rep.Pages, rep.IonRequests = res.Complete, res.Reason, res.Pages, res.Requests
	names := map[string]string{}
	for _, cu := range res.Directory {
		names[cu.ID] = cu.Name
		if cu.Company != nil && *cu.Company != "" {
			names[cu.ID] = *cu.Company
		}
	}
	customers := slices.Clone(res.Customers)
	for cust := range read.records {
		customers = append(customers, cust)
	}
	for cust := range read.dead {
		customers = append(customers, cust)
	}
	slices.Sort(customers)
	customers = slices.Compact(customers)
	reversible := res.Complete && !read.unlisted
	for _, cust := range customers {
		part, _, err := ledger.Load(ctx, acct.ID, period, cust)
		if err != nil {
			return rep, err
		}
		rows := diffCustomer(read.records[cust], part, reversible)
		if len(rows) == 0 && read.dead[cust] != nil {
			rows = []dryRunRow{{Currency: acct.Currency, Now: decimal.Zero, After: decimal.Zero, Delta: decimal.Zero}}
		}
		for i := range rows {
			rows[i].Customer, rows[i].Name = cust, names[cust]
		}
		if len(rows) > 0 {
			rows[0].DeadLetters = read.dead[cust]
		}
		rep.Customers = append(rep.Customers, rows...)
	}
	rep.Totals = dryRunTotals(rep.Customers)
	return rep, nil
}

// add transforms one collected page as the transformer would and keeps what it produces.
func (d *dryRead) add(acct config.Account, cp fetcher.CollectedPage) error {
	cust := cp.Page.PageKey.Customer
	pv, err := transformer.PreviewPage(transformer.PreviewInput{Page: cp.Page, Body: cp.Body, Account: acct, Now: time.Now()})
	if errors.Is(err, events.ErrUndecodable) {
		d.deadLetter(cust, reasonUndecodable, max(cp.Page.RowCount, 1))
		return nil
	}
	if err != nil {
		return fmt.Errorf("transform page %s: %w", cp.Page.PageID, err)
	}
	for _, r := range pv.Records {
		if d.records[r.IonCustomerID] == nil {
			d.records[r.IonCustomerID] = map[string]events.UsageRecord{}
		}
		d.records[r.IonCustomerID][r.RecordID.String()] = r
	}
	for _, dl := range slices.Concat(pv.Held, pv.Bad) {
		d.deadLetter(cust, dl.Reason, 1)
	}
	if !pv.Summary.Lists() {
		d.unlisted = true
	}
	return nil
}

// diffCustomer compares one customer's re-read records with its ledger partition, as the
// deliverer would apply them: one row per currency, sorted.
func diffCustomer(recs map[string]events.UsageRecord, part *billing.Partition, reversible bool) []dryRunRow {
	rows := map[string]*dryRunRow{}
	row := func(cur string) *dryRunRow {
		if rows[cur] == nil {
			rows[cur] = &dryRunRow{Currency: cur, Now: decimal.Zero, After: decimal.Zero}
		}
		return rows[cur]
	}
	for id, r := range recs {
		w := row(r.BillingCurrency)
		h, held := part.Records[id]
		// The deliverer's order (billing.Deliverer.choose): the held revision, then a revision a
		// sink rejected (skipped again, and counted as dead-lettered, not billed, like reconcile).
		switch {
		case held && h.Revision == r.Revision:
			w.Unchanged++
			if !deadNewer(part, id) {
				w.After = w.After.Add(h.Billed)
			}
		case part.Dead[id].Revision == r.Revision:
			w.Unchanged++
		case held:
			w.Changed++
			w.After = w.After.Add(r.BilledCost)
		default:
			w.New++
			w.After = w.After.Add(r.BilledCost)
		}
	}
	for id, h := range part.Records {
		w := row(h.Currency)
		if deadNewer(part, id) {
			continue // its current revision was rejected: dead-lettered, not on the invoice (Partition sums)
		}
		w.Now = w.Now.Add(h.Billed)
		if _, ok := recs[id]; ok || h.Billed.IsZero() {
			continue // re-read, or nothing to reverse (a reversal already, or zero)
		}
		if reversible {
			w.Gone++
		} else {
			w.Kept++
			w.After = w.After.Add(h.Billed)
		}
	}
	out := make([]dryRunRow, 0, len(rows))
	for _, w := range rows {
		w.Delta = w.After.Sub(w.Now)
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b dryRunRow) int { return strings.Compare(a.Currency, b.Currency) })
	return out
}

// deadNewer reports whether a sink rejected a newer revision of id than the one held, which the
// ledger's sums count as dead-lettered rather than billed.
func deadNewer(part *billing.Partition, id string) bool {
	d, ok := part.Dead[id]
	return ok && d.AsOf.After(part.Records[id].AsOf)
}

// dryRunTotals sums the rows by currency.
func dryRunTotals(rows []dryRunRow) []dryRunRow {
	by := map[string]*dryRunRow{}
	var curs []string
	for _, r := range rows {
		t := by[r.Currency]
		if t == nil {
			t = &dryRunRow{Currency: r.Currency, Now: decimal.Zero, After: decimal.Zero, Delta: decimal.Zero}
			by[r.Currency] = t
			curs = append(curs, r.Currency)
		}
		t.New, t.Changed, t.Unchanged, t.Gone, t.Kept = t.New+r.New, t.Changed+r.Changed, t.Unchanged+r.Unchanged, t.Gone+r.Gone, t.Kept+r.Kept
		t.Now, t.After, t.Delta = t.Now.Add(r.Now), t.After.Add(r.After), t.Delta.Add(r.Delta)
		for reason, n := range r.DeadLetters {
			if t.DeadLetters == nil {
				t.DeadLetters = map[string]int{}
			}
			t.DeadLetters[reason] += n
		}
	}
	sort.Strings(curs)
	out := make([]dryRunRow, 0, len(curs))
	for _, c := range curs {
		out = append(out, *by[c])
	}
	return out
}

// printDryRun writes the per-customer table, amounts rounded to the invoice's 2 dp.
func printDryRun(w io.Writer, rep dryRunReport) {
	fmt.Fprintf(w, "\nIon usage connector · dry run · account %s · period %s (%s) · nothing delivered\n\n", rep.Account, rep.Period, rep.Mode)
	// The three text columns left, the numbers right (tabwriter aligns a table one way only).
	cells := [][]string{{"customer", "name", "cur", "new", "changed", "unchanged", "gone", "invoice now", "after", "delta"}}
	row := func(id, name string, r dryRunRow) {
		gone := fmt.Sprint(r.Gone)
		if r.Kept > 0 {
			gone += fmt.Sprintf(" (%d kept)", r.Kept)
		}
		cells = append(cells, []string{id, name, r.Currency, fmt.Sprint(r.New), fmt.Sprint(r.Changed), fmt.Sprint(r.Unchanged), gone,
			r.Now.StringFixedBank(2), r.After.StringFixedBank(2), signed(r.Delta.RoundBank(2))})
	}
	for _, r := range rep.Customers {
		row(r.Customer, truncate(r.Name, 28), r)
	}
	for _, r := range rep.Totals {
		row("total", "", r)
	}
	width := make([]int, len(cells[0]))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	for _, c := range cells {
		var b strings.Builder
		for i, s := range c {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(s))
			if i < 3 {
				b.WriteString("  " + s + pad)
			} else {
				b.WriteString("  " + pad + s)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	var dead []string
	for _, r := range rep.Customers {
		reasons := make([]string, 0, len(r.DeadLetters))
		for reason, n := range r.DeadLetters {
			reasons = append(reasons, fmt.Sprintf("%d %s", n, reason))
		}
		if len(reasons) > 0 {
			sort.Strings(reasons)
			dead = append(dead, fmt.Sprintf("  customer %s: %s", r.Customer, strings.Join(reasons, ", ")))
		}
	}
	if len(dead) > 0 {
		fmt.Fprintf(w, "\nLines the run would dead-letter (held out of period included):\n%s\n", strings.Join(dead, "\n"))
	}
	fmt.Fprintf(w, "\n%d pages, %d Ion requests.\n", rep.Pages, rep.IonRequests)
	if rep.CorrectedIn != "" {
		fmt.Fprintf(w, "Period %s is closed: its changes would be invoiced as Correction rows in %s.\n", rep.Period, rep.CorrectedIn)
	}
	if rep.Complete {
		fmt.Fprintln(w, "The read is complete: a sync would deliver the new and changed records and reverse the gone ones.")
	} else {
		fmt.Fprintf(w, "READ NOT COMPLETE: %s\nA sync would fail the same way; held records it lacks are kept, not reversed.\n", rep.Reason)
	}
	fmt.Fprintln(w)
}

func signed(d decimal.Decimal) string {
	if d.IsPositive() {
		return "+" + d.StringFixed(2)
	}
	return d.StringFixed(2)
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
