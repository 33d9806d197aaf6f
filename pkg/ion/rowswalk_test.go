package ion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// streamOnly hides the reader's type: decodeReportDataOpts then streams, as it did for every body.
type streamOnly struct{ io.Reader }

// describeDecode runs one decode and writes down everything the caller can observe: each row fn
// got (in order), the meta and the error.
func describeDecode(body io.Reader, cols []ReportColumn, opts decodeOpts, failAt int) string {
	var sb strings.Builder
	n := 0
	meta, err := decodeReportDataOpts(body, "/p", cols, opts, func(r Row) error {
		n++
		sb.WriteString(describeRow(r, nil))
		sb.WriteString("--\n")
		if n == failAt {
			return errors.New("fn failed")
		}
		return nil
	})
	fmt.Fprintf(&sb, "meta %+v\nerr %v", meta, err)
	return sb.String()
}

// checkSameDecode compares the in-memory walk with the streaming decoder on b.
func checkSameDecode(t *testing.T, name string, b []byte) {
	t.Helper()
	for _, cols := range [][]ReportColumn{testColumns(), nil} {
		for _, opts := range []decodeOpts{{}, {subtotals: true, reuse: true}} {
			for _, failAt := range []int{0, 2} {
				want := describeDecode(streamOnly{bytes.NewReader(b)}, cols, opts, failAt)
				half := len(b) / 2
				chunked := &Body{chunks: [][]byte{b[:half], b[half:]}, n: int64(len(b))}
				for kind, r := range map[string]io.Reader{"bytes": bytes.NewReader(b), "string": strings.NewReader(string(b)),
					"body": BodyOf(b).Reader(), "chunked body": chunked.Reader()} {
					if got := describeDecode(r, cols, opts, failAt); got != want {
						t.Fatalf("%s (%s reader, %d cols, %+v, fn fails at %d):\nwalk:\n%s\nstream:\n%s", name, kind, len(cols), opts, failAt, got, want)
					}
				}
			}
		}
	}
}

