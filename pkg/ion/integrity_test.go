package ion

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// csvBody wraps CSV text in Ion's reportDataCsv envelope.
func csvBody(t *testing.T, csvText, resultCount string) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{"results": csvText, "resultCount": resultCount})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The CSV header must name the requested columns in the requested order: a reordered CSV would
// otherwise put usage into Seller Cost and money into Usage Quantity without any error.
func TestDecodeReportCSVHeaderOrder(t *testing.T) {
	t.Parallel()
	cols := testColumns()
	const rows = "4022,ACME,549.5283055206,671.9,2024-08-01T00:00:00Z\n"
	// Spellings Ion may use for the same columns, in the right order: all accepted.
	for _, head := range []string{
		"Customer ID,Customer Company,Seller Cost (SEK),Usage Quantity,Charge StartDate",                     // columnHeading / display name
		"\ufeff customer id , CUSTOMER COMPANY ,Seller Cost,usage quantity,Charge Start Date",                // BOM, case, spaces, no currency
		"customer_id,customer_company_name,seller_cost_invoice,usage,usage_starttime",                        // template keys
		"Customer ID,Customer Company,Seller Cost (Invoiced Currency) (SEK),Usage Quantity,Charge StartDate", // display name + currency
		"Customer ID,Customer Company,Seller Cost (Invoiced Currency),Usage Quantity,Charge StartDate",       // display name alone
	} {
		var got []Row
		_, err := decodeReportCSV(strings.NewReader(csvBody(t, head+"\n"+rows, "1")), "/p", cols, false, func(r Row) error { got = append(got, r); return nil })
		if err != nil || len(got) != 1 || !got[0].Decimal("seller_cost_invoice").Equal(dec(t, "549.5283055206")) {
			t.Errorf("header %q: rows %d err %v", head, len(got), err)
		}
	}
	// Reordered (money and usage swapped), renamed, short or long headers: a BodyError naming the
	// first mismatching position, and no row reaches the callback.
	for _, c := range []struct{ head, want string }{
		{"Customer ID,Customer Company,Usage Quantity,Seller Cost (SEK),Charge StartDate", "cell 3"},
		{"Customer Company,Customer ID,Seller Cost (SEK),Usage Quantity,Charge StartDate", "cell 1"},
		{"Customer ID,Customer Company,Customer Cost (SEK),Usage Quantity,Charge StartDate", "cell 3"},
		{"Customer ID,Customer Company,Seller Cost (SEK),Usage Quantity", "column 5"},
		{"Customer ID,Customer Company,Seller Cost (SEK),Usage Quantity,Charge StartDate,Margin (SEK)", "cell 6"},
	} {
		n := 0
		_, err := decodeReportCSV(strings.NewReader(csvBody(t, c.head+"\n"+rows, "1")), "/p", cols, false, func(Row) error { n++; return nil })
		var be *BodyError
		if !errors.As(err, &be) || !errors.Is(err, ErrBadBody) || !strings.Contains(be.Reason, c.want) || n != 0 {
			t.Errorf("header %q: err %v, %d rows delivered; want a BodyError naming %s", c.head, err, n, c.want)
		}
	}
	// The exported stored-page decoder checks the header too.
	_, err := DecodeReportCSV(strings.NewReader(csvBody(t, "Customer ID,Customer Company,Usage Quantity,Seller Cost (SEK),Charge StartDate\n"+rows, "1")),
		cols, func(Row) error { return nil })
	if !errors.Is(err, ErrBadBody) {
		t.Errorf("stored reordered csv: %v", err)
	}
}

