package events_test

import (
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/events"
)

// A period closes on the closing day of the next month at 00:00 UTC; until then the previous
// month is the oldest open period.
func TestPeriodClosesAndOldestOpenPeriod(t *testing.T) {
	mar := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	if got := events.PeriodCloses(mar, 10); !got.Equal(time.Date(2025, 4, 10, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("2025-03 closes %s, want 2025-04-10T00:00Z", got)
	}
	if got := events.PeriodCloses(time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), 28); !got.Equal(time.Date(2026, 1, 28, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("2025-12 closes %s, want 2026-01-28T00:00Z", got)
	}
	for _, c := range []struct {
		at   time.Time
		day  int
		want string
	}{
		{time.Date(2025, 4, 9, 23, 59, 59, 0, time.UTC), 10, "2025-03"},
		{time.Date(2025, 4, 10, 0, 0, 0, 0, time.UTC), 10, "2025-04"},
		{time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC), 1, "2025-04"},
		{time.Date(2026, 1, 5, 0, 0, 0, 0, time.FixedZone("+14", 14*3600)), 10, "2025-12"}, // 2026-01-04 10:00Z
	} {
		if got := events.OldestOpenPeriod(c.at, c.day); got != c.want {
			t.Errorf("OldestOpenPeriod(%s, %d) = %s, want %s", c.at, c.day, got, c.want)
		}
	}
}
