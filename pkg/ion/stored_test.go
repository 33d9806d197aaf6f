package ion

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// The exported stored-body decoders must read exactly what the client reads, and skip subtotals.
func TestDecodeStoredReportData(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/report_data.json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []Row
	meta, err := DecodeReportData(strings.NewReader(string(b)), testColumns(), func(r Row) error { rows = append(rows, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || meta.Subtotals != 1 || meta.Truncated {
		t.Fatalf("rows %d meta %+v", len(rows), meta)
	}
	if !rows[0].Decimal("seller_cost_invoice").Equal(dec(t, "549.5283055206")) || rows[1].String("customer_id") != "4023" {
		t.Errorf("rows %+v", rows)
	}
	// A cut stored body is an error, never a shorter page.
	_, err = DecodeReportData(strings.NewReader(string(b[:len(b)/2])), testColumns(), func(Row) error { return nil })
	if !errors.Is(err, ErrBadBody) {
		t.Errorf("cut body: %v", err)
	}
	// The callback's own error comes back unchanged.
	stop := errors.New("stop")
	if _, err := DecodeReportData(strings.NewReader(string(b)), testColumns(), func(Row) error { return stop }); err != stop {
		t.Errorf("callback error: %v", err)
	}
}

func TestDecodeStoredReportCSV(t *testing.T) {
	t.Parallel()
	csvText := "Customer ID,Customer Company,Seller Cost (SEK),Usage Quantity,Charge StartDate\n" +
		"4022,\"ACME, Inc.\",549.5283055206,671.9,2024-08-01T00:00:00Z\n" +
		"Total,,549.5283055206,671.9,\n"
	body, _ := json.Marshal(map[string]string{"results": csvText, "resultCount": "2"})
	var rows []Row
	meta, err := DecodeReportCSV(strings.NewReader(string(body)), testColumns(), func(r Row) error { rows = append(rows, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || meta.Subtotals != 1 || rows[0].String("customer_company_name") != "ACME, Inc." {
		t.Fatalf("rows %+v meta %+v", rows, meta)
	}
}

func TestDecodeStoredAzurePlan(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/azureplan_v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var lines []AzurePlanLine
	if err := DecodeAzurePlan(strings.NewReader(string(b)), func(l AzurePlanLine) error { lines = append(lines, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || !lines[0].Cost.Equal(dec(t, "549.5283055206")) || !lines[1].Cost.Equal(dec(t, "100")) {
		t.Fatalf("lines %+v", lines)
	}
	var ae *APIError
	if err := DecodeAzurePlan(strings.NewReader(`{"success":false,"message":"no access"}`), func(AzurePlanLine) error { return nil }); !errors.As(err, &ae) {
		t.Errorf("success=false: %v", err)
	}
}
