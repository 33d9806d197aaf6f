package events

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// CustomerPage is one page of an account's customer directory (ion.raw.v1.customers.<account>),
// fetched at the start of a sync. With the control query's customers it makes up the customer
// list of the period.
type CustomerPage struct {
	SyncID    uuid.UUID       `json:"sync_id"`
	Account   string          `json:"account"`
	Period    string          `json:"period"`   // "YYYY-MM" of the sync that read it
	Endpoint  string          `json:"endpoint"` // e.g. "GET /api/v3/accounts/1234/customers"
	PageKey   CustomerPageKey `json:"page_key"`
	FetchedAt time.Time       `json:"fetched_at"`
	Customers []Customer      `json:"customers"` // never null; [] for an empty last page
}

// MarshalJSON writes an empty list rather than null, so a zero value is schema-valid.
func (c CustomerPage) MarshalJSON() ([]byte, error) {
	type plain CustomerPage
	c.Customers = nonNil(c.Customers)
	return json.Marshal(plain(c))
}

// CustomerPageKey locates a page of the token-paged customer list.
type CustomerPageKey struct {
	Index int    `json:"index"`           // 0-based page number
	Token string `json:"token,omitempty"` // pageToken that fetched it; empty for the first page
}

// Customer is one Ion customer as the directory gives it.
type Customer struct {
	ID       string  `json:"id"`        // Ion customer id, used as subject token
	Name     string  `json:"name"`      // Ion display name (may be the contact person's name)
	Company  *string `json:"company"`   // organisation name, null when Ion has none
	TenantID *string `json:"tenant_id"` // Microsoft tenant GUID from the cloud profile, null when unknown
	Status   *string `json:"status"`    // Ion status as given (ACTIVE, INACTIVE); null in v1
}

// CustomersSHA256 is the hex SHA-256 of the page's customers, the part that decides whether the
// page changed.
func (c CustomerPage) CustomersSHA256() string { return jsonSHA256(nonNil(c.Customers)) }

// EventMeta returns the CloudEvents context of the page. The id covers account, period, page
// index and content, so an unchanged directory is not published twice.
func (c CustomerPage) EventMeta(source string) Meta {
	return Meta{
		ID:      ID(TypeRawCustomers, c.Account, c.Period, strconv.Itoa(c.PageKey.Index), c.CustomersSHA256()),
		Type:    TypeRawCustomers,
		Source:  source,
		Subject: subjectOf(c.Account, c.Period),
		Time:    c.FetchedAt,
	}
}

// NATSSubject is the subject the page is published on.
func (c CustomerPage) NATSSubject() string { return RawCustomersSubject(c.Account) }
