package usage_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// focusColumns is FOCUS 1.2 (anchors.md §2.2): the Mandatory columns, then the Conditional
// and Recommended ones this package emits, with their data type and whether null is allowed.
var focusColumns = []struct {
	name     string
	typ      string // Decimal, String, DateTime, JSON
	nullable bool
}{
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
	chargeCategories  = set("Usage", "Purchase", "Tax", "Credit", "Adjustment")
	pricingCategories = set("Standard", "Dynamic", "Committed", "Other")
	serviceCategories = set("AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases",
		"Developer Tools", "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance",
		"Media", "Migration", "Mobile", "Networking", "Security", "Storage", "Web", "Other")
)

func set(v ...string) map[string]bool {
	m := map[string]bool{}
	for _, s := range v {
		m[s] = true
	}
	return m
}

// TestFOCUSColumns checks every record of every golden input against the column table: present,
// right JSON type, null only where FOCUS allows it, and the rules FOCUS states between columns.
func TestFOCUSColumns(t *testing.T) {
	n := 0
	for _, in := range goldenInputs(t) {
		out := normalizeFile(t, in)
		for i, rec := range append(out.Records, out.Held...) {
			b, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			var row map[string]any
			if err := json.Unmarshal(b, &row); err != nil {
				t.Fatal(err)
			}
			n++
			where := func(col string) string { return fmt.Sprintf("%s record %d %s", in, i, col) }
			for _, c := range focusColumns {
				v, ok := row[c.name]
				if !ok {
					t.Errorf("%s: column missing", where(c.name))
					continue
				}
				if v == nil {
					if !c.nullable {
						t.Errorf("%s: null in a not-null column", where(c.name))
					}
					continue
				}
				switch c.typ {
				case "Decimal":
					s, ok := v.(string) // strings on the wire: exact, never float64
					if _, err := decimal.NewFromString(s); !ok || err != nil {
						t.Errorf("%s: %v is not a decimal string", where(c.name), v)
					}
				case "String":
					if s, ok := v.(string); !ok || s == "" {
						t.Errorf("%s: %v is not a non-empty string", where(c.name), v)
					}
				case "DateTime":
					s, _ := v.(string)
					if ts, err := time.Parse(time.RFC3339, s); err != nil || ts.Location() != time.UTC || s[len(s)-1] != 'Z' {
						t.Errorf("%s: %v is not a UTC date-time", where(c.name), v)
					}
				case "JSON":
					if _, ok := v.(map[string]any); !ok {
						t.Errorf("%s: %v is not a JSON object", where(c.name), v)
					}
				}
			}
			if !chargeCategories[rec.ChargeCategory] {
				t.Errorf("%s: %q", where("ChargeCategory"), rec.ChargeCategory)
			}
			if rec.PricingCategory != nil && !pricingCategories[*rec.PricingCategory] {
				t.Errorf("%s: %q", where("PricingCategory"), *rec.PricingCategory)
			}
			if !serviceCategories[rec.ServiceCategory] {
				t.Errorf("%s: %q", where("ServiceCategory"), rec.ServiceCategory)
			}
			if rec.ChargeClass != nil {
				t.Errorf("%s: the transformer never sets ChargeClass", where("ChargeClass"))
			}
			if rec.ConsumedQuantity != nil && rec.ChargeCategory != "Usage" {
				t.Errorf("%s: ConsumedQuantity must be null unless ChargeCategory is Usage", where("ConsumedQuantity"))
			}
			if !rec.ChargePeriodEnd.After(rec.ChargePeriodStart) || !rec.BillingPeriodEnd.After(rec.BillingPeriodStart) {
				t.Errorf("%s: period end must be after start (exclusive end)", where("ChargePeriodEnd"))
			}
			if !rec.BilledCost.Equal(rec.EffectiveCost) || !rec.BilledCost.Equal(rec.ContractedCost) {
				t.Errorf("%s: reseller view: Billed = Effective = Contracted", where("BilledCost"))
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d records checked", n)
	}
}
