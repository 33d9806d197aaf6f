package ion

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Ion serialises int64 as JSON strings (grpc-gateway) but not everywhere, and money both as
// numbers and as decimal strings. These small types accept every observed form so a wire
// change on one endpoint never becomes a decode failure or, worse, a float rounding.

// ID is an identifier that arrives as a JSON string or a JSON number ("123" or 123). It is
// kept as text so that large or non-numeric ids survive unchanged.
type ID string

// UnmarshalJSON accepts a string, a number or null.
func (id *ID) UnmarshalJSON(b []byte) error {
	s, err := scalarText(b)
	if err != nil {
		return fmt.Errorf("ion: id: %w", err)
	}
	*id = ID(s)
	return nil
}

// Int64 is an integer that arrives as a JSON number or as a decimal string ("3" or 3).
type Int64 int64

// UnmarshalJSON accepts a string, a number or null (0). Fractional or empty input is an error
// except for the empty string, which is 0.
func (n *Int64) UnmarshalJSON(b []byte) error {
	s, err := scalarText(b)
	if err != nil {
		return fmt.Errorf("ion: int64: %w", err)
	}
	if s == "" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("ion: int64: not an integer: %q", truncate(s, 40))
	}
	*n = Int64(v)
	return nil
}

// Decimal is an exact decimal that arrives as a JSON number or as a decimal string. It is
// never routed through float64.
type Decimal struct{ decimal.Decimal }

// UnmarshalJSON accepts a number, a decimal string, "" or null (both zero).
func (d *Decimal) UnmarshalJSON(b []byte) error {
	v, err := parseDecimalJSON(b)
	if err != nil {
		return err
	}
	d.Decimal = v
	return nil
}

// MarshalJSON writes the exact value as a string, the project's wire form for money.
func (d Decimal) MarshalJSON() ([]byte, error) { return json.Marshal(d.Decimal.String()) }

func parseDecimalJSON(b []byte) (decimal.Decimal, error) {
	s, err := scalarText(b)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("ion: decimal: %w", err)
	}
	return parseDecimal(s)
}

// parseDecimalJSONText is parseDecimalJSON that also returns the number's String(), taken
// from the input when it is already in that form.
func parseDecimalJSONText(b []byte) (decimal.Decimal, string, error) {
	s, err := scalarText(b)
	if err != nil {
		return decimal.Decimal{}, "", fmt.Errorf("ion: decimal: %w", err)
	}
	n, err := parseDecimal(s)
	if err != nil {
		return n, "", err
	}
	if isCanonicalDecimal(s) {
		return n, s, nil
	}
	return n, n.String(), nil
}

// isCanonicalDecimal reports whether decimal.Decimal.String gives s back for the number s:
// -?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?, but not "-0".
func isCanonicalDecimal(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
		if i == len(s) {
			return s == "0" // "-0" prints as "0"
		}
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i == len(s) {
		return true
	}
	if s[i] != '.' || s[len(s)-1] == '0' || i+1 == len(s) {
		return false
	}
	for i++; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// maxExponent bounds decimal exponents accepted from the wire.
const maxExponent = 64

func parseDecimal(s string) (decimal.Decimal, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return decimal.Zero, nil
	}
	// decimal.NewFromString accepts exponents, which JSON numbers may carry; it rejects
	// NaN/Inf, which is what we want for money.
	v, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("ion: decimal: not a number: %q", truncate(s, 40))
	}
	// "1e999999999" parses cheaply but expands to a billion digits when printed or added to a
	// sum; no amount or quantity comes near this.
	if e := v.Exponent(); e > maxExponent || e < -maxExponent {
		return decimal.Decimal{}, fmt.Errorf("ion: decimal: exponent out of range: %q", truncate(s, 40))
	}
	return v, nil
}

// Time is an RFC 3339 timestamp with or without fractional seconds; a bare date or a
// timestamp without zone is read as UTC, and "" or null is the zero time.
type Time struct{ time.Time }

// UnmarshalJSON accepts the forms above.
func (t *Time) UnmarshalJSON(b []byte) error {
	s, err := scalarText(b)
	if err != nil {
		return fmt.Errorf("ion: time: %w", err)
	}
	v, err := parseTime(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

var timeLayouts = []string{
	time.RFC3339Nano, // also accepts no fraction
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if v, err := time.Parse(l, s); err == nil {
			return v.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("ion: time: unrecognised timestamp %q", truncate(s, 40))
}

// scalarText returns the text of a JSON string, number, or bool; null gives "".
func scalarText(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return "", fmt.Errorf("empty value")
	case bytes.Equal(b, []byte("null")):
		return "", nil
	case b[0] == '"':
		// Most strings need no unescaping: read them in place (encoding/json's own copy of
		// the bytes cost a reflective call per cell).
		sc := scan{b: b}
		if raw, plain, ok := sc.str(); ok && plain && sc.i == len(b) {
			return strings.TrimSpace(string(raw)), nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", fmt.Errorf("bad string")
		}
		return strings.TrimSpace(s), nil
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		if isJSONNumber(b) {
			return string(b), nil // what json.Number holds
		}
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return "", fmt.Errorf("bad number")
		}
		return n.String(), nil
	case bytes.Equal(b, []byte("true")), bytes.Equal(b, []byte("false")):
		return string(b), nil
	default:
		return "", fmt.Errorf("want a string or number, got %s", jsonKind(b[0]))
	}
}

// isJSONNumber reports whether b is exactly one JSON number:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func isJSONNumber(b []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	default:
		return "an unexpected token"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
