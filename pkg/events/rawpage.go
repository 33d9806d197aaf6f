package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
)

// Content types of raw bodies.
const (
	ContentCSV = "text/csv"
)

// RawPage is one Ion response, kept verbatim (ion.raw.v1.page.<account>). The ION_RAW stream is
// the audit log: the transformer can be re-run from it without calling Ion again.
type RawPage struct {
	// PageID is RawPageID(Account, Period, PageKey, RowsSHA256), which is also the event id, so an
	// unchanged re-read has the id its summaries already carry.
	PageID   uuid.UUID `json:"page_id"`
	SyncID   uuid.UUID `json:"sync_id"` // the sync that fetched it (SyncRequest.SyncID)
	Account  string    `json:"account"`
	Period   string    `json:"period"`   // "YYYY-MM"
	Mode     string    `json:"mode"`     // ModeV1 or ModeV3
	Endpoint string    `json:"endpoint"` // method and path, e.g. "POST /api/v3/accounts/1234/reports/49038/data"
	// Request is what was sent: the v1 query parameters or the v3 report body with its pinned
	// column list, currency and date range. The transformer parses rows by position against it.
	Request          json.RawMessage `json:"request"`
	ColumnSetVersion string          `json:"column_set_version"` // version of the pinned column list; part of every record id
	PageKey          PageKey         `json:"page_key"`
	RowsSHA256       string          `json:"rows_sha256"` // hex SHA-256 of the canonical leaf rows, never of volatile response parts
	RowCount         int             `json:"row_count"`   // leaf rows in the body
	FetchedAt        time.Time       `json:"fetched_at"`
	ContentType      string          `json:"content_type"` // of Body or the stored object: ContentJSON or ContentCSV
	// Exactly one of Body and BodyRef is set: small bodies travel inline, larger ones (the normal
	// case for v3) are stored in the object store before this event is published.
	Body    string     `json:"body,omitempty"`
	BodyRef *ObjectRef `json:"body_ref,omitempty"`
}

// PageKey names the slice of a period that one request covered. Truncated reports are split by
// customer, then entitlement, then date (DESIGN.md "Ion source").
type PageKey struct {
	Customer    string `json:"customer,omitempty"`    // Ion customer id; empty = every customer of the account
	Entitlement string `json:"entitlement,omitempty"` // Azure entitlement id; empty = every entitlement
	From        string `json:"from"`                  // first day, "YYYY-MM-DD", inclusive
	To          string `json:"to"`                    // last day, "YYYY-MM-DD", inclusive
}

// ObjectRef points at a body in the JetStream Object Store.
type ObjectRef struct {
	Bucket string `json:"bucket"`
	Name   string `json:"name"`   // the body's SHA-256, so a body is stored once
	SHA256 string `json:"sha256"` // hex SHA-256 of the stored bytes, checked on read
	Size   int64  `json:"size"`   // bytes
}

// RawPageID is the deterministic id of a raw page.
func RawPageID(account, period string, key PageKey, rowsSHA256 string) uuid.UUID {
	return ID(TypeRawPage, account, period, key.Customer, key.Entitlement, key.From, key.To, rowsSHA256)
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks the rules the schema cannot see: the page id matches its key and hash.
// It checks the shape too, so a producer can call it before publishing.
func (p RawPage) Validate() error {
	if (p.Body == "") == (p.BodyRef == nil) {
		return errors.New("events: raw page needs exactly one of body and body_ref")
	}
	if !sha256Hex.MatchString(p.RowsSHA256) {
		return fmt.Errorf("events: raw page rows_sha256 %q is not hex SHA-256", p.RowsSHA256)
	}
	if p.BodyRef != nil && !sha256Hex.MatchString(p.BodyRef.SHA256) {
		return fmt.Errorf("events: raw page body_ref.sha256 %q is not hex SHA-256", p.BodyRef.SHA256)
	}
	if want := RawPageID(p.Account, p.Period, p.PageKey, p.RowsSHA256); p.PageID != want {
		return fmt.Errorf("events: raw page id %s, want %s", p.PageID, want)
	}
	return nil
}

// EventMeta returns the CloudEvents context of the page.
func (p RawPage) EventMeta(source string) Meta {
	return Meta{
		ID:      RawPageID(p.Account, p.Period, p.PageKey, p.RowsSHA256),
		Type:    TypeRawPage,
		Source:  source,
		Subject: subjectOf(p.Account, p.Period),
		Time:    p.FetchedAt,
	}
}

// NATSSubject is the subject the page is published on.
func (p RawPage) NATSSubject() string { return RawPageSubject(p.Account) }
