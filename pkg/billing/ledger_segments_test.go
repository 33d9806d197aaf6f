package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
)

// ProvisionedLedger starts a server, provisions the pipeline's topology on it and opens the
// ledger: the set-up of this package's tests, exported for the external ones (package
// billing_test).
func ProvisionedLedger(t testing.TB) (jetstream.JetStream, *Ledger) {
	t.Helper()
	ctx := context.Background()
	js := bustest.JetStream(t)
	if err := bus.Provision(ctx, js, bus.Topology{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return js, l
}

func newTestLedger(t testing.TB) (*Ledger, jetstream.KeyValue) {
	t.Helper()
	_, l := ProvisionedLedger(t)
	return l, l.kv
}

func heldN(i int, rev string) Held {
	return Held{Revision: rev, Seq: 1, AsOf: time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC), Currency: "EUR",
		Billed: decimal.New(int64(i), -2), StreamSeq: uint64(i), Sinks: map[string]uuid.UUID{"csv": uuid.NameSpaceURL}}
}

func recordID(i int) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "rec-%d", i)).String()
}

// segmentKeys lists the partition's segment keys in the bucket.
func segmentKeys(t *testing.T, kv jetstream.KeyValue, key string) []string {
	t.Helper()
	l, err := kv.ListKeysFiltered(context.Background(), key+".*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out
}

// Each Save writes only the records that changed since Load, as a new segment; the head stays
// small whatever the partition's size, a customer's month holds far more than the 1 MiB value
// limit once allowed (~3,000 records), and compaction keeps the segments bounded and deletes
// the ones it replaced.
func TestLedgerSegments(t *testing.T) {
	ctx := context.Background()
	l, kv := newTestLedger(t)
	key := Key("acct", "2025-04", "big")
	const rounds, per = 25, 300 // 7,500 records
	for r := range rounds {
		p, rev, err := l.Load(ctx, "acct", "2025-04", "big")
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) != r*per {
			t.Fatalf("round %d: loaded %d records, want %d", r, len(p.Records), r*per)
		}
		for i := r * per; i < (r+1)*per; i++ {
			p.Records[recordID(i)] = heldN(i, "r1")
		}
		if _, err := l.Save(ctx, p, rev); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(e.Value()); n > 4096 {
			t.Fatalf("round %d: head is %d bytes; the records belong in segments", r, n)
		}
		if segs := segmentKeys(t, kv, key); len(segs) > maxSegments {
			t.Fatalf("round %d: %d segment keys, want at most %d (compaction deletes what it replaced)", r, len(segs), maxSegments)
		}
	}
	p, rev, err := l.Load(ctx, "acct", "2025-04", "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != rounds*per || p.Sum.Records != rounds*per {
		t.Fatalf("%d records, sum %d; want %d", len(p.Records), p.Sum.Records, rounds*per)
	}
	for _, i := range []int{0, 2999, 7499} {
		if h := p.Records[recordID(i)]; !sameHeld(h, heldN(i, "r1")) {
			t.Errorf("record %d: %+v", i, h)
		}
	}
	ids, err := l.RecordIDs(ctx, "acct", "2025-04", "big")
	if err != nil || len(ids) != rounds*per {
		t.Fatalf("RecordIDs: %d, %v", len(ids), err)
	}

	// One changed record: a segment of one record, read back as the newest revision.
	p.Records[recordID(42)] = heldN(42, "r2")
	segs := len(p.Segments)
	if _, err := l.Save(ctx, p, rev); err != nil {
		t.Fatal(err)
	}
	if len(p.Segments) != segs+1 {
		t.Fatalf("segments %d → %d, want one more", segs, len(p.Segments))
	}
	e, err := kv.Get(ctx, key+"."+p.Segments[len(p.Segments)-1])
	if err != nil {
		t.Fatal(err)
	}
	if ids, _, _ := recordIDs(e.Value()); len(ids) != 1 || ids[0] != recordID(42) {
		t.Fatalf("new segment holds %q, want only the changed record", ids)
	}
	q, _, err := l.Load(ctx, "acct", "2025-04", "big")
	if err != nil {
		t.Fatal(err)
	}
	if q.Records[recordID(42)].Revision != "r2" || len(q.Records) != rounds*per {
		t.Fatalf("reloaded %d records, record 42 at %q", len(q.Records), q.Records[recordID(42)].Revision)
	}
	if ids, err := l.RecordIDs(ctx, "acct", "2025-04", "big"); err != nil || len(ids) != rounds*per {
		t.Fatalf("RecordIDs after a record in two segments: %d, %v", len(ids), err)
	}
}

