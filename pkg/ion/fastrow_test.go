package ion

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// slowRow is how every row was decoded before the fast path: encoding/json into []rawValue.
func slowRow(cols []ReportColumn, b []byte) (Row, error) {
	var raw struct {
		Values []rawValue `json:"values"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Row{}, err
	}
	for i := range raw.Values {
		raw.Values[i].hasStr = false // never set by encoding/json; keeps the comparison honest
	}
	return makeRow(cols, raw.Values, nil)
}

// fastRow is what decodeResults does now: the fast path, else encoding/json.
func fastRow(cols []ReportColumn, b []byte) (Row, bool, error) {
	raws, ok := fastRowValues(b, nil)
	if !ok {
		r, err := slowRow(cols, b)
		return r, false, err
	}
	r, err := makeRow(cols, raws, nil)
	return r, true, err
}

func describeRow(r Row, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	var sb strings.Builder
	for _, v := range r.Values {
		fmt.Fprintf(&sb, "%q %q %s %q %v %s %q %v\n", v.Type, v.Text, v.Number.String(), v.Currency, v.Bool,
			v.Time.Format("2006-01-02T15:04:05.999999999Z07:00"), v.Link, v.Null)
	}
	return sb.String()
}

func checkSameRow(t *testing.T, cols []ReportColumn, b []byte) (fast bool) {
	t.Helper()
	want := describeRow(slowRow(cols, b))
	r, fast, err := fastRow(cols, b)
	if got := describeRow(r, err); got != want {
		t.Fatalf("row %s\nfast path (used %v):\n%s\nencoding/json:\n%s", b, fast, got, want)
	}
	return fast
}

// Every row of the test bodies decodes the same through the fast path, and the fast path takes
// the ordinary rows.
func TestFastRowMatchesEncodingJSON(t *testing.T) {
	var bodies [][]byte
	if b, err := os.ReadFile("testdata/report_data.json"); err == nil {
		bodies = append(bodies, b)
	} else {
		t.Fatal(err)
	}
	fastRows, rows := 0, 0
	for _, body := range bodies {
		var env struct {
			Results struct {
				Rows []json.RawMessage `json:"rows"`
			} `json:"results"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatal(err)
		}
		for _, r := range env.Results.Rows {
			rows++
			if checkSameRow(t, nil, r) {
				fastRows++
			}
		}
	}
	if rows == 0 || fastRows != rows {
		t.Fatalf("fast path took %d of %d rows", fastRows, rows)
	}
}

