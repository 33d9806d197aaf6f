package transformer

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/usage"
)

// A transformer summary lists exactly the ids of the page's good records, sorted, one each, so
// the reconciler can tell what a complete re-read contains.
func TestSummaryListsRecordIDs(t *testing.T) {
	for _, in := range goldenPages(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			out := transformFile(t, in)
			s := out.Summary
			if len(out.Records) == 0 {
				t.Fatal("golden page without records")
			}
			if !s.Lists() || len(s.RecordIDs) != len(out.Records) {
				t.Fatalf("summary lists %d ids, good count %d, records %d", len(s.RecordIDs), s.Good.Count, len(out.Records))
			}
			want := map[uuid.UUID]bool{}
			for _, r := range out.Records {
				want[r.RecordID] = true
			}
			for i, id := range s.RecordIDs {
				if !want[id] {
					t.Errorf("listed id %s is not a good record of the page", id)
				}
				if i > 0 && bytes.Compare(s.RecordIDs[i-1][:], id[:]) >= 0 {
					t.Errorf("ids not sorted and unique at %d", i)
				}
			}
		})
	}
	// Above the bound the list is left out (the sync then makes no reversals), never truncated.
	if ids := recordIDs(make([]usage.Record, events.MaxSummaryRecordIDs+1)); ids != nil {
		t.Errorf("%d ids listed above the bound", len(ids))
	}
}
