package events

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// SyncCompleted closes a sync (ion.sync.v1.completed.<account>): what it read and Ion's own
// control totals, against which reconcile compares what was delivered.
type SyncCompleted struct {
	SyncID    uuid.UUID `json:"sync_id"`
	RequestID string    `json:"request_id"`
	Account   string    `json:"account"`
	Period    string    `json:"period"`           // "YYYY-MM"
	Mode      string    `json:"mode"`             // ModeV1 or ModeV3
	Status    string    `json:"status"`           // SyncSucceeded or SyncFailed; a sync missing any data fails
	Reason    string    `json:"reason,omitempty"` // why it failed; required when failed
	DryRun    bool      `json:"dry_run"`
	// Filtered: the request named customers (SyncRequest.Customers), so this is not a complete
	// re-read of the account and period and never produces reversals.
	Filtered bool     `json:"filtered,omitempty"`
	Manifest Manifest `json:"manifest"`
	// ControlTotals are Ion's sums grouped by customer and invoice currency (a separate report
	// request, so Ion does the adding); empty when the sync failed before reading them.
	ControlTotals []ControlTotal `json:"control_totals"`
	StartedAt     time.Time      `json:"started_at"`
	FinishedAt    time.Time      `json:"finished_at"`
}

// MarshalJSON writes empty lists rather than null, so a zero value is schema-valid.
func (c SyncCompleted) MarshalJSON() ([]byte, error) {
	type plain SyncCompleted
	c.ControlTotals = nonNil(c.ControlTotals)
	c.Manifest.Pages = nonNil(c.Manifest.Pages)
	c.Manifest.Customers = nonNil(c.Manifest.Customers)
	return json.Marshal(plain(c))
}

// Manifest lists what the sync covered. Unchanged pages are listed with their earlier ids, which
// already have summaries.
type Manifest struct {
	Pages     []uuid.UUID `json:"pages"`     // RawPage.PageID of every page, sorted
	Customers []string    `json:"customers"` // union of /customers and the control query's customers, sorted
}

// ControlTotal is Ion's BilledCost total for one customer and currency, at full precision.
type ControlTotal struct {
	Customer   string          `json:"customer"`
	Currency   string          `json:"currency"`
	BilledCost decimal.Decimal `json:"billed_cost"`
}

// EventMeta returns the CloudEvents context of the completion: one per sync and outcome.
func (c SyncCompleted) EventMeta(source string) Meta {
	return Meta{
		ID:      ID(TypeSyncCompleted, c.SyncID.String(), c.Status),
		Type:    TypeSyncCompleted,
		Source:  source,
		Subject: subjectOf(c.Account, c.Period),
		Time:    c.FinishedAt,
	}
}

// NATSSubject is the subject the completion is published on.
func (c SyncCompleted) NATSSubject() string { return SyncCompletedSubject(c.Account) }