// Edge cases: each is decoded the same, by the fast path or by falling back.
func TestFastRowEdgeCases(t *testing.T) {
	cases := []struct {
		row  string
		fast bool // whether the fast path should take it
	}{
		{`{"values":[]}`, true},
		{` { "values" : [ { "valueType" : "STRING" , "stringValue" : " a b " } ] } `, true},
		{`{"values":[{"stringValue":"M\u00fcller \u0026 S\u00f8n","valueType":"STRING"}]}`, true},
		{`{"values":[{"stringValue":"Müller & Søn \ud83d\ude00 \ud800 x","valueType":"STRING"}]}`, true},
		{`{"values":[{"stringValue":"bad ` + "\xff" + ` utf8"}]}`, true},
		{`{"values":[{"stringValue":null,"valueType":null},{}]}`, true},
		{`{"values":[{"floatValue":1.50},{"intValue":"0042"},{"floatValue":-0.0},{"floatValue":1e2},{"floatValue":"1E-3"}]}`, true},
		{`{"values":[{"floatValue":null,"intValue":7},{"floatValue":"","valueType":"FLOAT"}]}`, true},
		{`{"values":[{"moneyValue":{"currency":"EUR","value":0.2549043173}},{"moneyValue":{"currencyCode":"USD","value":"12.30"}}]}`, true},
		{`{"values":[{"moneyValue":{"value":1,"currency":null}},{"moneyValue":{}},{"moneyValue":null,"stringValue":"x"}]}`, true},
		{`{"values":[{"moneyValue":{"Currency":"EUR","value":1}}]}`, true},                  // money falls back alone
		{`{"values":[{"moneyValue":{"currency":"EUR","currency":"USD","value":1}}]}`, true}, // duplicate money key
		{`{"values":[{"moneyValue":{"currency":5,"value":1}}]}`, true},                      // error either way
		{`{"values":[{"moneyValue":[1]}]}`, true},                                           // error either way
		{`{"values":[{"moneyValue":{"currency":"EUR","value":{"x":1}}}]}`, true},            // error either way
		{`{"values":[{"boolValue":true},{"boolValue":"false"},{"boolValue":"x"}]}`, true},   // error either way
		{`{"values":[{"dateValue":"2025-01-02T00:00:00Z"},{"dateValue":{"seconds":"1735776000","nanos":5}},{"dateValue":{"year":2025,"month":1,"day":2}}]}`, true},
		{`{"values":[{"dateValue":"2025-01-02"},{"stringValue":"2025-01-03 10:00:00","valueType":"date"}]}`, true},
		{`{"values":[{"dateValue":"yesterday"}]}`, true},
		{`{"values":[{"internalLinkValue":{"link":"/c/1","text":"ACME"}},{"internalLinkValue":null},{"internalLinkValue":{}}]}`, true},
		{`{"values":[{"internalLinkValue":{"link":"/c/1","extra":1}}]}`, false},
		{`{"values":[{"stringValue":"1.5","valueType":"MONEY"},{"stringValue":"x","valueType":"INT"}]}`, true}, // error either way
		{`{"values":[{"intValue":"9223372036854775808"},{"floatValue":"1e400"}]}`, true},                       // exponent error
		{`{"Values":[{"stringValue":"a"}]}`, false},
		{`{"values":[{"StringValue":"a"}]}`, false},
		{`{"values":[{"stringValue":"a","stringValue":"b"}]}`, false},
		{`{"values":[{"stringValue":"a"}],"values":[]}`, false},
		{`{"values":[{"stringValue":"a"}],"other":1}`, false},
		{`{"values":null}`, false},
		{`{"values":[null]}`, false},
		{`{"values":[{"stringValue":1}]}`, false},
		{`{"values":[{"valueType":1}]}`, false},
		{`{"values":{}}`, false},
		{`{}`, false},
		{`{"v\u0061lues":[]}`, false},
	}
	for _, c := range cases {
		if !json.Valid([]byte(c.row)) {
			t.Fatalf("not JSON: %s", c.row)
		}
		if fast := checkSameRow(t, nil, []byte(c.row)); fast != c.fast {
			t.Errorf("row %s: fast path used %v, want %v", c.row, fast, c.fast)
		}
	}
	// Against columns: a row of the wrong width is refused the same way.
	cols := testColumns()
	checkSameRow(t, cols, []byte(`{"values":[{"stringValue":"a"}]}`))
}

