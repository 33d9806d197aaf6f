package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/jsonwire"
)

// appendJSON appends json.Marshal(r), byte for byte, without reflection: every record is
// encoded twice (event body and ContentHash), which made encoding/json one of the pipeline's
// biggest CPU costs. A new UsageRecord field must be added here (the codec test counts them).
func (r *UsageRecord) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"BilledCost":`...)
	b = jsonwire.AppendDecimal(b, r.BilledCost)
	b = append(b, `,"EffectiveCost":`...)
	b = jsonwire.AppendDecimal(b, r.EffectiveCost)
	b = append(b, `,"ListCost":`...)
	b = jsonwire.AppendDecimal(b, r.ListCost)
	b = append(b, `,"ContractedCost":`...)
	b = jsonwire.AppendDecimal(b, r.ContractedCost)
	b = append(b, `,"BillingCurrency":`...)
	b = jsonwire.AppendString(b, r.BillingCurrency)
	b = append(b, `,"BillingAccountId":`...)
	b = jsonwire.AppendString(b, r.BillingAccountID)
	b = append(b, `,"BillingAccountName":`...)
	b = appendStringPtr(b, r.BillingAccountName)
	b = append(b, `,"BillingPeriodStart":`...)
	if b, err = jsonwire.AppendTime(b, r.BillingPeriodStart); err != nil {
		return nil, fmt.Errorf("BillingPeriodStart: %w", err)
	}
	b = append(b, `,"BillingPeriodEnd":`...)
	if b, err = jsonwire.AppendTime(b, r.BillingPeriodEnd); err != nil {
		return nil, fmt.Errorf("BillingPeriodEnd: %w", err)
	}
	b = append(b, `,"ChargePeriodStart":`...)
	if b, err = jsonwire.AppendTime(b, r.ChargePeriodStart); err != nil {
		return nil, fmt.Errorf("ChargePeriodStart: %w", err)
	}
	b = append(b, `,"ChargePeriodEnd":`...)
	if b, err = jsonwire.AppendTime(b, r.ChargePeriodEnd); err != nil {
		return nil, fmt.Errorf("ChargePeriodEnd: %w", err)
	}
	b = append(b, `,"ChargeCategory":`...)
	b = jsonwire.AppendString(b, r.ChargeCategory)
	b = append(b, `,"ChargeClass":`...)
	b = appendStringPtr(b, r.ChargeClass)
	b = append(b, `,"ChargeDescription":`...)
	b = appendStringPtr(b, r.ChargeDescription)
	b = append(b, `,"ConsumedQuantity":`...)
	b = appendDecimalPtr(b, r.ConsumedQuantity)
	b = append(b, `,"ConsumedUnit":`...)
	b = appendStringPtr(b, r.ConsumedUnit)
	b = append(b, `,"PricingQuantity":`...)
	b = appendDecimalPtr(b, r.PricingQuantity)
	b = append(b, `,"PricingUnit":`...)
	b = appendStringPtr(b, r.PricingUnit)
	b = append(b, `,"PricingCategory":`...)
	b = appendStringPtr(b, r.PricingCategory)
	b = append(b, `,"ListUnitPrice":`...)
	b = appendDecimalPtr(b, r.ListUnitPrice)
	b = append(b, `,"ContractedUnitPrice":`...)
	b = appendDecimalPtr(b, r.ContractedUnitPrice)
	b = append(b, `,"InvoiceId":`...)
	b = appendStringPtr(b, r.InvoiceID)
	b = append(b, `,"InvoiceIssuerName":`...)
	b = jsonwire.AppendString(b, r.InvoiceIssuerName)
	b = append(b, `,"ProviderName":`...)
	b = jsonwire.AppendString(b, r.ProviderName)
	b = append(b, `,"PublisherName":`...)
	b = jsonwire.AppendString(b, r.PublisherName)
	b = append(b, `,"ServiceName":`...)
	b = jsonwire.AppendString(b, r.ServiceName)
	b = append(b, `,"ServiceCategory":`...)
	b = jsonwire.AppendString(b, r.ServiceCategory)
	b = append(b, `,"ResourceId":`...)
	b = appendStringPtr(b, r.ResourceID)
	b = append(b, `,"ResourceName":`...)
	b = appendStringPtr(b, r.ResourceName)
	b = append(b, `,"ResourceType":`...)
	b = appendStringPtr(b, r.ResourceType)
	b = append(b, `,"RegionId":`...)
	b = appendStringPtr(b, r.RegionID)
	b = append(b, `,"RegionName":`...)
	b = appendStringPtr(b, r.RegionName)
	b = append(b, `,"SkuId":`...)
	b = appendStringPtr(b, r.SkuID)
	b = append(b, `,"SkuMeter":`...)
	b = appendStringPtr(b, r.SkuMeter)
	b = append(b, `,"SubAccountId":`...)
	b = appendStringPtr(b, r.SubAccountID)
	b = append(b, `,"SubAccountName":`...)
	b = appendStringPtr(b, r.SubAccountName)
	b = append(b, `,"Tags":`...)
	b = appendStringMap(b, r.Tags)
	b = append(b, `,"x_RecordId":`...)
	b = jsonwire.AppendUUID(b, r.RecordID)
	b = append(b, `,"x_Revision":`...)
	b = jsonwire.AppendString(b, r.Revision)
	b = append(b, `,"x_RevisionSeq":`...)
	b = strconv.AppendInt(b, r.RevisionSeq, 10)
	b = append(b, `,"x_Replaces":`...)
	b = appendStringPtr(b, r.Replaces)
	b = append(b, `,"x_SourcePageId":`...)
	b = jsonwire.AppendUUID(b, r.SourcePageID)
	b = append(b, `,"x_FetchedAt":`...)
	if b, err = jsonwire.AppendTime(b, r.FetchedAt); err != nil {
		return nil, fmt.Errorf("x_FetchedAt: %w", err)
	}
	b = append(b, `,"x_ColumnSetVersion":`...)
	b = jsonwire.AppendString(b, r.ColumnSetVersion)
	b = append(b, `,"x_SourceMode":`...)
	b = jsonwire.AppendString(b, r.SourceMode)
	b = append(b, `,"x_IonCustomerId":`...)
	b = jsonwire.AppendString(b, r.IonCustomerID)
	b = append(b, `,"x_CustomerTenantId":`...)
	b = appendStringPtr(b, r.CustomerTenantID)
	b = append(b, `,"x_CustomerName":`...)
	b = jsonwire.AppendString(b, r.CustomerName)
	b = append(b, `,"x_ResellerId":`...)
	b = appendStringPtr(b, r.ResellerID)
	b = append(b, `,"x_SubscriptionId":`...)
	b = appendStringPtr(b, r.SubscriptionID)
	b = append(b, `,"x_MeterId":`...)
	b = appendStringPtr(b, r.MeterID)
	b = append(b, `,"x_CustomerCost":`...)
	b = appendDecimalPtr(b, r.CustomerCost)
	b = append(b, `,"x_Margin":`...)
	b = appendDecimalPtr(b, r.Margin)
	b = append(b, `,"x_CorrectsRecordId":`...)
	if r.CorrectsRecordID == nil {
		b = append(b, "null"...)
	} else {
		b = jsonwire.AppendUUID(b, *r.CorrectsRecordID)
	}
	b = append(b, `,"x_CorrectsRevision":`...)
	b = appendStringPtr(b, r.CorrectsRevision)
	if len(r.Flags) > 0 { // omitempty
		b = append(b, `,"x_Flags":[`...)
		for i, f := range r.Flags {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonwire.AppendString(b, f)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// recordBufs holds ContentHash's scratch buffers: the hash input is dropped right after hashing.
var recordBufs = sync.Pool{New: func() any { return new([]byte) }}

// contentSHA256 is jsonSHA256(*r) through the hand-written encoder.
func (r *UsageRecord) contentSHA256() string {
	bp := recordBufs.Get().(*[]byte)
	b, err := r.appendJSON((*bp)[:0])
	if err != nil {
		// As json.Marshal in jsonSHA256: a record's times are always within year 0..9999.
		panic(fmt.Sprintf("events: hash: %v", err))
	}
	sum := sha256.Sum256(b)
	*bp = b
	recordBufs.Put(bp)
	return hex.EncodeToString(sum[:])
}

func appendDecimalPtr(b []byte, d *decimal.Decimal) []byte {
	if d == nil {
		return append(b, "null"...)
	}
	return jsonwire.AppendDecimal(b, *d)
}

func appendStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return jsonwire.AppendString(b, *s)
}

// appendStringMap is json.Marshal of a map[string]string: keys sorted, nil is null.
func appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonwire.AppendString(b, k)
		b = append(b, ':')
		b = jsonwire.AppendString(b, m[k])
	}
	return append(b, '}')
}

// DecodeUsageRecord is json.Unmarshal(data, r) for a record body. Bodies as appendJSON writes
// them (any field order, any whitespace) are parsed without reflection; anything else (unknown
// or repeated fields, unquoted amounts, a value of the wrong type, bad JSON) goes through
// encoding/json, so results and errors stay encoding/json's.
func DecodeUsageRecord(data []byte, r *UsageRecord) error {
	if decodeRecord(data, r) {
		return nil
	}
	*r = UsageRecord{}
	return json.Unmarshal(data, r)
}

// recordField returns a pointer to one field of r; bit is the field's bit in a seen-set.
type recordField struct {
	bit   uint64
	field func(r *UsageRecord) any
}

// recordFields maps every JSON name of UsageRecord to its field (the codec test checks it
// against the struct tags).
var recordFields = func() map[string]recordField {
	fs := []struct {
		name  string
		field func(r *UsageRecord) any
	}{
		{"BilledCost", func(r *UsageRecord) any { return &r.BilledCost }},
		{"EffectiveCost", func(r *UsageRecord) any { return &r.EffectiveCost }},
		{"ListCost", func(r *UsageRecord) any { return &r.ListCost }},
		{"ContractedCost", func(r *UsageRecord) any { return &r.ContractedCost }},
		{"BillingCurrency", func(r *UsageRecord) any { return &r.BillingCurrency }},
		{"BillingAccountId", func(r *UsageRecord) any { return &r.BillingAccountID }},
		{"BillingAccountName", func(r *UsageRecord) any { return &r.BillingAccountName }},
		{"BillingPeriodStart", func(r *UsageRecord) any { return &r.BillingPeriodStart }},
		{"BillingPeriodEnd", func(r *UsageRecord) any { return &r.BillingPeriodEnd }},
		{"ChargePeriodStart", func(r *UsageRecord) any { return &r.ChargePeriodStart }},
		{"ChargePeriodEnd", func(r *UsageRecord) any { return &r.ChargePeriodEnd }},
		{"ChargeCategory", func(r *UsageRecord) any { return &r.ChargeCategory }},
		{"ChargeClass", func(r *UsageRecord) any { return &r.ChargeClass }},
		{"ChargeDescription", func(r *UsageRecord) any { return &r.ChargeDescription }},
		{"ConsumedQuantity", func(r *UsageRecord) any { return &r.ConsumedQuantity }},
		{"ConsumedUnit", func(r *UsageRecord) any { return &r.ConsumedUnit }},
		{"PricingQuantity", func(r *UsageRecord) any { return &r.PricingQuantity }},
		{"PricingUnit", func(r *UsageRecord) any { return &r.PricingUnit }},
		{"PricingCategory", func(r *UsageRecord) any { return &r.PricingCategory }},
		{"ListUnitPrice", func(r *UsageRecord) any { return &r.ListUnitPrice }},
		{"ContractedUnitPrice", func(r *UsageRecord) any { return &r.ContractedUnitPrice }},
		{"InvoiceId", func(r *UsageRecord) any { return &r.InvoiceID }},
		{"InvoiceIssuerName", func(r *UsageRecord) any { return &r.InvoiceIssuerName }},
		{"ProviderName", func(r *UsageRecord) any { return &r.ProviderName }},
		{"PublisherName", func(r *UsageRecord) any { return &r.PublisherName }},
		{"ServiceName", func(r *UsageRecord) any { return &r.ServiceName }},
		{"ServiceCategory", func(r *UsageRecord) any { return &r.ServiceCategory }},
		{"ResourceId", func(r *UsageRecord) any { return &r.ResourceID }},
		{"ResourceName", func(r *UsageRecord) any { return &r.ResourceName }},
		{"ResourceType", func(r *UsageRecord) any { return &r.ResourceType }},
		{"RegionId", func(r *UsageRecord) any { return &r.RegionID }},
		{"RegionName", func(r *UsageRecord) any { return &r.RegionName }},
		{"SkuId", func(r *UsageRecord) any { return &r.SkuID }},
		{"SkuMeter", func(r *UsageRecord) any { return &r.SkuMeter }},
		{"SubAccountId", func(r *UsageRecord) any { return &r.SubAccountID }},
		{"SubAccountName", func(r *UsageRecord) any { return &r.SubAccountName }},
		{"Tags", func(r *UsageRecord) any { return &r.Tags }},
		{"x_RecordId", func(r *UsageRecord) any { return &r.RecordID }},
		{"x_Revision", func(r *UsageRecord) any { return &r.Revision }},
		{"x_RevisionSeq", func(r *UsageRecord) any { return &r.RevisionSeq }},
		{"x_Replaces", func(r *UsageRecord) any { return &r.Replaces }},
		{"x_SourcePageId", func(r *UsageRecord) any { return &r.SourcePageID }},
		{"x_FetchedAt", func(r *UsageRecord) any { return &r.FetchedAt }},
		{"x_ColumnSetVersion", func(r *UsageRecord) any { return &r.ColumnSetVersion }},
		{"x_SourceMode", func(r *UsageRecord) any { return &r.SourceMode }},
		{"x_IonCustomerId", func(r *UsageRecord) any { return &r.IonCustomerID }},
		{"x_CustomerTenantId", func(r *UsageRecord) any { return &r.CustomerTenantID }},
		{"x_CustomerName", func(r *UsageRecord) any { return &r.CustomerName }},
		{"x_ResellerId", func(r *UsageRecord) any { return &r.ResellerID }},
		{"x_SubscriptionId", func(r *UsageRecord) any { return &r.SubscriptionID }},
		{"x_MeterId", func(r *UsageRecord) any { return &r.MeterID }},
		{"x_CustomerCost", func(r *UsageRecord) any { return &r.CustomerCost }},
		{"x_Margin", func(r *UsageRecord) any { return &r.Margin }},
		{"x_CorrectsRecordId", func(r *UsageRecord) any { return &r.CorrectsRecordID }},
		{"x_CorrectsRevision", func(r *UsageRecord) any { return &r.CorrectsRevision }},
		{"x_Flags", func(r *UsageRecord) any { return &r.Flags }},
	}
	m := make(map[string]recordField, len(fs))
	for i, f := range fs {
		m[f.name] = recordField{bit: 1 << i, field: f.field}
	}
	return m
}()

// decodeRecord parses data into *r (which it may leave half-filled when it returns false).
func decodeRecord(data []byte, r *UsageRecord) bool {
	*r = UsageRecord{}
	i := jsonwire.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = jsonwire.SkipSpace(data, i+1)
	var seen uint64
	// The nullable fields point into two backing arrays: two allocations instead of ~30.
	a := arena{strs: make([]string, 0, 24), decs: make([]decimal.Decimal, 0, 8)}
	for i < len(data) && data[i] != '}' {
		key, j, ok := jsonwire.RawString(data, i)
		if !ok {
			return false
		}
		f, known := recordFields[string(key)]
		if !known || seen&f.bit != 0 {
			return false // unknown (or case-folded) name, or a repeat: encoding/json's rules apply
		}
		seen |= f.bit
		if j = jsonwire.SkipSpace(data, j); j >= len(data) || data[j] != ':' {
			return false
		}
		if i, ok = a.decodeField(data, jsonwire.SkipSpace(data, j+1), f.field(r)); !ok {
			return false
		}
		if i = jsonwire.SkipSpace(data, i); i < len(data) && data[i] == ',' {
			i = jsonwire.SkipSpace(data, i+1)
			if i < len(data) && data[i] == '}' {
				return false // trailing comma
			}
		} else if i >= len(data) || data[i] != '}' {
			return false
		}
	}
	return i < len(data) && jsonwire.SkipSpace(data, i+1) == len(data)
}

// arena holds the values of one record's pointer fields.
type arena struct {
	strs []string
	decs []decimal.Decimal
}

func (a *arena) str(s string) *string {
	if len(a.strs) == cap(a.strs) {
		p := new(string)
		*p = s
		return p
	}
	a.strs = append(a.strs, s)
	return &a.strs[len(a.strs)-1]
}

func (a *arena) dec() *decimal.Decimal {
	if len(a.decs) == cap(a.decs) {
		return new(decimal.Decimal)
	}
	a.decs = a.decs[:len(a.decs)+1]
	return &a.decs[len(a.decs)-1]
}

// decodeField parses the value at v[i:] into the field p points to and returns the index after it.
func (a *arena) decodeField(v []byte, i int, p any) (int, bool) {
	null := bytes.HasPrefix(v[i:], []byte("null"))
	if null {
		i += 4
	}
	var ok bool
	switch p := p.(type) {
	case *string:
		if null {
			return 0, false
		}
		*p, i, ok = jsonwire.String(v, i)
	case **string:
		if null {
			return i, true
		}
		var s string
		if s, i, ok = jsonwire.String(v, i); ok {
			*p = a.str(s)
		}
	case *decimal.Decimal:
		if null {
			return 0, false
		}
		i, ok = decodeQuoted(v, i, p.UnmarshalJSON)
	case **decimal.Decimal:
		if null {
			return i, true
		}
		d := a.dec()
		if i, ok = decodeQuoted(v, i, d.UnmarshalJSON); ok {
			*p = d
		}
	case *time.Time:
		if null {
			return 0, false
		}
		i, ok = decodeQuoted(v, i, p.UnmarshalJSON)
	case *uuid.UUID:
		if null {
			return 0, false
		}
		i, ok = decodeQuoted(v, i, func(q []byte) error { return p.UnmarshalText(q[1 : len(q)-1]) })
	case **uuid.UUID:
		if null {
			return i, true
		}
		u := new(uuid.UUID)
		if i, ok = decodeQuoted(v, i, func(q []byte) error { return u.UnmarshalText(q[1 : len(q)-1]) }); ok {
			*p = u
		}
	case *int64:
		if null {
			return 0, false
		}
		*p, i, ok = decodeInt(v, i)
	case *map[string]string:
		if null {
			return i, true
		}
		*p, i, ok = decodeStringMap(v, i)
	case *[]string:
		if null {
			return i, true
		}
		*p, i, ok = decodeStringSlice(v, i)
	}
	return i, ok
}

// decodeQuoted hands the escape-free JSON string at v[i:], quotes included, to unmarshal, as
// encoding/json hands a value to its UnmarshalJSON (or its content to UnmarshalText).
func decodeQuoted(v []byte, i int, unmarshal func([]byte) error) (int, bool) {
	if _, j, ok := jsonwire.RawString(v, i); ok && unmarshal(v[i:j]) == nil {
		return j, true
	}
	return 0, false
}

// decodeInt reads a JSON integer (no fraction or exponent, no leading zeros) at v[i:].
func decodeInt(v []byte, i int) (int64, int, bool) {
	j := i
	if j < len(v) && v[j] == '-' {
		j++
	}
	start := j
	for j < len(v) && v[j] >= '0' && v[j] <= '9' {
		j++
	}
	if j == start || (v[start] == '0' && j > start+1) || j >= len(v) || v[j] == '.' || v[j] == 'e' || v[j] == 'E' {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(string(v[i:j]), 10, 64)
	return n, j, err == nil
}

func decodeStringMap(v []byte, i int) (map[string]string, int, bool) {
	m := map[string]string{}
	end, ok := jsonwire.Members(v, i, jsonwire.String, func(k string, j int) (int, bool) {
		s, end, ok := jsonwire.String(v, j)
		m[k] = s
		return end, ok
	})
	if !ok {
		return nil, 0, false
	}
	return m, end, true
}

func decodeStringSlice(v []byte, i int) ([]string, int, bool) {
	if i >= len(v) || v[i] != '[' {
		return nil, 0, false
	}
	out := []string{}
	i = jsonwire.SkipSpace(v, i+1)
	if i < len(v) && v[i] == ']' {
		return out, i + 1, true
	}
	for i < len(v) {
		s, j, ok := jsonwire.String(v, i)
		if !ok {
			return nil, 0, false
		}
		out = append(out, s)
		if i = jsonwire.SkipSpace(v, j); i >= len(v) {
			return nil, 0, false
		}
		switch v[i] {
		case ',':
			i = jsonwire.SkipSpace(v, i+1)
		case ']':
			return out, i + 1, true
		default:
			return nil, 0, false
		}
	}
	return nil, 0, false
}
