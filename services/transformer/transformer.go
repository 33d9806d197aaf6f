// Package transformer turns raw Ion pages into normalized usage records (DESIGN.md "Normalized record").
package transformer

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

// Name is the stage name: router, durable consumer and dead-letter subject token.
const Name = "transformer"

// Run consumes ion.raw.v1.page.> until ctx ends.
func Run(ctx context.Context, deps service.Deps) error {
	st, err := service.NewStage(deps, Name)
	if err != nil {
		return err
	}
	h := &handler{deps: deps}
	if err := st.Consume(events.StreamRaw, Name, "ion.raw.v1.page.>", h.rawPage); err != nil {
		return err
	}
	return st.Run(ctx)
}

type handler struct{ deps service.Deps }

// rawPage decodes a page event; normalization (issue "Transformer service") hangs off it.
func (h *handler) rawPage(msg *message.Message) error {
	var page events.RawPage
	if err := events.Decode(msg, events.TypeRawPage, &page); err != nil {
		return err
	}
	h.deps.Logger.Debug("raw page received", "account", page.Account, "period", page.Period, "page_id", page.PageID)
	return nil
}
