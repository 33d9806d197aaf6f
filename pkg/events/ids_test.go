package events_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/events/schematest"
	"github.com/shopspring/decimal"
)

// decodeExample decodes the example of typ into v.
func decodeExample(t *testing.T, typ string, v any) {
	t.Helper()
	if err := json.Unmarshal(example(t, typ), v); err != nil {
		t.Fatal(err)
	}
}

func TestNewMessageSetsEveryHeader(t *testing.T) {
	var r events.UsageRecord
	decodeExample(t, events.TypeUsageRecord, &r)
	m := r.EventMeta("ionconnector/transformer")
	msg, err := events.NewMessage(m, r)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		events.HeaderSpecVersion: "1.0",
		events.HeaderID:          m.ID.String(),
		events.HeaderSource:      "ionconnector/transformer",
		events.HeaderType:        events.TypeUsageRecord,
		events.HeaderSubject:     "10001/2025-05/10054",
		events.HeaderTime:        "2025-06-02T02:00:41.512Z",
		events.HeaderDataSchema:  events.SchemaURI(events.TypeUsageRecord),
		events.HeaderContentType: "application/json",
	}
	for h, v := range want {
		if got := msg.Metadata.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
	if len(msg.Metadata) != len(want) {
		t.Errorf("metadata %v, want exactly %d ce headers", msg.Metadata, len(want))
	}
	if msg.UUID != m.ID.String() {
		t.Errorf("message uuid %s, want the event id %s", msg.UUID, m.ID)
	}
	schematest.Validate(t, events.TypeUsageRecord, msg.Payload)

	var back events.UsageRecord
	if err := events.Decode(msg, events.TypeUsageRecord, &back); err != nil {
		t.Fatal(err)
	}
	if back.ContentHash() != r.ContentHash() {
		t.Error("decoded record differs from the sent one")
	}
}

// Every payload's EventMeta names its type and gives an id; the ids differ across types.
func TestEventMetaOfEveryType(t *testing.T) {
	seen := map[uuid.UUID]string{}
	for _, typ := range eventTypes() {
		if typ == events.TypeDeadLetter {
			continue // its id is the bus's business
		}
		v := payloads[typ]()
		decodeExample(t, typ, v)
		m := v.(interface{ EventMeta(string) events.Meta }).EventMeta("test")
		if m.Type != typ || m.ID == uuid.Nil || m.Time.IsZero() || m.Subject == "" {
			t.Errorf("%s: meta %+v", typ, m)
		}
		if other, dup := seen[m.ID]; dup {
			t.Errorf("%s and %s have the same id", typ, other)
		}
		seen[m.ID] = typ
		if _, err := events.NewMessage(m, v); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
		subj := v.(interface{ NATSSubject() string }).NATSSubject()
		if events.AccountOf(subj) != "10001" {
			t.Errorf("%s: subject %q does not carry the account", typ, subj)
		}
	}
}

// The ids the examples carry are the ones the helpers compute, so the examples document the
// identity rules correctly.
func TestExampleIDsAreDerived(t *testing.T) {
	var p events.RawPage
	decodeExample(t, events.TypeRawPage, &p)
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	if p.EventMeta("x").ID != p.PageID {
		t.Error("raw page event id is not its page_id")
	}
	var r events.UsageRecord
	decodeExample(t, events.TypeUsageRecord, &r)
	if r.Revision != r.ContentHash() {
		t.Error("record x_Revision is not its ContentHash")
	}
	if r.SourcePageID != p.PageID {
		t.Error("record x_SourcePageId is not the example page")
	}
	var d events.Delivery
	decodeExample(t, events.TypeDelivery, &d)
	if d.DeliveryID != events.DeliveryID(d.Records) || d.EventMeta("x").ID != d.DeliveryID {
		t.Error("delivery_id is not DeliveryID(records)")
	}
	var s events.SyncRequest
	decodeExample(t, events.TypeSyncRequested, &s)
	if p.SyncID != s.SyncID() {
		t.Error("raw page sync_id is not the request's sync id")
	}
}

