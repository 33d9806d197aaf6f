package usage

import (
	"fmt"
	"sort"
	"strings"
)

// FOCUS 1.2 ChargeCategory values.
const (
	CategoryUsage      = "Usage"
	CategoryPurchase   = "Purchase"
	CategoryCredit     = "Credit"
	CategoryAdjustment = "Adjustment"
	CategoryTax        = "Tax"
)

var categories = map[string]bool{
	CategoryUsage: true, CategoryPurchase: true, CategoryCredit: true, CategoryAdjustment: true, CategoryTax: true,
}

// ChargeTable maps Ion charge types to FOCUS ChargeCategory. It fails closed: a charge type it
// does not know is an error (the line is dead-lettered and redriven once the table knows it),
// because a guessed category would be billed wrongly without anyone noticing.
type ChargeTable struct {
	m map[string]string // by chargeKey
}

// chargeKey folds the spellings Ion and Partner Center use for one value: "Cycle Charge",
// "cycleCharge" and "cycle_charge" are one key.
func chargeKey(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		if r == ' ' || r == '_' || r == '-' {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// NewChargeTable builds a table from charge type → category; categories must be FOCUS values
// and two spellings of one key must agree.
func NewChargeTable(m map[string]string) (ChargeTable, error) {
	t := ChargeTable{m: make(map[string]string, len(m))}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic error text
	for _, k := range keys {
		c := m[k]
		if !categories[c] {
			return ChargeTable{}, fmt.Errorf("usage: charge table: %q maps to %q, not a FOCUS ChargeCategory", k, c)
		}
		ck := chargeKey(k)
		if ck == "" {
			return ChargeTable{}, fmt.Errorf("usage: charge table: empty charge type")
		}
		if old, ok := t.m[ck]; ok && old != c {
			return ChargeTable{}, fmt.Errorf("usage: charge table: %q maps to both %q and %q", k, old, c)
		}
		t.m[ck] = c
	}
	return t, nil
}

// DefaultChargeTableMap is the default mapping, meant to be extended from config. Ion's real
// Charge Type values are not documented (ion-api.md §9); these are Partner Center's new
// commerce and Cost Management names. Refunds and quantity removals stay Purchase (negative
// amounts), as in Microsoft's own FOCUS mapping; only explicit credits are Credit.
func DefaultChargeTableMap() map[string]string {
	return map[string]string{
		"usage":              CategoryUsage,
		"consumption":        CategoryUsage,
		"unusedreservation":  CategoryUsage,
		"unusedsavingsplan":  CategoryUsage,
		V1ChargeUsage:        CategoryUsage,
		"purchase":           CategoryPurchase,
		"new":                CategoryPurchase,
		"renew":              CategoryPurchase,
		"cyclecharge":        CategoryPurchase,
		"cyclefee":           CategoryPurchase,
		"addquantity":        CategoryPurchase,
		"removequantity":     CategoryPurchase,
		"cancelimmediate":    CategoryPurchase,
		"convert":            CategoryPurchase,
		"refund":             CategoryPurchase,
		V1ChargeLicense:      CategoryPurchase,
		"credit":             CategoryCredit,
		"azurecredit":        CategoryCredit,
		"azure credit":       CategoryCredit,
		"roundingadjustment": CategoryAdjustment,
		"adjustment":         CategoryAdjustment,
		"tax":                CategoryTax,
	}
}

// DefaultChargeTable returns the table built from DefaultChargeTableMap.
func DefaultChargeTable() ChargeTable {
	t, err := NewChargeTable(DefaultChargeTableMap())
	if err != nil {
		panic(err) // a literal above is wrong; the package tests catch it
	}
	return t
}

// Category returns the FOCUS ChargeCategory of a charge type.
func (t ChargeTable) Category(chargeType string) (string, bool) {
	c, ok := t.m[chargeKey(chargeType)]
	return c, ok
}
