package usage_test

import (
	"encoding/json"
	"testing"

	"github.com/ionusage/connector/pkg/usage"
)

// TestFOCUSColumns checks every record of every golden input against the column table: present,
// right JSON type, null only where FOCUS allows it, and the rules FOCUS states between columns.
func TestFOCUSColumns(t *testing.T) {
	n := 0
	for _, in := range goldenInputs(t) {
		out := normalizeFile(t, in)
		for i, rec := range append(out.Records, out.Held...) {
			b, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			n++
			for _, e := range usage.CheckFOCUS(b) {
				t.Errorf("%s record %d: %v", in, i, e)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d records checked", n)
	}
}
