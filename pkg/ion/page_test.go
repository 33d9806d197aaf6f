package ion_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/ionsim"
)

// ReportDataPage hands over the rows of the one attempt that succeeded (cut bodies are fetched
// again, begin restarting the caller), keeps the exact bytes, and agrees with ReportDataRaw.
func TestReportDataPage(t *testing.T) {
	sim, base := startSim(t, ionsim.Options{Customers: 2, Meters: 3, Variant: ionsim.Variant{Daily: true},
		Faults: ionsim.Faults{TruncateJSON: 0.4}})
	c := simClient(t, sim, base, nil)
	ctx := context.Background()
	req := ion.ReportRequest{Columns: []string{"customer_id", "entitlement_id", "usage_starttime", "invoice_currency", "seller_cost_invoice", "usage"},
		Currency: "EUR", Range: ion.DateRange{Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 1, 31, 23, 59, 59, 0, time.UTC)},
		Filters: map[string][]string{"customer_id": {sim.GroundTruth(simPeriod).Customers[0].CustomerID}}}
	row := func(r ion.Row) string {
		return fmt.Sprintf("%s|%s|%s|%s|%s|%s", r.String("customer_id"), r.String("entitlement_id"), r.Time("usage_starttime"),
			r.String("invoice_currency"), r.Decimal("seller_cost_invoice"), r.Decimal("usage"))
	}
	attempts := 0
	for range 5 {
		var got []string
		begins := 0
		pg, err := c.ReportDataPage(ctx, ionsim.AzurePlanReportID, req, func() { got = got[:0]; begins++ }, func(r ion.Row) error {
			got = append(got, row(r))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(pg.Body.Reader())
		sum := sha256.Sum256(body)
		if pg.Body.SHA256() != hex.EncodeToString(sum[:]) || pg.Body.Len() != int64(len(body)) {
			t.Fatalf("body sha %s len %d, read back %d bytes", pg.Body.SHA256(), pg.Body.Len(), len(body))
		}
		var again []string
		meta, err := ion.DecodeReportData(bytes.NewReader(body), pg.Columns, func(r ion.Row) error { again = append(again, row(r)); return nil })
		pg.Body.Release()
		if err != nil {
			t.Fatal(err)
		}
		if meta != pg.Meta || len(got) != len(again) || len(got) == 0 || begins == 0 {
			t.Fatalf("page: meta %+v, %d rows after %d attempts; stored decode: meta %+v, %d rows", pg.Meta, len(got), begins, meta, len(again))
		}
		for i := range got {
			if got[i] != again[i] {
				t.Fatalf("row %d: %s, stored decode %s", i, got[i], again[i])
			}
		}
		attempts += begins
		raw, err := c.ReportDataRaw(ctx, ionsim.AzurePlanReportID, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw.Rows) != len(got) || raw.Meta.ResultCount != pg.Meta.ResultCount {
			t.Fatalf("ReportDataRaw: %d rows, meta %+v; ReportDataPage: %d rows, meta %+v", len(raw.Rows), raw.Meta, len(got), pg.Meta)
		}
	}
	if attempts <= 5 {
		t.Errorf("%d attempts for 5 pages: no cut body was fetched again, the retry path went untested", attempts)
	}
}
