// Package publisher delivers usage records to billing sinks through the delivery ledger
// (DESIGN.md "Delivery semantics").
package publisher

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

// Name is the stage name: router, durable consumer and dead-letter subject token.
const Name = "publisher"

// Run consumes usage.v1.record.> until ctx ends.
func Run(ctx context.Context, deps service.Deps) error {
	st, err := service.NewStage(deps, Name)
	if err != nil {
		return err
	}
	h := &handler{deps: deps}
	if err := st.Consume(events.StreamUsage, Name, "usage.v1.record.>", h.record); err != nil {
		return err
	}
	return st.Run(ctx)
}

type handler struct{ deps service.Deps }

// record decodes a usage record; batching and the ledger (issue "Publisher service") hang off it.
func (h *handler) record(msg *message.Message) error {
	var rec events.UsageRecord
	if err := events.Decode(msg, events.TypeUsageRecord, &rec); err != nil {
		return err
	}
	return nil
}
