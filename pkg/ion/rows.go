package ion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// Value is one typed report cell.
type Value struct {
	Type     string          // the cell's valueType (STRING, FLOAT, INT, MONEY, BOOL, DATE, INTERNAL_LINK, ID)
	Text     string          // textual form of any kind (number text, link text, date as sent)
	Number   decimal.Decimal // FLOAT, INT, MONEY
	Currency string          // MONEY
	Bool     bool            // BOOL
	Time     time.Time       // DATE
	Link     string          // INTERNAL_LINK
	Null     bool            // no value was present
	canon    bool            // Text is Number.String() (a number sent as a number)
}

// NumberText is Number.String(), without formatting the number again when Text already is
// that (which is most cells: formatting a decimal was a tenth of a page's decode).
func (v Value) NumberText() string {
	if v.canon {
		return v.Text
	}
	return v.Number.String()
}

// Row is one report row. Values are in the order of the requested columns.
type Row struct {
	cols   []ReportColumn
	Values []Value
}

// Columns returns the row's columns, in value order.
func (r Row) Columns() []ReportColumn { return r.cols }

// Get returns the value of the column with the given template key (or id).
func (r Row) Get(key string) (Value, bool) {
	if i := ColumnIndex(r.cols, key); i >= 0 && i < len(r.Values) {
		return r.Values[i], true
	}
	return Value{Null: true}, false
}

// ColumnIndex is the position of the first column whose template key, id or column template id
// is key (what Row.Get looks up), or -1: a caller reading many rows finds it once.
func ColumnIndex(cols []ReportColumn, key string) int {
	for i, c := range cols {
		if c.Key() == key || string(c.ID) == key || c.ColumnTemplateID == key {
			return i
		}
	}
	return -1
}

// String returns the text of a column ("" if absent).
func (r Row) String(key string) string {
	v, _ := r.Get(key)
	return v.Text
}

// Decimal returns the exact number of a column (zero if absent or not numeric).
func (r Row) Decimal(key string) decimal.Decimal {
	v, _ := r.Get(key)
	return v.Number
}

// Time returns the timestamp of a date column (zero if absent or unparsable).
func (r Row) Time(key string) time.Time {
	v, _ := r.Get(key)
	return v.Time
}

// subtotalMarkers are grouping-cell texts that mark a subtotal row, compared case-insensitively,
// alone or followed by ":", " for " or " (" ("Total: ACME"); "Totally Fine Ltd" is no marker.
var subtotalMarkers = []string{"total", "subtotal", "sub total", "sub-total", "grand total"}

// IsSubtotal reports whether a row is a subtotal (or grand total) rather than a leaf line.
// Summing both double counts, so only leaves are billed. The rule:
//
//  1. any grouping (non-aggregated) cell reads "Total", "Subtotal", "Sub Total", "Sub-Total"
//     or "Grand Total" (any case; alone or followed by ":", " for " or " (") — the sandbox puts
//     "Subtotal"/"Total" in the first grouping column, the portal labels total lines alike,
//     and no real customer id, GUID or meter is such a word;
//  2. or every grouping cell is empty while an aggregated cell is present — a leaf line always
//     has at least its customer grouping (the fetcher always selects customer_id).
//
// Rows without any grouping column in the selection are always leaves.
func IsSubtotal(r Row) bool { return isSubtotal(r, nil) }

// aggregated is Aggregated of each column, worked out once per page rather than per cell.
func aggregated(cols []ReportColumn) []bool {
	agg := make([]bool, len(cols))
	for i, c := range cols {
		agg[i] = c.Aggregated()
	}
	return agg
}

// isSubtotal is IsSubtotal with the columns' aggregated flags (nil: ask each column).
func isSubtotal(r Row, agg []bool) bool {
	grouping, nonEmpty, measures := 0, 0, 0
	for i, c := range r.cols {
		if i >= len(r.Values) {
			break
		}
		v := r.Values[i]
		if (agg == nil && c.Aggregated()) || (agg != nil && agg[i]) {
			if !v.Null {
				measures++
			}
			continue
		}
		grouping++
		t := strings.TrimSpace(v.Text)
		if t != "" {
			nonEmpty++
		}
		if isTotalMarker(t) {
			return true
		}
	}
	return grouping > 0 && nonEmpty == 0 && measures > 0
}

