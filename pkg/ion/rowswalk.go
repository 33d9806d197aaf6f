package ion

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// A body already in memory (a stored page, a fetched Body) is checked once with json.Valid and
// then walked in place: the rows are cut out of it and read by fastRowValues, where the
// streaming decoder scanned every row twice more (json.Decoder reading it, then decoding it
// into a RawMessage). Invalid JSON, and any valid body the walk does not expect, are left to the
// streaming decoder, so the two accept, reject and deliver alike.

// inMemory returns the unread bytes of a reader that already holds them all, consuming it.
func inMemory(body io.Reader) ([]byte, bool) {
	switch r := body.(type) {
	case *bodyReader:
		if len(r.chunks) == 1 {
			return r.chunks[0][r.off:], true
		}
		n := 0
		for _, c := range r.chunks {
			n += len(c)
		}
		b := make([]byte, n-r.off) // pooled chunks: one copy, sized once
		_, _ = io.ReadFull(r, b)
		return b, true
	case *bytes.Reader:
		b := make([]byte, r.Len())
		_, _ = r.Read(b)
		return b, true
	case *strings.Reader:
		b := make([]byte, r.Len())
		_, _ = r.Read(b)
		return b, true
	}
	return nil, false
}

// decodeReportDataBytes is decodeReportDataStream for a body json.Valid accepted. When the
// walk meets something unexpected it hands over to the streaming decoder, which passes over
// the rows fn has already had: fn sees each row once and the result is the streaming one.
func decodeReportDataBytes(b []byte, path string, cols []ReportColumn, opts decodeOpts, fn func(Row) error) (ReportMeta, error) {
	meta, delivered, err, ok := walkReportData(b, cols, opts, fn)
	if ok {
		return meta, err
	}
	return decodeReportDataStream(bytes.NewReader(b), path, cols, opts, func(r Row) error {
		if delivered > 0 {
			delivered--
			return nil
		}
		return fn(r)
	})
}

// walkReportData walks a valid body. ok is false when the streaming decoder must take over
// (delivered rows went to fn by then); err is fn's own error.
func walkReportData(b []byte, cols []ReportColumn, opts decodeOpts, fn func(Row) error) (meta ReportMeta, delivered int, err error, ok bool) {
	counted := func(r Row) error {
		delivered++
		return fn(r)
	}
	s := scan{b: b}
	if !s.consume('{') {
		return meta, delivered, nil, false
	}
	for !s.consume('}') {
		key, ok := s.key()
		if !ok {
			return meta, delivered, nil, false
		}
		switch string(key) {
		case "results":
			err, ok := walkResults(&s, cols, opts, &meta, counted)
			if !ok || err != nil {
				return meta, delivered, err, ok
			}
		case "resultCount", "result_count":
			var n Int64
			if ok = s.decode(&n); ok {
				meta.ResultCount = int64(n)
			}
		case "availableRowsCount", "available_rows_count":
			var n Int64
			if ok = s.decode(&n); ok {
				meta.AvailableRowsCount = int64(n)
			}
		case "cacheTimestamp", "cache_timestamp":
			var t Time
			if ok = s.decode(&t); ok {
				meta.CacheTimestamp = t.Time
			}
		default:
			ok = s.skipBounded()
		}
		if !ok || !s.consume(',') && (s.i >= len(s.b) || s.b[s.i] != '}') {
			return meta, delivered, nil, false
		}
	}
	if !s.end() || checkRowCount(meta) != nil {
		return meta, delivered, nil, false
	}
	meta.Truncated = meta.AvailableRowsCount > meta.ResultCount
	return meta, delivered, nil, true
}

// walkResults reads the results object: {"rows":[…], …}. ok is false when the streaming
// decoder must take over; err is fn's error.
func walkResults(s *scan, cols []ReportColumn, opts decodeOpts, meta *ReportMeta, fn func(Row) error) (err error, ok bool) {
	if s.null() {
		return nil, true
	}
	if !s.consume('{') {
		return nil, false
	}
	for !s.consume('}') {
		key, ok := s.key()
		if !ok {
			return nil, false
		}
		switch {
		case string(key) != "rows":
			if !s.skipBounded() {
				return nil, false
			}
		case s.null():
		case !s.consume('['):
			return nil, false
		default:
			rs := newRowSink(cols, opts, meta, fn)
			for !s.consume(']') {
				// Read the row in place; only one the fast path refuses is cut out for
				// encoding/json (as fastRowValues's caller does).
				start := s.i
				raws, ok := s.row(rs.scratch)
				rs.scratch = raws
				var err error
				if ok {
					err = rs.rowValues(raws)
				} else {
					s.i = start
					row, ok := s.skip()
					if !ok {
						return nil, false
					}
					err = rs.row(row)
				}
				if err != nil {
					if cb, isCB := errors.AsType[callbackError](err); isCB {
						return cb.err, true
					}
					return nil, false // a bad row: the streaming decoder reports it
				}
				if !s.consume(',') && (s.i >= len(s.b) || s.b[s.i] != ']') {
					return nil, false
				}
			}
		}
		if !s.consume(',') && (s.i >= len(s.b) || s.b[s.i] != '}') {
			return nil, false
		}
	}
	return nil, true
}

// decode unmarshals the next value into v as json.Decoder.Decode would.
func (s *scan) decode(v any) bool {
	raw, ok := s.skip()
	return ok && json.Unmarshal(raw, v) == nil
}

// skipBounded skips a value as skipValue does, refusing one nested deeper than maxDepth.
func (s *scan) skipBounded() bool {
	raw, ok := s.skip()
	if !ok {
		return false
	}
	depth, inString := 0, false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > maxDepth {
				return false
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return true
}
