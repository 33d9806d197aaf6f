package ion

import (
	"bytes"
	"os"
	"testing"
)

// The decoders face bytes from the network: whatever arrives, they must return an error or
// rows, never panic or loop.

func FuzzDecodeReportData(f *testing.F) {
	if b, err := os.ReadFile("testdata/report_data.json"); err == nil {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte(`{"results":{"rows":[{"values":[{"moneyValue":{"value":"1e400"}},{"dateValue":{"year":2024,"month":2,"day":30}},{"intValue":"9223372036854775808"},{"boolValue":"x"},{"internalLinkValue":{"text":"t"}}]}]},"resultCount":"x"}`))
	f.Add([]byte(`{"results":null,"availableRowsCount":1e3}`))
	f.Add([]byte(`[[[[[[[[[[`))
	cols := testColumns()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range [][]ReportColumn{cols, nil} {
			meta, err := decodeReportData(bytes.NewReader(b), "/p", c, true, func(r Row) error {
				_ = IsSubtotal(r)
				_, _ = r.Get("seller_cost_invoice")
				_ = r.Decimal("usage").String()
				return nil
			})
			if err == nil && meta.Rows < meta.Subtotals {
				t.Fatalf("meta %+v", meta)
			}
		}
		_, _ = decodeReportCSV(bytes.NewReader(b), "/p", cols, false, func(Row) error { return nil })
	})
}

func FuzzDecodeAzurePlan(f *testing.F) {
	if b, err := os.ReadFile("testdata/azureplan_v1.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"success":true,"data":{}}`))
	f.Add([]byte(`{"data":[{"lines":[{"lines":[{"data":{"cost":1}}]}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		_ = decodeAzurePlan(bytes.NewReader(b), "/p", nil, func(l AzurePlanLine) error {
			_ = l.Cost.Add(l.Price).String()
			return nil
		}, &n)
	})
}

func FuzzDecodeError(f *testing.F) {
	f.Add(403, "/api/v3/x", []byte(`{"error":"PERMISSION_DENIED","message":"m","code":403,"details":[{"requestId":"r"}]}`))
	f.Add(400, "/oauth/token", []byte(`{"error":"cannot validate token: redis: nil"}`))
	f.Add(500, "/x", []byte("<html>\xff\xfe</html>"))
	f.Add(401, "/x", []byte(`{"error":{"code":1},"code":"x","details":"y"}`))
	f.Fuzz(func(t *testing.T, status int, path string, b []byte) {
		err := DecodeError(status, "GET", path, b, func(s string) string { return s })
		if err == nil {
			t.Fatal("nil error")
		}
		_ = err.Error()
		_ = IsRetryable(err)
	})
}
