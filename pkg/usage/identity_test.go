package usage_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/usage"
)

func vmLine() (usage.PageContext, usage.Line) {
	pc := usage.PageContext{
		Account: "1234", Period: "2025-03", Mode: "v3", ColumnSetVersion: "apb-2025-01", Currency: "EUR",
		SourcePageID: uuid.MustParse("6a0d6f3e-6a51-5d2c-9a56-0c7f5f0e2b11"),
		FetchedAt:    time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC),
	}
	l := usage.Line{Number: 1, Cols: map[string]string{
		"customer_id": "4022", "customer_company_name": "Müller & Söhne GmbH",
		"cloud_account_number": "4d9eb36f-2b5c-4a8e-9f21-3c1d2e4f5a6b", "entitlement_id": "a1b2c3d4-0000-4000-8000-000000000001",
		"product_name": "Virtual Machines Dv3 Series", "sku_name": "D2 v3", "meter_category": "Virtual Machines",
		"meter_name": "D2 v3/D2s v3", "meter_id": "c6ac3b5b-8b8e-4d1a-9f0a-8e6b0a6c1d01", "region": "West Europe",
		"resource_uri": "/subscriptions/A1B2/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM1",
		"unit":         "1 Hour", "usage": "24", "usage_starttime": "2025-03-05T00:00:00Z", "usage_endtime": "2025-03-05T23:59:59Z",
		"charge_type": "Usage", "seller_cost_invoice": "2.4624000000", "customer_cost_invoice": "2.9327184000",
		"margin_invoice": "0.4703184000", "msrp_cost": "2.7360000000", "invoice_currency": "EUR",
	}}
	return pc, l
}

