package usage

import (
	"errors"
	"fmt"
)

// Stable reason codes of a LineError; they travel into dead letters and `dlq list --reason`.
const (
	ReasonMissingField      = "missing-field"
	ReasonBadNumber         = "bad-number"
	ReasonBadDate           = "bad-date"
	ReasonCurrencyMismatch  = "currency-mismatch"
	ReasonUnknownChargeType = "unknown-charge-type"
	ReasonOutOfPeriod       = "out-of-period"
)

// Sentinels, so callers can branch with errors.Is without parsing reasons.
var (
	// ErrInvalidLine: the line can never normalize as sent; dead-letter it.
	ErrInvalidLine = errors.New("invalid usage line")
	// ErrUnknownChargeType: the ChargeTable does not know the line's charge type. Dead-letter
	// the line; redrive it once the table knows the value.
	ErrUnknownChargeType = errors.New("unknown charge type")
	// ErrOutOfPeriod: the charge dates fall outside the billing period. Hold, never bill.
	ErrOutOfPeriod = errors.New("charge outside billing period")
)

// LineError names the line, column and a stable reason for a line that did not normalize.
type LineError struct {
	Line   int    // 1-based line within its page
	Column string // column template key
	Reason string // one of the Reason* codes
	Msg    string // human text
	Err    error  // underlying parse error, if any
}

func (e *LineError) Error() string {
	s := fmt.Sprintf("line %d: column %s: %s: %s", e.Line, e.Column, e.Reason, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap exposes the reason's sentinel and the underlying error.
func (e *LineError) Unwrap() []error {
	var s error
	switch e.Reason {
	case ReasonUnknownChargeType:
		s = ErrUnknownChargeType
	case ReasonOutOfPeriod:
		s = ErrOutOfPeriod
	default:
		s = ErrInvalidLine
	}
	if e.Err != nil {
		return []error{s, e.Err}
	}
	return []error{s}
}