func TestWalkMatchesStreamingDecoder(t *testing.T) {
	full, err := os.ReadFile("testdata/report_data.json")
	if err != nil {
		t.Fatal(err)
	}
	var row string // the first row of the test body
	{
		i := bytes.Index(full, []byte(`"rows"`))
		s := scan{b: full, i: i}
		if _, ok := s.key(); !ok || !s.consume('[') {
			t.Fatal("test body has no rows")
		}
		raw, ok := s.skip()
		if !ok {
			t.Fatal("test body has no rows")
		}
		row = string(raw)
	}
	bodies := map[string]string{
		"test body":          string(full),
		"indented":           strings.ReplaceAll(strings.ReplaceAll(string(full), `,"`, ",\n  \""), `":`, `" : `),
		"empty":              `{}`,
		"no rows":            `{"results":{"rows":[]},"resultCount":"0","availableRowsCount":12}`,
		"null results":       `{"results":null}`,
		"null rows":          `{"results":{"rows":null,"x":1}}`,
		"rows twice":         `{"results":{"rows":[` + row + `],"rows":[` + row + `,` + row + `]},"resultCount":3}`,
		"results twice":      `{"results":{"rows":[` + row + `]},"results":{"rows":[` + row + `]},"resultCount":1}`,
		"unknown fields":     `{"report":{"a":[1,{"b":null}]},"results":{"meta":[[]],"rows":[` + row + `]},"x":"y\"z"}`,
		"escaped key":        `{"r\u0065sults":{"rows":[` + row + `]}}`,
		"bad results":        `{"results":[]}`,
		"bad rows":           `{"results":{"rows":{}}}`,
		"bad row late":       `{"results":{"rows":[` + row + `,` + row + `,` + row + `,{"values":[1]}]}}`,
		"row mismatch late":  `{"results":{"rows":[` + row + `,` + row + `,` + row + `,{"values":[]}]}}`,
		"scalar row":         `{"results":{"rows":[` + row + `,` + row + `,` + row + `,7]}}`,
		"count short":        `{"results":{"rows":[` + row + `,` + row + `,` + row + `]},"resultCount":5}`,
		"count over":         `{"results":{"rows":[` + row + `,` + row + `,` + row + `]},"resultCount":1}`,
		"bad count late":     `{"results":{"rows":[` + row + `,` + row + `,` + row + `]},"resultCount":"x"}`,
		"bad timestamp":      `{"results":{"rows":[` + row + `]},"cacheTimestamp":7}`,
		"timestamp":          `{"results":{"rows":[]},"cache_timestamp":"2025-06-02T02:00:41Z","result_count":0,"available_rows_count":0}`,
		"deep unknown":       `{"x":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`,
		"deep enough":        `{"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`,
		"deep in results":    `{"results":{"x":` + strings.Repeat(`{"a":`, maxDepth+1) + `1` + strings.Repeat("}", maxDepth+1) + `}}`,
		"brackets in string": `{"x":"` + strings.Repeat("[", maxDepth+1) + `"}`,
		"not an object":      `[]`,
		"null body":          `null`,
		"invalid late":       `{"results":{"rows":[` + row + `,` + row + `,` + row + `,}]}}`,
		"trailing data":      `{"results":{"rows":[` + row + `]}} {}`,
		"truncated":          string(full[:len(full)/2]),
		"blank":              ``,
	}
	// Bodies the walk must leave to the streaming decoder; it takes every other one.
	streamed := map[string]bool{"escaped key": true, "bad results": true, "bad rows": true, "bad row late": true,
		"row mismatch late": true, "scalar row": true, "count short": true, "bad count late": true, "bad timestamp": true,
		"deep unknown": true, "deep in results": true, "not an object": true, "null body": true}
	for name, b := range bodies {
		checkSameDecode(t, name, []byte(b))
		if !json.Valid([]byte(b)) {
			continue
		}
		_, _, _, walked := walkReportData([]byte(b), testColumns(), decodeOpts{}, func(Row) error { return nil })
		if walked == streamed[name] {
			t.Errorf("%s: walked %v, want %v", name, walked, !streamed[name])
		}
	}
}

func FuzzWalkMatchesStreamingDecoder(f *testing.F) {
	if b, err := os.ReadFile("testdata/report_data.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"results":{"rows":[{"values":[{"stringValue":"a"},{"intValue":"1"}]}],"x":[]},"resultCount":"1"}`))
	f.Add([]byte(`{"results":null,"availableRowsCount":1e3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSameDecode(t, "fuzz", b)
	})
}

// BenchmarkDecodeReportPage decodes a page of 1,500 rows as the transformer does (transient
// rows) through the streaming decoder (what every body took before) and through the walk.
func BenchmarkDecodeReportPage(b *testing.B) {
	full, err := os.ReadFile("testdata/report_data.json")
	if err != nil {
		b.Fatal(err)
	}
	i := bytes.Index(full, []byte(`"rows"`))
	s := scan{b: full, i: i}
	if _, ok := s.key(); !ok || !s.consume('[') {
		b.Fatal("test body has no rows")
	}
	start := s.i
	var rows [][]byte
	for !s.consume(']') {
		raw, _ := s.skip()
		rows = append(rows, raw)
		s.consume(',')
	}
	var page bytes.Buffer
	page.Write(full[:start])
	for n := range 1500 {
		if n > 0 {
			page.WriteByte(',')
		}
		page.Write(rows[n%len(rows)])
	}
	page.WriteString(`]},"resultCount":"1500","availableRowsCount":"1500"}`)
	body := page.Bytes()
	for name, reader := range map[string]func() io.Reader{
		"stream": func() io.Reader { return streamOnly{bytes.NewReader(body)} },
		"walk":   func() io.Reader { return bytes.NewReader(body) },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := decodeReportDataOpts(reader(), "/p", testColumns(), decodeOpts{reuse: true}, func(Row) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