func TestIDsAreDeterministic(t *testing.T) {
	type idCase struct {
		name              string
		same, otherPeriod func() events.Meta
	}
	var req events.SyncRequest
	decodeExample(t, events.TypeSyncRequested, &req)
	var page events.RawPage
	decodeExample(t, events.TypeRawPage, &page)
	var cust events.CustomerPage
	decodeExample(t, events.TypeRawCustomers, &cust)
	var rec events.UsageRecord
	decodeExample(t, events.TypeUsageRecord, &rec)
	var sum events.PageSummary
	decodeExample(t, events.TypePageSummary, &sum)
	var del events.Delivery
	decodeExample(t, events.TypeDelivery, &del)
	var done events.SyncCompleted
	decodeExample(t, events.TypeSyncCompleted, &done)

	const other = "2025-04"
	cases := []idCase{
		{"sync request", func() events.Meta { return req.EventMeta("a") },
			func() events.Meta { r := req; r.Period = other; return r.EventMeta("a") }},
		{"raw page", func() events.Meta { return page.EventMeta("a") },
			func() events.Meta { p := page; p.Period = other; return p.EventMeta("a") }},
		{"customer page", func() events.Meta { return cust.EventMeta("a") },
			func() events.Meta { c := cust; c.Period = other; return c.EventMeta("a") }},
		// A record's period is part of its record id, not of the event key itself.
		{"usage record", func() events.Meta { return rec.EventMeta("a") },
			func() events.Meta {
				r := rec
				start, _, _ := events.ParsePeriod(other)
				r.RecordID = events.RecordID(r.BillingAccountID, start, r.SourceMode, r.ColumnSetVersion, "same", "grouping")
				return r.EventMeta("a")
			}},
		// A summary is keyed by page id, and a page id by period.
		{"page summary", func() events.Meta { return sum.EventMeta("a") },
			func() events.Meta {
				s := sum
				s.PageID = events.RawPageID(page.Account, other, page.PageKey, page.RowsSHA256)
				return s.EventMeta("a")
			}},
		{"delivery", func() events.Meta { return del.EventMeta("a") },
			func() events.Meta {
				d := del
				d.Records = append([]events.DeliveredRecord(nil), d.Records...)
				d.Records[0].RecordID = uuid.MustParse("00000000-0000-5000-8000-000000000000")
				return d.EventMeta("a")
			}},
		{"sync completed", func() events.Meta { return done.EventMeta("a") },
			func() events.Meta {
				c := done
				c.SyncID = events.SyncRequestID(c.Account, other, c.RequestID)
				return c.EventMeta("a")
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := c.same(), c.same()
			if a.ID != b.ID {
				t.Errorf("same input, ids %s and %s", a.ID, b.ID)
			}
			if o := c.otherPeriod(); o.ID == a.ID {
				t.Errorf("different period, same id %s", a.ID)
			}
			if a.ID.Version() != 5 {
				t.Errorf("id %s is not UUIDv5", a.ID)
			}
		})
	}
}

func TestIDKeyDetails(t *testing.T) {
	// Sync requests: scheduler replicas share a slot; two manual requests differ.
	if events.SyncRequestID("1", "2025-05", "slot") != events.SyncRequestID("1", "2025-05", "slot") {
		t.Error("same slot, different ids")
	}
	if events.SyncRequestID("1", "2025-05", uuid.NewString()) == events.SyncRequestID("1", "2025-05", uuid.NewString()) {
		t.Error("two manual requests share an id")
	}
	// Raw pages: the hash and each part of the key count.
	key := events.PageKey{Customer: "c", From: "2025-05-01", To: "2025-05-31"}
	base := events.RawPageID("1", "2025-05", key, "h")
	for name, k := range map[string]events.PageKey{
		"customer":    {Customer: "d", From: key.From, To: key.To},
		"entitlement": {Customer: "c", Entitlement: "e", From: key.From, To: key.To},
		"dates":       {Customer: "c", From: "2025-05-01", To: "2025-05-15"},
	} {
		if events.RawPageID("1", "2025-05", k, "h") == base {
			t.Errorf("page key %s does not change the id", name)
		}
	}
	if events.RawPageID("1", "2025-05", key, "h2") == base {
		t.Error("rows hash does not change the id")
	}
	// Deliveries: member order does not matter, membership does.
	a := events.DeliveredRecord{RecordID: uuid.New(), Revision: "r1"}
	b := events.DeliveredRecord{RecordID: uuid.New(), Revision: "r1"}
	if events.DeliveryID([]events.DeliveredRecord{a, b}) != events.DeliveryID([]events.DeliveredRecord{b, a}) {
		t.Error("delivery id depends on member order")
	}
	b2 := b
	b2.Revision = "r2"
	if events.DeliveryID([]events.DeliveredRecord{a, b}) == events.DeliveryID([]events.DeliveredRecord{a, b2}) {
		t.Error("delivery id ignores the revision")
	}
	// Completion: one per outcome.
	var c events.SyncCompleted
	c.SyncID = uuid.New()
	c.Status = events.SyncSucceeded
	ok := c.EventMeta("x").ID
	c.Status = events.SyncFailed
	if c.EventMeta("x").ID == ok {
		t.Error("failed and succeeded completions share an id")
	}
	// Summaries: one per stage.
	s := events.PageSummary{Stage: events.StageTransformer, PageID: base}
	tr := s.EventMeta("x").ID
	s.Stage = events.StagePublisher
	if s.EventMeta("x").ID == tr {
		t.Error("transformer and publisher summaries share an id")
	}
	// Record ids: the column set and the grouping columns count, and parts cannot slide.
	start := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	id := events.RecordID("1", start, events.ModeV3, "cs/1", "a.b", "c")
	if id == events.RecordID("1", start, events.ModeV3, "cs/2", "a.b", "c") {
		t.Error("column-set version does not change the record id")
	}
	if id == events.RecordID("1", start, events.ModeV3, "cs/1", "a", "b.c") {
		t.Error("grouping parts slide")
	}
	if id != events.RecordID("1", start.In(time.FixedZone("CEST", 7200)), events.ModeV3, "cs/1", "a.b", "c") {
		t.Error("record id depends on the time zone of BillingPeriodStart")
	}
}