// A head that names a segment a compaction has deleted is reloaded; one that keeps naming it
// is an error, not a partition with records missing.
func TestLedgerSegmentGone(t *testing.T) {
	ctx := context.Background()
	l, kv := newTestLedger(t)
	p, _, _ := l.Load(ctx, "acct", "2025-04", "c")
	p.Records[recordID(1)] = heldN(1, "r1")
	if _, err := l.Save(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, Key("acct", "2025-04", "c")+"."+p.Segments[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Load(ctx, "acct", "2025-04", "c"); !errors.Is(err, errSegmentGone) {
		t.Fatalf("Load: %v, want errSegmentGone", err)
	}
	if _, err := l.RecordIDs(ctx, "acct", "2025-04", "c"); !errors.Is(err, errSegmentGone) {
		t.Fatalf("RecordIDs: %v, want errSegmentGone", err)
	}
}

// Two writers from one revision: the second gets ErrConflict, and what the first wrote is what
// loads (the loser's segment stays behind unnamed).
func TestLedgerSegmentConflict(t *testing.T) {
	ctx := context.Background()
	l, kv := newTestLedger(t)
	// race saves a, then b, both against rev: b must lose.
	race := func(a, b *Partition, rev uint64) {
		t.Helper()
		if _, err := l.Save(ctx, a, rev); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Save(ctx, b, rev); !errors.Is(err, ErrConflict) {
			t.Fatalf("second writer: %v, want ErrConflict", err)
		}
	}
	a, rev, _ := l.Load(ctx, "acct", "2025-04", "c")
	b := mustLoad(t, l)
	a.Records[recordID(1)] = heldN(1, "a")
	b.Records[recordID(1)] = heldN(1, "b")
	race(a, b, rev)
	p, rev, err := l.Load(ctx, "acct", "2025-04", "c")
	if err != nil || p.Records[recordID(1)].Revision != "a" || len(p.Segments) != 1 {
		t.Fatalf("loaded %+v, %v", p, err)
	}
	key := Key("acct", "2025-04", "c")
	if keys := segmentKeys(t, kv, key); len(keys) != 1 || keys[0] != key+"."+p.Segments[0] {
		t.Fatalf("segment keys %v, want only the winner's %s (the loser's deleted)", keys, p.Segments[0])
	}

	// Two writers of the same records on the same revision write the same segment name: the
	// loser must not delete the one the winner's head names.
	a, b = p, mustLoad(t, l)
	a.Records[recordID(2)] = heldN(2, "x")
	b.Records[recordID(2)] = heldN(2, "x")
	race(a, b, rev)
	if p, _, err = l.Load(ctx, "acct", "2025-04", "c"); err != nil || len(p.Records) != 2 || len(segmentKeys(t, kv, key)) != 2 {
		t.Fatalf("loaded %+v, %v; segment keys %v", p, err, segmentKeys(t, kv, key))
	}
}

func mustLoad(t *testing.T, l *Ledger) *Partition {
	t.Helper()
	p, _, err := l.Load(context.Background(), "acct", "2025-04", "c")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A value written before segments existed (every record in the head) loads as before, and its
// first change moves every record out into segments.
func TestLedgerOldValue(t *testing.T) {
	ctx := context.Background()
	l, kv := newTestLedger(t)
	old := &Partition{Account: "acct", Period: "2025-04", Customer: "c", Records: map[string]Held{}}
	for i := range 50 {
		old.Records[recordID(i)] = heldN(i, "r1")
	}
	old.Sum = old.sum()
	v, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	key := Key("acct", "2025-04", "c")
	if _, err := kv.Put(ctx, key, v); err != nil {
		t.Fatal(err)
	}
	p, rev, err := l.Load(ctx, "acct", "2025-04", "c")
	if err != nil || len(p.Records) != 50 {
		t.Fatalf("old value: %d records, %v", len(p.Records), err)
	}
	if ids, err := l.RecordIDs(ctx, "acct", "2025-04", "c"); err != nil || len(ids) != 50 {
		t.Fatalf("RecordIDs of an old value: %d, %v", len(ids), err)
	}
	p.Records[recordID(50)] = heldN(50, "r1")
	if _, err := l.Save(ctx, p, rev); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	head, err := decodePartition(e.Value())
	if err != nil || len(head.Records) != 0 || len(head.Segments) != 1 {
		t.Fatalf("head after the first change: %d records inline, segments %v, %v", len(head.Records), head.Segments, err)
	}
	if q, _, err := l.Load(ctx, "acct", "2025-04", "c"); err != nil || len(q.Records) != 51 {
		t.Fatalf("reloaded %d records, %v", len(q.Records), err)
	}
}

// BenchmarkLedgerDelivery is a delivery's ledger work on a customer's month of 1,500 records,
// against a real server: load, write 300 members as pending, commit them as held records.
func BenchmarkLedgerDelivery(b *testing.B) {
	ctx := context.Background()
	l, _ := newTestLedger(b)
	for r := range 5 {
		p, rev, err := l.Load(ctx, "acct", "2025-04", "c")
		if err != nil {
			b.Fatal(err)
		}
		for i := r * 300; i < (r+1)*300; i++ {
			p.Records[recordID(i)] = heldN(i, "r1")
		}
		if _, err := l.Save(ctx, p, rev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		p, rev, err := l.Load(ctx, "acct", "2025-04", "c")
		if err != nil || len(p.Records) != 1500 {
			b.Fatalf("%d records, %v", len(p.Records), err)
		}
		members := make([]Member, 0, 300)
		for i := range 300 {
			j := (n*300 + i) % 1500
			h := heldN(j, fmt.Sprint("r", n))
			members = append(members, Member{RecordID: uuid.MustParse(recordID(j)), Revision: h.Revision, Seq: 2, AsOf: h.AsOf,
				Currency: h.Currency, Billed: h.Billed, StreamSeq: h.StreamSeq})
		}
		p.Pending = &Pending{ID: uuid.New(), Members: members, Done: map[string]events.SinkResult{}, Created: time.Now()}
		if rev, err = l.Save(ctx, p, rev); err != nil {
			b.Fatal(err)
		}
		for _, m := range members {
			p.Records[m.RecordID.String()] = Held{Revision: m.Revision, Seq: m.Seq, AsOf: m.AsOf, Currency: m.Currency, Billed: m.Billed,
				StreamSeq: m.StreamSeq, Sinks: map[string]uuid.UUID{"csv": p.Pending.ID}}
		}
		p.Pending = nil
		if _, err := l.Save(ctx, p, rev); err != nil {
			b.Fatal(err)
		}
	}
}
