package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/jsonwire"
)

func ptr[T any](v T) *T { return &v }

// goldenRecords are records whose ContentHash was computed by the encoding/json implementation
// (before the hand-written encoder): a revision or record id must never change with the encoder.
func goldenRecords() []UsageRecord {
	cest := time.FixedZone("CEST", 7200)
	d := decimal.RequireFromString
	full := UsageRecord{
		BilledCost: d("38.1234567891"), EffectiveCost: d("38.12345678910"), ListCost: d("-0.0000000001"), ContractedCost: d("1e3"),
		BillingCurrency: "SEK", BillingAccountID: "10001", BillingAccountName: ptr("Nordvik IT-tjänster AB"),
		BillingPeriodStart: time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC), BillingPeriodEnd: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
		ChargePeriodStart: time.Date(2025, 5, 14, 2, 0, 0, 0, cest), ChargePeriodEnd: time.Date(2025, 5, 15, 0, 0, 0, 123456789, time.UTC),
		ChargeCategory: "Usage", ChargeClass: ptr("Correction"), ChargeDescription: ptr("VM <D2 v3> & \"quoted\"\n\ttab\u2028sep\x7f\x01"),
		ConsumedQuantity: ptr(d("24")), ConsumedUnit: ptr("Hours"), PricingQuantity: ptr(d("0.5")), PricingUnit: ptr("1 Hour"),
		PricingCategory: ptr("Standard"), ListUnitPrice: ptr(d("1.8918744594")), ContractedUnitPrice: ptr(d("123456789012345678901234567890.123")),
		InvoiceID: ptr("INV-1"), InvoiceIssuerName: "TD SYNNEX", ProviderName: "Microsoft", PublisherName: "Microsoft",
		ServiceName: "Virtual Machines", ServiceCategory: "Compute", ResourceID: ptr("/subscriptions/x/rg"), ResourceName: ptr("vm-web-01"),
		ResourceType: ptr("Virtual machine"), RegionID: ptr("swedencentral"), RegionName: ptr("Sweden Central"), SkuID: ptr("DZH318Z0BQ4L/0080"),
		SkuMeter: ptr("D2 v3"), SubAccountID: ptr("4d9eb36f"), SubAccountName: ptr("Produktion – webb \xff bad utf8"),
		Tags:     map[string]string{"env": "prod", "kostnadsställe": "4711", "": "empty", "a<b": "x&y"},
		RecordID: uuid.MustParse("da5d2629-acc0-57d5-8ebd-b1ea4c6233cc"), Revision: "rev", RevisionSeq: 3, Replaces: ptr("old"),
		SourcePageID: uuid.MustParse("2b7f3bb6-27cc-5a5a-a483-14a3e24758e8"), FetchedAt: time.Date(2025, 6, 2, 2, 0, 41, 512000000, time.UTC),
		ColumnSetVersion: "azure_plan_billing/3", SourceMode: ModeV3, IonCustomerID: "10054", CustomerTenantID: ptr("8c2f4e1a"),
		CustomerName: "Åkesson & Söner Bygg AB", ResellerID: ptr("R-5521"), SubscriptionID: ptr("b7e0c1d2"), MeterID: ptr("6a4b2c1d"),
		CustomerCost: ptr(d("45.4049870256")), Margin: ptr(d("7.2815302365")),
		CorrectsRecordID: ptr(uuid.MustParse("6f1c2a7e-3b0d-5c49-9e57-2d8a4b1f0c63")), CorrectsRevision: ptr("abc"),
		Flags: []string{FlagSummedDuplicate, FlagServiceFallback},
	}
	minimal := UsageRecord{
		BillingCurrency: "USD", BillingAccountID: "a", ChargeCategory: "Tax", RecordID: uuid.Nil,
		BillingPeriodStart: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Tags: map[string]string{}, Flags: []string{},
	}
	zero := UsageRecord{}
	return []UsageRecord{full, minimal, zero}
}

// Revisions and record ids are content hashes: the encoder must not change a single byte of the
// hash input. The values were computed with json.Marshal before the hand-written encoder.
func TestContentHashGolden(t *testing.T) {
	want := []string{
		"2dcfc5f51febbbb012bd2a3c4f214b482093167f004a1d74bb0778adeb66578e",
		"3d5c9fe2845809f5b3f4e3ba9bcfa9c528ccaf80c2ec0457de17b3aa01746f49",
		"68167f09b6ea8e47deec07dc313c09bc3d3b3a9c5af1ee5d0dfdf3bb951817c8",
	}
	for i, r := range goldenRecords() {
		if got := r.ContentHash(); got != want[i] {
			t.Errorf("record %d: ContentHash %s, want %s", i, got, want[i])
		}
		if got, want := r.ContentHash(), r.jsonContentHash(); got != want {
			t.Errorf("record %d: ContentHash %s, json.Marshal hash %s", i, got, want)
		}
	}
}

