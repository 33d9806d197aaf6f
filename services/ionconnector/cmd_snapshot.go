package ionconnector

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/atomicfile"
	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("snapshot", "write the current revision of every record of a period as one FOCUS CSV", snapshotCmd)
}

func snapshotCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	account := fs.String("account", "", "Ion account id (required)")
	period := fs.String("period", "", "billing period YYYY-MM (required)")
	out := fs.String("out", "", "CSV file to write, atomically (required)")
	cfgPath, dataDir := storeFlags(fs, io)
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, "usage: ionconnector snapshot --account A --period YYYY-MM --out FILE [--data-dir D]\n\n"+
			"Writes the current delivered revision of every record of the period (what the billing\n"+
			"sinks hold) as one FOCUS CSV, sorted by customer then record id: what finance imports.")
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	if !accountPeriodFlags(io, "snapshot", *account, *period) {
		return service.ExitUsage
	}
	if *out == "" {
		fmt.Fprintln(io.Stderr, "snapshot: --out is required")
		return service.ExitUsage
	}
	cfg, code := commandConfig(io, "snapshot", *cfgPath, *dataDir)
	if cfg == nil {
		return code
	}
	c, code := commandConnect(ctx, io, "snapshot", cfg)
	if c == nil {
		return code
	}
	defer c.Close()
	recs, err := billing.Snapshot(ctx, c.JS, *account, *period)
	if err != nil {
		fmt.Fprintf(io.Stderr, "snapshot: %v\n", err)
		return service.ExitFailed
	}
	if err := writeSnapshot(*out, recs); err != nil {
		fmt.Fprintf(io.Stderr, "snapshot: write %s: %v\n", *out, err)
		return service.ExitFailed
	}
	totals := map[string]decimal.Decimal{}
	for _, r := range recs {
		totals[r.BillingCurrency] = totals[r.BillingCurrency].Add(r.BilledCost)
	}
	fmt.Fprintf(io.Stdout, "wrote %d records of account %s period %s to %s\n", len(recs), *account, *period, *out)
	printTotals(io.Stdout, "BilledCost", totals)
	return service.ExitOK
}

// writeSnapshot writes recs as one FOCUS CSV, atomically (temp file + rename).
func writeSnapshot(path string, recs []events.UsageRecord) error {
	return atomicfile.Write(path, func(w io.Writer) error { return billing.WriteFOCUSCSV(w, recs) })
}
