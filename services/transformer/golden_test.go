package transformer

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/events/schematest"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/usage"
)

var (
	update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")
	regen  = flag.Bool("regen", false, "re-fetch testdata/*.page.json from the sandbox (then run with -update)")
)

const goldenPeriod = "2025-01"

var goldenNow = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func goldenSimOptions() ionsim.Options {
	return ionsim.Options{Seed: 7, Customers: 6, Meters: 2, Periods: []string{"2024-12..2025-01"},
		Now: func() time.Time { return goldenNow }, Variant: ionsim.Variant{Daily: true, SubtotalRows: true}}
}

// TestRegenerateGoldenPages re-fetches the golden pages from the sandbox and edits a few rows in,
// so every case the issue names is in a real page: non-ASCII names, credits, licence rows,
// subtotal rows, rows outside the period, duplicate grouping keys, bad lines.
func TestRegenerateGoldenPages(t *testing.T) {
	if !*regen {
		t.Skip("run with -regen to re-fetch testdata/*.page.json")
	}
	sb := startSandbox(t, goldenSimOptions())
	truth := sb.sim.GroundTruth(goldenPeriod)
	var nonASCII, other string
	for _, c := range truth.Customers {
		if strings.ContainsFunc(c.Name, func(r rune) bool { return r > 127 }) && nonASCII == "" {
			nonASCII = c.CustomerID
		} else if other == "" {
			other = c.CustomerID
		}
	}
	if nonASCII == "" || other == "" {
		t.Fatalf("sandbox has no suitable customers: %+v", truth.Customers)
	}
	fetched := time.Date(2025, 2, 2, 3, 4, 5, 0, time.UTC)

	// v3 JSON: Dec 31 (outside the period) to Jan 2, one non-ASCII customer, with subtotals.
	from, to := time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 2, 23, 59, 59, 0, time.UTC)
	req := sb.v3Request(t, leafColumns, nonASCII, from, to)
	body := editJSONRows(t, sb.fetchV3(t, req, false))
	writePage(t, "v3_json", rawPage(sb.account, goldenPeriod, events.ModeV3,
		"POST /api/v3/accounts/"+sb.account+"/reports/"+ionsim.AzurePlanReportID+"/data", req,
		events.PageKey{Customer: nonASCII, From: "2024-12-31", To: "2025-01-02"}, body, fetched))

	// v3 CSV: the month of another customer, the first one with a credit line.
	from, to = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 31, 23, 59, 59, 0, time.UTC)
	other, body = "", nil
	for _, c := range truth.Customers {
		if c.CustomerID == nonASCII {
			continue
		}
		req = sb.v3Request(t, leafColumns, c.CustomerID, from, to)
		if b := sb.fetchV3(t, req, true); bytes.Contains(b, []byte(",Credit,")) {
			other, body = c.CustomerID, editCSVRows(t, b)
			break
		}
	}
	if other == "" {
		t.Fatal("no customer with a credit line")
	}
	writePage(t, "v3_csv", rawPage(sb.account, goldenPeriod, events.ModeV3,
		"POST /api/v3/accounts/"+sb.account+"/reports/"+ionsim.AzurePlanReportID+"/reportDataCsv", req,
		events.PageKey{Customer: other, From: "2025-01-01", To: "2025-01-31"}, body, fetched))

	// v1 tree: the non-ASCII customer's month.
	q, body := sb.fetchV1(t, nonASCII, goldenPeriod)
	qj, _ := json.Marshal(q)
	writePage(t, "v1_tree", rawPage(sb.account, goldenPeriod, events.ModeV1, "GET /api/v1/reports/billing/azureplan", qj,
		events.PageKey{Customer: nonASCII, From: "2025-01-01", To: "2025-01-31"}, body, fetched))
}

