package service_test

import (
	"log/slog"
	"testing"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/service"
)

// The publisher acks after its batch commits, so its durable must allow a batch per worker
// un-acked; other durables keep MaxAckPending = workers.
func TestTopologyPublisherMaxAckPendingCoversBatches(t *testing.T) {
	cfg := config.Default()
	cfg.Publisher.Workers, cfg.Publisher.BatchSize = 3, 100
	got := map[string]int{}
	for _, c := range service.Topology(cfg, slog.New(slog.DiscardHandler)).Consumers {
		got[c.Durable] = c.Workers
	}
	if got["publisher"] != 300 {
		t.Errorf("publisher MaxAckPending %d, want 300", got["publisher"])
	}
	if got["transformer"] != cfg.Transformer.Workers {
		t.Errorf("transformer MaxAckPending %d, want %d", got["transformer"], cfg.Transformer.Workers)
	}
}
