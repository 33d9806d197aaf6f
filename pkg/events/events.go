// Package events holds the event contracts of the pipeline: subjects, stream names, CloudEvents
// headers, deterministic ids and the payload types. It imports no broker code so that every
// stage, test and tool can share it.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
)

// Stream names (DESIGN.md "Flow").
const (
	StreamSync    = "SYNC"
	StreamRaw     = "ION_RAW"
	StreamUsage   = "USAGE"
	StreamBilling = "BILLING"
	StreamDLQ     = "DLQ"
)

// Event types (ce-type). Each has one JSON Schema per version under schemas/.
const (
	TypeSyncRequested  = "ion.sync.v1.requested"
	TypeSyncCompleted  = "ion.sync.v1.completed"
	TypeRawPage        = "ion.raw.v1.page"
	TypeRawCustomers   = "ion.raw.v1.customers"
	TypeUsageRecord    = "usage.v1.record"
	TypePageSummary    = "usage.v1.summary"
	TypeDelivery       = "billing.v1.delivery"
	TypeReconciliation = "billing.v1.reconciliation"
	TypeDeadLetter     = "dlq.v1.deadletter"
)

// CloudEvents NATS binding header names; the broker adapter copies message metadata to NATS headers.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderSource      = "ce-source"
	HeaderType        = "ce-type"
	HeaderSubject     = "ce-subject"
	HeaderTime        = "ce-time"
	HeaderDataSchema  = "ce-dataschema"
	HeaderContentType = "content-type"

	SpecVersion = "1.0"
	ContentJSON = "application/json"
)

// Namespace is the fixed UUIDv5 namespace of every deterministic id in the system. Changing it
// changes every id, so it never changes.
var Namespace = uuid.MustParse("6f1c2a7e-3b0d-5c49-9e57-2d8a4b1f0c63")

// ID returns the deterministic UUIDv5 of a kind and its key parts. Parts are joined with a unit
// separator so ("a.b","c") and ("a","b.c") never collide.
func ID(kind string, parts ...string) uuid.UUID {
	return uuid.NewSHA1(Namespace, []byte(kind+"\x1f"+strings.Join(parts, "\x1f")))
}

// ErrBadToken reports a value that cannot be a NATS subject token.
var ErrBadToken = errors.New("not a valid subject token")

// CheckToken reports whether s can be used as one subject token (account or customer id as Ion
// gives them): non-empty, printable ASCII, and none of '.', '*', '>' or whitespace.
func CheckToken(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadToken)
	}
	for _, r := range s {
		if r <= ' ' || r > '~' || r == '.' || r == '*' || r == '>' {
			return fmt.Errorf("%w: %q", ErrBadToken, s)
		}
	}
	return nil
}

// Subject builders. Tokens are assumed valid (config validation calls CheckToken on account
// ids; customer ids are checked by the fetcher before they reach a subject).
func SyncRequestedSubject(account string) string { return "ion.sync.v1.requested." + account }
func SyncCompletedSubject(account string) string { return "ion.sync.v1.completed." + account }
func RawPageSubject(account string) string       { return "ion.raw.v1.page." + account }
func RawCustomersSubject(account string) string  { return "ion.raw.v1.customers." + account }
func UsageRecordSubject(account, customer string) string {
	return "usage.v1.record." + account + "." + customer
}
func PageSummarySubject(account string) string       { return "usage.v1.summary." + account }
func DeliverySubject(account string) string          { return "billing.v1.delivery." + account }
func ReconciliationSubject(account string) string    { return "billing.v1.reconciliation." + account }
func DeadLetterSubject(stage, account string) string { return "dlq.v1." + stage + "." + account }

// Stream subject filters, one per stream.
var StreamSubjects = map[string]string{
	StreamSync:    "ion.sync.v1.>",
	StreamRaw:     "ion.raw.v1.>",
	StreamUsage:   "usage.v1.>",
	StreamBilling: "billing.v1.>",
	StreamDLQ:     "dlq.v1.>",
}

// SchemaURI is the ce-dataschema of an event type: the file schemas/<type>.json in this repository.
func SchemaURI(eventType string) string { return "urn:ionusage:schema:" + eventType }

// Meta is the CloudEvents context of one event.
type Meta struct {
	ID      uuid.UUID // deterministic, see ID; also the Nats-Msg-Id
	Type    string    // one of the Type* constants
	Source  string    // the emitting service, e.g. "ionconnector/fetcher"
	Subject string    // ce-subject: what the event is about (account/period/...)
	Time    time.Time // when the fact happened (fetch time, delivery time)
}

// NewMessage encodes data as JSON and returns a Watermill message whose UUID is the event id and
// whose metadata are the CloudEvents headers.
func NewMessage(m Meta, data any) (*message.Message, error) {
	if m.ID == uuid.Nil || m.Type == "" || m.Source == "" {
		return nil, errors.New("events: id, type and source are required")
	}
	// Records, the pipeline's bulk event, are encoded by hand (record_codec.go).
	if r, ok := data.(UsageRecord); ok {
		data = &r
	}
	var body []byte
	var err error
	if r, ok := data.(*UsageRecord); ok && r != nil {
		body, err = r.appendJSON(make([]byte, 0, 2560))
	} else {
		body, err = json.Marshal(data)
	}
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", m.Type, err)
	}
	msg := message.NewMessage(m.ID.String(), body)
	msg.Metadata.Set(HeaderSpecVersion, SpecVersion)
	msg.Metadata.Set(HeaderID, m.ID.String())
	msg.Metadata.Set(HeaderSource, m.Source)
	msg.Metadata.Set(HeaderType, m.Type)
	if m.Subject != "" {
		msg.Metadata.Set(HeaderSubject, m.Subject)
	}
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	msg.Metadata.Set(HeaderTime, t.UTC().Format(time.RFC3339Nano))
	msg.Metadata.Set(HeaderDataSchema, SchemaURI(m.Type))
	msg.Metadata.Set(HeaderContentType, ContentJSON)
	return msg, nil
}

// ErrUndecodable marks a message that can never be processed as sent: wrong type, bad JSON. The
// router dead-letters such messages at once instead of retrying them.
var ErrUndecodable = errors.New("undecodable message")

// Decode checks the ce-type and decodes the JSON body into v. Unknown fields are accepted:
// additive schema changes stay in v1 (DESIGN.md "Schema evolution").
func Decode(msg *message.Message, wantType string, v any) error {
	if got := msg.Metadata.Get(HeaderType); got != wantType {
		return fmt.Errorf("%w: ce-type %q, want %q", ErrUndecodable, got, wantType)
	}
	var err error
	if r, ok := v.(*UsageRecord); ok {
		err = DecodeUsageRecord(msg.Payload, r)
	} else {
		err = json.Unmarshal(msg.Payload, v)
	}
	if err != nil {
		return fmt.Errorf("%w: %s body: %v", ErrUndecodable, wantType, err)
	}
	return nil
}

// AccountOf returns the account token of a pipeline subject, or "unknown". Account position:
// ion.<x>.v1.<kind>.<acct>, usage|billing.v1.<kind>.<acct>[.<customer>], dlq.v1.<stage>.<acct>.
func AccountOf(subject string) string {
	t := strings.Split(subject, ".")
	i := 3
	if len(t) > 0 && t[0] == "ion" {
		i = 4
	}
	if len(t) > i && t[i] != "" {
		return t[i]
	}
	return "unknown"
}
