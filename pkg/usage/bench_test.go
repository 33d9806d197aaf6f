package usage_test

import (
	"testing"

	"github.com/ionusage/connector/pkg/usage"
)

func BenchmarkNormalize(b *testing.B) {
	pc, l := vmLine()
	tbl := usage.DefaultChargeTable()
	usage.DefaultLookups()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := usage.Normalize(pc, l, tbl); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalizePage(b *testing.B) {
	pc, lines := loadInput(b, "testdata/v3_json.json")
	tbl := usage.DefaultChargeTable()
	usage.DefaultLookups()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := usage.NormalizePage(pc, lines, tbl); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lines)), "ns/line")
}
