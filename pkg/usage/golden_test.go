package usage_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ionusage/connector/pkg/usage"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

// goldenInput is one testdata/*.json file: a page context and its lines in one of three shapes.
type goldenInput struct {
	Comment  string            `json:"comment"`
	Context  usage.PageContext `json:"context"`
	Lines    []usage.Line      `json:"lines"`     // v3 JSON-style: decoded values by column key
	CSV      string            `json:"csv"`       // v3 CSV-style: header of column keys, then rows
	V1Leaves []usage.V1Leaf    `json:"v1_leaves"` // v1 tree leaves
}

// goldenOutput is what a page normalizes to, errors reduced to their stable parts.
type goldenOutput struct {
	Records []usage.Record `json:"records"`
	Held    []usage.Record `json:"held"`
	Errors  []goldenError  `json:"errors"`
}

type goldenError struct {
	Line   int    `json:"line"`
	Column string `json:"column"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

func loadInput(t testing.TB, path string) (usage.PageContext, []usage.Line) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var in goldenInput
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	lines := in.Lines
	if in.CSV != "" {
		rows, err := csv.NewReader(strings.NewReader(in.CSV)).ReadAll()
		if err != nil {
			t.Fatalf("%s: csv: %v", path, err)
		}
		for i, row := range rows[1:] {
			l := usage.Line{Number: i + 1, Cols: map[string]string{}}
			for j, key := range rows[0] {
				l.Cols[key] = row[j]
			}
			lines = append(lines, l)
		}
	}
	for i, leaf := range in.V1Leaves {
		lines = append(lines, usage.LineFromV1(i+1, leaf))
	}
	return in.Context, lines
}

func normalizeFile(t testing.TB, path string) goldenOutput {
	t.Helper()
	pc, lines := loadInput(t, path)
	res, err := usage.NormalizePage(pc, lines, usage.DefaultChargeTable())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := goldenOutput{Records: []usage.Record{}, Held: []usage.Record{}, Errors: []goldenError{}}
	out.Records = append(out.Records, res.Records...)
	out.Held = append(out.Held, res.Held...)
	for _, e := range res.Errors {
		out.Errors = append(out.Errors, goldenError{Line: e.Line, Column: e.Column, Reason: e.Reason, Error: e.Error()})
	}
	return out
}

func goldenInputs(t testing.TB) []string {
	t.Helper()
	all, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, p := range all {
		if !strings.HasSuffix(p, ".golden.json") {
			in = append(in, p)
		}
	}
	if len(in) == 0 {
		t.Fatal("no testdata inputs")
	}
	return in
}

// TestNormalizeGolden compares every testdata input with its exact expected records.
// Run `go test ./usage/ -run Golden -update` to rewrite the expectations after a deliberate change.
func TestNormalizeGolden(t *testing.T) {
	for _, in := range goldenInputs(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			got, err := json.MarshalIndent(normalizeFile(t, in), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".json") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s; diff the output below or run with -update if the change is intended\n%s", in, golden, got)
			}
		})
	}
}
