package fetcher

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/pause"
)

// parked reports whether msg belongs to a paused account and was parked (pkg/pause): the
// caller then acks it without working on it, and `ionconnector resume` re-publishes it. The
// flag is read again after parking: had a resume listed the parked messages in between, this
// one would be missed, so it is taken back and processed now (handlers are idempotent).
func (s *Service) parked(ctx context.Context, msg *message.Message, account string) (bool, error) {
	_, paused, err := pause.Get(ctx, s.periods, account)
	if err != nil || !paused {
		return false, err
	}
	if err := pause.Hold(ctx, s.periods, account, pause.HeldFrom(msg, Name, s.opts.Now())); err != nil {
		return false, err
	}
	if _, still, err := pause.Get(ctx, s.periods, account); err != nil {
		return false, err
	} else if !still {
		return false, pause.Unhold(ctx, s.periods, account, msg.UUID)
	}
	s.log.Info("account paused: message parked until resume", "account", account, "subject", msg.Metadata.Get(bus.MetaSubject))
	return true, nil
}
