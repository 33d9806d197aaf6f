package publisher

import (
	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/config"
)

// closingDay reads an account's closing day from the configuration: the deliverer turns a
// revision accepted after its period closed into a Correction row (DESIGN.md "Delivery
// semantics"). An account the configuration does not name (records left from a removed
// account, hand-published test records) has no closing day: its changes stay supersedes.
func closingDay(cfg *config.Config) billing.ClosingDayFunc {
	return func(account string) (int, error) {
		a, ok := cfg.Account(account)
		if !ok {
			return 0, nil
		}
		if a.ClosingDay == 0 {
			return config.DefaultClosingDay, nil
		}
		return a.ClosingDay, nil
	}
}