// jsonContentHash is ContentHash through encoding/json, the reference.
func (r UsageRecord) jsonContentHash() string {
	r.Revision, r.RevisionSeq, r.Replaces = "", 0, nil
	r.SourcePageID, r.FetchedAt = uuid.Nil, time.Time{}
	for _, t := range []*time.Time{&r.BillingPeriodStart, &r.BillingPeriodEnd, &r.ChargePeriodStart, &r.ChargePeriodEnd} {
		*t = t.UTC()
	}
	return jsonSHA256(r)
}

// variedRecords returns n records with every field set, unset, or set to an awkward value.
func variedRecords(n int) []UsageRecord {
	rng := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "plain", "Åkesson & Söner", "<tag>", `q"b\s`, "line\nbreak\r\t\b\f", "\x00\x1f\x7f", "\u2028\u2029",
		"bad \xff\xfe utf8", "emoji 😀", "\xe2\x80", "é", "/subscriptions/abc/resourcegroups/rg"}
	decs := []string{"0", "1", "-1", "38.1234567891", "38.12345678910", "-0.0000000001", "1e3", "1.5e-12", "123456789012345678901234567890.5",
		"0.000", "-0.50", "100", "-999999999999999999", "0.999999999999999999", "-12.000000000000000001", "1e-19", "1e-18", "45.4049870256"}
	zones := []*time.Location{time.UTC, time.FixedZone("CEST", 7200), time.FixedZone("odd", -(5*3600 + 30*60)), time.Local}
	str := func() string { return strs[rng.IntN(len(strs))] }
	sp := func() *string {
		if rng.IntN(3) == 0 {
			return nil
		}
		return ptr(str())
	}
	dec := func() decimal.Decimal { return decimal.RequireFromString(decs[rng.IntN(len(decs))]) }
	dp := func() *decimal.Decimal {
		if rng.IntN(3) == 0 {
			return nil
		}
		return ptr(dec())
	}
	tm := func() time.Time {
		if rng.IntN(5) == 0 {
			return time.Time{}
		}
		return time.Unix(rng.Int64N(4e9), rng.Int64N(3)*rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))])
	}
	id := func() uuid.UUID {
		var u uuid.UUID
		for i := range u {
			u[i] = byte(rng.UintN(256))
		}
		return u
	}
	out := make([]UsageRecord, 0, n)
	for range n {
		r := UsageRecord{
			BilledCost: dec(), EffectiveCost: dec(), ListCost: dec(), ContractedCost: dec(),
			BillingCurrency: str(), BillingAccountID: str(), BillingAccountName: sp(),
			BillingPeriodStart: tm(), BillingPeriodEnd: tm(), ChargePeriodStart: tm(), ChargePeriodEnd: tm(),
			ChargeCategory: str(), ChargeClass: sp(), ChargeDescription: sp(),
			ConsumedQuantity: dp(), ConsumedUnit: sp(), PricingQuantity: dp(), PricingUnit: sp(), PricingCategory: sp(),
			ListUnitPrice: dp(), ContractedUnitPrice: dp(), InvoiceID: sp(),
			InvoiceIssuerName: str(), ProviderName: str(), PublisherName: str(), ServiceName: str(), ServiceCategory: str(),
			ResourceID: sp(), ResourceName: sp(), ResourceType: sp(), RegionID: sp(), RegionName: sp(), SkuID: sp(), SkuMeter: sp(),
			SubAccountID: sp(), SubAccountName: sp(),
			RecordID: id(), Revision: str(), RevisionSeq: rng.Int64N(1e6) - 10, Replaces: sp(),
			SourcePageID: id(), FetchedAt: tm(), ColumnSetVersion: str(), SourceMode: str(), IonCustomerID: str(),
			CustomerTenantID: sp(), CustomerName: str(), ResellerID: sp(), SubscriptionID: sp(), MeterID: sp(),
			CustomerCost: dp(), Margin: dp(), CorrectsRevision: sp(),
		}
		if rng.IntN(2) == 0 {
			r.CorrectsRecordID = ptr(id())
		}
		switch rng.IntN(3) {
		case 1:
			r.Tags = map[string]string{}
		case 2:
			r.Tags = map[string]string{str(): str(), str(): str(), str(): str()}
		}
		switch rng.IntN(3) {
		case 1:
			r.Flags = []string{}
		case 2:
			r.Flags = []string{str(), FlagReversal}
		}
		out = append(out, r)
	}
	return out
}

