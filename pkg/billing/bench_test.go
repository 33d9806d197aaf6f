package billing_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/events"
)

// benchRecords are n copies of the schema's example record with distinct record ids.
func benchRecords(b *testing.B, n int) []events.UsageRecord {
	b.Helper()
	raw, err := os.ReadFile("../../schemas/examples/usage.v1.record.json")
	if err != nil {
		b.Fatal(err)
	}
	var r events.UsageRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		b.Fatal(err)
	}
	out := make([]events.UsageRecord, n)
	for i := range out {
		out[i] = r
		out[i].RecordID = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "bench-%d", i))
	}
	return out
}

// BenchmarkEncodeRecord is a usage record's JSON body, as the transformer publishes it.
func BenchmarkEncodeRecord(b *testing.B) {
	r := benchRecords(b, 1)[0]
	body, _ := json.Marshal(r)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRecord is the publisher's side: a record event's body back into a record.
func BenchmarkDecodeRecord(b *testing.B) {
	body, _ := json.Marshal(benchRecords(b, 1)[0])
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var r events.UsageRecord
		if err := json.Unmarshal(body, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteFOCUSCSV writes a delivery of 500 records (the publisher's batch size) as CSV.
func BenchmarkWriteFOCUSCSV(b *testing.B) {
	const n = 500
	recs := benchRecords(b, n)
	b.ReportAllocs()
	for b.Loop() {
		if err := billing.WriteFOCUSCSV(io.Discard, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
