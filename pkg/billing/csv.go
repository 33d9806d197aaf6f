package billing

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/ionusage/connector/pkg/events"
)

// FOCUSColumns is the CSV header: the FOCUS columns of events.UsageRecord in declaration order,
// then the x_ columns, so finance tools that know FOCUS find its columns first.
var FOCUSColumns = focusColumns()

func focusColumns() []string {
	t := reflect.TypeOf(events.UsageRecord{})
	var focus, x []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		if strings.HasPrefix(name, "x_") {
			x = append(x, name)
		} else {
			focus = append(focus, name)
		}
	}
	return append(focus, x...)
}

// WriteFOCUSCSV writes a header and one row per record. Values are the record's JSON values:
// strings and decimals verbatim (full precision), null as empty, objects and arrays as JSON.
func WriteFOCUSCSV(w io.Writer, recs []events.UsageRecord) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(FOCUSColumns); err != nil {
		return err
	}
	row := make([]string, len(FOCUSColumns))
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode record %s: %w", r.RecordID, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		for i, col := range FOCUSColumns {
			row[i] = cell(m[col])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func cell(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return ""
	case raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// sortRecords returns a copy of recs sorted by record id, then revision: the order of the
// delivery id, so the body is the same however the batch arrived.
func sortRecords(recs []events.UsageRecord) []events.UsageRecord {
	out := slices.Clone(recs)
	slices.SortFunc(out, func(a, b events.UsageRecord) int {
		if c := cmp.Compare(a.RecordID.String(), b.RecordID.String()); c != 0 {
			return c
		}
		return cmp.Compare(a.Revision, b.Revision)
	})
	return out
}
