package cron

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr string
		ok   bool
	}{
		{"0 3 * * *", true},
		{"*/15 0-6,22 1 JAN-MAR mon", true},
		{"@daily", true},
		{" @weekly ", true},
		{"0 3 * *", false},
		{"60 * * * *", false},
		{"0 24 * * *", false},
		{"0 0 0 * *", false},
		{"0 0 * 13 *", false},
		{"0 0 * * 8", false},
		{"*/0 * * * *", false},
		{"5-1 * * * *", false},
		{"@sometimes", false},
	} {
		if _, err := Parse(tc.expr); (err == nil) != tc.ok {
			t.Errorf("Parse(%q) = %v, want ok=%v", tc.expr, err, tc.ok)
		}
	}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNextPrev(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr, from, next, prev string
	}{
		{"@daily", "2025-03-10T12:30:00Z", "2025-03-11T00:00:00Z", "2025-03-10T00:00:00Z"},
		{"@daily", "2025-03-10T00:00:00Z", "2025-03-11T00:00:00Z", "2025-03-10T00:00:00Z"},
		{"@weekly", "2025-03-10T12:00:00Z", "2025-03-16T00:00:00Z", "2025-03-09T00:00:00Z"}, // Sundays
		{"0 0 * * 7", "2025-03-10T12:00:00Z", "2025-03-16T00:00:00Z", "2025-03-09T00:00:00Z"},
		{"@monthly", "2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z", "2025-12-01T00:00:00Z"},
		{"*/15 * * * *", "2025-03-10T12:31:10Z", "2025-03-10T12:45:00Z", "2025-03-10T12:30:00Z"},
		{"30 2 * * mon-fri", "2025-03-08T10:00:00Z", "2025-03-10T02:30:00Z", "2025-03-07T02:30:00Z"}, // Sat
		{"0 0 29 2 *", "2025-03-01T00:00:00Z", "2028-02-29T00:00:00Z", "2024-02-29T00:00:00Z"},
		// day of month OR day of week when both are restricted
		{"0 6 1 * fri", "2025-03-02T00:00:00Z", "2025-03-07T06:00:00Z", "2025-03-01T06:00:00Z"},
		{"5/20 * * * *", "2025-03-10T12:46:00Z", "2025-03-10T13:05:00Z", "2025-03-10T12:45:00Z"},
	} {
		s, err := Parse(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := s.Next(at(tc.from)); !ok || !got.Equal(at(tc.next)) {
			t.Errorf("%q.Next(%s) = %s %v, want %s", tc.expr, tc.from, got, ok, tc.next)
		}
		if got, ok := s.Prev(at(tc.from)); !ok || !got.Equal(at(tc.prev)) {
			t.Errorf("%q.Prev(%s) = %s %v, want %s", tc.expr, tc.from, got, ok, tc.prev)
		}
		if !s.Matches(at(tc.prev)) {
			t.Errorf("%q does not match its own slot %s", tc.expr, tc.prev)
		}
	}
}
