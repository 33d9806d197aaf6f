// Package cron parses the schedule syntax of the configuration and walks its slots: five fields
// (minute, hour, day of month, month, day of week) of *, n, n-m, lists and /steps, names for
// months and days, or one of the @ shorthands. Times are UTC, to the minute.
//
// As in Vixie cron, when both day of month and day of week are restricted (neither starts with
// *), a day matches if either does.
package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed cron expression.
type Schedule struct {
	expr                          string
	minute, hour, dom, month, dow uint64 // bit sets
	domStar, dowStar              bool
}

var shorthands = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

type fieldSpec struct {
	name     string
	min, max int
	names    []string
}

var specs = [5]fieldSpec{
	{"minute", 0, 59, nil},
	{"hour", 0, 23, nil},
	{"day of month", 1, 31, nil},
	{"month", 1, 12, []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{"day of week", 0, 7, []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

// Parse parses expr (surrounding space ignored).
func Parse(expr string) (Schedule, error) {
	s := Schedule{expr: strings.TrimSpace(expr)}
	body := s.expr
	if strings.HasPrefix(body, "@") {
		b, ok := shorthands[body]
		if !ok {
			return Schedule{}, fmt.Errorf("unknown shorthand %q (want one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)", body)
		}
		body = b
	}
	fields := strings.Fields(body)
	if len(fields) != 5 {
		return Schedule{}, fmt.Errorf("has %d fields, want 5 (minute hour day-of-month month day-of-week) or an @ shorthand", len(fields))
	}
	sets := [5]*uint64{&s.minute, &s.hour, &s.dom, &s.month, &s.dow}
	for i, f := range fields {
		bits, err := parseField(f, specs[i])
		if err != nil {
			return Schedule{}, err
		}
		*sets[i] = bits
	}
	if s.dow&(1<<7) != 0 { // 7 is Sunday too
		s.dow |= 1
	}
	s.domStar = strings.HasPrefix(fields[2], "*")
	s.dowStar = strings.HasPrefix(fields[4], "*")
	return s, nil
}

func parseField(f string, sp fieldSpec) (uint64, error) {
	num := func(s string) (int, error) {
		for j, n := range sp.names {
			if strings.EqualFold(s, n) {
				return j + sp.min, nil
			}
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < sp.min || n > sp.max {
			return 0, fmt.Errorf("%s %q is not from %d to %d", sp.name, s, sp.min, sp.max)
		}
		return n, nil
	}
	var bits uint64
	for part := range strings.SplitSeq(f, ",") {
		base, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("%s step %q is not a positive integer", sp.name, stepText)
			}
			step = n
		}
		lo, hi := sp.min, sp.max
		if base != "*" {
			a, b, isRange := strings.Cut(base, "-")
			var err error
			if lo, err = num(a); err != nil {
				return 0, err
			}
			switch {
			case isRange:
				if hi, err = num(b); err != nil {
					return 0, err
				}
				if hi < lo {
					return 0, fmt.Errorf("%s range %q runs backwards", sp.name, base)
				}
			case !hasStep:
				hi = lo // "n" alone; "n/step" runs from n to the maximum
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

// String returns the expression as written (trimmed).
func (s Schedule) String() string { return s.expr }

// Matches reports whether t (truncated to the minute, in UTC) is a slot of s.
func (s Schedule) Matches(t time.Time) bool {
	t = t.UTC()
	return s.minute&(1<<uint(t.Minute())) != 0 && s.hour&(1<<uint(t.Hour())) != 0 &&
		s.month&(1<<uint(t.Month())) != 0 && s.dayMatches(t)
}

func (s Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

// searchLimit bounds a search: any valid expression has a slot within five years (29 February
// on a given weekday can take up to 28 years, which Vixie cron would also wait for; we give up).
const searchLimit = 5 * 366 * 24 * time.Hour

// Next returns the first slot strictly after t, and false if there is none within five years.
func (s Schedule) Next(t time.Time) (time.Time, bool) {
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	limit := t.Add(searchLimit)
	for t.Before(limit) {
		switch {
		case s.month&(1<<uint(t.Month())) == 0:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case s.hour&(1<<uint(t.Hour())) == 0:
			t = t.Truncate(time.Hour).Add(time.Hour)
		case s.minute&(1<<uint(t.Minute())) == 0:
			t = t.Add(time.Minute)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}

// Prev returns the latest slot at or before t, and false if there is none within five years.
func (s Schedule) Prev(t time.Time) (time.Time, bool) {
	t = t.UTC().Truncate(time.Minute)
	limit := t.Add(-searchLimit)
	for t.After(limit) {
		switch {
		case s.month&(1<<uint(t.Month())) == 0:
			// the last minute of the previous month
			t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).Add(-time.Minute)
		case !s.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Add(-time.Minute)
		case s.hour&(1<<uint(t.Hour())) == 0:
			t = t.Truncate(time.Hour).Add(-time.Minute)
		case s.minute&(1<<uint(t.Minute())) == 0:
			t = t.Add(-time.Minute)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}
