package ionsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"
)

// discardWriter is a ResponseWriter that keeps nothing and samples the heap as the body streams.
type discardWriter struct {
	hdr      http.Header
	code     int
	n, next  int64
	peakHeap uint64
}

func (d *discardWriter) Header() http.Header { return d.hdr }
func (d *discardWriter) WriteHeader(c int)   { d.code = c }
func (d *discardWriter) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	if d.n >= d.next {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		d.peakHeap = max(d.peakHeap, ms.HeapAlloc)
		d.next = d.n + 8<<20
	}
	return len(p), nil
}

func streamingSim(tb testing.TB, customers, meters int) (*Sim, string) {
	tb.Helper()
	s, err := New(Options{Seed: 9, Customers: customers, Meters: meters, Periods: []string{"2025-01"},
		Now: func() time.Time { return testNow }, Variant: Variant{Daily: true}})
	if err != nil {
		tb.Fatal(err)
	}
	rec := httptest.NewRecorder()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.Credentials().RefreshToken}}
	req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	s.Handler().ServeHTTP(rec, req)
	var tr tokenResp
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || tr.AccessToken == "" {
		tb.Fatalf("token: %s", rec.Body.Bytes())
	}
	return s, tr.AccessToken
}

// leafBody selects one row per item and day, the fetcher's natural request.
var leafBody = fixedBody(cols("customer_id", "cloud_account_number", "entitlement_id", "resource_uri", "meter_id", "meter_name",
	"charge_type", "unit", "usage_starttime", "usage_endtime", "usage", "seller_cost_invoice", "customer_cost_invoice", "invoice_currency"),
	"2025-01-01T00:00:00Z", "2025-01-31T23:59:59Z")

func serveDiscard(s *Sim, token, body string) *discardWriter {
	req := httptest.NewRequest("POST", "/api/v3/accounts/10001/reports/49038/data", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	dw := &discardWriter{hdr: http.Header{}}
	s.Handler().ServeHTTP(dw, req)
	return dw
}

func TestStreamingBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams ~200k rows")
	}
	s, token := streamingSim(t, 24, 140)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	dw := serveDiscard(s, token, leafBody)
	rows := s.Stats().RowsServed
	growth := int64(dw.peakHeap) - int64(base)
	t.Logf("rows %d, body %d MB, heap growth %d MB", rows, dw.n>>20, growth>>20)
	if dw.code != 200 || rows < 150_000 {
		t.Fatalf("code %d rows %d", dw.code, rows)
	}
	if growth > dw.n/8 || growth > 48<<20 {
		t.Fatalf("heap grew %d bytes for a %d-byte body", growth, dw.n)
	}
}

// BenchmarkMillionRows streams a ~1,000,000-row report and reports heap growth.
func BenchmarkMillionRows(b *testing.B) {
	s, token := streamingSim(b, 100, 180)
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		s.ResetStats()
		dw := serveDiscard(s, token, leafBody)
		b.ReportMetric(float64(s.Stats().RowsServed), "rows")
		b.ReportMetric(float64(dw.n)/(1<<20), "bodyMB")
		b.ReportMetric(float64(int64(dw.peakHeap)-int64(before.HeapAlloc))/(1<<20), "heapGrowthMB")
	}
}
