package ionconnector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/obs"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("demo", "sync last month of a generated partner end to end: embedded NATS, Ion sandbox, billing receiver", demoCmd)
}

// demoAccount is the sandbox's reseller account.
const demoAccount = "10001"

func demoCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dataDir := fs.String("data-dir", config.DefaultDataDir, "embedded NATS store and demo state; a second run on it delivers nothing new")
	listen := fs.String("listen", "127.0.0.1:0", "embedded NATS loopback listener for the nats CLI (host:port, or off)")
	customers := fs.Int("customers", 50, "customers of the generated partner")
	seed := fs.Int64("seed", 1, "seed of the generated partner: the same seed is the same data")
	failRate := fs.Float64("billing-fail-rate", 0, "fraction of deliveries the billing receiver fails (it is retried)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	stay := fs.Bool("stay", false, "keep everything running after the summary (until Ctrl-C) and write a config file, so that the operator commands (status, sync --dry-run, dlq, reconcile, approve, …) can be tried against the demo from another terminal")
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	started := time.Now()
	period := time.Now().UTC().AddDate(0, -1, 0).Format("2006-01")
	// Absolute paths: the config that --stay writes is used from other directories too.
	if abs, err := filepath.Abs(*dataDir); err == nil {
		*dataDir = abs
	}
	dir := filepath.Join(*dataDir, "demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintf(io.Stderr, "demo: %v\n", err)
		return service.ExitFailed
	}
	// Services log as JSON into a file, so the terminal shows the progress and the summary.
	logFile, err := os.OpenFile(filepath.Join(dir, "ionconnector.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(io.Stderr, "demo: %v\n", err)
		return service.ExitFailed
	}
	defer logFile.Close()
	logger, err := obs.NewLogger(logFile, "info", "json")
	if err != nil {
		fmt.Fprintln(io.Stderr, err)
		return service.ExitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	env, err := startDemoEnv(ctx, demoEnvOptions{
		Dir: dir, DataDir: *dataDir, Listen: *listen, Customers: *customers, Seed: *seed,
		Period: period, FailRate: *failRate, Logger: logger,
	})
	if err != nil {
		fmt.Fprintf(io.Stderr, "demo: %v\n", err)
		return service.ExitFailed
	}
	defer env.Close()
	fmt.Fprintf(io.Stderr, "Ion sandbox %s · billing receiver %s · NATS %s · logs %s\n",
		env.sim.BaseURL(), env.billingURL, orOff(env.host.Embedded.ClientURL()), logFile.Name())

	res, err := followSync(ctx, env.host.Deps, followOptions{
		Account: demoAccount, Period: period, Mode: "v3", Reason: "demo", RequestedBy: "ionconnector demo",
		RequestIDFile: filepath.Join(dir, "pending-request"), Progress: newProgress(io.Stderr),
	})
	if err != nil {
		fmt.Fprintf(io.Stderr, "\ndemo: %v\n", err)
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(io.Stderr, "demo: interrupted; run it again on the same --data-dir to resume")
		}
		return service.ExitFailed
	}
	state, err := billingsim.FetchState(ctx, env.billingURL)
	if err != nil {
		fmt.Fprintf(io.Stderr, "demo: billing receiver: %v\n", err)
		return service.ExitFailed
	}
	res.Summary.ElapsedMS = time.Since(started).Milliseconds()
	printSummary(io.Stdout, res, len(state.Records))
	line, _ := json.Marshal(res.Summary)
	fmt.Fprintln(io.Stdout, string(line))
	if !res.Summary.Reconciled {
		return service.ExitFailed
	}
	if *stay {
		return demoStay(io, env, dir, period)
	}
	return service.ExitOK
}

// demoStay keeps the demo running after its sync for the operator commands, which reach it
// through the listener recorded in the data dir's lock file, with the config written here.
func demoStay(io IO, env *demoEnv, dir, period string) int {
	cfgPath := filepath.Join(dir, "config.yaml")
	b, err := env.host.Deps.Config.YAML()
	if err == nil {
		// File paths only (token files, key files): the config holds no secret values.
		err = os.WriteFile(cfgPath, append([]byte("# written by `ionconnector demo --stay`: the demo's own configuration\n"), b...), 0o600)
	}
	if err != nil {
		fmt.Fprintf(io.Stderr, "demo: write %s: %v\n", cfgPath, err)
		return service.ExitFailed
	}
	fmt.Fprintf(io.Stderr, "\nThe demo keeps running (Ctrl-C stops it). In another terminal, for example:\n"+
		"  export ION_CONNECTOR_CONFIG=%s\n"+
		"  ionconnector status\n"+
		"  ionconnector sync --dry-run --account %s --period %s\n"+
		"  ionconnector reconcile --account %s --period %s\n"+
		"  ionconnector dlq list\n"+
		"  nats --server %s stream ls\n", cfgPath, demoAccount, period, demoAccount, period, orOff(env.host.Embedded.ClientURL()))
	wait, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-wait.Done()
	return service.ExitOK
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

type demoEnvOptions struct {
	Dir, DataDir, Listen string
	Customers            int
	Seed                 int64
	Period               string
	FailRate             float64
	Logger               *slog.Logger
}

// demoEnv is the sandbox, the billing receiver and the connector on an embedded server.
type demoEnv struct {
	sim        *ionsim.Sim
	billing    *billingsim.Server
	billingURL string
	host       *host
	stopRun    context.CancelFunc
	runDone    chan error
}

func (e *demoEnv) Close() {
	if e.stopRun != nil {
		e.stopRun()
		<-e.runDone
	}
	if e.host != nil {
		e.host.Close()
	}
	if e.billing != nil {
		_ = e.billing.Close(context.Background())
	}
	if e.sim != nil {
		_ = e.sim.Close()
	}
}

// readOrCreateSecret returns the content of a secret file, creating it with random bytes (hex)
// on first use, so a second demo run finds the same keys.
func readOrCreateSecret(path string, n int) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return string(b), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b)
	return s, os.WriteFile(path, []byte(s), 0o600)
}

func newRequestID() string { return uuid.NewString() }
