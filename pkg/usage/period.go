package usage

import "fmt"

// InPeriod reports whether a record's charge period lies within its page's billing period.
// A row outside it is held, never billed (DESIGN.md "Reconciliation"); the error is a
// *LineError with reason out-of-period whose Line is 0: only the caller knows the line.
func InPeriod(pc PageContext, rec Record) error {
	start, end, err := pc.periodBounds()
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	if rec.ChargePeriodStart.Before(start) || rec.ChargePeriodEnd.After(end) {
		return &LineError{
			Column: ColUsageStart, Reason: ReasonOutOfPeriod,
			Msg: fmt.Sprintf("charge period %s..%s is outside billing period %s",
				rec.ChargePeriodStart.Format("2006-01-02"), rec.ChargePeriodEnd.Format("2006-01-02"), pc.Period),
		}
	}
	return nil
}
