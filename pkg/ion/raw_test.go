package ion_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/ionsim"
)

// ReportDataRaw returns the exact bytes Ion sent, and decoding them again (as the transformer
// does from a stored page) gives the rows and meta the client returned.
func TestReportDataRaw(t *testing.T) {
	sim, base := startSim(t, ionsim.Options{Customers: 2, Meters: 1, Variant: ionsim.Variant{Daily: true, RowsCap: 20},
		Faults: ionsim.Faults{TruncateJSON: 0.3}})
	c := simClient(t, sim, base, nil)
	ctx := context.Background()
	req := ion.ReportRequest{Columns: []string{"customer_id", "entitlement_id", "usage_starttime", "invoice_currency", "seller_cost_invoice"},
		Currency: "EUR", Range: ion.DateRange{Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 1, 31, 23, 59, 59, 0, time.UTC)}}
	for _, wantTrunc := range []bool{true, false} {
		if !wantTrunc {
			req.Filters = map[string][]string{"customer_id": {sim.GroundTruth(simPeriod).Customers[0].CustomerID}}
			req.Range.End = req.Range.Start.Add(24*time.Hour - time.Second)
		}
		raw, err := c.ReportDataRaw(ctx, ionsim.AzurePlanReportID, req)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Meta.Truncated != wantTrunc {
			t.Errorf("truncated %v, want %v (meta %+v)", raw.Meta.Truncated, wantTrunc, raw.Meta)
		}
		if raw.Endpoint != "POST /api/v3/accounts/"+sim.Credentials().AccountID+"/reports/"+ionsim.AzurePlanReportID+"/data" {
			t.Errorf("endpoint %q", raw.Endpoint)
		}
		var sent struct {
			Specs struct {
				SelectedColumns []ion.ReportColumn `json:"selectedColumns"`
			} `json:"specs"`
		}
		if err := json.Unmarshal(raw.Request, &sent); err != nil || len(sent.Specs.SelectedColumns) != len(req.Columns) || sent.Specs.SelectedColumns[0].ID == "" {
			t.Fatalf("request %s: %v", raw.Request, err)
		}
		var again []ion.Row
		meta, err := ion.DecodeReportData(bytes.NewReader(raw.Body), sent.Specs.SelectedColumns, func(r ion.Row) error { again = append(again, r); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if meta != raw.Meta || len(again) != len(raw.Rows) || len(again) == 0 {
			t.Fatalf("stored decode: meta %+v rows %d, client: meta %+v rows %d", meta, len(again), raw.Meta, len(raw.Rows))
		}
		for i := range again {
			if !again[i].Decimal("seller_cost_invoice").Equal(raw.Rows[i].Decimal("seller_cost_invoice")) || again[i].String("customer_id") != raw.Rows[i].String("customer_id") {
				t.Errorf("row %d differs", i)
			}
		}
	}
	if sim.Stats().Truncated == 0 {
		t.Log("no cut body this run")
	}
}

// AzurePlanV1Raw keeps the bytes; their lines add up to the ground truth.
func TestAzurePlanV1Raw(t *testing.T) {
	sim, base := startSim(t, ionsim.Options{Customers: 2, Meters: 1})
	c := simClient(t, sim, base, nil)
	ct := sim.GroundTruth(simPeriod).Customers[0]
	raw, err := c.AzurePlanV1Raw(context.Background(), ct.CustomerID, simPeriod, "")
	if err != nil {
		t.Fatal(err)
	}
	var lines []ion.AzurePlanLine
	if err := ion.DecodeAzurePlan(bytes.NewReader(raw.Body), func(l ion.AzurePlanLine) error { lines = append(lines, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(raw.Lines) || len(lines) == 0 {
		t.Fatalf("%d stored lines, %d returned", len(lines), len(raw.Lines))
	}
	total := lines[0].Cost.Sub(lines[0].Cost)
	for _, l := range lines {
		total = total.Add(l.Cost)
	}
	if !total.Equal(ct.SellerCost) {
		t.Errorf("lines add up to %s, ground truth %s", total, ct.SellerCost)
	}
	if raw.Query["filter[customer_id]"] != ct.CustomerID || !bytes.Contains(raw.Request, []byte(ct.CustomerID)) {
		t.Errorf("request %s", raw.Request)
	}
}
