package usage

import (
	"fmt"
	"strings"
	"time"
)

// dateLayouts are the spellings of a charge date seen in Ion JSON values and CSV cells.
var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02",
	"01/02/2006 15:04:05",
	"01/02/2006",
}

// parseDate reads a charge date as UTC; dateOnly reports a value without a time of day.
func parseDate(s string) (t time.Time, dateOnly bool, err error) {
	s = strings.TrimSpace(s)
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), !strings.Contains(layout, "15"), nil
		}
	}
	return time.Time{}, false, fmt.Errorf("not a date: %q", s)
}

// day truncates to UTC midnight.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// chargePeriod turns a row's start and end into FOCUS bounds: the start's day, and the
// midnight after the last usage day. Whether Ion's end is inclusive is unknown (DESIGN.md
// "Ion source"). A date-only end, an end of 23:59:59, or an end on the start's day names the
// last usage day. A timestamp at exactly midnight after the start's day is taken as already
// exclusive: read inclusively it would push every month's last day into the next period and
// hold it; read this way the worst case is a multi-day row ending one day early, still billed.
func chargePeriod(start, end time.Time, endDateOnly bool) (time.Time, time.Time) {
	s := day(start)
	if !endDateOnly && end.Equal(day(end)) && end.After(s) {
		return s, end
	}
	return s, day(end).AddDate(0, 0, 1)
}
