// Package service is what every service binary shares: the dependencies a service's Run gets,
// and the standalone main that loads config, connects to NATS, provisions, serves health and
// metrics, and drains on SIGTERM. The all-in-one ionconnector builds the same Deps around an
// embedded server and calls the same Run functions.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/obs"
)

// Deps is everything a service needs from its host process.
type Deps struct {
	Config   *config.Config
	Logger   *slog.Logger
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Registry *prometheus.Registry
	// Health receives readiness checks; nil when the host serves none.
	Health *obs.Server
}

// Validate reports a missing dependency; Run functions call it first.
func (d Deps) Validate() error {
	var errs []error
	if d.Config == nil {
		errs = append(errs, errors.New("deps: config is nil"))
	}
	if d.Logger == nil {
		errs = append(errs, errors.New("deps: logger is nil"))
	}
	if d.Conn == nil || d.JS == nil {
		errs = append(errs, errors.New("deps: NATS connection is nil"))
	}
	return errors.Join(errs...)
}

// RunFunc is the shape of every service: block until ctx ends, return nil on a clean stop.
type RunFunc func(ctx context.Context, deps Deps) error

// Exit codes shared by every binary.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// Main is the entire main function of a standalone service binary.
func Main(name string, run RunFunc) {
	os.Exit(Standalone(context.Background(), name, run, os.Args[1:], os.Getenv, os.Stderr))
}

// Standalone runs one service against an external NATS server (NATS_URL) and returns the exit code.
func Standalone(ctx context.Context, name string, run RunFunc, args []string, env func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", env("ION_CONNECTOR_CONFIG"), "path to the YAML config file (env ION_CONNECTOR_CONFIG)")
	validateOnly := fs.Bool("validate", false, "check the configuration and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [--config FILE] [--validate]\n\nRuns the %s service against the NATS server in NATS_URL.\n\n", name, name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	cfg, err := config.Load(*cfgPath, env)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitUsage
	}
	if cfg.NATS.URL == "" {
		fmt.Fprintf(stderr, "%s: NATS_URL is required: a standalone service connects to an external NATS server or cluster (use `ionconnector run` for the embedded one)\n", name)
		return ExitUsage
	}
	if *validateOnly {
		fmt.Fprintf(stderr, "%s: configuration is valid\n", name)
		return ExitOK
	}
	logger, err := obs.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitUsage
	}
	logger = logger.With("service", name)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	nc, err := bus.Connect(ctx, bus.ConnOptions{
		URL:         cfg.NATS.URL,
		CredsFile:   cfg.NATS.CredsFile,
		TLSCAFile:   cfg.NATS.TLS.CAFile,
		TLSCertFile: cfg.NATS.TLS.CertFile,
		TLSKeyFile:  cfg.NATS.TLS.KeyFile,
		Name:        "ionconnector-" + name,
		Logger:      logger,
	})
	if err != nil {
		logger.Error("connect to NATS", "err", err)
		return ExitFailed
	}
	// Drain lets in-flight acks and publishes finish before the connection closes.
	defer func() { _ = nc.Drain() }()

	deps, cleanup, err := Build(ctx, BuildOptions{Config: cfg, Logger: logger, Conn: nc})
	if err != nil {
		logger.Error("start", "err", err)
		return ExitFailed
	}
	defer cleanup()

	logger.Info("service started")
	if err := run(ctx, deps); err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("service stopped with error", "err", err)
		return ExitFailed
	}
	logger.Info("service stopped")
	return ExitOK
}

// BuildOptions are the inputs of Build.
type BuildOptions struct {
	Config *config.Config
	Logger *slog.Logger
	Conn   *nats.Conn
	// HTTPListen overrides config http.listen (the all-in-one process serves one endpoint).
	HTTPListen *string
}

// Build provisions the broker topology and starts the health/metrics server; the returned
// cleanup stops the server. Provisioning is idempotent, so every process may run it.
func Build(ctx context.Context, o BuildOptions) (Deps, func(), error) {
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return Deps{}, nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := bus.WaitForJetStream(ctx, js); err != nil {
		return Deps{}, nil, err
	}
	if err := bus.Provision(ctx, js, Topology(o.Config, o.Logger)); err != nil {
		return Deps{}, nil, fmt.Errorf("provision: %w", err)
	}
	reg := obs.NewRegistry()
	deps := Deps{Config: o.Config, Logger: o.Logger, Conn: o.Conn, JS: js, Registry: reg}
	listen := o.Config.HTTP.Listen
	if o.HTTPListen != nil {
		listen = *o.HTTPListen
	}
	if listen == "" {
		return deps, func() {}, nil
	}
	srv, err := obs.NewServer(obs.ServerOptions{Listen: listen, Registry: reg, Logger: o.Logger})
	if err != nil {
		return Deps{}, nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return Deps{}, nil, err
	}
	srv.AddCheck("nats", func(context.Context) error {
		if !o.Conn.IsConnected() {
			return errors.New("not connected to NATS")
		}
		return nil
	})
	deps.Health = srv
	o.Logger.Info("health and metrics listening", "addr", srv.Addr())
	return deps, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}
