package billing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// ErrConflict means another writer changed a ledger partition between our read and our write;
// the caller reloads and decides again.
var ErrConflict = errors.New("billing: ledger partition changed concurrently")

// Partition is the ledger of one account, period and customer. Its head is one KV key, so one
// compare-and-set covers a whole delivery; the records live in immutable segments the head
// names (see Ledger), so a delivery writes its own records, not the customer's whole month,
// and a partition has no size limit. Field names are short to keep values small.
type Partition struct {
	Account  string `json:"account"`
	Period   string `json:"period"`
	Customer string `json:"customer"`
	// Sum is recomputed by every Save and written before the records, so that Sums reads a
	// partition's totals without decoding its records (readSum).
	Sum *Sum `json:"sum,omitempty"`
	// Segments names the segments holding the records, oldest first: KV keys
	// Key(account, period, customer)+"."+name, each {"records":{…}}; a later one wins.
	Segments []string `json:"segs,omitempty"`
	// Records is, once loaded, every record of the partition: by x_RecordId, the current
	// delivered revision. Stored in the head only by values written before segments existed.
	// Replace a Held, never change its Sinks map in place: Save finds what to write by
	// comparing with a shallow copy of what Load returned, and decoded records share maps.
	Records map[string]Held `json:"records"`
	Dead    map[string]Dead `json:"dead,omitempty"`    // by x_RecordId: revisions a sink rejected (dead-lettered)
	Pending *Pending        `json:"pending,omitempty"` // a delivery handed (or about to be handed) to sinks
	// Receipt is the last committed delivery's receipt, published right after the commit and
	// cleared by the partition's next write; a process that finds it and did not publish it
	// publishes it (again: idempotent by delivery id) first.
	Receipt *events.Delivery `json:"receipt,omitempty"`

	loaded *loadState // what Load read, so that Save writes only what changed
}

// loadState is what a Partition was loaded as.
type loadState struct {
	inline  map[string]Held // the records stored in the head itself (an old value's)
	records map[string]Held // Records as loaded (a shallow copy)
}

// Sum is what reconciliation and completion need of a partition: a few bytes instead of up to
// ~1,500 records to decode (a period at a million records has some 650 partitions).
type Sum struct {
	Pending bool `json:"pending,omitempty"` // a delivery is pending
	// Records counts the held revisions that count as delivered: not superseded by a newer
	// revision a sink rejected (that one counts as dead-lettered instead); Billed sums their
	// billed cost per currency (a currency with any such record has an entry, even at zero).
	Records int                        `json:"n"`
	Billed  map[string]decimal.Decimal `json:"b,omitempty"`
	// Dead counts the dead-lettered revisions, DeadBilled sums their billed cost per currency.
	Dead       int                        `json:"dn,omitempty"`
	DeadBilled map[string]decimal.Decimal `json:"db,omitempty"`
}

// sum computes p's Sum from its records.
func (p *Partition) sum() *Sum {
	s := &Sum{Pending: p.Pending != nil}
	for id, h := range p.Records {
		if d, ok := p.Dead[id]; ok && d.AsOf.After(h.AsOf) {
			continue // the current revision was rejected by a sink: counted as dead-lettered
		}
		if s.Billed == nil {
			s.Billed = map[string]decimal.Decimal{}
		}
		s.Records++
		s.Billed[h.Currency] = s.Billed[h.Currency].Add(h.Billed)
	}
	for _, d := range p.Dead {
		if s.DeadBilled == nil {
			s.DeadBilled = map[string]decimal.Decimal{}
		}
		s.Dead++
		s.DeadBilled[d.Currency] = s.DeadBilled[d.Currency].Add(d.Billed)
	}
	return s
}

// Held is the revision of a record the sinks hold.
type Held struct {
	Revision  string               `json:"r"`
	Seq       int64                `json:"n"` // x_RevisionSeq
	AsOf      time.Time            `json:"t"` // x_FetchedAt of the revision: only a newer one is accepted
	Currency  string               `json:"c"`
	Billed    decimal.Decimal      `json:"b"`
	StreamSeq uint64               `json:"q"` // USAGE stream sequence of the revision's event (snapshots)
	Sinks     map[string]uuid.UUID `json:"s"` // sink name → delivery id that carried this revision
}

// Dead is a revision that a sink rejected; reconcile reports its amount as dead-lettered.
type Dead struct {
	Revision string          `json:"r"`
	AsOf     time.Time       `json:"t"`
	Currency string          `json:"c"`
	Billed   decimal.Decimal `json:"b"`
	Reason   string          `json:"why"`
}

