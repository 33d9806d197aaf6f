package usage

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// FOCUSColumn is one FOCUS 1.2 column as the spec defines it: data type and nullability.
type FOCUSColumn struct {
	Name     string
	Type     string // Decimal, String, DateTime, JSON
	Nullable bool
}

// FOCUSColumns is FOCUS 1.2 (anchors.md §2.2): the Mandatory columns, then the Conditional and
// Recommended ones the records carry. Exported so every stage that emits or consumes records
// checks them against the same table.
var FOCUSColumns = []FOCUSColumn{
	// Mandatory.
	{"BilledCost", "Decimal", false},
	{"EffectiveCost", "Decimal", false},
	{"ListCost", "Decimal", false},
	{"ContractedCost", "Decimal", false},
	{"BillingAccountId", "String", false},
	{"BillingAccountName", "String", true},
	{"BillingCurrency", "String", false},
	{"BillingPeriodStart", "DateTime", false},
	{"BillingPeriodEnd", "DateTime", false},
	{"ChargePeriodStart", "DateTime", false},
	{"ChargePeriodEnd", "DateTime", false},
	{"ChargeCategory", "String", false},
	{"ChargeClass", "String", true},
	{"ChargeDescription", "String", true},
	{"InvoiceIssuerName", "String", false},
	{"ProviderName", "String", false},
	{"PublisherName", "String", false},
	{"PricingQuantity", "Decimal", true},
	{"PricingUnit", "String", true},
	{"ServiceCategory", "String", false},
	{"ServiceName", "String", false},
	// Conditional / Recommended, as emitted.
	{"ConsumedQuantity", "Decimal", true},
	{"ConsumedUnit", "String", true},
	{"PricingCategory", "String", true},
	{"ListUnitPrice", "Decimal", true},
	{"ContractedUnitPrice", "Decimal", true},
	{"InvoiceId", "String", true},
	{"ResourceId", "String", true},
	{"ResourceName", "String", true},
	{"ResourceType", "String", true},
	{"RegionId", "String", true},
	{"RegionName", "String", true},
	{"SkuId", "String", true},
	{"SkuMeter", "String", true},
	{"SubAccountId", "String", true},
	{"SubAccountName", "String", true},
	{"Tags", "JSON", true},
}

// Allowed values from the FOCUS 1.2 spec.
var (
	focusChargeCategories  = setOf("Usage", "Purchase", "Tax", "Credit", "Adjustment")
	focusPricingCategories = setOf("Standard", "Dynamic", "Committed", "Other")
	focusServiceCategories = setOf("AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases",
		"Developer Tools", "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance",
		"Media", "Migration", "Mobile", "Networking", "Security", "Storage", "Web", "Other")
)

func setOf(v ...string) map[string]bool {
	m := make(map[string]bool, len(v))
	for _, s := range v {
		m[s] = true
	}
	return m
}

// CheckFOCUS checks one encoded record (a usage.v1.record body) against FOCUSColumns: every
// column present, of its JSON type, null only where FOCUS allows it, allowed values, and the
// rules FOCUS states between columns. It returns one error per violation.
func CheckFOCUS(body []byte) []error {
	var row map[string]any
	if err := json.Unmarshal(body, &row); err != nil {
		return []error{fmt.Errorf("not a JSON object: %w", err)}
	}
	var errs []error
	bad := func(col, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", col, fmt.Sprintf(format, a...)))
	}
	for _, c := range FOCUSColumns {
		v, ok := row[c.Name]
		if !ok {
			bad(c.Name, "column missing")
			continue
		}
		if v == nil {
			if !c.Nullable {
				bad(c.Name, "null in a not-null column")
			}
			continue
		}
		switch c.Type {
		case "Decimal":
			s, ok := v.(string) // strings on the wire: exact, never float64
			if _, err := decimal.NewFromString(s); !ok || err != nil {
				bad(c.Name, "%v is not a decimal string", v)
			}
		case "String":
			if s, ok := v.(string); !ok || s == "" {
				bad(c.Name, "%v is not a non-empty string", v)
			}
		case "DateTime":
			s, _ := v.(string)
			if ts, err := time.Parse(time.RFC3339, s); err != nil || ts.Location() != time.UTC || s == "" || s[len(s)-1] != 'Z' {
				bad(c.Name, "%v is not a UTC date-time", v)
			}
		case "JSON":
			if _, ok := v.(map[string]any); !ok {
				bad(c.Name, "%v is not a JSON object", v)
			}
		}
	}
	str := func(k string) string { s, _ := row[k].(string); return s }
	if !focusChargeCategories[str("ChargeCategory")] {
		bad("ChargeCategory", "%q is not a FOCUS value", str("ChargeCategory"))
	}
	if row["PricingCategory"] != nil && !focusPricingCategories[str("PricingCategory")] {
		bad("PricingCategory", "%q is not a FOCUS value", str("PricingCategory"))
	}
	if !focusServiceCategories[str("ServiceCategory")] {
		bad("ServiceCategory", "%q is not a FOCUS value", str("ServiceCategory"))
	}
	if row["ChargeClass"] != nil {
		bad("ChargeClass", "the transformer never sets ChargeClass")
	}
	if row["ConsumedQuantity"] != nil && str("ChargeCategory") != CategoryUsage {
		bad("ConsumedQuantity", "must be null unless ChargeCategory is Usage")
	}
	after := func(end, start string) {
		e, err1 := time.Parse(time.RFC3339, str(end))
		s, err2 := time.Parse(time.RFC3339, str(start))
		if err1 == nil && err2 == nil && !e.After(s) {
			bad(end, "must be after %s (exclusive end)", start)
		}
	}
	after("ChargePeriodEnd", "ChargePeriodStart")
	after("BillingPeriodEnd", "BillingPeriodStart")
	billed, _ := decimal.NewFromString(str("BilledCost"))
	for _, k := range []string{"EffectiveCost", "ContractedCost"} {
		if d, err := decimal.NewFromString(str(k)); err == nil && !d.Equal(billed) {
			bad(k, "reseller view: BilledCost = EffectiveCost = ContractedCost")
		}
	}
	return errs
}
