package billing

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/events"
)

// writeFOCUSCSVByJSON is the definition of a CSV row: the record's JSON, column by column.
func writeFOCUSCSVByJSON(t *testing.T, recs []events.UsageRecord) []byte {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	_ = cw.Write(FOCUSColumns)
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(FOCUSColumns))
		for i, col := range FOCUSColumns {
			row[i] = cell(m[col])
		}
		_ = cw.Write(row)
	}
	cw.Flush()
	return buf.Bytes()
}

// The direct field writer gives exactly the cells of the record's JSON.
func TestWriteFOCUSCSVMatchesJSON(t *testing.T) {
	raw, err := os.ReadFile("../../schemas/examples/usage.v1.record.json")
	if err != nil {
		t.Fatal(err)
	}
	var full events.UsageRecord
	if err := json.Unmarshal(raw, &full); err != nil {
		t.Fatal(err)
	}
	withNils := full
	withNils.ChargeClass, withNils.Replaces, withNils.Tags, withNils.Flags = nil, nil, nil, nil
	cc := "Correction"
	withNils.ChargeClass = &cc
	odd := full
	desc := "quote \" comma , newline \n <&> é"
	odd.ChargeDescription = &desc
	odd.BilledCost = decimal.RequireFromString("-0.0000000001")
	odd.Tags = map[string]string{"b": "2", "a": "<1>"}
	odd.Flags = []string{"duplicate-merged"}
	recs := []events.UsageRecord{full, withNils, odd, {}}
	var got bytes.Buffer
	if err := WriteFOCUSCSV(&got, recs); err != nil {
		t.Fatal(err)
	}
	if want := writeFOCUSCSVByJSON(t, recs); !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("CSV differs from the JSON cells:\ngot  %s\nwant %s", got.Bytes(), want)
	}
}
