package fetcher

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/ionsim"
)

// hashBody is a fixed body and the columns it was requested with.
type hashBody struct {
	name string
	cols []ion.ReportColumn
	body []byte
}

// hashBodies are the test bodies of pkg/ion and the transformer, and sandbox pages (fixed
// seed and clock, so the same bytes every run).
func hashBodies(t testing.TB) []hashBody {
	t.Helper()
	var out []hashBody
	b, err := os.ReadFile("../../pkg/ion/testdata/report_data.json")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, hashBody{"pkg/ion report_data.json", []ion.ReportColumn{
		{ID: "799050", ColumnTemplateID: "azure_plan_billing.customer_id", DisplayName: "Customer ID", Groupable: true},
		{ID: "799051", ColumnTemplateID: "azure_plan_billing.customer_company_name", DisplayName: "Customer Company", Groupable: true},
		{ID: "799052", ColumnTemplateID: "azure_plan_billing.seller_cost_invoice", DisplayName: "Seller Cost (Invoiced Currency)",
			ColumnHeading: "Seller Cost (SEK)", ValueType: "MONEY", AggType: "SUM_COLUMN_AGGREGATION_TYPE"},
		{ID: "799053", ColumnTemplateID: "azure_plan_billing.usage", DisplayName: "Usage Quantity"},
		{ID: "799054", ColumnTemplateID: "azure_plan_billing.usage_starttime", DisplayName: "Charge StartDate"},
	}, b})

	b, err = os.ReadFile("../transformer/testdata/v3_json.page.json")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Request struct {
			Specs struct {
				SelectedColumns []ion.ReportColumn `json:"selectedColumns"`
			} `json:"specs"`
		} `json:"request"`
		Body string `json:"body"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	out = append(out, hashBody{"transformer v3_json.page.json", page.Request.Specs.SelectedColumns, []byte(page.Body)})

	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, v := range []ionsim.Variant{{Daily: true}, {Daily: false, MoneyAsString: true}} {
		sim, err := ionsim.New(ionsim.Options{Seed: 7, Customers: 2, Meters: 25, Variant: v, Periods: []string{"2025-01"},
			Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(sim.Handler())
		cr := sim.Credentials()
		c, err := ion.New(ion.Options{BaseURL: srv.URL, Account: cr.AccountID, V3: &ion.V3Auth{RefreshToken: cr.RefreshToken},
			RequestsPerSecond: 1000, Burst: 100, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		cust, err := c.ListCustomers(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := c.ReportDataRaw(context.Background(), ionsim.AzurePlanReportID, ion.ReportRequest{Columns: PinnedColumns,
			Currency: "EUR", Range: dayRange("2025-01-01", "2025-01-31"), Filters: map[string][]string{"customer_id": {cust[0].ID}}})
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(raw.Rows) < 40 {
			t.Fatalf("sandbox page has %d rows", len(raw.Rows))
		}
		out = append(out, hashBody{"sandbox month, " + map[bool]string{true: "daily", false: "monthly, money as strings"}[v.Daily], raw.Columns, raw.Body})
	}
	return out
}

// Page ids are built from the rows hash: the streaming hash must give what hashRows gave over
// collected rows before it (the constants were computed by that code, at commit d97e62b, on
// the same bodies), and what hashRows gives now.
func TestPageHashUnchanged(t *testing.T) {
	want := map[string]string{
		"pkg/ion report_data.json":                 "dbeb45aa2e38855080c9d57178cd3f469689837e51ca691f12a78f9e60970905",
		"transformer v3_json.page.json":            "acef1b0b6d3b06cff7f37a2f5be1860eec15bdc4f71c16b34a1e8da23b77c04f",
		"sandbox month, daily":                     "b4cd92067d215395d0312252e004afcc4c2e55831614ffb768529bf3a7d56ee9",
		"sandbox month, monthly, money as strings": "0b83e2e73ada60095ae9137550f178c51a3109e1f32e335022c43f688f0f5984",
	}
	for _, hb := range hashBodies(t) {
		var rows []ion.Row
		if _, err := ion.DecodeReportData(bytes.NewReader(hb.body), hb.cols, func(r ion.Row) error {
			rows = append(rows, r)
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", hb.name, err)
		}
		oldHash, oldN, oldSums := hashRows(hb.cols, rows)

		var h pageHash
		h.reset()
		if _, err := ion.DecodeReportDataTransient(bytes.NewReader(hb.body), hb.cols, h.add); err != nil {
			t.Fatalf("%s: %v", hb.name, err)
		}
		hash, n, sums := h.result(hb.cols)
		t.Logf("%s: %d rows, hash %s", hb.name, n, hash)
		if hash != want[hb.name] {
			t.Errorf("%s: streaming hash %s, want %s (page ids would change)", hb.name, hash, want[hb.name])
		}
		if hash != oldHash || n != oldN || !equalSums(sums, oldSums) {
			t.Errorf("%s: streaming hash %s of %d rows %v; hashRows %s of %d rows %v", hb.name, hash, n, sums, oldHash, oldN, oldSums)
		}
		if n == 0 {
			t.Errorf("%s: no rows", hb.name)
		}
	}
}

func equalSums(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// BenchmarkPageHash is the fetcher's pass over a fetched page (a sandbox month, ~1,400 rows):
// "rows" collects every row and hashes them as fetches did before (hashRows), "stream" is
// what a fetch does now (pageHash while the body decodes, rows not kept).
func BenchmarkPageHash(b *testing.B) {
	hb := hashBodies(b)[2] // sandbox month, daily
	if hb.name != "sandbox month, daily" {
		b.Fatal(hb.name)
	}
	b.Run("rows", func(b *testing.B) {
		b.SetBytes(int64(len(hb.body)))
		b.ReportAllocs()
		for b.Loop() {
			var rows []ion.Row
			if _, err := ion.DecodeReportData(bytes.NewReader(hb.body), hb.cols, func(r ion.Row) error {
				rows = append(rows, r)
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			hashRows(hb.cols, rows)
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.SetBytes(int64(len(hb.body)))
		b.ReportAllocs()
		var h pageHash
		for b.Loop() {
			h.reset()
			if _, err := ion.DecodeReportDataTransient(bytes.NewReader(hb.body), hb.cols, h.add); err != nil {
				b.Fatal(err)
			}
			h.result(hb.cols)
		}
	})
}
