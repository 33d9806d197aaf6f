package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Source modes: which Ion API produced the data. One mode per account and period (DESIGN.md
// "One source mode per account and period").
const (
	ModeV1 = "v1" // monthly azureplan billing report, HTTP Basic
	ModeV3 = "v3" // daily azure_plan_billing report data, OAuth
)

// Summary stages.
const (
	StageTransformer = "transformer"
	StagePublisher   = "publisher"
)

// Sync outcomes.
const (
	SyncSucceeded = "succeeded"
	SyncFailed    = "failed"
)

// periodLayout is the wire form of a billing period: a calendar month.
const periodLayout = "2006-01"

// ParsePeriod returns the inclusive start and exclusive end (UTC midnight) of a "YYYY-MM" period.
func ParsePeriod(period string) (start, end time.Time, err error) {
	start, err = time.Parse(periodLayout, period)
	if err != nil || start.Format(periodLayout) != period {
		return time.Time{}, time.Time{}, fmt.Errorf("events: period %q is not YYYY-MM", period)
	}
	return start, start.AddDate(0, 1, 0), nil
}

// PeriodOf returns the "YYYY-MM" period that contains t (in UTC).
func PeriodOf(t time.Time) string { return t.UTC().Format(periodLayout) }

// PeriodCloses is when the period that starts at start (a month's first day) closes: closingDay
// of the next month, 00:00 UTC (config.Account.ClosingDay, 1..28). From then on a change to
// one of its lines is delivered as a Correction in the next open period (DESIGN.md "Delivery
// semantics").
func PeriodCloses(start time.Time, closingDay int) time.Time {
	s := start.UTC()
	return time.Date(s.Year(), s.Month()+1, closingDay, 0, 0, 0, 0, time.UTC)
}

// OldestOpenPeriod returns the oldest period open at t: the previous month until its closing
// day, else t's own month. It is where a Correction of a closed period is invoiced.
func OldestOpenPeriod(t time.Time, closingDay int) string {
	t = t.UTC()
	cur := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	if prev := cur.AddDate(0, -1, 0); t.Before(PeriodCloses(prev, closingDay)) {
		return PeriodOf(prev)
	}
	return PeriodOf(cur)
}

// subjectOf builds a ce-subject: "<account>/<period>[/<customer>]".
func subjectOf(account, period string, more ...string) string {
	s := account + "/" + period
	for _, m := range more {
		s += "/" + m
	}
	return s
}

// nonNil returns s, or an empty slice for nil: JSON arrays in our schemas are never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// jsonSHA256 hashes the JSON encoding of v. encoding/json is deterministic for our types (struct
// field order, sorted map keys, decimal.String trims trailing zeros), which is what makes the
// hash canonical.
func jsonSHA256(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own payload types reach here and they always encode.
		panic(fmt.Sprintf("events: hash: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
