package ion

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
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
	if err := checkRowCount(meta); err != nil {
		return meta, &BodyError{Path: path, Reason: err.Error(), Rows: delivered(meta, subtotals)}
	}
	meta.Truncated = meta.AvailableRowsCount > meta.ResultCount
	return meta, nil
}

// checkRowCount fails a body that holds fewer rows than its own resultCount says it returned:
// resultCount counts every row returned, leaf and subtotal alike (ion-api.md §4.4), as meta.Rows
// does. More rows than stated (or no resultCount at all) is not flagged here.
func checkRowCount(meta ReportMeta) error {
	if int64(meta.Rows) < meta.ResultCount {
		return fmt.Errorf("body holds %d rows but resultCount is %d", meta.Rows, meta.ResultCount)
	}
	return nil
}

// delivered is how many rows of a fully decoded body reached the callback.
func delivered(meta ReportMeta, subtotals bool) int {
	if subtotals {
		return meta.Rows
	}
	return meta.Rows - meta.Subtotals
}

// parseCSVRows reads a header line and then one record per row, cells matched to cols by
// position once the header has been checked against cols (checkCSVHeader). Numeric columns
// must parse exactly: a money cell that does not is an error, never 0.
func parseCSVRows(r io.Reader, cols []ReportColumn, fn func(Row) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked below with a clearer message
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		if err == io.EOF {
			return nil // empty CSV: no header, no rows
		}
		return fmt.Errorf("csv header: %s", csvErr(err))
	}
	if err := checkCSVHeader(head, cols); err != nil {
		return err
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

// checkCSVHeader requires the header to name the requested columns in the requested order, so a
// reordered CSV can never put money into the wrong field. Each header cell must match its
// column's ColumnHeading, DisplayName or key, compared case-insensitively and ignoring spaces
// and punctuation; a money heading's currency suffix (" (EUR)") is optional on either side.
func checkCSVHeader(head []string, cols []ReportColumn) error {
	for i := 0; i < len(head) || i < len(cols); i++ {
		switch {
		case i >= len(cols):
			return fmt.Errorf("csv header cell %d %q: only %d columns were requested", i+1, head[i], len(cols))
		case i >= len(head):
			return fmt.Errorf("csv header has %d cells: column %d (%s) is missing", len(head), i+1, cols[i].Key())
		}
		cell := head[i]
		if i == 0 {
			cell = strings.TrimPrefix(cell, "\ufeff") // a UTF-8 byte order mark
		}
		if !headerMatches(cell, cols[i]) {
			want := cols[i].ColumnHeading
			if want == "" {
				want = cols[i].DisplayName
			}
			return fmt.Errorf("csv header cell %d is %q, want column %s (%q): columns out of order or not as requested",
				i+1, head[i], cols[i].Key(), want)
		}
	}
	return nil
}

func headerMatches(cell string, col ReportColumn) bool {
	got := []string{normHeading(cell), normHeading(stripCurrency(cell))}
	for _, name := range []string{col.ColumnHeading, col.DisplayName, col.Key()} {
		if strings.TrimSpace(name) == "" {
			continue
		}
		for _, want := range []string{normHeading(name), normHeading(stripCurrency(name))} {
			if want != "" && (want == got[0] || want == got[1]) {
				return true
			}
		}
	}
	return false
}

// stripCurrency drops a trailing currency suffix: "Seller Cost (EUR)" → "Seller Cost".
func stripCurrency(s string) string {
	s = strings.TrimSpace(s)
	if n := len(s); n >= 5 && s[n-1] == ')' && s[n-5] == '(' {
		for _, c := range s[n-4 : n-1] {
			if !unicode.IsLetter(c) {
				return s
			}
		}
		return strings.TrimSpace(s[:n-5])
	}
	return s
}

// normHeading lowercases and keeps letters and digits only: "Charge StartDate", "charge_startdate"
// and " CHARGE START DATE " are the same heading.
func normHeading(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			b.WriteRune(c)
		}
	}
	return b.String()
}
