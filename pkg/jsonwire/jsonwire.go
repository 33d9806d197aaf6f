// Package jsonwire writes and reads JSON exactly as encoding/json does, without reflection, for
// the codecs on the pipeline's hot path (usage records, ledger values). Every writer here is
// byte-identical to json.Marshal of the same value; every reader accepts only what it can read
// exactly and reports ok=false otherwise, so its caller falls back to encoding/json.
package jsonwire

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// AppendDecimal is decimal.Decimal's MarshalJSON.
func AppendDecimal(b []byte, d decimal.Decimal) []byte {
	if decimal.MarshalJSONWithoutQuotes {
		return AppendDecimalString(b, d)
	}
	b = append(b, '"')
	b = AppendDecimalString(b, d)
	return append(b, '"')
}

// AppendDecimalString is d.String(). Amounts whose coefficient fits an int64 (all of Ion's) are
// formatted here: String goes through math/big, nine times per record.
func AppendDecimalString(b []byte, d decimal.Decimal) []byte {
	exp := d.Exponent()
	if exp > 0 || exp < -18 || !decimal.TrimTrailingZeros || d.NumDigits() > 18 {
		return append(b, d.String()...)
	}
	c := d.CoefficientInt64() // |c| < 1e18: exact
	if c < 0 {
		b = append(b, '-')
		c = -c
	}
	var buf [18 + 19]byte // leading zeros of the fraction, then the digits
	digits := strconv.AppendInt(buf[:0], c, 10)
	n := -int(exp) // fraction digits
	if len(digits) <= n {
		pad := n - len(digits) + 1 // a "0" integer part and the fraction's leading zeros
		digits = strconv.AppendInt(buf[:pad], c, 10)
		for i := range pad {
			digits[i] = '0'
		}
	}
	point := len(digits) - n
	frac := digits[point:]
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	b = append(b, digits[:point]...)
	if len(frac) > 0 {
		b = append(b, '.')
		b = append(b, frac...)
	}
	return b
}

// AppendTime is time.Time's MarshalJSON (RFC 3339 with nanoseconds, and its range checks).
func AppendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

// AppendUUID is uuid.UUID's MarshalText as a JSON string.
func AppendUUID(b []byte, u uuid.UUID) []byte {
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	b = append(b, '"')
	b = append(b, s[:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// AppendString is json.Marshal(s): HTML-safe escaping of <, > and &, U+2028 and U+2029
// escaped, invalid UTF-8 replaced by U+FFFD, as encoding/json's AppendString does.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// RawString returns the content of the escape-free, valid-UTF-8 JSON string at v[i:] and the
// index after it; ok is false for anything else.
func RawString(v []byte, i int) ([]byte, int, bool) {
	if i >= len(v) || v[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(v); j++ {
		switch c := v[j]; {
		case c == '"':
			s := v[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, 0, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// String reads the JSON string at v[i:]. One with escapes (AppendString writes &, < and >
// as \u00XX) is unquoted by encoding/json.
func String(v []byte, i int) (string, int, bool) {
	if s, j, ok := RawString(v, i); ok {
		return string(s), j, true
	}
	if i >= len(v) || v[i] != '"' {
		return "", 0, false
	}
	j := i + 1
	for j < len(v) && v[j] != '"' {
		if v[j] == '\\' {
			j++
		}
		j++
	}
	if j >= len(v) {
		return "", 0, false
	}
	var s string
	if json.Unmarshal(v[i:j+1], &s) != nil {
		return "", 0, false
	}
	return s, j + 1, true
}

// SkipSpace returns the index of the first non-whitespace byte at or after v[i:].
func SkipSpace(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\n' || v[i] == '\t' || v[i] == '\r') {
		i++
	}
	return i
}

// Members walks the object at v[i]: for each member it reads the key with key (String, or an
// escape-free reader for callers that leave escaped keys to encoding/json) and calls fn with the
// key and the index of the value; fn returns the index after the value. Members returns the index
// after the object; ok is false for anything but an object of that shape.
func Members(v []byte, i int, key func([]byte, int) (string, int, bool), fn func(key string, j int) (end int, ok bool)) (end int, ok bool) {
	if i >= len(v) || v[i] != '{' {
		return 0, false
	}
	i = SkipSpace(v, i+1)
	if i < len(v) && v[i] == '}' {
		return i + 1, true
	}
	for i < len(v) {
		var k string
		if k, i, ok = key(v, i); !ok {
			return 0, false
		}
		if i = SkipSpace(v, i); i >= len(v) || v[i] != ':' {
			return 0, false
		}
		if i, ok = fn(k, SkipSpace(v, i+1)); !ok || i < 0 {
			return 0, false
		}
		switch i = SkipSpace(v, i); {
		case i >= len(v):
			return 0, false
		case v[i] == ',':
			i = SkipSpace(v, i+1)
		case v[i] == '}':
			return i + 1, true
		default:
			return 0, false
		}
	}
	return 0, false
}
