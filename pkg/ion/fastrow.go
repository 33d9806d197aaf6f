package ion

import (
	"encoding/json"
	"unicode/utf8"
)

// A fast path for the shape every report row has on the wire:
// {"values":[{"valueType":"…","stringValue":"…"},{"moneyValue":{"currency":"EUR","value":1.5}},…]}.
// encoding/json's reflective decoder spent most of a page's decode time growing []rawValue
// and unmarshalling each cell; this reads the row's bytes (already validated by the stream
// decoder) in place. Anything it does not recognise exactly (an unknown or differently cased
// key, a duplicate key, an unexpected type) makes it give up, and the row is decoded by
// encoding/json as before, so both paths accept, reject and read the same rows.

// fastRowValues appends the row's values to vals[:0]. ok is false when the row must go through
// encoding/json instead.
func fastRowValues(b []byte, vals []rawValue) (_ []rawValue, ok bool) {
	s := scan{b: b}
	vals, ok = s.row(vals)
	return vals, ok && s.end()
}

// row reads one row object at s.i, leaving s.i just after it.
func (s *scan) row(vals []rawValue) (_ []rawValue, ok bool) {
	vals = vals[:0]
	if !s.consume('{') {
		return vals, false
	}
	seen := false
	if s.consume('}') {
		return vals, false // no "values": let encoding/json and makeRow decide
	}
	for {
		key, ok := s.key()
		if !ok || string(key) != "values" || seen {
			return vals, false
		}
		seen = true
		if !s.consume('[') {
			return vals, false
		}
		if !s.consume(']') {
			for {
				var rv rawValue
				if !s.value(&rv) {
					return vals, false
				}
				vals = append(vals, rv)
				if s.consume(',') {
					continue
				}
				if !s.consume(']') {
					return vals, false
				}
				break
			}
		}
		if s.consume(',') {
			continue
		}
		return vals, s.consume('}')
	}
}

// scan walks JSON that encoding/json's scanner has already accepted; it still checks bounds so
// that no input can make it panic.
type scan struct {
	b []byte
	i int
}

func (s *scan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips white space and then c, if c is next.
func (s *scan) consume(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// key reads an object key without escapes and its colon. The bytes are only compared
// (switch string(key) does not allocate).
func (s *scan) key() ([]byte, bool) {
	raw, plain, ok := s.str()
	if !ok || !plain || !s.consume(':') {
		return nil, false
	}
	return raw, true
}

// str reads a string, returning its bytes between the quotes; plain is false when it holds
// escapes, control characters or invalid UTF-8 (which encoding/json would rewrite).
func (s *scan) str() (raw []byte, plain, ok bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, false
	}
	start := s.i + 1
	plain, ascii := true, true
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			raw = s.b[start:j]
			if !ascii && !utf8.Valid(raw) {
				plain = false
			}
			return raw, plain, true
		case c == '\\':
			plain = false
			j++ // the escaped byte cannot end the string
		case c < 0x20:
			plain = false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false, false
}

// stringValue reads a JSON string as encoding/json would decode it.
func (s *scan) stringValue() (string, bool) {
	start := s.i
	raw, plain, ok := s.str()
	if !ok {
		return "", false
	}
	if plain {
		return string(raw), true
	}
	var v string
	if err := json.Unmarshal(s.b[start:s.i], &v); err != nil {
		return "", false
	}
	return v, true
}

// skip passes over one JSON value of any kind and returns its bytes, as json.RawMessage
// would hold them.
func (s *scan) skip() ([]byte, bool) {
	s.ws()
	start, depth := s.i, 0
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch c {
		case '"':
			if _, _, ok := s.str(); !ok {
				return nil, false
			}
		case '{', '[':
			depth++
			s.i++
		case '}', ']', ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return s.b[start:s.i], s.i > start // the end of a scalar
			}
			if c == '}' || c == ']' {
				depth--
			}
			s.i++
		default:
			s.i++
		}
		if depth == 0 && (c == '"' || c == '}' || c == ']') {
			return s.b[start:s.i], true
		}
	}
	return s.b[start:s.i], depth == 0 && s.i > start
}