func isTotalMarker(t string) bool {
	if isASCII(t) {
		// Every grouping cell of every row passes here: compare without lowering a copy.
		for _, m := range subtotalMarkers {
			if len(t) < len(m) || !strings.EqualFold(t[:len(m)], m) {
				continue
			}
			rest := t[len(m):]
			if rest == "" || rest[0] == ':' || hasPrefixFold(rest, " for ") || strings.HasPrefix(rest, " (") {
				return true
			}
		}
		return false
	}
	l := strings.ToLower(t)
	for _, m := range subtotalMarkers {
		if l == m || strings.HasPrefix(l, m+":") || strings.HasPrefix(l, m+" for ") || strings.HasPrefix(l, m+" (") {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// maxDepth bounds nesting while skipping unknown JSON, so hostile input cannot exhaust memory
// through the skip path.
const maxDepth = 64

// decodeReportData streams a GetReportDataResponse:
// {report, results:{rows:[{values:[…]}]}, resultCount, availableRowsCount, cacheTimestamp}.
func decodeReportData(body io.Reader, path string, cols []ReportColumn, subtotals bool, fn func(Row) error) (ReportMeta, error) {
	return decodeReportDataOpts(body, path, cols, decodeOpts{subtotals: subtotals}, fn)
}

type decodeOpts struct {
	subtotals bool // hand subtotal rows to fn too
	// reuse hands fn rows whose Values the next row overwrites (fn copies what it keeps),
	// sparing an allocation per row.
	reuse bool
}

func decodeReportDataOpts(body io.Reader, path string, cols []ReportColumn, opts decodeOpts, fn func(Row) error) (ReportMeta, error) {
	if b, ok := inMemory(body); ok {
		if json.Valid(b) {
			return decodeReportDataBytes(b, path, cols, opts, fn)
		}
		body = bytes.NewReader(b) // the streaming decoder says what is wrong with it
	}
	return decodeReportDataStream(body, path, cols, opts, fn)
}

// decodeReportDataStream decodes the body as it arrives, one row at a time.
func decodeReportDataStream(body io.Reader, path string, cols []ReportColumn, opts decodeOpts, fn func(Row) error) (ReportMeta, error) {
	var meta ReportMeta
	dec := json.NewDecoder(body)
	dec.UseNumber()
	bad := func(reason string) error {
		return &BodyError{Path: path, Reason: reason, Rows: meta.Rows}
	}
	badErr := func(err error) error {
		var cb callbackError
		if errors.As(err, &cb) {
			return cb.err
		}
		return bad(describeJSONErr(err))
	}
	if err := expectDelim(dec, '{'); err != nil {
		return meta, badErr(err)
	}
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return meta, badErr(err)
		}
		switch key {
		case "results":
			if err := decodeResults(dec, cols, opts, &meta, fn); err != nil {
				return meta, badErr(err)
			}
		case "resultCount", "result_count":
			var n Int64
			if err := dec.Decode(&n); err != nil {
				return meta, badErr(err)
			}
			meta.ResultCount = int64(n)
		case "availableRowsCount", "available_rows_count":
			var n Int64
			if err := dec.Decode(&n); err != nil {
				return meta, badErr(err)
			}
			meta.AvailableRowsCount = int64(n)
		case "cacheTimestamp", "cache_timestamp":
			var t Time
			if err := dec.Decode(&t); err != nil {
				return meta, badErr(err)
			}
			meta.CacheTimestamp = t.Time
		default:
			if err := skipValue(dec); err != nil {
				return meta, badErr(err)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return meta, badErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return meta, bad("trailing data after the response object")
	}
	if err := checkRowCount(meta); err != nil {
		return meta, bad(err.Error())
	}
	meta.Truncated = meta.AvailableRowsCount > meta.ResultCount
	return meta, nil
}

// callbackError carries the caller's own error through the decoder unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

func decodeResults(dec *json.Decoder, cols []ReportColumn, opts decodeOpts, meta *ReportMeta, fn func(Row) error) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if t == nil {
		return nil // "results": null
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("results: want an object")
	}
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return err
		}
		if key != "rows" {
			if err := skipValue(dec); err != nil {
				return err
			}
			continue
		}
		t, err := dec.Token()
		if err != nil {
			return err
		}
		if t == nil {
			continue
		}
		if d, ok := t.(json.Delim); !ok || d != '[' {
			return fmt.Errorf("rows: want an array")
		}
		rs := newRowSink(cols, opts, meta, fn)
		var rowJSON json.RawMessage // reused: Decode appends into it
		for dec.More() {
			// One row at a time: memory is bounded by the widest row, not the report.
			if err := dec.Decode(&rowJSON); err != nil {
				return err
			}
			if err := rs.row(rowJSON); err != nil {
				return err
			}
		}
		if err := expectDelim(dec, ']'); err != nil {
			return err
		}
	}
	return expectDelim(dec, '}')
}