// editJSONRows duplicates the first leaf row (a duplicate grouping key) and gives the third an
// unknown charge type (a bad line).
func editJSONRows(t *testing.T, body []byte) []byte {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	res := m["results"].(map[string]any)
	rows := res["rows"].([]any)
	chargeIdx, startIdx := indexOf(leafColumns, "charge_type"), indexOf(leafColumns, "usage_starttime")
	dup := -1
	for i, r := range rows {
		v := r.(map[string]any)["values"].([]any)[startIdx].(map[string]any)
		if s, _ := v["dateValue"].(string); strings.HasPrefix(s, goldenPeriod) {
			dup = i
			break
		}
	}
	if dup < 0 {
		t.Fatal("no in-period row to duplicate")
	}
	rows = append([]any{deepCopy(t, rows[dup])}, rows...)
	vals := rows[len(rows)-3].(map[string]any)["values"].([]any)
	vals[chargeIdx] = map[string]any{"valueType": "STRING", "stringValue": "Mystery Charge"}
	res["rows"] = rows
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// editCSVRows duplicates the first data line, writes a decimal comma into one money cell and
// another currency into one line.
func editCSVRows(t *testing.T, body []byte) []byte {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(m["results"].(string))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 5 {
		t.Fatalf("csv too short: %d lines", len(recs))
	}
	recs = append(recs[:2], recs[1:]...) // duplicate data line 1
	recs[3] = append([]string(nil), recs[3]...)
	recs[3][indexOf(leafColumns, "seller_cost_invoice")] = "12,5"
	recs[4] = append([]string(nil), recs[4]...)
	recs[4][indexOf(leafColumns, "invoice_currency")] = "USD"
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.WriteAll(recs); err != nil {
		t.Fatal(err)
	}
	m["results"] = buf.String()
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	panic(v)
}

func deepCopy(t *testing.T, v any) any {
	t.Helper()
	b, _ := json.Marshal(v)
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func writePage(t *testing.T, name string, p events.RawPage) {
	t.Helper()
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", name+".page.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadPage(t testing.TB, path string) events.RawPage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p events.RawPage
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func transformFile(t testing.TB, path string) pageOutput {
	t.Helper()
	p := loadPage(t, path)
	out, err := transformPage(pageInput{Page: p, Body: []byte(p.Body), Charges: usage.DefaultChargeTable(),
		Currency: "EUR", Source: Source, Now: goldenNow,
		Origin: origin{Subject: events.RawPageSubject(p.Account), Stream: events.StreamRaw, Seq: 1, Attempt: 1}})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// goldenView is what a page must produce: every record, every held and bad line with its
// reason, and the summary.
type goldenView struct {
	Records   []usage.Record      `json:"records"`
	Held      []events.DeadLetter `json:"held"`
	Bad       []events.DeadLetter `json:"bad"`
	Summary   events.PageSummary  `json:"summary"`
	Subtotals int                 `json:"subtotals_skipped"`
	EventIDs  []string            `json:"event_ids"`
}

func goldenPages(t testing.TB) []string {
	t.Helper()
	in, err := filepath.Glob("testdata/*.page.json")
	if err != nil || len(in) == 0 {
		t.Fatalf("no testdata pages (%v)", err)
	}
	return in
}

// TestTransformGolden compares whole sandbox pages with their exact expected output. Run
// `go test -run Golden -update` after a deliberate change.
func TestTransformGolden(t *testing.T) {
	for _, in := range goldenPages(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			out := transformFile(t, in)
			v := goldenView{Records: out.Records, Held: out.Held, Bad: out.Bad, Summary: out.Summary, Subtotals: out.Decoded.Subtotals}
			for _, b := range out.Messages {
				for _, m := range b.Msgs {
					v.EventIDs = append(v.EventIDs, b.Subject+" "+m.UUID)
				}
			}
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".page.json") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s; run with -update if the change is intended", in, golden)
			}
		})
	}
}

// TestGoldenCoverage proves the golden pages hold every case the issue names, so a regenerated
// page that lost one fails loudly.
func TestGoldenCoverage(t *testing.T) {
	var (
		nonASCII, credit, licence, dup, outOfPeriod, bad, subtotals int
		modes                                                       = map[string]bool{}
	)
	for _, in := range goldenPages(t) {
		out := transformFile(t, in)
		modes[filepath.Base(in)] = true
		subtotals += out.Decoded.Subtotals
		outOfPeriod += len(out.Held)
		bad += len(out.Bad)
		for _, r := range out.Records {
			if strings.ContainsFunc(r.CustomerName, func(c rune) bool { return c > 127 }) {
				nonASCII++
			}
			switch r.ChargeCategory {
			case usage.CategoryCredit:
				credit++
			case usage.CategoryPurchase:
				licence++
			}
			for _, f := range r.Flags {
				if f == events.FlagSummedDuplicate {
					dup++
				}
			}
		}
	}
	for name, n := range map[string]int{"non-ASCII names": nonASCII, "credits": credit, "licence rows": licence,
		"summed duplicates": dup, "out-of-period rows": outOfPeriod, "bad lines": bad, "subtotal rows": subtotals} {
		if n == 0 {
			t.Errorf("golden pages have no %s", name)
		}
	}
	for _, m := range []string{"v3_json.page.json", "v3_csv.page.json", "v1_tree.page.json"} {
		if !modes[m] {
			t.Errorf("missing golden page %s", m)
		}
	}
}

// TestEmittedEventsValid checks every event a golden page emits against its JSON Schema and
// every record's FOCUS columns against the FOCUS 1.2 table.
func TestEmittedEventsValid(t *testing.T) {
	n := 0
	for _, in := range goldenPages(t) {
		out := transformFile(t, in)
		for _, b := range out.Messages {
			for _, m := range b.Msgs {
				typ := m.Metadata.Get(events.HeaderType)
				schematest.Validate(t, typ, m.Payload)
				if typ == events.TypeUsageRecord {
					for _, e := range usage.CheckFOCUS(m.Payload) {
						t.Errorf("%s %s: %v", in, m.UUID, e)
					}
					n++
				}
			}
		}
		schematest.Validate(t, events.TypePageSummary, out.SummaryM.Payload)
	}
	if n < 10 {
		t.Fatalf("only %d records checked", n)
	}
}

var _ = fmt.Sprintf
