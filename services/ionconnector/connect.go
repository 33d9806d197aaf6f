package ionconnector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

// cmdConn is an operator command's connection to a deployment's store.
type cmdConn struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Embedded *bus.Embedded // the data dir opened in process; nil with NATS_URL
	Logger   *slog.Logger  // set by commandConnect
	closers  []func()
}

// Close drains the connection, then stops an embedded server (releasing the data dir).
func (c *cmdConn) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// errStoreInUse means the data dir belongs to a running ionconnector; the command must go
// through that process's listener instead. Commands exit with service.ExitUsage for it.
var errStoreInUse = errors.New("data dir in use")

// connectForCommand opens a running deployment's store for an operator command (reconcile,
// snapshot, ...), without provisioning or changing anything:
//
//   - NATS_URL (config nats.url) set: connect to that server or cluster;
//   - otherwise the embedded store in cfg.Embedded.DataDir, started in this process with no
//     listener, when no ionconnector holds it. If one does (its lock is taken), the command
//     connects to the loopback listener that process recorded in the lock file; when it runs
//     without one, the error wraps errStoreInUse.
func connectForCommand(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*cmdConn, error) {
	c := &cmdConn{}
	dial := func(url string, n config.NATS) error {
		nc, err := bus.Connect(ctx, bus.ConnOptions{
			URL: url, CredsFile: n.CredsFile,
			TLSCAFile: n.TLS.CAFile, TLSCertFile: n.TLS.CertFile, TLSKeyFile: n.TLS.KeyFile,
			Name: "ionconnector-cli", Logger: logger,
		})
		c.NC = nc
		return err
	}
	if cfg.NATS.URL != "" {
		if err := dial(cfg.NATS.URL, cfg.NATS); err != nil {
			return nil, err
		}
	} else {
		dir := cfg.Embedded.DataDir
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("no ionconnector data dir at %s (use --data-dir, or NATS_URL for a running deployment)", dir)
		}
		emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DataDir: dir, Listen: bus.ListenOff, ServerName: "ionconnector-cli", Logger: logger})
		if errors.Is(err, bus.ErrDataDirLocked) {
			// A running ionconnector holds the store: go through the loopback listener it
			// recorded in the lock file, as the nats CLI would.
			if url := bus.HolderURL(dir); url != "" {
				if err := dial(url, config.NATS{}); err != nil {
					return nil, fmt.Errorf("the ionconnector running on %s listens on %s: %w", dir, url, err)
				}
				logger.Debug("connected to the running ionconnector's listener", "url", url)
				emb, err = nil, nil
			} else {
				return nil, fmt.Errorf("%w: %v\nan ionconnector is running on %s without a listener (--listen off); start it with a listener and use\n  NATS_URL=nats://%s ionconnector %s",
					errStoreInUse, err, dir, bus.DefaultListen, "<command> [flags]")
			}
		}
		if err != nil {
			return nil, err
		}
		if emb != nil {
			c.Embedded = emb
			c.closers = append(c.closers, func() { _ = emb.Shutdown(context.Background()) })
			nc, err := emb.Connect(ctx, "ionconnector-cli")
			if err != nil {
				c.Close()
				return nil, err
			}
			c.NC = nc
		}
	}
	c.closers = append(c.closers, func() { _ = c.NC.Drain() })
	js, err := jetstream.New(c.NC)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := bus.WaitForJetStream(ctx, js); err != nil {
		c.Close()
		return nil, err
	}
	c.JS = js
	return c, nil
}

// commandConfig loads an operator command's config (flags win over the file), printing the
// error and returning its exit code when it cannot.
func commandConfig(io IO, name, cfgPath, dataDir string) (*config.Config, int) {
	cfg, err := loadConfig(cfgPath, io, dataDir, "")
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return nil, service.ExitUsage
	}
	return cfg, 0
}

// commandConnect connects an operator command with connectForCommand and maps failures to exit
// codes: 2 when the store belongs to a running process (use its listener), else 1. The
// connection carries the warn-level logger commands hand to what they call.
func commandConnect(ctx context.Context, io IO, name string, cfg *config.Config) (*cmdConn, int) {
	logger := slog.New(slog.NewTextHandler(io.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := connectForCommand(ctx, cfg, logger)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, errStoreInUse) {
			msg = strings.Replace(msg, "<command> [flags]", name+" [flags]", 1)
			fmt.Fprintf(io.Stderr, "%s: %s\n", name, msg)
			return nil, service.ExitUsage
		}
		fmt.Fprintf(io.Stderr, "%s: %s\n", name, msg)
		return nil, service.ExitFailed
	}
	c.Logger = logger
	return c, 0
}

// accountPeriodFlags validates the --account and --period every period command takes.
func accountPeriodFlags(io IO, name, account, period string) bool {
	if account == "" || period == "" {
		fmt.Fprintf(io.Stderr, "%s: --account and --period are required\n", name)
		return false
	}
	if err := events.CheckToken(account); err != nil {
		fmt.Fprintf(io.Stderr, "%s: --account: %v\n", name, err)
		return false
	}
	if _, _, err := events.ParsePeriod(period); err != nil {
		fmt.Fprintf(io.Stderr, "%s: --period: %v\n", name, err)
		return false
	}
	return true
}