// rowSink turns the rows of one "rows" array into Rows for fn: the streaming decoder and the
// in-memory walker (rowswalk.go) share it, so both treat every row alike.
type rowSink struct {
	cols    []ReportColumn
	opts    decodeOpts
	meta    *ReportMeta
	fn      func(Row) error
	agg     []bool
	scratch []rawValue
	values  []Value
}

func newRowSink(cols []ReportColumn, opts decodeOpts, meta *ReportMeta, fn func(Row) error) *rowSink {
	return &rowSink{cols: cols, opts: opts, meta: meta, fn: fn, agg: aggregated(cols)}
}

// row decodes one row's JSON and hands it to fn; fn's error comes back as a callbackError.
func (rs *rowSink) row(rowJSON []byte) error {
	raws, ok := fastRowValues(rowJSON, rs.scratch)
	rs.scratch = raws
	if !ok {
		var raw struct {
			Values []rawValue `json:"values"`
		}
		if err := json.Unmarshal(rowJSON, &raw); err != nil {
			return err
		}
		raws = raw.Values
	}
	return rs.rowValues(raws)
}

// rowValues makes the Row of one row's values and hands it to fn.
func (rs *rowSink) rowValues(raws []rawValue) error {
	if !rs.opts.reuse {
		rs.values = nil
	}
	row, err := makeRow(rs.cols, raws, rs.values)
	if err != nil {
		return err
	}
	rs.values = row.Values
	rs.meta.Rows++
	sub := isSubtotal(row, rs.agg)
	if sub {
		rs.meta.Subtotals++
	}
	if sub && !rs.opts.subtotals {
		return nil
	}
	if err := rs.fn(row); err != nil {
		return callbackError{err}
	}
	return nil
}

// makeRow converts raws into dst's storage when it is large enough.
func makeRow(cols []ReportColumn, raws []rawValue, dst []Value) (Row, error) {
	if len(cols) > 0 && len(raws) != len(cols) {
		return Row{}, fmt.Errorf("row has %d values for %d columns", len(raws), len(cols))
	}
	if cap(dst) < len(raws) {
		dst = make([]Value, len(raws))
	}
	row := Row{cols: cols, Values: dst[:len(raws)]}
	for i, rv := range raws {
		v, err := rv.value()
		if err != nil {
			return Row{}, fmt.Errorf("column %d: %w", i, err)
		}
		row.Values[i] = v
	}
	return row, nil
}

// rawValue is a ReportValue on the wire; exactly one of the typed fields is normally set.
type rawValue struct {
	ValueType    string          `json:"valueType"`
	StringValue  *string         `json:"stringValue"`
	FloatValue   json.RawMessage `json:"floatValue"`
	IntValue     json.RawMessage `json:"intValue"`
	MoneyValue   json.RawMessage `json:"moneyValue"`
	BoolValue    json.RawMessage `json:"boolValue"`
	DateValue    json.RawMessage `json:"dateValue"`
	InternalLink *struct {
		Link string `json:"link"`
		Text string `json:"text"`
	} `json:"internalLinkValue"`
	// The fast path's stringValue, without the pointer's allocation (hasStr: not null).
	str    string
	hasStr bool
}

func isNull(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || bytes.Equal(b, []byte("null"))
}

