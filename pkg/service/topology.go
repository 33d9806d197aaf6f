package service

import (
	"log/slog"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
)

// Topology is the broker topology the configuration asks for: retention, replicas, and the
// pipeline's durables with MaxAckPending sized to each stage's workers.
func Topology(cfg *config.Config, logger *slog.Logger) bus.Topology {
	consumers := bus.DefaultConsumers()
	for i := range consumers {
		if w := workers(cfg, consumers[i].Durable); w > 0 {
			consumers[i].Workers = w
		}
		// The publisher acks a record only after its batch is committed, so each worker holds
		// up to a whole batch un-acked: MaxAckPending must cover workers × batch size.
		if consumers[i].Durable == "publisher" && cfg.Publisher.BatchSize > 1 {
			consumers[i].Workers = max(consumers[i].Workers, 1) * cfg.Publisher.BatchSize
		}
	}
	return bus.Topology{
		Replicas:        cfg.NATS.Replicas,
		MaxAge:          cfg.Streams.MaxAge,
		RawMaxAge:       cfg.Streams.RawMaxAge,
		DuplicateWindow: cfg.Streams.DuplicateWindow,
		Consumers:       consumers,
		Logger:          logger,
	}
}

// workers is the configured parallelism of a durable: the subscriber's pull loops and the
// consumer's MaxAckPending both follow it. 0 means the default.
func workers(cfg *config.Config, durable string) int {
	switch durable {
	case "fetcher", "fetcher-tasks":
		return cfg.Fetcher.Workers
	case "transformer":
		return cfg.Transformer.Workers
	case "publisher":
		return cfg.Publisher.Workers
	}
	return 0
}