func mustNormalize(t *testing.T, pc usage.PageContext, l usage.Line) usage.Record {
	t.Helper()
	r, err := usage.Normalize(pc, l, usage.DefaultChargeTable())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func withCol(l usage.Line, k, v string) usage.Line {
	c := maps.Clone(l.Cols)
	c[k] = v
	return usage.Line{Number: l.Number, Cols: c}
}

func TestIdentityDeterministic(t *testing.T) {
	t.Parallel()
	pc, l := vmLine()
	a, b := mustNormalize(t, pc, l), mustNormalize(t, pc, l)
	if a.RecordID != b.RecordID || a.Revision != b.Revision {
		t.Fatalf("same line, different identity: %v/%s vs %v/%s", a.RecordID, a.Revision, b.RecordID, b.Revision)
	}

	// Volatile provenance changes neither id nor revision.
	pc2 := pc
	pc2.SourcePageID, pc2.FetchedAt = uuid.New(), pc.FetchedAt.Add(24*time.Hour)
	l2 := l
	l2.Number = 99
	if c := mustNormalize(t, pc2, l2); c.RecordID != a.RecordID || c.Revision != a.Revision {
		t.Errorf("re-fetch changed identity: %v/%s", c.RecordID, c.Revision)
	}

	// A changed amount is the same record in a new revision.
	if c := mustNormalize(t, pc, withCol(l, "seller_cost_invoice", "2.4625")); c.RecordID != a.RecordID || c.Revision == a.Revision {
		t.Errorf("changed cost: id %v (want %v), revision unchanged=%v", c.RecordID, a.RecordID, c.Revision == a.Revision)
	}
	// Trailing zeros are not a change: the value is the same decimal.
	if c := mustNormalize(t, pc, withCol(l, "seller_cost_invoice", "2.4624")); c.Revision != a.Revision {
		t.Error("trailing zeros changed the revision")
	}

	// Wire format does not change identity: CSV date-only and resource URI case.
	csvStyle := withCol(withCol(l, "usage_starttime", "2025-03-05"), "resource_uri",
		"/subscriptions/a1b2/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm1")
	if c := mustNormalize(t, pc, withCol(csvStyle, "usage_endtime", "2025-03-05T23:59:59Z")); c.RecordID != a.RecordID {
		t.Error("CSV-style spelling changed the record id")
	}

	// Any grouping column, the mode's column set, account and period are identity.
	for name, c := range map[string]usage.Record{
		"meter":        mustNormalize(t, pc, withCol(l, "meter_id", "other")),
		"day":          mustNormalize(t, pc, withCol(withCol(l, "usage_starttime", "2025-03-06"), "usage_endtime", "2025-03-06")),
		"extra column": mustNormalize(t, pc, withCol(l, "resource_group", "")),
		"column set":   mustNormalize(t, func() usage.PageContext { p := pc; p.ColumnSetVersion = "apb-2"; return p }(), l),
		"account":      mustNormalize(t, func() usage.PageContext { p := pc; p.Account = "9"; return p }(), l),
	} {
		if c.RecordID == a.RecordID {
			t.Errorf("%s: record id did not change", name)
		}
	}
	// Usage is summed, not grouped: it changes the revision only.
	if c := mustNormalize(t, pc, withCol(l, "usage", "25")); c.RecordID != a.RecordID || c.Revision == a.Revision {
		t.Error("usage must change the revision but not the id")
	}
}

func TestMergeDuplicates(t *testing.T) {
	t.Parallel()
	pc, l := vmLine()
	a := mustNormalize(t, pc, l)
	b := mustNormalize(t, pc, withCol(withCol(l, "seller_cost_invoice", "-0.0000000001"), "usage", "0.5"))
	other := mustNormalize(t, pc, withCol(l, "meter_id", "x"))

	ab := usage.MergeDuplicates([]usage.Record{a, other, b})
	ba := usage.MergeDuplicates([]usage.Record{b, other, a})
	if len(ab) != 2 || len(ba) != 2 {
		t.Fatalf("got %d and %d records, want 2", len(ab), len(ba))
	}
	m := ab[0]
	if m.RecordID != a.RecordID || m.BilledCost.String() != "2.4623999999" || m.PricingQuantity.String() != "24.5" {
		t.Errorf("merged: id %v cost %s qty %s", m.RecordID, m.BilledCost, m.PricingQuantity)
	}
	if len(m.Flags) != 1 || m.Flags[0] != "summed-duplicate" {
		t.Errorf("flags %v", m.Flags)
	}
	if m.Revision == a.Revision || m.Revision != m.ContentHash() {
		t.Error("merged record needs its own revision")
	}
	if ba[0].RecordID != m.RecordID || ba[0].Revision != m.Revision {
		t.Error("merge result depends on input order")
	}
	if ab[1].Revision != other.Revision || len(ab[1].Flags) != 0 {
		t.Error("a record without duplicates must pass through unchanged")
	}
	if len(a.Flags) != 0 {
		t.Error("MergeDuplicates modified its input")
	}
}

func TestLineErrors(t *testing.T) {
	t.Parallel()
	pc, l := vmLine()
	tbl := usage.DefaultChargeTable()
	cases := []struct {
		line           usage.Line
		column, reason string
		is             error
	}{
		{withCol(l, "customer_id", " "), "customer_id", usage.ReasonMissingField, usage.ErrInvalidLine},
		{withCol(l, "seller_cost_invoice", "1e"), "seller_cost_invoice", usage.ReasonBadNumber, usage.ErrInvalidLine},
		{withCol(l, "invoice_currency", "USD"), "invoice_currency", usage.ReasonCurrencyMismatch, usage.ErrInvalidLine},
		{withCol(l, "charge_type", "Mystery"), "charge_type", usage.ReasonUnknownChargeType, usage.ErrUnknownChargeType},
		{withCol(l, "usage_starttime", ""), "usage_starttime", usage.ReasonMissingField, usage.ErrInvalidLine},
		{withCol(l, "usage_endtime", "yesterday"), "usage_endtime", usage.ReasonBadDate, usage.ErrInvalidLine},
	}
	for _, c := range cases {
		_, err := usage.Normalize(pc, c.line, tbl)
		var le *usage.LineError
		if !errors.As(err, &le) || le.Column != c.column || le.Reason != c.reason || le.Line != 1 || !errors.Is(err, c.is) {
			t.Errorf("%s/%s: got %v", c.column, c.reason, err)
		}
	}

	// Out-of-period rows normalize; InPeriod holds them.
	r := mustNormalize(t, pc, withCol(withCol(l, "usage_starttime", "2025-04-01"), "usage_endtime", "2025-04-01"))
	err := usage.InPeriod(pc, r)
	var le *usage.LineError
	if !errors.As(err, &le) || le.Reason != usage.ReasonOutOfPeriod || !errors.Is(err, usage.ErrOutOfPeriod) {
		t.Errorf("out of period: %v", err)
	}
	// The month's last day ends at the period end and is in period.
	r = mustNormalize(t, pc, withCol(withCol(l, "usage_starttime", "2025-03-31T00:00:00Z"), "usage_endtime", "2025-03-31T23:59:59Z"))
	if err := usage.InPeriod(pc, r); err != nil {
		t.Errorf("last day: %v", err)
	}

	// Once the table knows the charge type, the same line normalizes (redrive).
	m := usage.DefaultChargeTableMap()
	m["Mystery"] = usage.CategoryPurchase
	tbl2, err := usage.NewChargeTable(m)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := usage.Normalize(pc, withCol(l, "charge_type", "mystery"), tbl2); err != nil || r.ChargeCategory != "Purchase" {
		t.Errorf("redrive: %v %v", r.ChargeCategory, err)
	}
	if _, err := usage.NewChargeTable(map[string]string{"x": "Refund"}); err == nil {
		t.Error("a non-FOCUS category must be refused")
	}
}
