package events

import (
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Record flags (x_Flags). The set is open: new flags are an additive change.
const (
	FlagSummedDuplicate = "summed-duplicate" // several source rows had this record id in one sync and were summed
	FlagReversal        = "reversal"         // zero-amount revision: a complete re-read no longer contains the row
	FlagServiceFallback = "service-fallback" // ServiceName/ServiceCategory came from our fallback table or "Other"
)

// UsageRecord is one normalized usage line (usage.v1.record.<account>.<customer>): FOCUS 1.2
// columns, the reseller's cost view, plus x_ columns for what FOCUS lacks (DESIGN.md
// "Normalized record"). JSON names are the FOCUS column names so that a sink can write them
// straight to a FOCUS CSV. Money and quantities are exact decimals, strings on the wire, at Ion's
// full precision; nullable columns are pointers and encode as null.
type UsageRecord struct {
	// FOCUS 1.2 columns, alphabetical within groups as in the spec.
	BilledCost          decimal.Decimal   `json:"BilledCost"`     // Ion seller cost in the invoice currency
	EffectiveCost       decimal.Decimal   `json:"EffectiveCost"`  // = BilledCost: nothing to amortise
	ListCost            decimal.Decimal   `json:"ListCost"`       // MSRP in BillingCurrency
	ContractedCost      decimal.Decimal   `json:"ContractedCost"` // = BilledCost
	BillingCurrency     string            `json:"BillingCurrency"`
	BillingAccountID    string            `json:"BillingAccountId"` // the Ion account
	BillingAccountName  *string           `json:"BillingAccountName"`
	BillingPeriodStart  time.Time         `json:"BillingPeriodStart"` // inclusive, the sync's period (a Correction: its invoice period)
	BillingPeriodEnd    time.Time         `json:"BillingPeriodEnd"`   // exclusive
	ChargePeriodStart   time.Time         `json:"ChargePeriodStart"`  // inclusive, the row's own dates
	ChargePeriodEnd     time.Time         `json:"ChargePeriodEnd"`    // exclusive: midnight after the last usage day
	ChargeCategory      string            `json:"ChargeCategory"`     // Usage, Purchase, Tax, Credit, Adjustment
	ChargeClass         *string           `json:"ChargeClass"`        // "Correction" or null; set by the publisher only
	ChargeDescription   *string           `json:"ChargeDescription"`
	ConsumedQuantity    *decimal.Decimal  `json:"ConsumedQuantity"`
	ConsumedUnit        *string           `json:"ConsumedUnit"`
	PricingQuantity     *decimal.Decimal  `json:"PricingQuantity"`
	PricingUnit         *string           `json:"PricingUnit"`
	PricingCategory     *string           `json:"PricingCategory"` // Standard, Dynamic, Committed, Other
	ListUnitPrice       *decimal.Decimal  `json:"ListUnitPrice"`
	ContractedUnitPrice *decimal.Decimal  `json:"ContractedUnitPrice"`
	InvoiceID           *string           `json:"InvoiceId"` // Ion invoice number; null while unbilled
	InvoiceIssuerName   string            `json:"InvoiceIssuerName"`
	ProviderName        string            `json:"ProviderName"`
	PublisherName       string            `json:"PublisherName"`
	ServiceName         string            `json:"ServiceName"`
	ServiceCategory     string            `json:"ServiceCategory"`
	ResourceID          *string           `json:"ResourceId"` // lower-case resource URI
	ResourceName        *string           `json:"ResourceName"`
	ResourceType        *string           `json:"ResourceType"`
	RegionID            *string           `json:"RegionId"`
	RegionName          *string           `json:"RegionName"`
	SkuID               *string           `json:"SkuId"`
	SkuMeter            *string           `json:"SkuMeter"`
	SubAccountID        *string           `json:"SubAccountId"` // Azure entitlement id, else the Ion subscription
	SubAccountName      *string           `json:"SubAccountName"`
	Tags                map[string]string `json:"Tags"` // FOCUS JSON object; null when the row has none

	// x_ columns. Provenance first.
	RecordID         uuid.UUID `json:"x_RecordId"`         // see RecordID
	Revision         string    `json:"x_Revision"`         // ContentHash of this revision
	RevisionSeq      int64     `json:"x_RevisionSeq"`      // 1, 2, ...: readable order of the record's revisions
	Replaces         *string   `json:"x_Replaces"`         // the x_Revision this one supersedes, null for the first
	SourcePageID     uuid.UUID `json:"x_SourcePageId"`     // RawPage.PageID it came from
	FetchedAt        time.Time `json:"x_FetchedAt"`        // the raw page's fetch time: the revision's as-of
	ColumnSetVersion string    `json:"x_ColumnSetVersion"` // RawPage.ColumnSetVersion
	SourceMode       string    `json:"x_SourceMode"`       // ModeV1 or ModeV3
	IonCustomerID    string    `json:"x_IonCustomerId"`
	CustomerTenantID *string   `json:"x_CustomerTenantId"` // Microsoft tenant GUID, null when Ion gives none
	CustomerName     string    `json:"x_CustomerName"`
	ResellerID       *string   `json:"x_ResellerId"`
	SubscriptionID   *string   `json:"x_SubscriptionId"` // Ion subscription (cloud account number)
	MeterID          *string   `json:"x_MeterId"`        // null in v1, which has no meters
	// Ion's resale side, carried untouched in BillingCurrency; null when the mode does not give it.
	CustomerCost *decimal.Decimal `json:"x_CustomerCost"`
	Margin       *decimal.Decimal `json:"x_Margin"`
	// A ChargeClass=Correction delta names what it corrects (a record of a closed period).
	CorrectsRecordID *uuid.UUID `json:"x_CorrectsRecordId"`
	CorrectsRevision *string    `json:"x_CorrectsRevision"`
	Flags            []string   `json:"x_Flags,omitempty"` // Flag* values
}

// RecordID is the deterministic x_RecordId of a row: account, billing period start, source mode,
// column-set version and every grouping column (every selected non-money column), in column-set
// order, as Ion gave them. Two rows with the same id in one sync are summed, never overwritten.
func RecordID(account string, billingPeriodStart time.Time, mode, columnSetVersion string, grouping ...string) uuid.UUID {
	parts := append([]string{account, billingPeriodStart.UTC().Format(time.RFC3339), mode, columnSetVersion}, grouping...)
	return ID("record", parts...)
}

// ContentHash is the revision hash of the record: hex SHA-256 of its JSON without the volatile
// fields (source page, fetch time) and without the revision fields themselves. Equal content
// gives an equal hash, so an unchanged re-read is a no-op for the ledger.
func (r UsageRecord) ContentHash() string {
	r.Revision, r.RevisionSeq, r.Replaces = "", 0, nil
	r.SourcePageID, r.FetchedAt = uuid.Nil, time.Time{}
	for _, t := range []*time.Time{&r.BillingPeriodStart, &r.BillingPeriodEnd, &r.ChargePeriodStart, &r.ChargePeriodEnd} {
		*t = t.UTC()
	}
	return r.contentSHA256() // = jsonSHA256(r), see record_codec.go
}

// EventMeta returns the CloudEvents context of the record: one event per (record id, revision).
func (r UsageRecord) EventMeta(source string) Meta {
	return Meta{
		ID:      ID(TypeUsageRecord, r.RecordID.String(), r.Revision),
		Type:    TypeUsageRecord,
		Source:  source,
		Subject: subjectOf(r.BillingAccountID, PeriodOf(r.BillingPeriodStart), r.IonCustomerID),
		Time:    r.FetchedAt,
	}
}

// NATSSubject is the subject the record is published on.
func (r UsageRecord) NATSSubject() string {
	return UsageRecordSubject(r.BillingAccountID, r.IonCustomerID)
}
