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

	"github.com/shopspring/decimal"

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
// Plain string, *string and decimal fields are written directly; the other fields go through
// their JSON encoding, so a cell is always what the record's JSON holds.
func WriteFOCUSCSV(w io.Writer, recs []events.UsageRecord) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(FOCUSColumns); err != nil {
		return err
	}
	row := make([]string, len(FOCUSColumns))
	for i := range recs {
		v := reflect.ValueOf(&recs[i]).Elem()
		for c, f := range csvFields {
			s, err := f.cell(v.Field(f.index))
			if err != nil {
				return fmt.Errorf("encode record %s: %s: %w", recs[i].RecordID, FOCUSColumns[c], err)
			}
			row[c] = s
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvField is how one CSV column is read from an events.UsageRecord.
type csvField struct {
	index     int
	omitEmpty bool
	kind      csvKind
}

type csvKind int

const (
	csvJSON       csvKind = iota // through encoding/json, then cell
	csvString                    // string
	csvStringPtr                 // *string: nil is empty
	csvDecimal                   // decimal.Decimal: its JSON is its String, quoted or not
	csvDecimalPtr                // *decimal.Decimal
)

var csvFields = func() []csvField {
	t := reflect.TypeOf(events.UsageRecord{})
	byName := map[string]csvField{}
	decT := reflect.TypeOf(decimal.Decimal{})
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		f := csvField{index: i, omitEmpty: slices.Contains(strings.Split(opts, ","), "omitempty")}
		if slices.Contains(strings.Split(opts, ","), "string") {
			byName[name] = f // ",string" changes the encoding: leave it to encoding/json
			continue
		}
		switch {
		case sf.Type.Kind() == reflect.String && sf.Type.PkgPath() == "":
			f.kind = csvString
		case sf.Type.Kind() == reflect.Pointer && sf.Type.Elem().Kind() == reflect.String && sf.Type.Elem().PkgPath() == "":
			f.kind = csvStringPtr
		case sf.Type == decT:
			f.kind = csvDecimal
		case sf.Type.Kind() == reflect.Pointer && sf.Type.Elem() == decT:
			f.kind = csvDecimalPtr
		}
		byName[name] = f
	}
	out := make([]csvField, len(FOCUSColumns))
	for i, col := range FOCUSColumns {
		out[i] = byName[col]
	}
	return out
}()

func (f csvField) cell(v reflect.Value) (string, error) {
	switch f.kind {
	case csvString:
		return v.String(), nil
	case csvStringPtr:
		if v.IsNil() {
			return "", nil
		}
		return v.Elem().String(), nil
	case csvDecimal:
		return v.Interface().(decimal.Decimal).String(), nil
	case csvDecimalPtr:
		if v.IsNil() {
			return "", nil
		}
		return v.Interface().(*decimal.Decimal).String(), nil
	}
	if f.omitEmpty && isEmptyJSONValue(v) {
		return "", nil // omitted from the JSON: no value
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return "", err
	}
	return cell(b), nil
}

// isEmptyJSONValue is encoding/json's omitempty test.
func isEmptyJSONValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
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
