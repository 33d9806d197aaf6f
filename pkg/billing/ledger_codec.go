package billing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/jsonwire"
)

// encodePartition is json.Marshal(p), byte for byte, without reflection over the records: every
// Save re-encodes up to ~1,500 of them, which made Save one of the publisher's biggest costs.
// The rest of the value (dead letters, the pending delivery, the receipt) is small and goes
// through encoding/json.
func encodePartition(p *Partition) ([]byte, error) {
	b := make([]byte, 0, 512+256*len(p.Records))
	b = append(b, `{"account":`...)
	b = jsonwire.AppendString(b, p.Account)
	b = append(b, `,"period":`...)
	b = jsonwire.AppendString(b, p.Period)
	b = append(b, `,"customer":`...)
	b = jsonwire.AppendString(b, p.Customer)
	var err error
	if p.Sum != nil {
		b = append(b, `,"sum":`...)
		if b, err = appendMarshal(b, p.Sum); err != nil {
			return nil, err
		}
	}
	if len(p.Segments) > 0 {
		b = append(b, `,"segs":`...)
		if b, err = appendMarshal(b, p.Segments); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"records":`...)
	if b, err = appendRecords(b, p.Records); err != nil {
		return nil, err
	}
	if len(p.Dead) > 0 {
		b = append(b, `,"dead":`...)
		if b, err = appendMarshal(b, p.Dead); err != nil {
			return nil, err
		}
	}
	if p.Pending != nil {
		b = append(b, `,"pending":`...)
		if b, err = appendMarshal(b, p.Pending); err != nil {
			return nil, err
		}
	}
	if p.Receipt != nil {
		b = append(b, `,"receipt":`...)
		if b, err = appendMarshal(b, p.Receipt); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendRecords is json.Marshal(recs), records sorted by id.
func appendRecords(b []byte, recs map[string]Held) ([]byte, error) {
	if recs == nil {
		return append(b, "null"...), nil
	}
	ids := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b = append(b, '{')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonwire.AppendString(b, id)
		b = append(b, ':')
		var err error
		if b, err = appendHeld(b, recs[id]); err != nil {
			return nil, fmt.Errorf("record %s: %w", id, err)
		}
	}
	return append(b, '}'), nil
}

// encodeSegment is the value of a ledger segment: {"records":{…}}, as json.Marshal writes it.
func encodeSegment(recs map[string]Held) ([]byte, error) {
	b := make([]byte, 0, 16+256*len(recs))
	b = append(b, `{"records":`...)
	b, err := appendRecords(b, recs)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendMarshal(b []byte, v any) ([]byte, error) {
	j, err := json.Marshal(v)
	return append(b, j...), err
}

// appendHeld is json.Marshal(h).
func appendHeld(b []byte, h Held) ([]byte, error) {
	b = append(b, `{"r":`...)
	b = jsonwire.AppendString(b, h.Revision)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, h.Seq, 10)
	b = append(b, `,"t":`...)
	if y := h.AsOf.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("as-of %v: year outside [0,9999]", h.AsOf)
	}
	b = append(b, '"')
	b = h.AsOf.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","c":`...)
	b = jsonwire.AppendString(b, h.Currency)
	b = append(b, `,"b":`...)
	b = jsonwire.AppendDecimal(b, h.Billed)
	b = append(b, `,"q":`...)
	b = strconv.AppendUint(b, h.StreamSeq, 10)
	b = append(b, `,"s":`...)
	switch len(h.Sinks) {
	case 0:
		if h.Sinks == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, "{}"...)
		}
	default:
		names := make([]string, 0, len(h.Sinks))
		for n := range h.Sinks {
			names = append(names, n)
		}
		slices.Sort(names)
		b = append(b, '{')
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonwire.AppendString(b, n)
			b = append(b, `:"`...)
			b = append(b, h.Sinks[n].String()...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// readSum decodes the head of a partition value up to its Sum and stops there. A value written
// before Sum existed (its records come first) is decoded in full and summed.
func readSum(v []byte) (PartitionSum, error) {
	var ps PartitionSum
	dec := json.NewDecoder(bytes.NewReader(v))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ps, fmt.Errorf("billing: ledger value: not an object (%v)", err)
	}
	for {
		t, err := dec.Token()
		if err != nil {
			return ps, fmt.Errorf("billing: ledger value: %w", err)
		}
		key, ok := t.(string)
		if !ok {
			break // '}': an empty partition
		}
		switch key {
		case "account", "period":
			var skip string
			err = dec.Decode(&skip)
		case "customer":
			err = dec.Decode(&ps.Customer)
		case "sum":
			err = dec.Decode(&ps.Sum)
			if err == nil {
				return ps, nil
			}
		default:
			p, err := decodePartition(v)
			if err != nil {
				return ps, err
			}
			return PartitionSum{Customer: p.Customer, Sum: *p.sum()}, nil
		}
		if err != nil {
			return ps, fmt.Errorf("billing: ledger value: %s: %w", key, err)
		}
	}
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
		return ps, fmt.Errorf("billing: ledger value: %w", err)
	}
	return ps, nil
}

// decodeRecords parses the records object of a partition value (v[i:] starts at it) without
// reflection, returning the records and the index after the object. ok is false when the
// value holds anything this parser does not expect (escaped strings, unknown fields): the
// caller then decodes with encoding/json.
//
// The records go into recs, or a new map when it is nil. Records with the same sinks (those of
// one delivery) share one Sinks map, and equal currencies one string: a segment of 300 records
// then costs a handful of allocations for them instead of 600 (see Partition.Records: Sinks
// maps are never changed in place).
func decodeRecords(v []byte, i int, recs map[string]Held) (map[string]Held, int, bool) {
	i = jsonwire.SkipSpace(v, i)
	if i >= len(v) || v[i] != '{' {
		return nil, 0, false
	}
	if recs == nil {
		recs = make(map[string]Held, bytes.Count(v[i:], []byte(`"r":`)))
	}
	var shared decodeShared
	end, ok := jsonwire.Members(v, i, rawText, func(id string, j int) (int, bool) {
		h, end, ok := decodeHeld(v, j, &shared)
		if ok {
			recs[id] = h
		}
		return end, ok
	})
	if !ok {
		return nil, 0, false
	}
	return recs, end, true
}

// decodeShared is what decodeRecords has decoded so far for later records to share: the sinks
// maps by their JSON text, and the last currency.
type decodeShared struct {
	sinks       map[string]map[string]uuid.UUID
	currencyRaw []byte
	currency    string
}

// decodeHeld parses one Held object at v[i:]: its values go through the same UnmarshalJSON
// methods encoding/json would call.
func decodeHeld(v []byte, i int, shared *decodeShared) (h Held, end int, ok bool) {
	end, ok = jsonwire.Members(v, i, rawText, func(key string, i int) (int, bool) {
		var err error
		ok := true
		switch key {
		case "r":
			h.Revision, i, ok = rawText(v, i)
		case "c":
			var raw []byte
			if raw, i, ok = jsonwire.RawString(v, i); ok {
				if !bytes.Equal(raw, shared.currencyRaw) {
					shared.currencyRaw, shared.currency = raw, string(raw)
				}
				h.Currency = shared.currency
			}
		case "n":
			var raw []byte
			raw, i = scalar(v, i)
			h.Seq, err = strconv.ParseInt(string(raw), 10, 64)
		case "q":
			var raw []byte
			raw, i = scalar(v, i)
			h.StreamSeq, err = strconv.ParseUint(string(raw), 10, 64)
		case "t":
			var raw []byte
			raw, i = scalar(v, i)
			err = h.AsOf.UnmarshalJSON(raw)
		case "b":
			var raw []byte
			raw, i = scalar(v, i)
			err = h.Billed.UnmarshalJSON(raw)
		case "s":
			start, end := i, skipValue(v, i)
			if end < 0 {
				return 0, false
			}
			if m, seen := shared.sinks[string(v[start:end])]; seen {
				h.Sinks, i = m, end
			} else if h.Sinks, i, ok = decodeSinks(v, start); ok && len(shared.sinks) < 64 {
				if shared.sinks == nil {
					shared.sinks = map[string]map[string]uuid.UUID{}
				}
				shared.sinks[string(v[start:end])] = h.Sinks
			}
		default:
			return 0, false
		}
		return i, ok && err == nil
	})
	return h, end, ok
}

// decodeSinks parses a Held's sink → delivery id object, or null.
func decodeSinks(v []byte, i int) (map[string]uuid.UUID, int, bool) {
	if bytes.HasPrefix(v[i:], []byte("null")) {
		return nil, i + 4, true
	}
	m := map[string]uuid.UUID{}
	end, ok := jsonwire.Members(v, i, rawText, func(name string, j int) (int, bool) {
		id, end, ok := rawText(v, j)
		if !ok {
			return 0, false
		}
		u, err := uuid.Parse(id)
		m[name] = u
		return end, err == nil
	})
	if !ok {
		return nil, 0, false
	}
	return m, end, true
}

// scalar returns the number, literal or escape-free string at v[i:] and the index after it
// (-1 when it runs off the end).
func scalar(v []byte, i int) ([]byte, int) {
	if i < len(v) && v[i] == '"' {
		for j := i + 1; j < len(v); j++ {
			switch v[j] {
			case '"':
				return v[i : j+1], j + 1
			case '\\':
				return nil, -1
			}
		}
		return nil, -1
	}
	j := i
	for j < len(v) && v[j] != ',' && v[j] != '}' && v[j] != ']' && v[j] != ' ' && v[j] != '\n' && v[j] != '\t' && v[j] != '\r' {
		j++
	}
	if j == i || j == len(v) {
		return nil, -1
	}
	return v[i:j], j
}

// decodeSegmentInto adds a segment value's records ({"records":{…}}) to recs.
func decodeSegmentInto(v []byte, recs map[string]Held) error {
	i := jsonwire.SkipSpace(v, 0)
	if i < len(v) && v[i] == '{' {
		if key, j, ok := jsonwire.RawString(v, jsonwire.SkipSpace(v, i+1)); ok && string(key) == "records" {
			if j = jsonwire.SkipSpace(v, j); j < len(v) && v[j] == ':' {
				if _, end, ok := decodeRecords(v, j+1, recs); ok {
					if end = jsonwire.SkipSpace(v, end); end < len(v) && v[end] == '}' && jsonwire.SkipSpace(v, end+1) == len(v) {
						return nil
					}
				}
			}
		}
	}
	p, err := decodePartition(v)
	if err != nil {
		return err
	}
	maps.Copy(recs, p.Records)
	return nil
}

// decodePartitionFast decodes a partition value written by encodePartition (or json.Marshal):
// the records by hand, the few other fields through encoding/json. ok is false when the value
// has an unexpected shape; decodePartition then uses encoding/json for all of it.
func decodePartitionFast(v []byte) (*Partition, bool) {
	var p Partition
	i := jsonwire.SkipSpace(v, 0)
	end, ok := jsonwire.Members(v, i, rawText, func(key string, i int) (int, bool) {
		var field any
		switch key {
		case "records":
			recs, end, ok := decodeRecords(v, i, nil)
			p.Records = recs
			return end, ok
		case "account":
			field = &p.Account
		case "period":
			field = &p.Period
		case "customer":
			field = &p.Customer
		case "sum":
			field = &p.Sum
		case "segs":
			field = &p.Segments
		case "dead":
			field = &p.Dead
		case "pending":
			field = &p.Pending
		case "receipt":
			field = &p.Receipt
		default:
			return 0, false
		}
		end := skipValue(v, i)
		return end, end >= 0 && json.Unmarshal(v[i:end], field) == nil
	})
	if !ok || jsonwire.SkipSpace(v, end) != len(v) {
		return nil, false
	}
	return &p, true
}

// skipValue returns the index just after the JSON value at v[i:] (for a number or literal,
// the delimiter after it), or -1. It does not validate: the value is decoded afterwards.
func skipValue(v []byte, i int) int {
	depth := 0
	for i < len(v) {
		switch v[i] {
		case '"':
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' {
					i++
				}
			}
			if i >= len(v) {
				return -1
			}
			i++
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return -1
}

// rawText is jsonwire.RawString as a string: escape-free, valid UTF-8 JSON strings only.
func rawText(v []byte, i int) (string, int, bool) {
	b, j, ok := jsonwire.RawString(v, i)
	return string(b), j, ok
}

// recordIDs returns the keys of a partition value's records object without decoding the
// records, and the segments a head names. ok is false when the value has a shape this parser
// does not expect; the caller then decodes it in full.
func recordIDs(v []byte) (ids, segs []string, ok bool) {
	_, ok = jsonwire.Members(v, jsonwire.SkipSpace(v, 0), rawText, func(key string, i int) (int, bool) {
		switch key {
		case "records":
			var end int
			var ok bool
			ids, end, ok = recordKeys(v, i)
			return end, ok
		case "segs":
			end := skipValue(v, i)
			return end, end >= 0 && json.Unmarshal(v[i:end], &segs) == nil
		default:
			return skipValue(v, i), true
		}
	})
	if !ok {
		return nil, nil, false
	}
	return ids, segs, true
}

// recordKeys returns the keys of the records object at v[i:] and the index after it.
func recordKeys(v []byte, i int) (ids []string, end int, ok bool) {
	if bytes.HasPrefix(v[i:], []byte("null")) {
		return nil, i + 4, true
	}
	ids = make([]string, 0, bytes.Count(v[i:], []byte(`"r":`)))
	end, ok = jsonwire.Members(v, i, rawText, func(id string, j int) (int, bool) {
		ids = append(ids, id)
		j = skipValue(v, j)
		return j, j >= 0
	})
	if !ok {
		return nil, 0, false
	}
	return ids, end, true
}
