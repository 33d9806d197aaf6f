package ion

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// decodeReportCSV decodes {"results":"<csv>","resultCount":"N","availableRowsCount":"M"}.
func decodeReportCSV(body io.Reader, path string, cols []ReportColumn, subtotals bool, fn func(Row) error) (ReportMeta, error) {
	var meta ReportMeta
	var env struct {
		Results            *string `json:"results"`
		ResultCount        Int64   `json:"resultCount"`
		AvailableRowsCount Int64   `json:"availableRowsCount"`
	}
	if err := json.NewDecoder(body).Decode(&env); err != nil {
		return meta, &BodyError{Path: path, Reason: describeJSONErr(err)}
	}
	if env.Results == nil {
		return meta, &BodyError{Path: path, Reason: "no results"}
	}
	meta.ResultCount, meta.AvailableRowsCount = int64(env.ResultCount), int64(env.AvailableRowsCount)
	err := parseCSVRows(strings.NewReader(*env.Results), cols, func(row Row) error {
		meta.Rows++
		sub := IsSubtotal(row)
		if sub {
			meta.Subtotals++
			if !subtotals {
				return nil
			}
		}
		return fn(row)
	})
	if err != nil {
		var cb callbackError
		if errors.As(err, &cb) {
			return meta, cb.err
		}
		return meta, &BodyError{Path: path, Reason: err.Error(), Rows: meta.Rows}
	}
	meta.Truncated = meta.AvailableRowsCount > meta.ResultCount
	return meta, nil
}

// parseCSVRows reads a header line and then one record per row, cells matched to cols by
// position. Numeric columns must parse exactly: a money cell that does not is an error, never 0.
func parseCSVRows(r io.Reader, cols []ReportColumn, fn func(Row) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked below with a clearer message
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil {
		if err == io.EOF {
			return nil // empty CSV: no header, no rows
		}
		return fmt.Errorf("csv header: %s", csvErr(err))
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("csv: %s", csvErr(err))
		}
		if len(rec) != len(cols) {
			return fmt.Errorf("csv line %d: %d cells for %d columns", line, len(rec), len(cols))
		}
		row := Row{cols: cols, Values: make([]Value, len(rec))}
		for i, cell := range rec {
			v, err := csvValue(cols[i], cell)
			if err != nil {
				return fmt.Errorf("csv line %d column %s: %w", line, cols[i].Key(), err)
			}
			row.Values[i] = v
		}
		if err := fn(row); err != nil {
			return callbackError{err}
		}
	}
}

func csvErr(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("line %d: %v", pe.Line, pe.Err)
	}
	return "unreadable"
}

func csvValue(col ReportColumn, cell string) (Value, error) {
	kind := col.Kind()
	v := Value{Type: kind, Text: cell}
	t := strings.TrimSpace(cell)
	if t == "" {
		v.Null = true
		return v, nil
	}
	switch kind {
	case "MONEY", "FLOAT", "INT":
		n, err := parseDecimal(t)
		if err != nil {
			return v, errors.New("not a plain decimal number")
		}
		v.Number = n
	case "DATE":
		v.Time, _ = parseTime(t)
	case "BOOL":
		v.Bool = strings.EqualFold(t, "true")
	}
	return v, nil
}