func TestRecordEncoderIsJSONMarshal(t *testing.T) {
	// appendJSON writes UsageRecord's fields by hand: a new field must be added there too.
	if n := reflect.TypeFor[UsageRecord]().NumField(); n != 56 {
		t.Fatalf("UsageRecord has %d fields; update appendJSON and decodeRecord (and this count)", n)
	}
	recs := append(goldenRecords(), variedRecords(2000)...)
	for i, r := range recs {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.appendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
		msg, err := NewMessage(r.EventMeta("test"), r)
		if err != nil || !bytes.Equal(msg.Payload, want) {
			t.Fatalf("record %d: NewMessage body differs from json.Marshal (%v)", i, err)
		}
		if r.ContentHash() != r.jsonContentHash() {
			t.Fatalf("record %d: ContentHash differs from the json.Marshal hash", i)
		}
	}
	var nilRec *UsageRecord
	msg, err := NewMessage(Meta{ID: uuid.NameSpaceURL, Type: TypeUsageRecord, Source: "test"}, nilRec)
	if err != nil || string(msg.Payload) != "null" {
		t.Errorf("nil record: %q, %v", msg.Payload, err)
	}
	bad := goldenRecords()[0]
	bad.ChargePeriodEnd = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := json.Marshal(bad); err == nil {
		t.Fatal("json.Marshal accepted year 10000")
	}
	if _, err := NewMessage(bad.EventMeta("test"), bad); err == nil || !strings.Contains(err.Error(), "ChargePeriodEnd") {
		t.Errorf("year 10000: %v, want an error naming ChargePeriodEnd", err)
	}
}

func TestAppendDecimalIsString(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 20000 {
		var d decimal.Decimal
		switch i % 4 {
		case 0:
			d = decimal.New(rng.Int64N(2e18)-1e18, -rng.Int32N(22))
		case 1:
			d = decimal.New(rng.Int64N(2000)-1000, -rng.Int32N(8))
		case 2:
			d = decimal.New(rng.Int64(), rng.Int32N(40)-30)
		default:
			d = decimal.New(rng.Int64N(1e12), 2-rng.Int32N(6)).Mul(decimal.New(rng.Int64N(1e9)-5e8, -rng.Int32N(12)))
		}
		if got, want := string(jsonwire.AppendDecimalString(nil, d)), d.String(); got != want {
			t.Fatalf("%v (coefficient %s, exponent %d): %q, want %q", d, d.Coefficient(), d.Exponent(), got, want)
		}
	}
}

// recordFields must name every field by its JSON tag and point at that very field.
func TestRecordFieldsTable(t *testing.T) {
	var r UsageRecord
	rv := reflect.ValueOf(&r).Elem()
	if len(recordFields) != rv.NumField() {
		t.Fatalf("recordFields has %d names, UsageRecord %d fields", len(recordFields), rv.NumField())
	}
	for i := range rv.NumField() {
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
		f, ok := recordFields[name]
		if !ok {
			t.Errorf("%s: not in recordFields", name)
			continue
		}
		if got, want := reflect.ValueOf(f.field(&r)).Pointer(), rv.Field(i).Addr().Pointer(); got != want {
			t.Errorf("%s: points at the wrong field", name)
		}
	}
}

// sameAsJSON decodes data with DecodeUsageRecord and json.Unmarshal and reports a difference.
func sameAsJSON(data []byte) error {
	var want, got UsageRecord
	werr := json.Unmarshal(data, &want)
	gerr := DecodeUsageRecord(data, &got)
	if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
		return fmt.Errorf("error %v, json.Unmarshal %v", gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		return fmt.Errorf("decoded\n%+v\njson.Unmarshal\n%+v", got, want)
	}
	return nil
}

