package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/obs"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("sync", "sync one account-period through a running deployment and follow it to reconciliation (--once: run every service in this process)", syncCmd)
}

func syncCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	once := fs.Bool("once", false, "run every service in this process on the embedded server, exit when the period is delivered and reconciled")
	ionURL := fs.String("ion-url", config.DefaultIonURL, "Ion base URL (the sandbox's for a test)")
	account := fs.String("account", "", "Ion account (reseller) id")
	auth := fs.String("auth", config.AuthV3, "credential kind: v3 (OAuth refresh token) or v1 (API key and secret)")
	refreshFile := fs.String("refresh-token-file", "", "v3: file holding the refresh token (used to seed the rotating token store)")
	keyFile := fs.String("api-key-file", "", "v1: file holding the API key")
	secretFile := fs.String("api-secret-file", "", "v1: file holding the API secret")
	currency := fs.String("currency", "EUR", "invoice currency (ISO 4217)")
	period := fs.String("period", time.Now().UTC().AddDate(0, -1, 0).Format("2006-01"), "period, YYYY-MM")
	out := fs.String("out", "", "directory for the FOCUS CSV deliveries (required)")
	dataDir := fs.String("data-dir", config.DefaultDataDir, "embedded NATS store; a second run on it delivers only what changed")
	listen := fs.String("listen", "off", "embedded NATS loopback listener, host:port or off")
	tokenKeyFile := fs.String("token-key-file", "", "AES-256 key for the token store (default: created in --data-dir, or ION_TOKEN_KEY)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	dryRun := fs.Bool("dry-run", false, "without --once: read the period from Ion in this process and show, per customer, what a sync would change on the invoice; delivers, publishes and stores nothing")
	asJSON := fs.Bool("json", false, "without --once: print only the summary (or dry-run report) as one JSON object on stdout (default: a table)")
	cfgPath := fs.String("config", io.Env("ION_CONNECTOR_CONFIG"), "without --once: YAML config of the deployment (env ION_CONNECTOR_CONFIG; NATS_URL, data dir, account auth)")
	requestID := fs.String("request-id", "", "without --once: the request id (default a new one); give the id an interrupted sync printed to follow it again instead of starting another")
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, "usage: ionconnector sync --account A --period YYYY-MM [--json] [--request-id ID] [--config F] [--data-dir D]\n"+
			"       ionconnector sync --dry-run --account A --period YYYY-MM [--json] [--config F] [--data-dir D]\n"+
			"       ionconnector sync --once --account A --period YYYY-MM --out DIR [credential flags]\n\n"+
			"Without --once: publishes a sync request to the running deployment (NATS_URL, or the loopback\n"+
			"listener of a running `ionconnector run`) and follows it through fetch, transform, delivery and\n"+
			"reconciliation with a progress bar. Exit 0 reconciled, 1 not reconciled or failed, 2 usage.\n"+
			"--dry-run: reads the period from Ion in this process, exactly as the fetcher would (the\n"+
			"deployment's token store, so a rotating v3 token is safe; the account must be in --config),\n"+
			"transforms it as the transformer would, and compares the records with the delivery ledger:\n"+
			"per customer new, changed, unchanged and gone records and the invoice total now, after and\n"+
			"the delta. It publishes no request, page or record and writes no ledger. Exit 0 when the read\n"+
			"is complete, 1 when it is not (a sync would fail too), 2 usage.\n\n"+
			"With --once: runs every service in this process on its own embedded server, then exits.")
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *dryRun && *once {
		fmt.Fprintln(io.Stderr, "sync: --dry-run compares with a deployment's ledger and cannot run with --once (which starts its own); run `sync --dry-run` with --config/--data-dir or NATS_URL")
		return service.ExitUsage
	}
	if *dryRun && set["request-id"] {
		fmt.Fprintln(io.Stderr, "sync --dry-run: --request-id does not apply: a dry run publishes no request")
		return service.ExitUsage
	}
	if !*once {
		dir := ""
		if set["data-dir"] {
			dir = *dataDir
		}
		mode := ""
		if set["auth"] {
			mode = *auth
		}
		if *dryRun {
			return syncDryRun(ctx, io, dryRunOptions{Account: *account, Period: *period, Mode: mode, JSON: *asJSON,
				ConfigPath: *cfgPath, DataDir: dir, Timeout: *timeout})
		}
		return syncRemote(ctx, io, remoteSyncOptions{Account: *account, Period: *period, Mode: mode, RequestID: *requestID,
			JSON: *asJSON, ConfigPath: *cfgPath, DataDir: dir, Timeout: *timeout})
	}
	if io.Env("NATS_URL") != "" {
		fmt.Fprintln(io.Stderr, "sync --once: runs on its own embedded server; unset NATS_URL (private durables on a shared cluster are not supported yet)")
		return service.ExitUsage
	}
	if *out == "" {
		fmt.Fprintln(io.Stderr, "sync --once: --out is required")
		return service.ExitUsage
	}
	if _, _, err := events.ParsePeriod(*period); err != nil {
		fmt.Fprintf(io.Stderr, "sync --once: --period: %v\n", err)
		return service.ExitUsage
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(io.Stderr, "sync --once: %v\n", err)
		return service.ExitFailed
	}
	cfg := config.Default()
	cfg.Embedded.DataDir, cfg.Embedded.Listen = *dataDir, *listen
	if *auth == config.AuthV3 {
		cfg.TokenKeyFile = *tokenKeyFile
		if cfg.TokenKeyFile == "" && io.Env("ION_TOKEN_KEY") == "" {
			cfg.TokenKeyFile = filepath.Join(*dataDir, "token-key")
			if _, err := readOrCreateSecret(cfg.TokenKeyFile, 32); err != nil {
				fmt.Fprintf(io.Stderr, "sync --once: %v\n", err)
				return service.ExitFailed
			}
		}
	}
	cfg.Accounts = []config.Account{{ID: *account, Auth: *auth, IonURL: *ionURL, RefreshTokenFile: *refreshFile,
		APIKeyFile: *keyFile, APISecretFile: *secretFile, Currency: *currency, ClosingDay: config.DefaultClosingDay}}
	cfg.Sinks.CSV = &config.CSVSink{Dir: *out}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(io.Stderr, err)
		return service.ExitUsage
	}
	logger, err := obs.NewLogger(io.Stderr, "warn", "json")
	if err != nil {
		fmt.Fprintln(io.Stderr, err)
		return service.ExitUsage
	}
	started := time.Now()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	h, err := startHost(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(io.Stderr, "sync --once: %v\n", err)
		return service.ExitFailed
	}
	defer h.Close()
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- runPipeline(runCtx, h.Deps) }()
	defer func() { stopRun(); <-runDone }()

	res, err := followSync(ctx, h.Deps, followOptions{
		Account: *account, Period: *period, Mode: *auth, Reason: "manual", RequestedBy: "ionconnector sync --once",
		RequestIDFile: filepath.Join(*dataDir, "pending-sync-"+*account+"-"+*period), Progress: newProgress(io.Stderr),
	})
	if err != nil {
		fmt.Fprintf(io.Stderr, "sync --once: %v\n", err)
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(io.Stderr, "sync --once: interrupted; run it again on the same --data-dir to resume")
		}
		return service.ExitFailed
	}
	res.Summary.ElapsedMS = time.Since(started).Milliseconds()
	printSummary(io.Stderr, res, -1)
	line, _ := json.Marshal(res.Summary)
	fmt.Fprintln(io.Stdout, string(line))
	if !res.Summary.Reconciled {
		return service.ExitFailed
	}
	return service.ExitOK
}