// The revision hash ignores provenance that changes on every re-read and sees every amount.
func TestContentHash(t *testing.T) {
	var r events.UsageRecord
	decodeExample(t, events.TypeUsageRecord, &r)
	h := r.ContentHash()

	v := r
	v.SourcePageID, v.FetchedAt, v.RevisionSeq = uuid.New(), time.Now(), 7
	v.Revision, v.Replaces = "x", &h
	v.ChargePeriodStart = v.ChargePeriodStart.In(time.FixedZone("CEST", 7200))
	if v.ContentHash() != h {
		t.Error("volatile fields change the content hash")
	}
	v = r
	v.BilledCost = decimal.RequireFromString("38.12345678910") // same amount, more digits
	if v.ContentHash() != h {
		t.Error("trailing zeros change the content hash")
	}
	v.BilledCost = decimal.RequireFromString("38.1234567892")
	if v.ContentHash() == h {
		t.Error("an amount change keeps the content hash")
	}
	v = r
	v.Tags = map[string]string{"env": "dev"}
	if v.ContentHash() == h {
		t.Error("a tag change keeps the content hash")
	}
}

func TestRawPageValidate(t *testing.T) {
	var p events.RawPage
	decodeExample(t, events.TypeRawPage, &p)
	for name, edit := range map[string]func(*events.RawPage){
		"both bodies":  func(p *events.RawPage) { p.Body = "{}" },
		"no body":      func(p *events.RawPage) { p.BodyRef = nil },
		"stale id":     func(p *events.RawPage) { p.RowsSHA256 = strings.Repeat("0", 64) },
		"bad hash":     func(p *events.RawPage) { p.RowsSHA256 = "abc" },
		"bad ref hash": func(p *events.RawPage) { r := *p.BodyRef; r.SHA256 = "ABC"; p.BodyRef = &r },
	} {
		q := p
		edit(&q)
		if q.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	q := p
	q.BodyRef, q.Body = nil, `{"results":{"rows":[]}}`
	if err := q.Validate(); err != nil {
		t.Errorf("inline body: %v", err)
	}
}

func TestParsePeriod(t *testing.T) {
	start, end, err := events.ParsePeriod("2024-12")
	if err != nil || !start.Equal(time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC)) || !end.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("2024-12: %v %v %v", start, end, err)
	}
	for _, bad := range []string{"2024-13", "2024-1", "202412", "", "2024-12-01"} {
		if _, _, err := events.ParsePeriod(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if events.PeriodOf(time.Date(2025, 5, 31, 23, 0, 0, 0, time.FixedZone("X", -3600))) != "2025-06" {
		t.Error("PeriodOf does not use UTC")
	}
}

// Money is a JSON string whatever the value; a float64 would lose the tenth decimal.
func TestMoneyOnTheWire(t *testing.T) {
	s := events.Tally{}
	s.Add("EUR", decimal.RequireFromString("0.1000000001"))
	s.Add("EUR", decimal.RequireFromString("0.2000000002"))
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"count":2,"billed_cost":{"EUR":"0.3000000003"}}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}

// TestDeliveryIDOfReturningContent: content that comes back (A → B → A) is a new delivery with
// a new id, not a replay of the first under the same idempotency key.
func TestDeliveryIDOfReturningContent(t *testing.T) {
	id := uuid.MustParse("2f0a3c1e-7d4b-5e6f-8a9b-0c1d2e3f4a5b")
	b := "bbbb"
	first := []events.DeliveredRecord{{RecordID: id, Revision: "aaaa", RevisionSeq: 1}}
	again := []events.DeliveredRecord{{RecordID: id, Revision: "aaaa", RevisionSeq: 3, Replaces: &b}}
	if events.DeliveryID(first) == events.DeliveryID(again) {
		t.Fatal("a revision delivered again after another one reuses the first delivery id")
	}
	if events.DeliveryID(again) != events.DeliveryID(append([]events.DeliveredRecord(nil), again...)) {
		t.Fatal("delivery id is not deterministic")
	}
}
