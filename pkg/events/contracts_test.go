package events_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/events/schematest"
	"github.com/shopspring/decimal"
)

// schemasDir is the repository's schemas/ seen from this package directory.
const schemasDir = "../../schemas"

// payloads maps every event type to a constructor of its Go payload type.
var payloads = map[string]func() any{
	events.TypeSyncRequested:  func() any { return new(events.SyncRequest) },
	events.TypeSyncCompleted:  func() any { return new(events.SyncCompleted) },
	events.TypeRawPage:        func() any { return new(events.RawPage) },
	events.TypeRawCustomers:   func() any { return new(events.CustomerPage) },
	events.TypeUsageRecord:    func() any { return new(events.UsageRecord) },
	events.TypePageSummary:    func() any { return new(events.PageSummary) },
	events.TypeDelivery:       func() any { return new(events.Delivery) },
	events.TypeReconciliation: func() any { return new(events.Reconciliation) },
	events.TypeDeadLetter:     func() any { return new(events.DeadLetter) },
}

func eventTypes() []string {
	ts := make([]string, 0, len(payloads))
	for t := range payloads {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func example(t *testing.T, eventType string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(schemasDir, "examples", eventType+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every event type has exactly one schema file and one example, and nothing else lives there.
func TestSchemaFilesMatchEventTypes(t *testing.T) {
	for _, sub := range []string{"", "examples"} {
		files, err := filepath.Glob(filepath.Join(schemasDir, sub, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range files {
			got = append(got, strings.TrimSuffix(filepath.Base(f), ".json"))
		}
		sort.Strings(got)
		if want := eventTypes(); !slices.Equal(got, want) {
			t.Errorf("schemas/%s: files %v, event types %v", sub, got, want)
		}
	}
}

func TestSchemasCompile(t *testing.T) {
	for _, typ := range eventTypes() {
		t.Run(typ, func(t *testing.T) {
			if _, err := schematest.Compile(schemasDir, typ); err != nil {
				t.Fatal(err)
			}
			s := readJSON(t, filepath.Join(schemasDir, typ+".json"))
			if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("$schema = %v, want draft 2020-12", s["$schema"])
			}
			if s["$id"] != events.SchemaURI(typ) {
				t.Errorf("$id = %v, want %s", s["$id"], events.SchemaURI(typ))
			}
			if s["additionalProperties"] != false {
				t.Error("top level must set additionalProperties: false")
			}
		})
	}
}

func TestExamplesValidate(t *testing.T) {
	for _, typ := range eventTypes() {
		t.Run(typ, func(t *testing.T) { schematest.Validate(t, typ, example(t, typ)) })
	}
}

// Decoding an example into its Go type and encoding it again loses nothing and stays valid.
func TestExamplesRoundTrip(t *testing.T) {
	for _, typ := range eventTypes() {
		t.Run(typ, func(t *testing.T) {
			orig := example(t, typ)
			v := payloads[typ]()
			dec := json.NewDecoder(bytes.NewReader(orig))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatalf("decode example: %v", err)
			}
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			schematest.Validate(t, typ, again)

			var a, b any
			mustUnmarshal(t, orig, &a)
			mustUnmarshal(t, again, &b)
			if diff := jsonDiff("", a, b); diff != "" {
				t.Errorf("round trip changed the event: %s", diff)
			}
		})
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		t.Fatal(err)
	}
}

// jsonDiff compares decoded JSON; strings that are both decimals compare by value, because the
// decimal encoder drops trailing zeros ("1.50" and "1.5" are the same amount).
func jsonDiff(path string, a, b any) string {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return path + ": object became " + reflect.TypeOf(b).String()
		}
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		for k := range keys {
			if d := jsonDiff(path+"."+k, x[k], y[k]); d != "" {
				return d
			}
		}
		return ""
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return path + ": array changed"
		}
		for i := range x {
			if d := jsonDiff(path+"["+strconv.Itoa(i)+"]", x[i], y[i]); d != "" {
				return d
			}
		}
		return ""
	case string:
		if y, ok := b.(string); ok {
			dx, ex := decimal.NewFromString(x)
			dy, ey := decimal.NewFromString(y)
			if ex == nil && ey == nil && dx.Equal(dy) {
				return ""
			}
		}
	}
	if !reflect.DeepEqual(a, b) {
		return path + ": " + jsonString(a) + " became " + jsonString(b)
	}
	return ""
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

// The negative cases the schemas must catch.
func TestSchemasReject(t *testing.T) {
	cases := []struct {
		name, typ string
		edit      func(m map[string]any)
	}{
		{"money as number", events.TypeUsageRecord, func(m map[string]any) { m["BilledCost"] = 38.12 }},
		{"money with exponent", events.TypeUsageRecord, func(m map[string]any) { m["BilledCost"] = "1e3" }},
		{"non-UTC time", events.TypeUsageRecord, func(m map[string]any) { m["x_FetchedAt"] = "2025-06-02T04:00:41+02:00" }},
		{"unknown FOCUS ChargeCategory", events.TypeUsageRecord, func(m map[string]any) { m["ChargeCategory"] = "Refund" }},
		{"missing mandatory column", events.TypeUsageRecord, func(m map[string]any) { delete(m, "ServiceCategory") }},
		{"unknown field", events.TypeUsageRecord, func(m map[string]any) { m["Cost"] = "1" }},
		{"bad uuid", events.TypeUsageRecord, func(m map[string]any) { m["x_RecordId"] = "not-a-uuid" }},
		{"raw page with body and body_ref", events.TypeRawPage, func(m map[string]any) { m["body"] = "{}" }},
		{"raw page with neither body", events.TypeRawPage, func(m map[string]any) { delete(m, "body_ref") }},
		{"bad period", events.TypeSyncRequested, func(m map[string]any) { m["period"] = "2025-13" }},
		{"dotted account", events.TypeSyncRequested, func(m map[string]any) { m["account"] = "a.b" }},
		{"failed sync without reason", events.TypeSyncCompleted, func(m map[string]any) { m["status"] = "failed" }},
		{"lower-case currency", events.TypeDelivery, func(m map[string]any) { m["totals"] = map[string]any{"sek": "1"} }},
		{"null tally sums", events.TypePageSummary, func(m map[string]any) { m["held"].(map[string]any)["billed_cost"] = nil }},
		{"not reconciled without reason", events.TypeReconciliation, func(m map[string]any) { delete(m, "reason") }},
		{"failed sync reconciled", events.TypeReconciliation, func(m map[string]any) {
			m["sync_status"], m["reconciled"] = "failed", true
		}},
		{"money as number in a reconciliation row", events.TypeReconciliation, func(m map[string]any) {
			m["rows"].([]any)[0].(map[string]any)["control"] = 1.5
		}},
		{"payload not base64", events.TypeDeadLetter, func(m map[string]any) { m["payload"] = "%%%" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(example(t, c.typ), &m); err != nil {
				t.Fatal(err)
			}
			c.edit(m)
			b, _ := json.Marshal(m)
			if err := schematest.Check(c.typ, b); err == nil {
				t.Errorf("schema %s accepted it", c.typ)
			}
		})
	}
}

// Zero values of the payload types (nil slices and maps) still encode to valid bodies, apart
// from the fields a producer must fill; here we only check the arrays and maps are not null.
func TestNilCollectionsEncodeEmpty(t *testing.T) {
	for _, v := range []any{events.Delivery{}, events.SyncCompleted{}, events.CustomerPage{}, events.PageSummary{}, events.Reconciliation{}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("null")) {
			t.Errorf("%T encodes null: %s", v, b)
		}
	}
}