// null reports (and consumes) a literal null.
func (s *scan) null() bool {
	s.ws()
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// Fields of a rawValue, to refuse duplicates (encoding/json would merge or overwrite them).
const (
	fValueType = 1 << iota
	fString
	fFloat
	fInt
	fMoney
	fBool
	fDate
	fLink
)

// value reads one ReportValue object into rv.
func (s *scan) value(rv *rawValue) bool {
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return true
	}
	seen := 0
	for {
		key, ok := s.key()
		if !ok {
			return false
		}
		var f int
		switch string(key) {
		case "valueType":
			f = fValueType
			if !s.null() {
				if rv.ValueType, ok = s.stringValue(); !ok {
					return false
				}
			}
		case "stringValue":
			f = fString
			if !s.null() {
				if rv.str, ok = s.stringValue(); !ok {
					return false
				}
				rv.hasStr = true
			}
		case "floatValue":
			f = fFloat
			rv.FloatValue, ok = s.skip()
		case "intValue":
			f = fInt
			rv.IntValue, ok = s.skip()
		case "moneyValue":
			f = fMoney
			rv.MoneyValue, ok = s.skip()
		case "boolValue":
			f = fBool
			rv.BoolValue, ok = s.skip()
		case "dateValue":
			f = fDate
			rv.DateValue, ok = s.skip()
		case "internalLinkValue":
			f = fLink
			ok = s.null() || s.link(rv)
		default:
			return false
		}
		if !ok || seen&f != 0 {
			return false
		}
		seen |= f
		if s.consume(',') {
			continue
		}
		return s.consume('}')
	}
}

func (s *scan) link(rv *rawValue) bool {
	if !s.consume('{') {
		return false
	}
	rv.InternalLink = &struct {
		Link string `json:"link"`
		Text string `json:"text"`
	}{}
	if s.consume('}') {
		return true
	}
	seen := 0
	for {
		key, ok := s.key()
		if !ok {
			return false
		}
		var f int
		var dst *string
		switch string(key) {
		case "link":
			f, dst = 1, &rv.InternalLink.Link
		case "text":
			f, dst = 2, &rv.InternalLink.Text
		default:
			return false
		}
		if seen&f != 0 {
			return false
		}
		seen |= f
		if !s.null() {
			if *dst, ok = s.stringValue(); !ok {
				return false
			}
		}
		if s.consume(',') {
			continue
		}
		return s.consume('}')
	}
}

// fastMoney reads {"currency":"EUR","currencyCode":"EUR","value":…} with exact keys only.
func fastMoney(b []byte) (currency, code string, value []byte, ok bool) {
	s := scan{b: b}
	if !s.consume('{') {
		return "", "", nil, false
	}
	if s.consume('}') {
		return "", "", nil, s.end()
	}
	seen := 0
	for {
		key, ok := s.key()
		if !ok {
			return "", "", nil, false
		}
		var f int
		switch string(key) {
		case "currency":
			f = 1
			if !s.null() {
				if currency, ok = s.stringValue(); !ok {
					return "", "", nil, false
				}
			}
		case "currencyCode":
			f = 2
			if !s.null() {
				if code, ok = s.stringValue(); !ok {
					return "", "", nil, false
				}
			}
		case "value":
			f = 4
			if value, ok = s.skip(); !ok {
				return "", "", nil, false
			}
		default:
			return "", "", nil, false
		}
		if seen&f != 0 {
			return "", "", nil, false
		}
		seen |= f
		if s.consume(',') {
			continue
		}
		return currency, code, value, s.consume('}') && s.end()
	}
}

// end reports whether only white space is left.
func (s *scan) end() bool {
	s.ws()
	return s.i == len(s.b)
}
