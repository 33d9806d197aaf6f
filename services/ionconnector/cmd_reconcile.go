package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("reconcile", "print the latest reconciliation of an account and period (exit 0 reconciled, 1 not)", reconcileCmd)
}

func reconcileCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	account := fs.String("account", "", "Ion account id (required)")
	period := fs.String("period", "", "billing period YYYY-MM (required)")
	asJSON := fs.Bool("json", false, "print the stored reconciliation event as JSON")
	cfgPath, dataDir := storeFlags(fs, io)
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, "usage: ionconnector reconcile --account A --period YYYY-MM [--json] [--data-dir D]\n\n"+
			"Prints the reconciliation the publisher stored for the period's latest completed sync:\n"+
			"per customer and currency Ion's control total against delivered + held + dead-lettered,\n"+
			"at full precision and rounded to 2 dp. Reads NATS_URL when set, else the data dir.")
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	if !accountPeriodFlags(io, "reconcile", *account, *period) {
		return service.ExitUsage
	}
	cfg, code := commandConfig(io, "reconcile", *cfgPath, *dataDir)
	if cfg == nil {
		return code
	}
	c, code := commandConnect(ctx, io, "reconcile", cfg)
	if c == nil {
		return code
	}
	defer c.Close()
	r, err := billing.LoadReconciliation(ctx, c.JS, *account, *period)
	if err != nil {
		if errors.Is(err, billing.ErrNoReconciliation) {
			fmt.Fprintf(io.Stderr, "reconcile: no reconciliation stored for account %s period %s yet: no sync of it has completed and settled\n", *account, *period)
		} else {
			fmt.Fprintf(io.Stderr, "reconcile: %v\n", err)
		}
		return service.ExitFailed
	}
	if *asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			fmt.Fprintf(io.Stderr, "reconcile: %v\n", err)
			return service.ExitFailed
		}
		fmt.Fprintln(io.Stdout, string(b))
	} else {
		printReconciliation(io.Stdout, r)
	}
	if !r.Reconciled {
		return service.ExitFailed
	}
	return service.ExitOK
}

// printReconciliation writes r as two tables, full precision (10 dp) and rounded to the
// invoice's 2 dp, then the period totals and the verdict.
func printReconciliation(w io.Writer, r events.Reconciliation) {
	fmt.Fprintf(w, "Reconciliation of account %s, period %s\n", r.Account, r.Period)
	fmt.Fprintf(w, "sync %s (%s, request %s): %s; computed %s\n\n", r.SyncID, r.Mode, r.RequestID, r.SyncStatus,
		r.ComputedAt.UTC().Format("2006-01-02 15:04:05Z"))
	for _, dp := range []int32{10, 2} {
		if dp == 10 {
			fmt.Fprintln(w, "Full precision (10 dp):")
		} else {
			fmt.Fprintln(w, "Rounded to 2 dp:")
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "CUSTOMER\tCURRENCY\tCONTROL\tDELIVERED\tHELD\tDEAD-LETTERED\tDIFFERENCE\tMATCH\t")
		for _, row := range r.Rows {
			cust := row.Customer
			if cust == "" {
				cust = "(unattributed)"
			}
			match := "yes"
			if !row.Match {
				match = "NO"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", cust, row.Currency,
				row.Control.StringFixed(dp), row.Delivered.StringFixed(dp), row.Held.StringFixed(dp),
				row.DeadLettered.StringFixed(dp), row.Difference.StringFixed(dp), match)
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Period: %d records delivered, %d held lines, %d dead letters\n", r.Records, r.HeldLines, r.DeadLetters)
	printTotals(w, "Delivered BilledCost", r.Totals)
	if r.Reconciled {
		fmt.Fprintln(w, "RECONCILED")
	} else {
		fmt.Fprintf(w, "NOT RECONCILED: %s\n", r.Reason)
	}
}

// printTotals writes one line per currency: full precision and rounded to 2 dp.
func printTotals(w io.Writer, label string, totals map[string]decimal.Decimal) {
	curs := make([]string, 0, len(totals))
	for c := range totals {
		curs = append(curs, c)
	}
	slices.Sort(curs)
	if len(curs) == 0 {
		fmt.Fprintf(w, "%s: none\n", label)
	}
	for _, c := range curs {
		fmt.Fprintf(w, "%s %s: %s (%s)\n", label, c, totals[c].StringFixed(10), totals[c].StringFixed(2))
	}
}
