package usage

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/events"
)

// PageContext is what a raw page tells the normalizer about all of its lines.
type PageContext struct {
	Account          string    // Ion account id: BillingAccountId
	AccountName      string    // optional display name: BillingAccountName
	Period           string    // billing period "YYYY-MM"
	Mode             string    // events.ModeV1 or events.ModeV3
	ColumnSetVersion string    // version of the pinned v3 column list (v1: the adapter's version)
	Currency         string    // the currency the page was requested in; every line must match it
	SourcePageID     uuid.UUID // events.RawPage.PageID (volatile: not part of the revision)
	FetchedAt        time.Time // raw page fetch time (volatile: not part of the revision)
	ResellerID       string    // Ion reseller id, used when a line has no reseller_id column
}

// periodBounds returns the inclusive start and exclusive end of the billing period.
func (pc PageContext) periodBounds() (time.Time, time.Time, error) {
	return events.ParsePeriod(pc.Period)
}

// check reports a context that cannot produce records at all; it is a caller bug, not a bad line.
func (pc PageContext) check() error {
	if pc.Account == "" {
		return fmt.Errorf("usage: page context: account is empty")
	}
	if _, _, err := pc.periodBounds(); err != nil {
		return fmt.Errorf("usage: page context: %w", err)
	}
	if pc.Mode != events.ModeV1 && pc.Mode != events.ModeV3 {
		return fmt.Errorf("usage: page context: mode %q is neither %q nor %q", pc.Mode, events.ModeV1, events.ModeV3)
	}
	if pc.ColumnSetVersion == "" {
		return fmt.Errorf("usage: page context: column set version is empty")
	}
	return nil
}