func (rv rawValue) value() (Value, error) {
	v := Value{Type: strings.ToUpper(rv.ValueType)}
	switch {
	case !isNull(rv.MoneyValue):
		var m struct {
			Currency     string          `json:"currency"`
			CurrencyCode string          `json:"currencyCode"`
			Value        json.RawMessage `json:"value"`
		}
		var ok bool
		if m.Currency, m.CurrencyCode, m.Value, ok = fastMoney(rv.MoneyValue); !ok {
			m.Currency, m.CurrencyCode, m.Value = "", "", nil
			if err := json.Unmarshal(rv.MoneyValue, &m); err != nil {
				return v, fmt.Errorf("moneyValue: want an object")
			}
		}
		n, text, err := parseDecimalJSONText(orNull(m.Value))
		if err != nil {
			return v, err
		}
		v.Number, v.Currency, v.Text, v.canon = n, m.Currency, text, true
		if v.Currency == "" {
			v.Currency = m.CurrencyCode
		}
		if v.Type == "" {
			v.Type = "MONEY"
		}
	case !isNull(rv.FloatValue) || !isNull(rv.IntValue):
		raw := rv.FloatValue
		kind := "FLOAT"
		if isNull(raw) {
			raw, kind = rv.IntValue, "INT"
		}
		n, text, err := parseDecimalJSONText(raw)
		if err != nil {
			return v, err
		}
		v.Number, v.Text, v.canon = n, text, true
		if v.Type == "" {
			v.Type = kind
		}
	case !isNull(rv.BoolValue):
		s, err := scalarText(rv.BoolValue)
		if err != nil || (s != "true" && s != "false") {
			return v, fmt.Errorf("boolValue: want a bool")
		}
		v.Bool, v.Text = s == "true", s
		if v.Type == "" {
			v.Type = "BOOL"
		}
	case !isNull(rv.DateValue):
		t, text, err := parseDateValue(rv.DateValue)
		if err != nil {
			return v, err
		}
		v.Time, v.Text = t, text
		if v.Type == "" {
			v.Type = "DATE"
		}
	case rv.InternalLink != nil:
		v.Link, v.Text = rv.InternalLink.Link, rv.InternalLink.Text
		if v.Type == "" {
			v.Type = "INTERNAL_LINK"
		}
	case rv.StringValue != nil || rv.hasStr:
		v.Text = rv.str
		if rv.StringValue != nil {
			v.Text = *rv.StringValue
		}
		if v.Type == "" {
			v.Type = "STRING"
		}
		// Numbers and dates sometimes arrive as strings under their own valueType.
		switch v.Type {
		case "FLOAT", "INT", "MONEY":
			n, err := parseDecimal(v.Text)
			if err != nil {
				return v, err
			}
			v.Number = n
		case "DATE":
			v.Time, _ = parseTime(v.Text)
		}
	default:
		v.Null = true
	}
	return v, nil
}

func orNull(b json.RawMessage) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

// parseDateValue accepts an RFC 3339 string, a protobuf Timestamp {seconds,nanos} or a
// google.type.Date {year,month,day}.
func parseDateValue(b json.RawMessage) (time.Time, string, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var o struct {
			Seconds Int64 `json:"seconds"`
			Nanos   Int64 `json:"nanos"`
			Year    Int64 `json:"year"`
			Month   Int64 `json:"month"`
			Day     Int64 `json:"day"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return time.Time{}, "", fmt.Errorf("dateValue: malformed object")
		}
		var t time.Time
		if o.Year != 0 {
			if o.Month < 1 || o.Month > 12 || o.Day < 0 || o.Day > 31 || o.Year < 1 || o.Year > 9999 {
				return time.Time{}, "", fmt.Errorf("dateValue: out of range")
			}
			t = time.Date(int(o.Year), time.Month(o.Month), int(max(o.Day, 1)), 0, 0, 0, 0, time.UTC)
		} else {
			if o.Seconds < -62135596800 || o.Seconds > 253402300799 || o.Nanos < 0 || o.Nanos > 999999999 {
				return time.Time{}, "", fmt.Errorf("dateValue: out of range")
			}
			t = time.Unix(int64(o.Seconds), int64(o.Nanos)).UTC()
		}
		return t, t.Format(time.RFC3339Nano), nil
	}
	s, err := scalarText(b)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("dateValue: %w", err)
	}
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, "", err
	}
	return t, s, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q", rune(want))
	}
	return nil
}

func objectKey(dec *json.Decoder) (string, error) {
	t, err := dec.Token()
	if err != nil {
		return "", err
	}
	k, ok := t.(string)
	if !ok {
		return "", fmt.Errorf("want an object key")
	}
	return k, nil
}

// skipValue consumes one JSON value token by token, holding nothing but the nesting depth.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if d, ok := t.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
				if depth > maxDepth {
					return fmt.Errorf("nesting deeper than %d", maxDepth)
				}
			case '}', ']':
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}
