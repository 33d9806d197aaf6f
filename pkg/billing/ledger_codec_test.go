package billing

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/events"
)

// fullPartition sets every field encodePartition writes, with strings that need escaping.
func fullPartition() *Partition {
	p := benchPartition(20)
	p.Customer = `cust "<&>" ü`
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.FixedZone("x", 3600))
	p.Records["odd"] = Held{Revision: "r\n1", Seq: 3, AsOf: t0, Currency: "USD", Billed: decimal.RequireFromString("-0.0000000001")}
	p.Records["empty-sinks"] = Held{Revision: "r2", AsOf: t0, Currency: "USD", Billed: decimal.Zero, Sinks: map[string]uuid.UUID{}}
	p.Records["two-sinks"] = Held{Revision: "r3", AsOf: t0, Currency: "EUR", Billed: decimal.RequireFromString("2.50"),
		Sinks: map[string]uuid.UUID{"http": uuid.NameSpaceURL, "csv": uuid.NameSpaceDNS}}
	p.Dead = map[string]Dead{"two-sinks": {Revision: "r4", AsOf: t0.Add(time.Hour), Currency: "EUR", Billed: decimal.RequireFromString("3"), Reason: "sink-rejected"}}
	p.Pending = &Pending{ID: uuid.NameSpaceX500, Members: []Member{{RecordID: uuid.NameSpaceOID, Revision: "r5", Seq: 1, AsOf: t0, Currency: "EUR", Billed: decimal.RequireFromString("1.5"), StreamSeq: 9}},
		Done: map[string]events.SinkResult{}, Created: t0}
	p.Receipt = &events.Delivery{DeliveryID: uuid.NameSpaceURL, Account: p.Account, Customer: p.Customer, Period: p.Period}
	p.Segments = []string{"00ff00ff00ff00ff", "0100010001000100"}
	p.Sum = p.sum()
	return p
}