func TestDecodeUsageRecordIsJSONUnmarshal(t *testing.T) {
	recs := append(goldenRecords(), variedRecords(2000)...)
	for i, r := range recs {
		body, err := r.appendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		var fast UsageRecord
		if !decodeRecord(body, &fast) {
			t.Fatalf("record %d: the fast path refused an encoder body %s", i, body)
		}
		if err := sameAsJSON(body); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	body, _ := goldenRecords()[0].appendJSON(nil)
	pretty, _ := json.MarshalIndent(goldenRecords()[0], " ", "\t")
	flagsFirst := []byte(`{"x_Flags":["a"],"Tags":{"k":"v","k":"w"},"x_RevisionSeq":-0}`)
	for name, tc := range map[string]struct {
		v    string
		fast bool // decodeRecord must take it (else: it must refuse it)
	}{
		"encoder":         {string(body), true},
		"indented":        {string(pretty), true},
		"reordered":       {string(flagsFirst), true},
		"empty":           {`{}`, true},
		"spaced empty":    {" { } ", true},
		"null body":       {`null`, false},
		"null pointers":   {`{"ChargeClass":null,"ConsumedQuantity":null,"x_CorrectsRecordId":null,"Tags":null,"x_Flags":null}`, true},
		"empty tags":      {`{"Tags":{},"x_Flags":[]}`, true},
		"escaped":         {`{"x_CustomerName":"A \u0026 B \"q\" \ud83d\ude00 \/","Tags":{"a\u003cb":"\n"}}`, true},
		"unknown field":   {`{"x_New":1}`, false},
		"case folded":     {`{"billedcost":"1"}`, false},
		"repeated":        {`{"BilledCost":"1","BilledCost":"2"}`, false},
		"repeated tags":   {`{"Tags":{"a":"1"},"Tags":{"b":"2"}}`, false},
		"null string":     {`{"BillingCurrency":null}`, false},
		"null decimal":    {`{"BilledCost":null}`, false},
		"null time":       {`{"ChargePeriodStart":null}`, false},
		"null uuid":       {`{"x_RecordId":null}`, false},
		"null seq":        {`{"x_RevisionSeq":null}`, false},
		"number decimal":  {`{"BilledCost":1.5}`, false},
		"bad decimal":     {`{"BilledCost":"1.5x"}`, false},
		"bad time":        {`{"ChargePeriodStart":"2025-13-01T00:00:00Z"}`, false},
		"bad uuid":        {`{"x_RecordId":"nope"}`, false},
		"number uuid":     {`{"x_RecordId":1}`, false},
		"float seq":       {`{"x_RevisionSeq":1.0}`, false},
		"exp seq":         {`{"x_RevisionSeq":1e2}`, false},
		"leading zero":    {`{"x_RevisionSeq":01}`, false},
		"plus seq":        {`{"x_RevisionSeq":+1}`, false},
		"string seq":      {`{"x_RevisionSeq":"1"}`, false},
		"overflow seq":    {`{"x_RevisionSeq":9223372036854775808}`, false},
		"number string":   {`{"BillingCurrency":1}`, false},
		"bool pointer":    {`{"ChargeClass":true}`, false},
		"nul":             {`{"ChargeClass":nul}`, false},
		"nullx":           {`{"ChargeClass":nullx}`, false},
		"control char":    {"{\"BillingCurrency\":\"a\x01\"}", false},
		"bad utf8":        {"{\"BillingCurrency\":\"a\xff\"}", true}, // unquoted to U+FFFD by encoding/json
		"bad utf8 key":    {"{\"Tags\":{\"\xff\":\"a\"}}", true},
		"bad escape":      {`{"BillingCurrency":"\x"}`, false},
		"trailing comma":  {`{"BillingCurrency":"a",}`, false},
		"tags comma":      {`{"Tags":{"a":"b",}}`, false},
		"flags comma":     {`{"x_Flags":["a",]}`, false},
		"null tag value":  {`{"Tags":{"a":null}}`, false},
		"trailing data":   {`{} {}`, false},
		"truncated":       {string(body[:len(body)-1]), false},
		"missing colon":   {`{"BillingCurrency" "a"}`, false},
		"array":           {`[]`, false},
		"escaped key":     {`{"Billing\u0043urrency":"a"}`, false},
		"escaped decimal": {`{"BilledCost":"\u0031"}`, false},
	} {
		var r UsageRecord
		if got := decodeRecord([]byte(tc.v), &r); got != tc.fast {
			t.Errorf("%s: fast path taken %v, want %v", name, got, tc.fast)
		}
		if err := sameAsJSON([]byte(tc.v)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeUsageRecord(f *testing.F) {
	for _, r := range append(goldenRecords(), variedRecords(20)...) {
		body, err := r.appendJSON(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte(`{"Tags":{"a":"b"},"x_Flags":["x"],"x_RevisionSeq":12}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := sameAsJSON(data); err != nil {
			t.Fatalf("%q: %v", data, err)
		}
	})
}

func TestRecordIDKeyIsRecordID(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var k RecordIDKey
	for i := range 500 {
		start := time.Unix(rng.Int64N(4e9), 0).In(time.FixedZone("z", int(rng.Int32N(20))*1800-36000))
		parts := make([]string, rng.IntN(40))
		k.Reset("10001", start, ModeV3, "azure_plan_billing/3")
		for j := range parts {
			key, val := fmt.Sprintf("col_%d", rng.IntN(100)), strings.Repeat("vé\x1f", rng.IntN(3))
			parts[j] = key + "=" + val
			k.Add(key, "=", val)
		}
		if got, want := k.ID(), RecordID("10001", start, ModeV3, "azure_plan_billing/3", parts...); got != want {
			t.Fatalf("case %d: %s, want %s", i, got, want)
		}
	}
}