func FuzzFastRow(f *testing.F) {
	f.Add([]byte(`{"values":[{"valueType":"MONEY","moneyValue":{"currency":"EUR","value":1.5}},{"stringValue":"x"}]}`))
	f.Add([]byte(`{"values":[{"internalLinkValue":{"link":"a","text":"b"}},{"dateValue":{"year":1}}]}`))
	f.Add([]byte(`{"values":[{"floatValue":[1,{"a":"]"}]},{"boolValue":true}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return // the stream decoder only hands over valid JSON
		}
		checkSameRow(t, nil, b)
	})
}

// The fast scalar path gives what encoding/json gives.
func FuzzScalarText(f *testing.F) {
	for _, s := range []string{`"a"`, `" x "`, `"\u00e9"`, `12`, `-0.5e+3`, `01`, `1.`, `-`, `true`, `null`, `"a\"b"`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gerr := scalarText(b)
		want, werr := slowScalarText(b)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: got %q, %v; want %q, %v", b, got, gerr, want, werr)
		}
	})
}

// slowScalarText is scalarText before its fast paths.
func slowScalarText(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return "", errors.New("empty value")
	case bytes.Equal(b, []byte("null")):
		return "", nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", errors.New("bad string")
		}
		return strings.TrimSpace(s), nil
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return "", errors.New("bad number")
		}
		return n.String(), nil
	case bytes.Equal(b, []byte("true")), bytes.Equal(b, []byte("false")):
		return string(b), nil
	}
	return "", errors.New("other")
}

func TestIsTotalMarkerASCIIFastPath(t *testing.T) {
	slow := func(t string) bool {
		l := strings.ToLower(t)
		for _, m := range subtotalMarkers {
			if l == m || strings.HasPrefix(l, m+":") || strings.HasPrefix(l, m+" for ") || strings.HasPrefix(l, m+" (") {
				return true
			}
		}
		return false
	}
	for _, s := range []string{"", "Total", "TOTAL", "total:", "Total: ACME", "Totally Fine Ltd", "Total For x", "total fo",
		"Subtotal (EUR)", "Sub Total", "sub-total:x", "Grand Total", "grand totals", "GRAND TOTAL FOR all", "Totalx",
		"Sub total (", "Storage", "g", "ſubtotal", "Total (", "KTotal"} {
		if got, want := isTotalMarker(s), slow(s); got != want {
			t.Errorf("isTotalMarker(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestReadBody(t *testing.T) {
	for _, n := range []int{0, 1, bodyChunk - 1, bodyChunk, bodyChunk + 1, 3*bodyChunk + 17} {
		src := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		b, err := ReadBody(iotestHalf{bytes.NewReader(src)}, int64(n))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, _ := io.ReadAll(b.Reader())
		sum := sha256.Sum256(src)
		if !bytes.Equal(got, src) || !bytes.Equal(b.Bytes(), src) || b.Len() != int64(n) || b.SHA256() != hex.EncodeToString(sum[:]) {
			t.Fatalf("%d bytes: read back %d bytes, len %d, sha %s", n, len(got), b.Len(), b.SHA256())
		}
		// Fixed-size reads get whole pieces across chunk boundaries (the object store's chunking).
		r, piece := b.Reader(), make([]byte, bodyChunk+bodyChunk/2)
		if k, _ := r.Read(piece); k != min(n, len(piece)) {
			t.Fatalf("%d bytes: a read of %d returned %d", n, len(piece), k)
		}
		b.Release()
		if n > 0 {
			if _, err := ReadBody(bytes.NewReader(src), int64(n-1)); !errors.Is(err, ErrBodyTooLarge) {
				t.Fatalf("%d bytes over a limit of %d: %v", n, n-1, err)
			}
		}
	}
	o := BodyOf([]byte("abc"))
	if got, _ := io.ReadAll(o.Reader()); string(got) != "abc" || o.Len() != 3 {
		t.Fatalf("BodyOf: %q", got)
	}
}

// iotestHalf returns at most half of what is asked, so chunks fill over several reads.
type iotestHalf struct{ r io.Reader }

func (h iotestHalf) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:len(p)/2]
	}
	return h.r.Read(p)
}

// A number's text is taken as its String() only when it is exactly that.
func FuzzDecimalText(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.50", "-0.5", "12.345", "1e3", "007", "0.000", "-12", "1.", ".5", `"2.5"`, `" 3 "`, "123456789012345678901234.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, text, err := parseDecimalJSONText([]byte(s))
		if err != nil {
			return
		}
		if text != n.String() {
			t.Fatalf("%q: text %q, String() %q", s, text, n.String())
		}
		if isCanonicalDecimal(s) {
			d, err := decimal.NewFromString(s)
			if err != nil || d.String() != s {
				t.Fatalf("%q counted canonical: %v %q", s, err, d.String())
			}
		}
	})
}
