package events

import (
	"encoding/json"
	"os"
	"testing"
)

// benchRecord is the schema example record: a typical v3 row.
func benchRecord(b *testing.B) UsageRecord {
	body, err := os.ReadFile("../../schemas/examples/usage.v1.record.json")
	if err != nil {
		b.Fatal(err)
	}
	var r UsageRecord
	if err := json.Unmarshal(body, &r); err != nil {
		b.Fatal(err)
	}
	return r
}

var benchSink []byte // keeps encoded bodies on the heap, as in NewMessage

// Each benchmark has the encoding/json way ("json", what the code did before) and the codec.

func BenchmarkRecordEncode(b *testing.B) {
	r := benchRecord(b)
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if benchSink, err = json.Marshal(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if benchSink, err = r.appendJSON(make([]byte, 0, 2560)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRecordContentHash(b *testing.B) {
	r := benchRecord(b)
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.jsonContentHash()
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.ContentHash()
		}
	})
}

func BenchmarkRecordDecode(b *testing.B) {
	r := benchRecord(b)
	body, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var back UsageRecord
			if err := json.Unmarshal(body, &back); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var back UsageRecord
			if err := DecodeUsageRecord(body, &back); err != nil {
				b.Fatal(err)
			}
		}
	})
}
