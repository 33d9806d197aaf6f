package events

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// PageSummary reports what a stage made of one raw page (usage.v1.summary.<account>). A sync is
// complete when every page of its manifest has a transformer and a publisher summary.
type PageSummary struct {
	Stage   string    `json:"stage"` // StageTransformer or StagePublisher
	PageID  uuid.UUID `json:"page_id"`
	SyncID  uuid.UUID `json:"sync_id"`
	Account string    `json:"account"`
	Period  string    `json:"period"` // "YYYY-MM"
	// Customer is the Ion customer id of the raw page (its PageKey.Customer); empty when the page
	// spans customers. Reconcile attributes held and dead-lettered amounts by it.
	Customer    string    `json:"customer,omitempty"`
	ProcessedAt time.Time `json:"processed_at"`
	// Good: records emitted (transformer) or delivered or already held by the ledger (publisher).
	// Held: rows kept back, not billed and not lost (out-of-period). Bad: dead-lettered lines.
	Good Tally `json:"good"`
	Held Tally `json:"held"`
	Bad  Tally `json:"bad"`
	// RecordIDs (transformer only) are the sorted x_RecordId of the good records the page produced,
	// one per record, so len(RecordIDs) == Good.Count. The union over a complete sync's pages is
	// what a complete re-read contains: a held record outside it gets a reversal. Absent (or short
	// of Good.Count) means "not listed" — from an older transformer, or a page over
	// MaxSummaryRecordIDs — and the sync then produces no reversals.
	//
	// Size bound: a page is one customer (split further by entitlement and day while Ion truncates
	// it), and records ≤ its rows. One id costs 39 bytes of JSON ("<36>",), so
	// MaxSummaryRecordIDs = 20,000 ids is ~780 KB, under the 1 MiB message limit with the rest of
	// the summary; a customer-month already stops at ~3,000 records (117 KB of ids) because its
	// ledger partition must stay under 1 MiB (docs/decisions.md 8).
	RecordIDs []uuid.UUID `json:"record_ids,omitempty"`
}

// MaxSummaryRecordIDs bounds PageSummary.RecordIDs; a page with more good records leaves the
// list out (so its sync makes no reversals) rather than exceed the message size limit.
const MaxSummaryRecordIDs = 20000

// Lists reports whether the summary lists every good record's id (RecordIDs is complete).
func (s PageSummary) Lists() bool { return len(s.RecordIDs) == s.Good.Count }

// Tally counts rows and sums their BilledCost per currency at full precision.
type Tally struct {
	Count      int                        `json:"count"`
	BilledCost map[string]decimal.Decimal `json:"billed_cost"` // ISO 4217 code → sum; {} when Count is 0
}

// MarshalJSON writes an empty map rather than null, so a zero Tally is schema-valid.
func (t Tally) MarshalJSON() ([]byte, error) {
	type plain Tally
	if t.BilledCost == nil {
		t.BilledCost = map[string]decimal.Decimal{}
	}
	return json.Marshal(plain(t))
}

// Add counts one row of the given currency and amount.
func (t *Tally) Add(currency string, billed decimal.Decimal) {
	if t.BilledCost == nil {
		t.BilledCost = map[string]decimal.Decimal{}
	}
	t.Count++
	t.BilledCost[currency] = t.BilledCost[currency].Add(billed)
}

// EventMeta returns the CloudEvents context of the summary: one per stage and page.
func (s PageSummary) EventMeta(source string) Meta {
	return Meta{
		ID:      ID(TypePageSummary, s.Stage, s.PageID.String()),
		Type:    TypePageSummary,
		Source:  source,
		Subject: subjectOf(s.Account, s.Period),
		Time:    s.ProcessedAt,
	}
}

// NATSSubject is the subject the summary is published on.
func (s PageSummary) NATSSubject() string { return PageSummarySubject(s.Account) }
