package ionconnector

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/obs"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("ionsim", "run the Ion sandbox alone and print the credentials it accepts", ionsimCmd)
}

func ionsimCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("ionsim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve the Ion API on")
	seed := fs.Int64("seed", 1, "seed of the generated partner: the same seed serves the same data")
	customers := fs.Int("customers", 50, "customers of the generated partner")
	period := fs.String("period", "", "month with data, YYYY-MM or YYYY-MM..YYYY-MM (default: the last three months and the current one)")
	currency := fs.String("currency", "EUR", "invoice currency (ISO 4217)")
	daily := fs.Bool("daily", true, "daily rows (false: one row per month and grouping key)")
	rate := fs.Float64("faults", 0, "fraction of API requests answered 429 or 503 (half each)")
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	opts := ionsim.Options{
		Seed: *seed, Customers: *customers, Currency: *currency,
		Variant: ionsim.Variant{Daily: *daily},
		Faults:  ionsim.Faults{Rate429: *rate / 2, Rate503: *rate / 2, RetryAfter: 1},
	}
	if *period != "" {
		opts.Periods = []string{*period}
	}
	logger, err := obs.NewLogger(io.Stderr, "info", "json")
	if err != nil {
		fmt.Fprintln(io.Stderr, err)
		return service.ExitUsage
	}
	opts.Logger = logger
	sim, err := ionsim.New(opts)
	if err != nil {
		fmt.Fprintf(io.Stderr, "ionsim: %v\n", err)
		return service.ExitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if _, err := sim.Start(ctx, *listen); err != nil {
		fmt.Fprintf(io.Stderr, "ionsim: %v\n", err)
		return service.ExitFailed
	}
	defer sim.Close()
	if err := sim.Describe(io.Stdout); err != nil {
		return service.ExitFailed
	}
	<-ctx.Done()
	return service.ExitOK
}
