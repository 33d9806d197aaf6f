package ionconnector

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/obs"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("billingsim", "run a billing receiver that verifies, upserts and reports deliveries (GET /state)", billingsimCmd)
}

func billingsimCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("billingsim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8082", "address to serve POST /deliveries and GET /state on")
	secretFile := fs.String("secret-file", "", "file holding the HMAC secret shared with the publisher (required)")
	failRate := fs.Float64("fail-rate", 0, "fraction of POSTs answered 500, chosen deterministically (half after storing)")
	seed := fs.Uint64("seed", 1, "seed of the failure sequence")
	stateFile := fs.String("state-file", "", "keep what the receiver holds in this file across restarts (default: memory only)")
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	if *secretFile == "" {
		fmt.Fprintln(io.Stderr, "billingsim: --secret-file is required")
		return service.ExitUsage
	}
	sec, err := config.ReadSecretFile(*secretFile)
	if err != nil {
		fmt.Fprintf(io.Stderr, "billingsim: %v\n", err)
		return service.ExitUsage
	}
	logger, err := obs.NewLogger(io.Stderr, "info", "json")
	if err != nil {
		fmt.Fprintln(io.Stderr, err)
		return service.ExitUsage
	}
	sim, err := billingsim.New(billingsim.Options{Secret: []byte(sec.Reveal()), FailRate: *failRate, Seed: *seed, Logger: logger, StateFile: *stateFile})
	if err != nil {
		fmt.Fprintf(io.Stderr, "billingsim: %v\n", err)
		return service.ExitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	url, err := sim.Start(*listen)
	if err != nil {
		fmt.Fprintf(io.Stderr, "billingsim: %v\n", err)
		return service.ExitFailed
	}
	fmt.Fprintf(io.Stdout, "billing receiver: POST %s/deliveries, GET %s/state\n", url, url)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = sim.Close(sctx)
	return service.ExitOK
}
