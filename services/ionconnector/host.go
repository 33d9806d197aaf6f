package ionconnector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/fetcher"
	"github.com/ionusage/connector/services/publisher"
	"github.com/ionusage/connector/services/scheduler"
	"github.com/ionusage/connector/services/transformer"
)

// host is a started broker connection with provisioned topology: the embedded server (no
// NATS_URL) or an external one.
type host struct {
	Deps     service.Deps
	Embedded *bus.Embedded // nil when connected to NATS_URL
	closers  []func()
}

// Close drains the connection, then stops the embedded server, in that order so in-flight
// acks reach the store.
func (h *host) Close() {
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i]()
	}
}

func startHost(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*host, error) {
	h := &host{}
	var nc *nats.Conn
	var err error
	if cfg.NATS.URL != "" {
		nc, err = bus.Connect(ctx, bus.ConnOptions{
			URL: cfg.NATS.URL, CredsFile: cfg.NATS.CredsFile,
			TLSCAFile: cfg.NATS.TLS.CAFile, TLSCertFile: cfg.NATS.TLS.CertFile, TLSKeyFile: cfg.NATS.TLS.KeyFile,
			Name: "ionconnector", Logger: logger,
		})
		if err != nil {
			return nil, err
		}
	} else {
		emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{
			DataDir: cfg.Embedded.DataDir, Listen: cfg.Embedded.Listen, ServerName: "ionconnector", Logger: logger,
		})
		if err != nil {
			return nil, err
		}
		h.Embedded = emb
		h.closers = append(h.closers, func() { _ = emb.Shutdown(context.Background()) })
		nc, err = emb.Connect(ctx, "ionconnector")
		if err != nil {
			h.Close()
			return nil, err
		}
		if u := emb.ClientURL(); u != "" {
			logger.Info("embedded NATS listening", "url", u, "data_dir", cfg.Embedded.DataDir)
		}
	}
	h.closers = append(h.closers, func() { _ = nc.Drain() })
	deps, cleanup, err := service.Build(ctx, service.BuildOptions{Config: cfg, Logger: logger, Conn: nc})
	if err != nil {
		h.Close()
		return nil, err
	}
	h.closers = append(h.closers, cleanup)
	h.Deps = deps
	return h, nil
}

// pipeline is every service of the connector, in flow order.
var pipeline = []struct {
	name string
	run  service.RunFunc
}{
	{scheduler.Name, scheduler.Run},
	{fetcher.Name, fetcher.Run},
	{transformer.Name, transformer.Run},
	{publisher.Name, publisher.Run},
}

// runPipeline runs every service until ctx ends or one fails; a failure stops the others.
func runPipeline(ctx context.Context, deps service.Deps) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(pipeline))
	for i, s := range pipeline {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := deps
			d.Logger = deps.Logger.With("service", s.name)
			if err := s.run(ctx, d); err != nil && !errors.Is(err, context.Canceled) {
				errs[i] = fmt.Errorf("%s: %w", s.name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
