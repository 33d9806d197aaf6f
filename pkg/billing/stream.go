package billing

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/events"
)

// StreamLoader reads usage record events from the USAGE stream by sequence: how a pending
// delivery is rebuilt after a crash and how snapshots get full records. USAGE keeps events for
// streams.max_age (186 days by default, at least 160: config.MinMaxAge), which bounds both
// and the Correction and reversal read-backs.
func StreamLoader(js jetstream.JetStream) RecordLoader {
	return func(ctx context.Context, seq uint64) (events.UsageRecord, error) {
		var r events.UsageRecord
		st, err := js.Stream(ctx, events.StreamUsage)
		if err != nil {
			return r, fmt.Errorf("billing: stream %s: %w", events.StreamUsage, err)
		}
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return r, fmt.Errorf("billing: %s seq %d: %w", events.StreamUsage, seq, err)
		}
		if t := m.Header.Get(events.HeaderType); t != events.TypeUsageRecord {
			return r, fmt.Errorf("billing: %s seq %d is a %q event", events.StreamUsage, seq, t)
		}
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return r, fmt.Errorf("billing: %s seq %d: %w", events.StreamUsage, seq, err)
		}
		return r, nil
	}
}
