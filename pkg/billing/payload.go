// Package billing delivers usage records to billing sinks through the delivery ledger
// (DESIGN.md "Delivery semantics"): the ledger in JetStream KV, the HTTP billing API and FOCUS
// CSV sinks, the delivery payload and its signature.
//
// Billing API contract (what a billing platform implements; pkg/billingsim is a reference):
//   - POST JSON Payload {delivery_id, account, customer, period, records, totals}; records are
//     full FOCUS records with x_RecordId, x_Revision, x_RevisionSeq and x_Replaces.
//   - Idempotency-Key: the delivery id. Same key and same body again: answer 2xx (a replay).
//     Same key, other body: 409 with {"body_sha256": "<hex of the stored body>"}.
//   - X-Signature-Timestamp: Unix seconds; X-Signature: sha256=<hex HMAC-SHA256(secret,
//     timestamp + "." + body)>. Reject a bad signature with 401.
//   - Upsert records by x_RecordId keeping the newest x_Revision (highest x_RevisionSeq).
//   - 5xx, 408 and 429 are retried with backoff; any other 4xx dead-letters the delivery.
package billing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/events"
)

// HTTP headers of the billing API contract (package doc).
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderSignature      = "X-Signature"
	HeaderTimestamp      = "X-Signature-Timestamp"
	signaturePrefix      = "sha256="
)

// Payload is the body of one delivery: what the HTTP sink posts and what the CSV sink writes.
// It is a pure function of the ledger's pending entry and the records it names, so a delivery
// resent after a crash has the same bytes.
type Payload struct {
	DeliveryID uuid.UUID                  `json:"delivery_id"`
	Account    string                     `json:"account"`
	Customer   string                     `json:"customer"`
	Period     string                     `json:"period"`
	Records    []events.UsageRecord       `json:"records"` // sorted by x_RecordId; x_Replaces names the revision each supersedes
	Totals     map[string]decimal.Decimal `json:"totals"`  // BilledCost per currency, full precision
}

// NewPayload builds the payload of records (one account, customer, period), sorting them and
// computing the delivery id and totals.
func NewPayload(account, customer, period string, recs []events.UsageRecord) Payload {
	p := Payload{Account: account, Customer: customer, Period: period, Records: sortRecords(recs), Totals: map[string]decimal.Decimal{}}
	members := make([]events.DeliveredRecord, len(p.Records))
	for i, r := range p.Records {
		members[i] = events.DeliveredRecord{RecordID: r.RecordID, Revision: r.Revision, RevisionSeq: r.RevisionSeq, Replaces: r.Replaces}
		p.Totals[r.BillingCurrency] = p.Totals[r.BillingCurrency].Add(r.BilledCost)
	}
	p.DeliveryID = events.DeliveryID(members)
	return p
}

// Body is the canonical JSON of the payload (struct order, sorted map keys).
func (p Payload) Body() ([]byte, error) {
	if p.Records == nil {
		p.Records = []events.UsageRecord{}
	}
	return json.Marshal(p)
}

// Members returns the (record id, revision) list of the receipt.
func (p Payload) Members() []events.DeliveredRecord {
	out := make([]events.DeliveredRecord, len(p.Records))
	for i, r := range p.Records {
		out[i] = events.DeliveredRecord{RecordID: r.RecordID, Revision: r.Revision, RevisionSeq: r.RevisionSeq, Replaces: r.Replaces}
	}
	return out
}

// BodyHash is the hex SHA-256 of a body: what a receiver reports back on 409.
func BodyHash(body []byte) string {
	s := sha256.Sum256(body)
	return hex.EncodeToString(s[:])
}

// Sign returns the X-Signature value: "sha256=" + hex HMAC-SHA256(secret, timestamp "." body).
// The timestamp is in the signed text so a captured request cannot be replayed later.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature is returned by Verify.
var ErrBadSignature = errors.New("billing: bad signature")

// Verify checks a signature and that the timestamp (Unix seconds) is within skew of now.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, skew time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrBadSignature, timestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > skew || d < -skew {
		return fmt.Errorf("%w: timestamp outside ±%s", ErrBadSignature, skew)
	}
	if !strings.HasPrefix(signature, signaturePrefix) {
		return fmt.Errorf("%w: want %q prefix", ErrBadSignature, signaturePrefix)
	}
	if !hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature)) {
		return fmt.Errorf("%w: mismatch", ErrBadSignature)
	}
	return nil
}
