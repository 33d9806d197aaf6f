package events

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Reconciliation is the result of reconciling one completed sync (billing.v1.reconciliation.
// <account>): for every customer and currency, Ion's control total against what was delivered
// plus what was held and dead-lettered (DESIGN.md "Reconciliation").
type Reconciliation struct {
	SyncID     uuid.UUID `json:"sync_id"`
	RequestID  string    `json:"request_id"`
	Account    string    `json:"account"`
	Period     string    `json:"period"`      // "YYYY-MM"
	Mode       string    `json:"mode"`        // ModeV1 or ModeV3
	SyncStatus string    `json:"sync_status"` // SyncSucceeded or SyncFailed
	// Reconciled: the sync succeeded and every row matches exactly.
	Reconciled bool                `json:"reconciled"`
	Rows       []ReconciliationRow `json:"rows"` // sorted by customer, currency
	// Totals is the delivered BilledCost of the whole period per currency (every current record).
	Totals      map[string]decimal.Decimal `json:"totals"`
	Records     int                        `json:"records"`      // current records of the period in the ledger
	HeldLines   int                        `json:"held_lines"`   // rows held back (out-of-period)
	DeadLetters int                        `json:"dead_letters"` // lines and records dead-lettered
	ComputedAt  time.Time                  `json:"computed_at"`
	Reason      string                     `json:"reason,omitempty"` // why not reconciled; set whenever Reconciled is false
}

// ReconciliationRow compares one customer and currency. Amounts are exact (full precision);
// Difference = Control - (Delivered + Held + DeadLettered), and Match means it is exactly zero.
type ReconciliationRow struct {
	Customer     string          `json:"customer"` // Ion customer id; "" for amounts of pages spanning customers
	Currency     string          `json:"currency"`
	Control      decimal.Decimal `json:"control"`
	Delivered    decimal.Decimal `json:"delivered"`
	Held         decimal.Decimal `json:"held"`
	DeadLettered decimal.Decimal `json:"dead_lettered"`
	Difference   decimal.Decimal `json:"difference"`
	Match        bool            `json:"match"`
}

// MarshalJSON writes empty lists and maps rather than null, so a zero value is schema-valid.
func (r Reconciliation) MarshalJSON() ([]byte, error) {
	type plain Reconciliation
	r.Rows = nonNil(r.Rows)
	if r.Totals == nil {
		r.Totals = map[string]decimal.Decimal{}
	}
	return json.Marshal(plain(r))
}

// ResultHash is the hex SHA-256 of the result without its computation time: the same sync
// reconciled to the same numbers hashes the same.
func (r Reconciliation) ResultHash() string {
	r.ComputedAt = time.Time{}
	return jsonSHA256(r)
}

// ReconciliationID is the event id: the sync id and the hash of the result, so recomputing an
// unchanged result is a duplicate and a changed one (a late delivery) is a new event.
func (r Reconciliation) ReconciliationID() uuid.UUID {
	return ID(TypeReconciliation, r.SyncID.String(), r.ResultHash())
}

// EventMeta returns the CloudEvents context of the reconciliation.
func (r Reconciliation) EventMeta(source string) Meta {
	return Meta{
		ID:      r.ReconciliationID(),
		Type:    TypeReconciliation,
		Source:  source,
		Subject: subjectOf(r.Account, r.Period),
		Time:    r.ComputedAt,
	}
}

// NATSSubject is the subject the reconciliation is published on.
func (r Reconciliation) NATSSubject() string { return ReconciliationSubject(r.Account) }