// resultCount counts every row returned, leaf and subtotal (ion-api.md §4.4): a body holding
// fewer rows than that lost some and must not pass as a complete page.
func TestReportBodyShortOfResultCount(t *testing.T) {
	t.Parallel()
	cols := testColumns()
	b, err := os.ReadFile("testdata/report_data.json") // 2 leaf rows + 1 total, resultCount "3"
	if err != nil {
		t.Fatal(err)
	}
	full := string(b)
	if _, err := decodeReportData(strings.NewReader(full), "/p", cols, false, func(Row) error { return nil }); err != nil {
		t.Fatalf("complete body (subtotal counted in resultCount): %v", err)
	}
	short := strings.Replace(full, `"resultCount":"3","availableRowsCount":"3"`, `"resultCount":"4","availableRowsCount":"4"`, 1)
	if short == full {
		t.Fatal("fixture changed: resultCount not found")
	}
	var be *BodyError
	if _, err := decodeReportData(strings.NewReader(short), "/p", cols, false, func(Row) error { return nil }); !errors.As(err, &be) || !strings.Contains(be.Reason, "resultCount") {
		t.Errorf("json body with 3 of 4 rows: %v", err)
	}
	if _, err := DecodeReportData(strings.NewReader(short), cols, func(Row) error { return nil }); !errors.Is(err, ErrBadBody) {
		t.Errorf("stored json body with 3 of 4 rows: %v", err)
	}
	// A short body that is also truncated is still an error, not just Truncated.
	shortTrunc := strings.Replace(full, `"resultCount":"3","availableRowsCount":"3"`, `"resultCount":"4","availableRowsCount":"9"`, 1)
	if _, err := decodeReportData(strings.NewReader(shortTrunc), "/p", cols, false, func(Row) error { return nil }); !errors.Is(err, ErrBadBody) {
		t.Errorf("short and truncated json body: %v", err)
	}

	csvText := "Customer ID,Customer Company,Seller Cost (SEK),Usage Quantity,Charge StartDate\n" +
		"4022,ACME,549.5283055206,671.9,2024-08-01T00:00:00Z\n" +
		"4023,CDA Ltd,0.10,3,2024-08-02\n" +
		"Total,,549.6283055206,674.9,\n"
	if meta, err := decodeReportCSV(strings.NewReader(csvBody(t, csvText, "3")), "/p", cols, false, func(Row) error { return nil }); err != nil || meta.Rows != 3 {
		t.Fatalf("complete csv: %+v %v", meta, err)
	}
	be = nil
	if _, err := decodeReportCSV(strings.NewReader(csvBody(t, csvText, "5")), "/p", cols, false, func(Row) error { return nil }); !errors.As(err, &be) || !strings.Contains(be.Reason, "resultCount") || be.Rows != 2 {
		t.Errorf("csv with 3 of 5 rows: %v (%+v)", err, be)
	}
	if _, err := DecodeReportCSV(strings.NewReader(csvBody(t, csvText, "4")), cols, func(Row) error { return nil }); !errors.Is(err, ErrBadBody) {
		t.Errorf("stored csv with 3 of 4 rows: %v", err)
	}
}

// A v1 data member that is an object is "no lines" only when empty; anything in it is a body
// Ion changed under us, never an empty month.
func TestDecodeAzurePlanObjectData(t *testing.T) {
	t.Parallel()
	n := 0
	lines := 0
	if err := decodeAzurePlan(strings.NewReader(`{"success":true,"data":{}}`), "/p", nil, func(AzurePlanLine) error { lines++; return nil }, &n); err != nil || lines != 0 {
		t.Fatalf("empty object: %d lines, %v", lines, err)
	}
	for _, body := range []string{
		`{"success":true,"data":{"4022":{"entity":{"id":"4022","type":"customer"},"lines":[{"entity":{"id":"x","type":"sku"},"data":{"cost":"549.5"}}]}}}`,
		`{"success":true,"data":{"lines":[]}}`,
		`{"success":true,"message":"ok","data":{"total":"0"}}`,
	} {
		err := decodeAzurePlan(strings.NewReader(body), "/p", nil, func(AzurePlanLine) error { lines++; return nil }, &n)
		if !errors.Is(err, ErrBadBody) {
			t.Errorf("%s: %v", body, err)
		}
		if err := DecodeAzurePlan(strings.NewReader(body), func(AzurePlanLine) error { return nil }); !errors.Is(err, ErrBadBody) {
			t.Errorf("stored %s: %v", body, err)
		}
	}
}
