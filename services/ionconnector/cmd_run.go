package ionconnector

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/obs"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("run", "run every service in one process (embedded NATS unless NATS_URL is set)", runCmd)
}

func runCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfgPath := fs.String("config", io.Env("ION_CONNECTOR_CONFIG"), "YAML config file (env ION_CONNECTOR_CONFIG)")
	dataDir := fs.String("data-dir", "", "embedded NATS store directory (default: config embedded.data_dir, ./ionconnector-data)")
	listen := fs.String("listen", "", "embedded NATS loopback listener, host:port or 'off' (default: config embedded.listen, 127.0.0.1:4222)")
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	cfg, err := loadConfig(*cfgPath, io, *dataDir, *listen)
	if err != nil {
		fmt.Fprintln(io.Stderr, err)
		return service.ExitUsage
	}
	logger, err := obs.NewLogger(io.Stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintln(io.Stderr, err)
		return service.ExitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	h, err := startHost(ctx, cfg, logger)
	if err != nil {
		logger.Error("start", "err", err)
		return service.ExitFailed
	}
	defer h.Close()
	logger.Info("ionconnector running", "services", len(pipeline))
	if err := runPipeline(ctx, h.Deps); err != nil {
		logger.Error("stopped with error", "err", err)
		return service.ExitFailed
	}
	logger.Info("ionconnector stopped")
	return service.ExitOK
}

// loadConfig loads the config and applies the embedded-server flags, which win over the file.
func loadConfig(path string, io IO, dataDir, listen string) (*config.Config, error) {
	cfg, err := config.Load(path, io.Env)
	if err != nil {
		return nil, err
	}
	if dataDir != "" {
		cfg.Embedded.DataDir = dataDir
	}
	if listen != "" {
		cfg.Embedded.Listen = listen
	}
	return cfg, nil
}
