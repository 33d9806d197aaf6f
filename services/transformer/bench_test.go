package transformer

import (
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/usage"
)

// BenchmarkDecodePage decodes stored sandbox pages into lines (no normalization).
func BenchmarkDecodePage(b *testing.B) {
	for _, name := range []string{"v3_json", "v3_csv", "v1_tree"} {
		b.Run(name, func(b *testing.B) {
			p := loadPage(b, "testdata/"+name+".page.json")
			body := []byte(p.Body)
			d, err := decodePage(p, body)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodePage(p, body); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(d.Lines)), "ns/line")
		})
	}
}

// sandboxMonthPage is one customer's month from the sandbox at the bench's size (25 meters,
// daily rows: about 1,400 lines, 4 MB), the page size ionconnector bench produces; the golden
// pages are too small to show per-row costs.
func sandboxMonthPage(b *testing.B) events.RawPage {
	b.Helper()
	o := goldenSimOptions()
	o.Customers, o.Meters, o.Variant = 1, 25, ionsim.Variant{Daily: true}
	sb := startSandbox(b, o)
	cust := sb.sim.GroundTruth(goldenPeriod).Customers[0].CustomerID
	from, to := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 31, 23, 59, 59, 0, time.UTC)
	req := sb.v3Request(b, leafColumns, cust, from, to)
	return rawPage(sb.account, goldenPeriod, events.ModeV3, "POST /api/v3/accounts/"+sb.account+"/reports/"+ionsim.AzurePlanReportID+"/data",
		req, events.PageKey{Customer: cust, From: "2025-01-01", To: "2025-01-31"}, sb.fetchV3(b, req, false), from)
}

// BenchmarkDecodeSandboxPage decodes a bench-sized v3 JSON page into lines.
func BenchmarkDecodeSandboxPage(b *testing.B) {
	p := sandboxMonthPage(b)
	body := []byte(p.Body)
	d, err := decodePage(p, body)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodePage(p, body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(d.Lines)), "ns/line")
}

// BenchmarkTransformPage is the whole page path: decode, normalize, merge, encode every event.
func BenchmarkTransformPage(b *testing.B) {
	usage.DefaultLookups()
	p := loadPage(b, "testdata/v3_csv.page.json")
	in := pageInput{Page: p, Body: []byte(p.Body), Charges: usage.DefaultChargeTable(), Currency: "EUR", Source: Source, Now: goldenNow,
		Origin: origin{Subject: events.RawPageSubject(p.Account)}}
	out, err := transformPage(in)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := transformPage(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(out.Decoded.Lines)), "ns/line")
}