func TestEncodePartitionIsJSONMarshal(t *testing.T) {
	// encodePartition writes Partition's and Held's fields by hand: a new field must be added there.
	if n := reflect.TypeFor[Partition]().NumField(); n != 10 {
		t.Fatalf("Partition has %d fields; update encodePartition (and this count)", n)
	}
	if n := reflect.TypeFor[Held]().NumField(); n != 7 {
		t.Fatalf("Held has %d fields; update appendHeld (and this count)", n)
	}
	for name, p := range map[string]*Partition{
		"full":  fullPartition(),
		"empty": {Account: "a", Period: "2025-04", Customer: "c", Records: map[string]Held{}},
		"nil":   {Account: "a", Period: "2025-04", Customer: "c"},
	} {
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodePartition(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func TestRecordIDs(t *testing.T) {
	p := fullPartition()
	want := slices.Sorted(maps.Keys(p.Records))
	v, err := encodePartition(p)
	if err != nil {
		t.Fatal(err)
	}
	legacy := *p
	legacy.Sum = nil
	lv, err := json.Marshal(&legacy) // records before dead, pending and receipt
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"current": v, "legacy": lv, "indented": must(json.MarshalIndent(p, "", "  "))} {
		got, _, ok := recordIDs(b)
		if !ok {
			t.Fatalf("%s: not parsed", name)
		}
		if slices.Sort(got); !slices.Equal(got, want) {
			t.Errorf("%s: ids %q, want %q", name, got, want)
		}
	}
	for name, c := range map[string]struct {
		v    string
		want int
		ok   bool
	}{
		"empty records": {`{"account":"a","records":{}}`, 0, true},
		"null records":  {`{"account":"a","records":null,"sum":{"n":0}}`, 0, true},
		"no records":    {`{"account":"a"}`, 0, true},
		"not an object": {`[1]`, 0, false},
		"cut short":     {`{"records":{"x":{"r":"1"}`, 0, false},
		"escaped id":    {`{"records":{"\u0078":{}}}`, 0, false},
		"head":          {`{"account":"a","sum":{"n":3},"segs":["00ff","0100"],"records":{}}`, 0, true},
		"segment":       {`{"records":{"x":{"r":"1"},"y":{"r":"2"}}}`, 2, true},
		"bad segs":      {`{"segs":[1],"records":{}}`, 0, false},
	} {
		got, _, ok := recordIDs([]byte(c.v))
		if ok != c.ok || len(got) != c.want {
			t.Errorf("%s: %q, %v; want %d ids, %v", name, got, ok, c.want, c.ok)
		}
	}
	if _, segs, _ := recordIDs([]byte(`{"segs":["00ff","0100"],"records":{}}`)); !slices.Equal(segs, []string{"00ff", "0100"}) {
		t.Errorf("segs %q", segs)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestReadSum(t *testing.T) {
	p := fullPartition()
	want := *p.sum()
	if want.Records != 22 || want.Dead != 1 || !want.Pending || want.Billed["USD"].String() != "-0.0000000001" {
		t.Fatalf("sum %+v: the superseded record must count as dead, not delivered", want)
	}
	v, err := encodePartition(p)
	if err != nil {
		t.Fatal(err)
	}
	legacy := *p
	legacy.Sum = nil // a value written before Sum existed
	lv, err := json.Marshal(&legacy)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"current": v, "legacy": lv} {
		got, err := readSum(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Customer != p.Customer || got.Sum.Records != want.Records || got.Sum.Dead != want.Dead || got.Sum.Pending != want.Pending ||
			len(got.Sum.Billed) != len(want.Billed) || len(got.Sum.DeadBilled) != len(want.DeadBilled) {
			t.Fatalf("%s: %+v, want %+v", name, got, want)
		}
		for cur, v := range want.Billed {
			if !got.Sum.Billed[cur].Equal(v) {
				t.Errorf("%s: billed %s %s, want %s", name, cur, got.Sum.Billed[cur], v)
			}
		}
		for cur, v := range want.DeadBilled {
			if !got.Sum.DeadBilled[cur].Equal(v) {
				t.Errorf("%s: dead %s %s, want %s", name, cur, got.Sum.DeadBilled[cur], v)
			}
		}
	}
	if _, err := readSum([]byte(`[1]`)); err == nil {
		t.Error("readSum accepted a non-object")
	}
}

func TestDecodePartitionIsJSONUnmarshal(t *testing.T) {
	full, err := encodePartition(fullPartition())
	if err != nil {
		t.Fatal(err)
	}
	spaced := bytes.ReplaceAll(bytes.ReplaceAll(full, []byte(`,"`), []byte(", \n\"")), []byte(`":`), []byte(`" : `))
	for name, tc := range map[string]struct {
		v    []byte
		fast bool // decodePartitionFast must take it (else: it must refuse it)
	}{
		"full":           {full, false}, // an escaped record revision: falls back
		"bench":          {mustEncode(t, benchPartition(50)), true},
		"spaced":         {bytes.Replace(spaced, []byte(`"r\n1"`), []byte(`"r1"`), 1), true},
		"empty records":  {[]byte(`{"account":"a","period":"2025-04","customer":"c","records":{}}`), true},
		"unknown field":  {[]byte(`{"account":"a","period":"2025-04","customer":"c","records":{},"x":1}`), false},
		"null records":   {[]byte(`{"account":"a","period":"2025-04","customer":"c","records":null}`), false},
		"numeric billed": {[]byte(`{"account":"a","records":{"x":{"r":"1","n":2,"t":"2025-04-02T06:00:00Z","c":"EUR","b":1.25,"q":3,"s":null}}}`), true},
	} {
		var want Partition
		if err := json.Unmarshal(tc.v, &want); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want.Records == nil {
			want.Records = map[string]Held{}
		}
		fast, ok := decodePartitionFast(tc.v)
		if ok != tc.fast {
			t.Errorf("%s: fast path taken %v, want %v", name, ok, tc.fast)
		}
		if ok && fast.Records == nil {
			fast.Records = map[string]Held{}
		}
		if ok && !reflect.DeepEqual(fast, &want) {
			t.Errorf("%s: fast decode\n got %+v\nwant %+v", name, fast, &want)
		}
		got, err := decodePartition(tc.v)
		if err != nil || !reflect.DeepEqual(got, &want) {
			t.Errorf("%s: decodePartition %v\n got %+v\nwant %+v", name, err, got, &want)
		}
	}
	for _, bad := range []string{`{"records":{"x":{"r":"1"`, `{"records":{}} x`, `{"records":{"x":{"r":1}}}`} {
		if _, err := decodePartition([]byte(bad)); err == nil {
			t.Errorf("%s: decoded", bad)
		}
	}
}

func mustEncode(t *testing.T, p *Partition) []byte {
	t.Helper()
	p.Sum = p.sum()
	v, err := encodePartition(p)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
