// Package fetcher turns sync requests into durable raw Ion pages (DESIGN.md "Ion source").
package fetcher

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

// Name is the stage name: router, durable consumer and dead-letter subject token.
const Name = "fetcher"

// Run consumes ion.sync.v1.requested.> until ctx ends.
func Run(ctx context.Context, deps service.Deps) error {
	st, err := service.NewStage(deps, Name)
	if err != nil {
		return err
	}
	h := &handler{deps: deps}
	if err := st.Consume(events.StreamSync, Name, "ion.sync.v1.requested.>", h.syncRequested); err != nil {
		return err
	}
	return st.Run(ctx)
}

type handler struct{ deps service.Deps }

// syncRequested validates a request against the configured accounts. The fetch plan itself
// (issue "Fetcher service") hangs off this handler.
func (h *handler) syncRequested(msg *message.Message) error {
	var req events.SyncRequest
	if err := events.Decode(msg, events.TypeSyncRequested, &req); err != nil {
		return err
	}
	if _, ok := h.deps.Config.Account(req.Account); !ok {
		return fmt.Errorf("%w: sync request %s names account %q, which is not configured", events.ErrUndecodable, req.RequestID, req.Account)
	}
	h.deps.Logger.Info("sync requested", "account", req.Account, "period", req.Period, "mode", req.Mode, "request_id", req.RequestID)
	return nil
}