// Member is one record revision of a pending delivery: everything needed to rebuild the exact
// body after a crash (the record itself is re-read from the USAGE stream by StreamSeq).
type Member struct {
	RecordID  uuid.UUID       `json:"id"`
	Revision  string          `json:"r"`
	Seq       int64           `json:"n"`
	Replaces  *string         `json:"p,omitempty"`
	AsOf      time.Time       `json:"t"`
	Currency  string          `json:"c"`
	Billed    decimal.Decimal `json:"b"` // the full revision's: what the ledger holds after the commit
	StreamSeq uint64          `json:"q"`
	// Correction is set when the member is delivered as a Correction delta row (its period was
	// closed at acceptance); nil for a supersede in an open period.
	Correction *Correction `json:"x,omitempty"`
}

// Pending is a delivery between "written as pending" and "committed".
type Pending struct {
	ID      uuid.UUID                    `json:"id"`
	Members []Member                     `json:"m"`    // sorted by record id
	Done    map[string]events.SinkResult `json:"done"` // sink name → what it said
	Created time.Time                    `json:"at"`
}

// Key is the KV key of a partition: "<account>.<period>.<customer>". Tokens that are not
// KV-safe are written as "=" + base64url, which no plain token can start with.
func Key(account, period, customer string) string {
	return bus.KVToken(account) + "." + period + "." + bus.KVToken(customer)
}

// Ledger is the delivery ledger in the KV bucket "ledger" (History 1: compare-and-set on the
// latest revision is all we need).
//
// A partition is a head (Key) and segments (Key + "." + name). A Save that changes records
// first writes them, and only them, as a new segment, then compare-and-sets the head naming it;
// so a delivery of 300 records writes ~70 KB instead of rewriting a customer's whole month
// (formerly ~350 KB twice per delivery, and capped at ~3,000 records by the 1 MiB value
// limit). A segment's name is a hash of its bytes and of the head revision it was written
// against, so two writers never write different bytes under one name. A writer whose head
// write lost the race deletes the segments it wrote that the winning head does not name
// (dropUnnamed). Once a head names maxSegments segments, the next Save compacts: it writes
// every record again in segments of at most segmentRecords, and deletes the old segments after
// the head names the new ones; a reader that finds a segment gone reloads the head.
type Ledger struct {
	kv jetstream.KeyValue
}

// OpenLedger binds the provisioned ledger bucket.
func OpenLedger(ctx context.Context, js jetstream.JetStream) (*Ledger, error) {
	kv, err := js.KeyValue(ctx, bus.BucketLedger)
	if err != nil {
		return nil, fmt.Errorf("billing: open ledger bucket %s: %w", bus.BucketLedger, err)
	}
	return &Ledger{kv: kv}, nil
}

// Segment sizes (see Ledger): a head names at most maxSegments segments before a compaction,
// and a segment holds at most segmentRecords records (~300 B each with three sinks: well under
// the 1 MiB value limit).
const (
	maxSegments    = 16
	segmentRecords = 2000
	maxReloads     = 5 // a segment gone under a reader: reload the head this many times
)

// errSegmentGone means a head named a segment that a compaction has deleted since: reload.
var errSegmentGone = errors.New("billing: ledger segment deleted by a compaction")

