package billing

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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

// Partition is the ledger value of one account, period and customer: one KV key, so one
// compare-and-set covers a whole delivery. Field names are short because the value is bounded
// by the server's max payload (1 MiB by default, roughly 3,000 records per customer and month).
type Partition struct {
	Account  string `json:"account"`
	Period   string `json:"period"`
	Customer string `json:"customer"`
	// Sum is recomputed by every Save and written before the records, so that Sums reads a
	// partition's totals without decoding its records (readSum).
	Sum     *Sum            `json:"sum,omitempty"`
	Records map[string]Held `json:"records"`           // by x_RecordId: the current delivered revision
	Dead    map[string]Dead `json:"dead,omitempty"`    // by x_RecordId: revisions a sink rejected (dead-lettered)
	Pending *Pending        `json:"pending,omitempty"` // a delivery handed (or about to be handed) to sinks
	// Receipt is the last committed delivery's receipt, published right after the commit and
	// cleared by the partition's next write; a process that finds it and did not publish it
	// publishes it (again: idempotent by delivery id) first.
	Receipt *events.Delivery `json:"receipt,omitempty"`
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
	return keyToken(account) + "." + period + "." + keyToken(customer)
}

func keyToken(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
		}
	}
	return s
}

// Ledger is the delivery ledger in the KV bucket "ledger" (History 1: compare-and-set on the
// latest revision is all we need).
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

// Load returns a partition and its KV revision; a missing key is an empty partition at revision 0.
func (l *Ledger) Load(ctx context.Context, account, period, customer string) (*Partition, uint64, error) {
	e, err := l.kv.Get(ctx, Key(account, period, customer))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &Partition{Account: account, Period: period, Customer: customer, Records: map[string]Held{}}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("billing: ledger get: %w", err)
	}
	p, err := decodePartition(e.Value())
	if err != nil {
		return nil, 0, err
	}
	return p, e.Revision(), nil
}

// RecordIDs returns the ids of the records a partition holds (none when it does not exist),
// without decoding what it holds for them: the reconciler checks every record of a period
// against a re-read and loads in full only the partitions with something to reverse.
func (l *Ledger) RecordIDs(ctx context.Context, account, period, customer string) ([]string, error) {
	e, err := l.kv.Get(ctx, Key(account, period, customer))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("billing: ledger get: %w", err)
	}
	if ids, ok := recordIDs(e.Value()); ok {
		return ids, nil
	}
	p, err := decodePartition(e.Value())
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(p.Records))
	for id := range p.Records {
		ids = append(ids, id)
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

// Save writes p if the key is still at rev (0: must not exist) and returns the new revision.
func (l *Ledger) Save(ctx context.Context, p *Partition, rev uint64) (uint64, error) {
	p.Sum = p.sum()
	b, err := encodePartition(p)
	if err != nil {
		return 0, fmt.Errorf("billing: encode ledger value: %w", err)
	}
	key := Key(p.Account, p.Period, p.Customer)
	var n uint64
	if rev == 0 {
		n, err = l.kv.Create(ctx, key, b)
	} else {
		n, err = l.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return 0, fmt.Errorf("%w: %s", ErrConflict, key)
		}
		return 0, fmt.Errorf("billing: ledger write %s: %w", key, err)
	}
	return n, nil
}

// Partitions returns every partition of an account and period, sorted by customer. It decodes
// every record: Sums is the cheap read for totals.
func (l *Ledger) Partitions(ctx context.Context, account, period string) ([]*Partition, error) {
	var out []*Partition
	err := l.each(ctx, account, period, func(v []byte) error {
		p, err := decodePartition(v)
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
	lister, err := l.kv.ListKeysFiltered(ctx, keyToken(account)+"."+period+".*")
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
