package ion

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func dec(t testing.TB, s string) decimal.Decimal {
	t.Helper()
	d, err := decimal.NewFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFlexValues(t *testing.T) {
	t.Parallel()
	var v struct {
		A, B   ID
		N1, N2 Int64
		M1, M2 Decimal
		M3, M4 Decimal
		T1, T2 Time
		T3     Time
	}
	in := `{"A":"123","B":123,"N1":"3","N2":3,"M1":63.8452759,"M2":"549.5283055206","M3":"","M4":1e-3,
		"T1":"2024-01-03T16:29:10.491Z","T2":"2024-08-29T12:34:29Z","T3":"2024-08-01"}`
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != "123" || v.B != "123" || v.N1 != 3 || v.N2 != 3 {
		t.Errorf("ids/ints: %+v", v)
	}
	if !v.M1.Equal(dec(t, "63.8452759")) || !v.M2.Equal(dec(t, "549.5283055206")) || !v.M3.IsZero() || !v.M4.Equal(dec(t, "0.001")) {
		t.Errorf("decimals: %s %s %s %s", v.M1, v.M2, v.M3, v.M4)
	}
	if v.T1.Nanosecond() != 491e6 || v.T2.Second() != 29 || !v.T3.Equal(time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("times: %v %v %v", v.T1, v.T2, v.T3)
	}
	for _, bad := range []string{`{"N1":"3.5"}`, `{"M1":"NaN"}`, `{"M1":{}}`, `{"T1":"yesterday"}`, `{"A":[1]}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

// Decimal precision must survive numbers float64 cannot hold.
func TestDecimalNoFloat(t *testing.T) {
	t.Parallel()
	var d Decimal
	if err := json.Unmarshal([]byte(`12345678901234567.0123456789`), &d); err != nil {
		t.Fatal(err)
	}
	if d.String() != "12345678901234567.0123456789" {
		t.Fatalf("got %s", d)
	}
}

func testColumns() []ReportColumn {
	return []ReportColumn{
		{ID: "799050", ColumnTemplateID: "azure_plan_billing.customer_id", DisplayName: "Customer ID", Groupable: true},
		{ID: "799051", ColumnTemplateID: "azure_plan_billing.customer_company_name", DisplayName: "Customer Company", Groupable: true},
		{ID: "799052", ColumnTemplateID: "azure_plan_billing.seller_cost_invoice", DisplayName: "Seller Cost (Invoiced Currency)",
			ColumnHeading: "Seller Cost (SEK)", ValueType: "MONEY", AggType: "SUM_COLUMN_AGGREGATION_TYPE"},
		{ID: "799053", ColumnTemplateID: "azure_plan_billing.usage", DisplayName: "Usage Quantity"},
		{ID: "799054", ColumnTemplateID: "azure_plan_billing.usage_starttime", DisplayName: "Charge StartDate"},
	}
}

func TestDecodeReportData(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/report_data.json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []Row
	meta, err := decodeReportData(strings.NewReader(string(b)), "/p", testColumns(), false, func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if meta.ResultCount != 3 || meta.AvailableRowsCount != 3 || meta.Truncated || meta.Rows != 3 || meta.Subtotals != 1 {
		t.Errorf("meta %+v", meta)
	}
	if meta.CacheTimestamp.Nanosecond() != 123e6 {
		t.Errorf("cacheTimestamp %v", meta.CacheTimestamp)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d leaf rows, want 2", len(rows))
	}
	r0, r1 := rows[0], rows[1]
	if r0.String("customer_id") != "4022" || r1.String("customer_id") != "4023" {
		t.Errorf("customer ids %q %q", r0.String("customer_id"), r1.String("customer_id"))
	}
	// Money as JSON number and as decimal string alike.
	if got := r0.Decimal("seller_cost_invoice"); !got.Equal(dec(t, "549.5283055206")) {
		t.Errorf("money number: %s", got)
	}
	if got := r1.Decimal("seller_cost_invoice"); !got.Equal(dec(t, "0.1000000001")) {
		t.Errorf("money string: %s", got)
	}
	if v, _ := r0.Get("seller_cost_invoice"); v.Currency != "SEK" || v.Type != "MONEY" {
		t.Errorf("money value %+v", v)
	}
	if !r1.Decimal("usage").Equal(dec(t, "3")) || !r0.Decimal("usage").Equal(dec(t, "671.9001464844")) {
		t.Errorf("usage %s %s", r0.Decimal("usage"), r1.Decimal("usage"))
	}
	if r1.Time("usage_starttime").Nanosecond() != 491e6 {
		t.Errorf("fractional time %v", r1.Time("usage_starttime"))
	}
	// By full template id and by column id too.
	if r0.String("azure_plan_billing.customer_id") != "4022" || r0.String("799050") != "4022" {
		t.Error("lookup by template id / column id")
	}

	// Subtotals on request.
	n := 0
	if _, err := decodeReportData(strings.NewReader(string(b)), "/p", testColumns(), true, func(Row) error { n++; return nil }); err != nil || n != 3 {
		t.Errorf("with subtotals: n=%d err=%v", n, err)
	}
}

func TestDecodeReportDataTruncation(t *testing.T) {
	t.Parallel()
	b, _ := os.ReadFile("testdata/report_data.json")
	body := string(b)
	cut := strings.Index(body, `{"values":[{"valueType":"ID"`) + 20
	n := 0
	_, err := decodeReportData(strings.NewReader(body[:cut]), "/p", testColumns(), false, func(Row) error { n++; return nil })
	var be *BodyError
	if !errors.As(err, &be) || !errors.Is(err, ErrBadBody) || !IsRetryable(err) || be.Rows != 1 || n != 1 {
		t.Fatalf("err %v rows %d", err, n)
	}
	// Truncated before any row: Rows 0, so the client retries by itself.
	_, err = decodeReportData(strings.NewReader(body[:40]), "/p", testColumns(), false, func(Row) error { n++; return nil })
	if !errors.As(err, &be) || be.Rows != 0 {
		t.Fatalf("early cut: %v", err)
	}
	// A callback error comes back unchanged.
	stop := errors.New("stop")
	_, err = decodeReportData(strings.NewReader(body), "/p", testColumns(), false, func(Row) error { return stop })
	if err != stop {
		t.Fatalf("callback error: %v", err)
	}
	// Value count mismatch is a body error.
	_, err = decodeReportData(strings.NewReader(body), "/p", testColumns()[:2], false, func(Row) error { return nil })
	if !errors.Is(err, ErrBadBody) {
		t.Fatalf("column mismatch: %v", err)
	}
	// Truncated result set: valid, flagged.
	meta, err := decodeReportData(strings.NewReader(`{"results":{"rows":[]},"resultCount":"0","availableRowsCount":12}`), "/p", nil, false, nil)
	if err != nil || !meta.Truncated {
		t.Fatalf("truncated set: %+v %v", meta, err)
	}
}

func TestIsSubtotal(t *testing.T) {
	t.Parallel()
	cols := testColumns()
	mk := func(id, company string, money string) Row {
		return Row{cols: cols, Values: []Value{
			{Type: "STRING", Text: id, Null: id == ""}, {Type: "STRING", Text: company},
			{Type: "MONEY", Number: dec(t, money), Text: money}, {Type: "FLOAT", Text: "1", Number: decimal.NewFromInt(1)}, {Null: true},
		}}
	}
	cases := []struct {
		row  Row
		want bool
	}{
		{mk("4022", "ACME", "1"), false},
		{mk("4022", "", "1"), false},           // licence rows have empty meters etc.
		{mk("Total", "", "5"), true},           // marker
		{mk("4022", "Subtotal", "5"), true},    // marker deeper down
		{mk("GRAND TOTAL", "", "5"), true},     // case
		{mk("4022", "Total: ACME", "5"), true}, // prefixed
		{mk("", "", "5"), true},                // no grouping at all
		{mk("4022", "Totally Fine Ltd", "1"), false},
	}
	for i, c := range cases {
		if got := IsSubtotal(c.row); got != c.want {
			t.Errorf("case %d (%q,%q): got %v", i, c.row.Values[0].Text, c.row.Values[1].Text, got)
		}
	}
}

func TestDecodeReportCSV(t *testing.T) {
	t.Parallel()
	cols := testColumns()
	csvText := "Customer ID,Customer Company,Seller Cost (SEK),Usage Quantity,Charge StartDate\n" +
		"4022,\"ACME, Inc.\",549.5283055206,671.9,2024-08-01T00:00:00Z\n" +
		"4023,CDA Ltd,0.10,3,2024-08-02\n" +
		"Total,,549.6283055206,674.9,\n"
	body, _ := json.Marshal(map[string]string{"results": csvText, "resultCount": "3"})
	var rows []Row
	meta, err := decodeReportCSV(strings.NewReader(string(body)), "/p", cols, false, func(r Row) error { rows = append(rows, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || meta.Rows != 3 || meta.Subtotals != 1 || meta.ResultCount != 3 {
		t.Fatalf("rows %d meta %+v", len(rows), meta)
	}
	if rows[0].String("customer_company_name") != "ACME, Inc." || !rows[0].Decimal("seller_cost_invoice").Equal(dec(t, "549.5283055206")) {
		t.Errorf("row0 %+v", rows[0].Values)
	}
	if !rows[1].Time("usage_starttime").Equal(time.Date(2024, 8, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date %v", rows[1].Time("usage_starttime"))
	}
	// A money cell that is not a plain number is an error, never zero.
	body, _ = json.Marshal(map[string]string{"results": "Customer ID,Customer Company,Seller Cost (SEK),Usage Quantity,Charge StartDate\n4022,A,\"1,234.00\",1,\n"})
	if _, err := decodeReportCSV(strings.NewReader(string(body)), "/p", cols, false, func(Row) error { return nil }); !errors.Is(err, ErrBadBody) {
		t.Errorf("formatted money: %v", err)
	}
}

func TestDecodeAzurePlan(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/azureplan_v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var lines []AzurePlanLine
	n := 0
	err = decodeAzurePlan(strings.NewReader(string(b)), "/p", nil, func(l AzurePlanLine) error { lines = append(lines, l); return nil }, &n)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 {
		t.Fatalf("got %d lines", len(lines))
	}
	l := lines[0]
	if l.CustomerID != "4022" || l.CustomerCompany != "ACMETECH Inc." || l.SubscriptionID == "" || l.Product != "Dv3 Series VM" ||
		l.SKU != "D2 v3" || l.Unit != "1 Hour" || l.CostCurrency != "SEK" || len(l.Path) != 4 {
		t.Errorf("line %+v", l)
	}
	if !l.Cost.Equal(dec(t, "549.5283055206")) || !l.Price.Equal(dec(t, "610.587006134")) || !l.Usage.Equal(dec(t, "671.9001464844")) {
		t.Errorf("money %s %s %s", l.Cost, l.Price, l.Usage)
	}
	if !lines[1].Cost.Equal(dec(t, "100")) || lines[1].Unit != "" {
		t.Errorf("licence line %+v", lines[1])
	}
	// success=false is an API error even with HTTP 200.
	err = decodeAzurePlan(strings.NewReader(`{"success":false,"message":"no access"}`), "/p", nil, func(AzurePlanLine) error { return nil }, &n)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Message != "no access" {
		t.Errorf("success=false: %v", err)
	}
}

func TestDecodeSubscriptions(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/subscriptions.json")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Items      []Subscription `json:"items"`
		Pagination struct {
			TotalSize Int64 `json:"totalSize"`
		} `json:"paginationResponse"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	s := page.Items[0]
	if s.ID != "2277242" || s.TotalLicenses != 3 || s.CloudProviderID != ProviderMicrosoft || !strings.EqualFold(s.Status, "ACTIVE") {
		t.Errorf("%+v", s)
	}
	if !s.Price.Equal(dec(t, "63.8452759")) || !s.Cost.Equal(dec(t, "55.1")) || s.StartDate.Nanosecond() != 491e6 || s.ProductInfo.SkuDisplayName != "Basic" {
		t.Errorf("%+v", s)
	}
}

// Found by FuzzDecodeReportData: a huge exponent must be refused, not expanded.
func TestDecimalHugeExponent(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := decodeReportData(strings.NewReader(`{"results":{"rows":[{"values":[{"floatValue":1e999999999}]}]}}`), "/p", nil, false, func(Row) error { return nil })
	if !errors.Is(err, ErrBadBody) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
	var d Decimal
	if err := json.Unmarshal([]byte(`"1e-999999"`), &d); err == nil {
		t.Fatal("tiny exponent accepted")
	}
}
