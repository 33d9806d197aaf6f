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
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// appendJSON appends json.Marshal(r), byte for byte, without reflection: every record is
// encoded twice (event body and ContentHash), which made encoding/json one of the pipeline's
// biggest CPU costs. A new UsageRecord field must be added here (the codec test counts them).
func (r *UsageRecord) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"BilledCost":`...)
	b = appendDecimal(b, r.BilledCost)
	b = append(b, `,"EffectiveCost":`...)
	b = appendDecimal(b, r.EffectiveCost)
	b = append(b, `,"ListCost":`...)
	b = appendDecimal(b, r.ListCost)
	b = append(b, `,"ContractedCost":`...)
	b = appendDecimal(b, r.ContractedCost)
	b = append(b, `,"BillingCurrency":`...)
	b = appendString(b, r.BillingCurrency)
	b = append(b, `,"BillingAccountId":`...)
	b = appendString(b, r.BillingAccountID)
	b = append(b, `,"BillingAccountName":`...)
	b = appendStringPtr(b, r.BillingAccountName)
	b = append(b, `,"BillingPeriodStart":`...)
	if b, err = appendTime(b, r.BillingPeriodStart); err != nil {
		return nil, fmt.Errorf("BillingPeriodStart: %w", err)
	}
	b = append(b, `,"BillingPeriodEnd":`...)
	if b, err = appendTime(b, r.BillingPeriodEnd); err != nil {
		return nil, fmt.Errorf("BillingPeriodEnd: %w", err)
	}
	b = append(b, `,"ChargePeriodStart":`...)
	if b, err = appendTime(b, r.ChargePeriodStart); err != nil {
		return nil, fmt.Errorf("ChargePeriodStart: %w", err)
	}
	b = append(b, `,"ChargePeriodEnd":`...)
	if b, err = appendTime(b, r.ChargePeriodEnd); err != nil {
		return nil, fmt.Errorf("ChargePeriodEnd: %w", err)
	}
	b = append(b, `,"ChargeCategory":`...)
	b = appendString(b, r.ChargeCategory)
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
	b = appendString(b, r.InvoiceIssuerName)
	b = append(b, `,"ProviderName":`...)
	b = appendString(b, r.ProviderName)
	b = append(b, `,"PublisherName":`...)
	b = appendString(b, r.PublisherName)
	b = append(b, `,"ServiceName":`...)
	b = appendString(b, r.ServiceName)
	b = append(b, `,"ServiceCategory":`...)
	b = appendString(b, r.ServiceCategory)
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
	b = appendUUID(b, r.RecordID)
	b = append(b, `,"x_Revision":`...)
	b = appendString(b, r.Revision)
	b = append(b, `,"x_RevisionSeq":`...)
	b = strconv.AppendInt(b, r.RevisionSeq, 10)
	b = append(b, `,"x_Replaces":`...)
	b = appendStringPtr(b, r.Replaces)
	b = append(b, `,"x_SourcePageId":`...)
	b = appendUUID(b, r.SourcePageID)
	b = append(b, `,"x_FetchedAt":`...)
	if b, err = appendTime(b, r.FetchedAt); err != nil {
		return nil, fmt.Errorf("x_FetchedAt: %w", err)
	}
	b = append(b, `,"x_ColumnSetVersion":`...)
	b = appendString(b, r.ColumnSetVersion)
	b = append(b, `,"x_SourceMode":`...)
	b = appendString(b, r.SourceMode)
	b = append(b, `,"x_IonCustomerId":`...)
	b = appendString(b, r.IonCustomerID)
	b = append(b, `,"x_CustomerTenantId":`...)
	b = appendStringPtr(b, r.CustomerTenantID)
	b = append(b, `,"x_CustomerName":`...)
	b = appendString(b, r.CustomerName)
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
		b = appendUUID(b, *r.CorrectsRecordID)
	}
	b = append(b, `,"x_CorrectsRevision":`...)
	b = appendStringPtr(b, r.CorrectsRevision)
	if len(r.Flags) > 0 { // omitempty
		b = append(b, `,"x_Flags":[`...)
		for i, f := range r.Flags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f)
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

// appendDecimal is decimal.Decimal's MarshalJSON.
func appendDecimal(b []byte, d decimal.Decimal) []byte {
	if decimal.MarshalJSONWithoutQuotes {
		return appendDecimalString(b, d)
	}
	b = append(b, '"')
	b = appendDecimalString(b, d)
	return append(b, '"')
}

// appendDecimalString is d.String(). Amounts whose coefficient fits an int64 (all of Ion's) are
// formatted here: String goes through math/big, nine times per record.
func appendDecimalString(b []byte, d decimal.Decimal) []byte {
	exp := d.Exponent()
	if exp > 0 || exp < -18 || !decimal.TrimTrailingZeros || d.NumDigits() > 18 {
		return append(b, d.String()...)
	}
	c := d.CoefficientInt64() // |c| < 1e18: exact
	if c < 0 {
		b = append(b, '-')
		c = -c
	}
	var buf [18 + 19]byte // leading zeros of the fraction, then the digits
	digits := strconv.AppendInt(buf[:0], c, 10)
	n := -int(exp) // fraction digits
	if len(digits) <= n {
		pad := n - len(digits) + 1 // a "0" integer part and the fraction's leading zeros
		digits = strconv.AppendInt(buf[:pad], c, 10)
		for i := range pad {
			digits[i] = '0'
		}
	}
	point := len(digits) - n
	frac := digits[point:]
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	b = append(b, digits[:point]...)
	if len(frac) > 0 {
		b = append(b, '.')
		b = append(b, frac...)
	}
	return b
}

func appendDecimalPtr(b []byte, d *decimal.Decimal) []byte {
	if d == nil {
		return append(b, "null"...)
	}
	return appendDecimal(b, *d)
}

// appendTime is time.Time's MarshalJSON (RFC 3339 with nanoseconds, and its range checks).
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

// appendUUID is uuid.UUID's MarshalText as a JSON string.
func appendUUID(b []byte, u uuid.UUID) []byte {
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	b = append(b, '"')
	b = append(b, s[:]...)
	return append(b, '"')
}

func appendStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendString(b, *s)
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
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m[k])
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString is json.Marshal(s): HTML-safe escaping of <, > and &, U+2028 and U+2029
// escaped, invalid UTF-8 replaced by U+FFFD, as encoding/json's appendString does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	var seen uint64
	// The nullable fields point into two backing arrays: two allocations instead of ~30.
	a := arena{strs: make([]string, 0, 24), decs: make([]decimal.Decimal, 0, 8)}
	for i < len(data) && data[i] != '}' {
		key, j, ok := rawString(data, i)
		if !ok {
			return false
		}
		f, known := recordFields[string(key)]
		if !known || seen&f.bit != 0 {
			return false // unknown (or case-folded) name, or a repeat: encoding/json's rules apply
		}
		seen |= f.bit
		if j = skipSpace(data, j); j >= len(data) || data[j] != ':' {
			return false
		}
		if i, ok = a.decodeField(data, skipSpace(data, j+1), f.field(r)); !ok {
			return false
		}
		if i = skipSpace(data, i); i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
			if i < len(data) && data[i] == '}' {
				return false // trailing comma
			}
		} else if i >= len(data) || data[i] != '}' {
			return false
		}
	}
	return i < len(data) && skipSpace(data, i+1) == len(data)
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
		*p, i, ok = decodeString(v, i)
	case **string:
		if null {
			return i, true
		}
		var s string
		if s, i, ok = decodeString(v, i); ok {
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
	if _, j, ok := rawString(v, i); ok && unmarshal(v[i:j]) == nil {
		return j, true
	}
	return 0, false
}

// rawString returns the content of the escape-free, valid-UTF-8 JSON string at v[i:] and the
// index after it; ok is false for anything else.
func rawString(v []byte, i int) ([]byte, int, bool) {
	if i >= len(v) || v[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(v); j++ {
		switch c := v[j]; {
		case c == '"':
			s := v[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, 0, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// decodeString reads the JSON string at v[i:]. One with escapes (appendString writes &, < and >
// as \u00XX) is unquoted by encoding/json.
func decodeString(v []byte, i int) (string, int, bool) {
	if s, j, ok := rawString(v, i); ok {
		return string(s), j, true
	}
	if i >= len(v) || v[i] != '"' {
		return "", 0, false
	}
	j := i + 1
	for j < len(v) && v[j] != '"' {
		if v[j] == '\\' {
			j++
		}
		j++
	}
	if j >= len(v) {
		return "", 0, false
	}
	var s string
	if json.Unmarshal(v[i:j+1], &s) != nil {
		return "", 0, false
	}
	return s, j + 1, true
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
	if i >= len(v) || v[i] != '{' {
		return nil, 0, false
	}
	m := map[string]string{}
	i = skipSpace(v, i+1)
	if i < len(v) && v[i] == '}' {
		return m, i + 1, true
	}
	for i < len(v) {
		k, j, ok := decodeString(v, i)
		if !ok {
			return nil, 0, false
		}
		if j = skipSpace(v, j); j >= len(v) || v[j] != ':' {
			return nil, 0, false
		}
		var s string
		if s, j, ok = decodeString(v, skipSpace(v, j+1)); !ok {
			return nil, 0, false
		}
		m[k] = s
		if i = skipSpace(v, j); i >= len(v) {
			return nil, 0, false
		}
		switch v[i] {
		case ',':
			i = skipSpace(v, i+1)
		case '}':
			return m, i + 1, true
		default:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func decodeStringSlice(v []byte, i int) ([]string, int, bool) {
	if i >= len(v) || v[i] != '[' {
		return nil, 0, false
	}
	out := []string{}
	i = skipSpace(v, i+1)
	if i < len(v) && v[i] == ']' {
		return out, i + 1, true
	}
	for i < len(v) {
		s, j, ok := decodeString(v, i)
		if !ok {
			return nil, 0, false
		}
		out = append(out, s)
		if i = skipSpace(v, j); i >= len(v) {
			return nil, 0, false
		}
		switch v[i] {
		case ',':
			i = skipSpace(v, i+1)
		case ']':
			return out, i + 1, true
		default:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func skipSpace(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\n' || v[i] == '\t' || v[i] == '\r') {
		i++
	}
	return i
}
