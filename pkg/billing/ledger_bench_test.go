package billing

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// benchPartition is a customer's month at the bench's size: 1,500 held records, each carried to
// one sink by one of three deliveries.
func benchPartition(n int) *Partition {
	p := &Partition{Account: "acct-1", Period: "2025-04", Customer: "cust-0001", Records: map[string]Held{}}
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 123456789, time.UTC)
	for i := range n {
		id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "bench-%d", i))
		dl := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "delivery-%d", i%3))
		p.Records[id.String()] = Held{
			Revision: fmt.Sprintf("%064x", i), Seq: 1, AsOf: t0.Add(time.Duration(i) * time.Minute), Currency: "EUR",
			Billed: decimal.RequireFromString(fmt.Sprintf("%d.%010d", i%97, i*7919%10000000000)), StreamSeq: uint64(1_000_000 + i),
			Sinks: map[string]uuid.UUID{"csv": dl},
		}
	}
	return p
}

// BenchmarkLedgerEncode is one Save's encoding of a 1,500-record partition.
func BenchmarkLedgerEncode(b *testing.B) {
	p := benchPartition(1500)
	p.Sum = p.sum()
	v, _ := encodePartition(p)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodePartition(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLedgerSum is what Save adds to the encoding: recomputing the partition's Sum.
func BenchmarkLedgerSum(b *testing.B) {
	p := benchPartition(1500)
	b.ReportAllocs()
	for b.Loop() {
		p.sum()
	}
}

// BenchmarkLedgerReadSum is the reconciler's read of a 1,500-record partition: its Sum only.
func BenchmarkLedgerReadSum(b *testing.B) {
	p := benchPartition(1500)
	p.Sum = p.sum()
	v, _ := encodePartition(p)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readSum(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLedgerDecode is one Load's decoding of a 1,500-record partition.
func BenchmarkLedgerDecode(b *testing.B) {
	p := benchPartition(1500)
	p.Sum = p.sum()
	v, _ := encodePartition(p)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodePartition(v); err != nil {
			b.Fatal(err)
		}
	}
}
