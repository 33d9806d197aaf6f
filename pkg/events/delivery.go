package events

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Delivery statuses.
const (
	DeliveryDelivered = "delivered" // every sink accepted it
	DeliveryDryRun    = "dry_run"   // computed for a dry-run sync, handed to no sink
)

// Sink results.
const (
	SinkAccepted  = "accepted"  // the sink stored it now
	SinkDuplicate = "duplicate" // the sink already had this delivery id (a resend after a crash)
)

// Delivery is the receipt of one delivery (billing.v1.delivery.<account>), published after the
// ledger commit. The delivery id was the idempotency key at every sink, so one receipt covers
// all of them.
type Delivery struct {
	DeliveryID  uuid.UUID                  `json:"delivery_id"` // DeliveryID(Records); also the event id
	Account     string                     `json:"account"`
	Customer    string                     `json:"customer"` // Ion customer id
	Period      string                     `json:"period"`   // "YYYY-MM"
	Sinks       []SinkResult               `json:"sinks"`    // never null; [] for a dry run
	Records     []DeliveredRecord          `json:"records"`  // sorted by record id, revision
	RecordCount int                        `json:"record_count"`
	Totals      map[string]decimal.Decimal `json:"totals"` // BilledCost per ISO 4217 currency
	DeliveredAt time.Time                  `json:"delivered_at"`
	Status      string                     `json:"status"` // DeliveryDelivered or DeliveryDryRun
}

// MarshalJSON writes empty lists and maps rather than null, so a zero value is schema-valid.
func (d Delivery) MarshalJSON() ([]byte, error) {
	type plain Delivery
	d.Sinks = nonNil(d.Sinks)
	d.Records = nonNil(d.Records)
	if d.Totals == nil {
		d.Totals = map[string]decimal.Decimal{}
	}
	return json.Marshal(plain(d))
}

// SinkResult is what one sink said.
type SinkResult struct {
	Sink   string `json:"sink"`          // configured sink name
	Result string `json:"result"`        // SinkAccepted or SinkDuplicate
	Ref    string `json:"ref,omitempty"` // the sink's own reference (batch id, file name), if any
}

// DeliveredRecord is one member of a delivery.
type DeliveredRecord struct {
	RecordID    uuid.UUID `json:"record_id"`
	Revision    string    `json:"revision"`
	RevisionSeq int64     `json:"revision_seq"`
	Replaces    *string   `json:"replaces"` // revision superseded, null for a first revision
}

// SortDelivered sorts members by (record id, revision), the order of DeliveryID and of the wire.
func SortDelivered(recs []DeliveredRecord) {
	slices.SortFunc(recs, func(a, b DeliveredRecord) int {
		if c := cmp.Compare(a.RecordID.String(), b.RecordID.String()); c != 0 {
			return c
		}
		return cmp.Compare(a.Revision, b.Revision)
	})
}

// DeliveryID is the deterministic id of a delivery: the sorted (record id, revision, revision
// sequence, replaced revision) set, so a pending delivery resent after a crash keeps its id, while
// content that comes back (A → B → A, or a reversal undone and redone) is a new delivery, not a
// replay of the first one under the same idempotency key. recs is not modified.
func DeliveryID(recs []DeliveredRecord) uuid.UUID {
	s := slices.Clone(recs)
	SortDelivered(s)
	parts := make([]string, 0, 4*len(s))
	for _, r := range s {
		replaces := ""
		if r.Replaces != nil {
			replaces = *r.Replaces
		}
		parts = append(parts, r.RecordID.String(), r.Revision, strconv.FormatInt(r.RevisionSeq, 10), replaces)
	}
	return ID(TypeDelivery, parts...)
}

// EventMeta returns the CloudEvents context of the receipt.
func (d Delivery) EventMeta(source string) Meta {
	return Meta{
		ID:      DeliveryID(d.Records),
		Type:    TypeDelivery,
		Source:  source,
		Subject: subjectOf(d.Account, d.Period, d.Customer),
		Time:    d.DeliveredAt,
	}
}

// NATSSubject is the subject the receipt is published on.
func (d Delivery) NATSSubject() string { return DeliverySubject(d.Account) }
