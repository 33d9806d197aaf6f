// Package scheduler publishes sync requests on per-account schedules.
package scheduler

import (
	"context"

	"github.com/ionusage/connector/pkg/service"
)

// Name is the service name.
const Name = "scheduler"

// Run waits until ctx ends. Schedules, slot ids and catch-up arrive with the issue
// "Scheduler and operator CLI"; until then sync requests come from the CLI or by hand.
func Run(ctx context.Context, deps service.Deps) error {
	if err := deps.Validate(); err != nil {
		return err
	}
	deps.Logger.Info("scheduler idle: no schedule support yet", "accounts", len(deps.Config.Accounts))
	<-ctx.Done()
	return nil
}
