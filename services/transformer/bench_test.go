package transformer

import (
	"testing"

	"github.com/ionusage/connector/pkg/events"
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