// Load returns a partition with all its records and its KV revision; a missing key is an empty
// partition at revision 0.
func (l *Ledger) Load(ctx context.Context, account, period, customer string) (*Partition, uint64, error) {
	key := Key(account, period, customer)
	var p *Partition
	rev, err := l.readHead(ctx, key, func(head []byte) (err error) {
		p, err = l.assemble(ctx, key, head)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if rev == 0 {
		p = &Partition{Account: account, Period: period, Customer: customer, Records: map[string]Held{}}
		p.loaded = &loadState{records: map[string]Held{}}
	}
	return p, rev, nil
}

// readHead gets a partition's head and hands it to read, again when read finds a segment gone
// (errSegmentGone: a compaction since the get), and returns the head's revision (0: no head,
// read not called).
func (l *Ledger) readHead(ctx context.Context, key string, read func(head []byte) error) (uint64, error) {
	for range maxReloads {
		e, err := l.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("billing: ledger get: %w", err)
		}
		if err := read(e.Value()); !errors.Is(err, errSegmentGone) {
			return e.Revision(), err
		}
	}
	return 0, fmt.Errorf("billing: ledger %s: %w %d times in a row", key, errSegmentGone, maxReloads)
}

// assemble decodes a head value and merges its segments into Records.
func (l *Ledger) assemble(ctx context.Context, key string, head []byte) (*Partition, error) {
	p, err := decodePartition(head)
	if err != nil {
		return nil, err
	}
	inline := p.Records
	if len(p.Segments) > 0 {
		n := len(inline)
		if p.Sum != nil {
			n = max(n, p.Sum.Records+p.Sum.Dead)
		}
		p.Records = make(map[string]Held, n)
		maps.Copy(p.Records, inline)
		for _, name := range p.Segments {
			if err := l.segment(ctx, key, name, p.Records); err != nil {
				return nil, err
			}
		}
	}
	p.loaded = &loadState{inline: inline, records: maps.Clone(p.Records)}
	return p, nil
}

// segment adds one segment's records to recs.
func (l *Ledger) segment(ctx context.Context, key, name string, recs map[string]Held) error {
	v, err := l.segmentValue(ctx, key, name)
	if err != nil {
		return err
	}
	if err := decodeSegmentInto(v, recs); err != nil {
		return fmt.Errorf("billing: ledger segment %s.%s: %w", key, name, err)
	}
	return nil
}

// segmentValue gets a segment's value; errSegmentGone when it was deleted.
func (l *Ledger) segmentValue(ctx context.Context, key, name string) ([]byte, error) {
	e, err := l.kv.Get(ctx, key+"."+name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s.%s", errSegmentGone, key, name)
	}
	if err != nil {
		return nil, fmt.Errorf("billing: ledger get segment %s.%s: %w", key, name, err)
	}
	return e.Value(), nil
}

// RecordIDs returns the ids of the records a partition holds (none when it does not exist),
// without decoding what it holds for them: the reconciler checks every record of a period
// against a re-read and loads in full only the partitions with something to reverse.
func (l *Ledger) RecordIDs(ctx context.Context, account, period, customer string) ([]string, error) {
	key := Key(account, period, customer)
	var ids []string
	_, err := l.readHead(ctx, key, func(head []byte) error {
		var segs []string
		var ok bool
		if ids, segs, ok = recordIDs(head); !ok {
			p, err := l.assemble(ctx, key, head)
			if err != nil {
				return err
			}
			ids = slices.Collect(maps.Keys(p.Records))
			return nil
		}
		seen := map[string]bool{}
		for _, id := range ids {
			seen[id] = true
		}
		for _, name := range segs {
			v, err := l.segmentValue(ctx, key, name)
			if err != nil {
				return err
			}
			sids, _, ok := recordIDs(v)
			if !ok {
				recs := map[string]Held{}
				if err := decodeSegmentInto(v, recs); err != nil {
					return fmt.Errorf("billing: ledger segment %s.%s: %w", key, name, err)
				}
				sids = slices.Collect(maps.Keys(recs))
			}
			for _, id := range sids {
				if !seen[id] { // a record re-delivered later is in two segments
					seen[id] = true
					ids = append(ids, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

func decodePartition(b []byte) (*Partition, error) {
	p, ok := decodePartitionFast(b)
	if !ok {
		p = &Partition{}
		if err := json.Unmarshal(b, p); err != nil {
			return nil, fmt.Errorf("billing: ledger value: %w", err)
		}
	}
	if p.Records == nil {
		p.Records = map[string]Held{}
	}
	return p, nil
}

// Save writes p if its head is still at rev (0: must not exist) and returns the new revision.
// Records that differ from what Load returned go to a new segment first (see Ledger); a
// Partition not from Load writes all its records.
func (l *Ledger) Save(ctx context.Context, p *Partition, rev uint64) (uint64, error) {
	key := Key(p.Account, p.Period, p.Customer)
	st := p.loaded
	if st == nil {
		st = &loadState{}
	}
	changed := map[string]Held{}
	for id, h := range p.Records {
		if old, ok := st.records[id]; !ok || !sameHeld(old, h) {
			changed[id] = h
		}
	}
	segs, inline := p.Segments, st.inline
	var obsolete []string
	if len(changed) > 0 && (len(segs) >= maxSegments || len(inline) > 0) {
		// Compact: all records into fresh segments (also moves an old value's records out
		// of its head).
		obsolete, segs, inline, changed = segs, nil, nil, p.Records
	}
	var written []string
	if len(changed) > 0 {
		var err error
		if written, err = l.writeSegments(ctx, key, rev, changed); err != nil {
			return 0, err
		}
		segs = append(slices.Clip(segs), written...)
	}
	head := *p
	head.Sum, head.Segments, head.Records = p.sum(), segs, inline
	if head.Records == nil {
		head.Records = map[string]Held{}
	}
	b, err := encodePartition(&head)
	if err != nil {
		return 0, fmt.Errorf("billing: encode ledger value: %w", err)
	}
	var n uint64
	if rev == 0 {
		n, err = l.kv.Create(ctx, key, b)
	} else {
		n, err = l.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			l.dropUnnamed(ctx, key, written)
			return 0, fmt.Errorf("%w: %s", ErrConflict, key)
		}
		return 0, fmt.Errorf("billing: ledger write %s: %w", key, err)
	}
	p.Sum, p.Segments = head.Sum, segs
	if p.loaded == nil || obsolete != nil {
		p.loaded = &loadState{inline: inline, records: maps.Clone(p.Records)}
	} else {
		p.loaded.inline = inline
		maps.Copy(p.loaded.records, changed) // what the next Save compares with: what is stored now
	}
	for _, name := range obsolete {
		// Best effort: the head no longer names it, so a leftover only takes space.
		_ = l.kv.Delete(ctx, key+"."+name)
	}
	return n, nil
}

// dropUnnamed deletes the segments a Save wrote before losing its compare-and-set, except those
// the head now names: the winner, on the same revision, wrote the same name if it wrote the same
// records. Only one write on a revision succeeds, so no later head can come to name a segment
// named after it. Best effort, like compaction's deletes: what is left only takes space.
func (l *Ledger) dropUnnamed(ctx context.Context, key string, written []string) {
	if len(written) == 0 {
		return
	}
	e, err := l.kv.Get(ctx, key)
	if err != nil {
		return
	}
	head, err := decodePartition(e.Value())
	if err != nil {
		return
	}
	for _, name := range written {
		if !slices.Contains(head.Segments, name) {
			_ = l.kv.Delete(ctx, key+"."+name)
		}
	}
}

// writeSegments writes recs as segments of at most segmentRecords, in record id order, and
// returns their names.
func (l *Ledger) writeSegments(ctx context.Context, key string, rev uint64, recs map[string]Held) ([]string, error) {
	ids := slices.Sorted(maps.Keys(recs))
	var names []string
	for chunk := range slices.Chunk(ids, segmentRecords) {
		part := make(map[string]Held, len(chunk))
		for _, id := range chunk {
			part[id] = recs[id]
		}
		b, err := encodeSegment(part)
		if err != nil {
			return nil, fmt.Errorf("billing: encode ledger segment: %w", err)
		}
		h := sha256.New()
		fmt.Fprintf(h, "%d\n", rev)
		h.Write(b)
		name := hex.EncodeToString(h.Sum(nil)[:8])
		if _, err := l.kv.Put(ctx, key+"."+name, b); err != nil {
			return nil, fmt.Errorf("billing: ledger write segment %s.%s: %w", key, name, err)
		}
		names = append(names, name)
	}
	return names, nil
}

// sameHeld reports whether two held revisions would be stored alike (a decimal is written
// without trailing zeros, whatever its exponent).
func sameHeld(a, b Held) bool {
	return a.Revision == b.Revision && a.Seq == b.Seq && a.AsOf.Equal(b.AsOf) && a.Currency == b.Currency &&
		a.Billed.Equal(b.Billed) && a.StreamSeq == b.StreamSeq &&
		maps.Equal(a.Sinks, b.Sinks)
}

// Partitions returns every partition of an account and period, sorted by customer. It decodes
// every record: Sums is the cheap read for totals.
func (l *Ledger) Partitions(ctx context.Context, account, period string) ([]*Partition, error) {
	var out []*Partition
	err := l.each(ctx, account, period, func(v []byte) error {
		head, err := decodePartition(v)
		if err != nil {
			return err
		}
		p, _, err := l.Load(ctx, account, period, head.Customer)
		if err == nil {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	sortPartitions(out)
	return out, nil
}

// PartitionSum is a partition's customer and Sum.
type PartitionSum struct {
	Customer string
	Sum      Sum
}

// Sums returns the Sum of every partition of an account and period, sorted by customer,
// decoding only the head of each value (readSum).
func (l *Ledger) Sums(ctx context.Context, account, period string) ([]PartitionSum, error) {
	var out []PartitionSum
	err := l.each(ctx, account, period, func(v []byte) error {
		ps, err := readSum(v)
		if err == nil {
			out = append(out, ps)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b PartitionSum) int { return strings.Compare(a.Customer, b.Customer) })
	return out, nil
}

// each calls fn with the value of every partition of an account and period.
func (l *Ledger) each(ctx context.Context, account, period string, fn func([]byte) error) error {
	lister, err := l.kv.ListKeysFiltered(ctx, bus.KVToken(account)+"."+period+".*")
	if err != nil {
		return fmt.Errorf("billing: list ledger keys: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		e, err := l.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("billing: ledger get %s: %w", k, err)
		}
		if err := fn(e.Value()); err != nil {
			return err
		}
	}
	return nil
}

func sortPartitions(ps []*Partition) {
	slices.SortFunc(ps, func(a, b *Partition) int { return strings.Compare(a.Customer, b.Customer) })
}
