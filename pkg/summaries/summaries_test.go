package summaries_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/summaries"
)

// Read returns an account's and period's latest transformer summaries, then only what was
// indexed after the revision it returned; other periods, other stages and stray values are not
// summaries of the period.
func TestIndexReadsIncrementally(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	if err := bus.Provision(ctx, js, bus.Topology{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	idx, err := summaries.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	put := func(s events.PageSummary) {
		t.Helper()
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := idx.Put(ctx, s, b); err != nil {
			t.Fatal(err)
		}
	}
	page := func(name, period string, good int) events.PageSummary {
		s := events.PageSummary{Stage: events.StageTransformer, PageID: events.ID("page", name), Account: "acct 1", Period: period}
		s.Good.Count = good
		return s
	}
	put(page("a", "2025-04", 1))
	put(page("a", "2025-04", 2)) // the page transformed again: the later one counts
	put(page("b", "2025-04", 1))
	put(page("c", "2025-05", 1)) // another period
	kv, err := js.KeyValue(ctx, bus.BucketSummaries)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, summaries.Key("acct 1", "2025-04", uuid.New()), []byte("not json")); err != nil {
		t.Fatal(err)
	}

	got := map[uuid.UUID]events.PageSummary{}
	rev, err := idx.Read(ctx, "acct 1", "2025-04", 0, got)
	if err != nil || len(got) != 2 || got[page("a", "", 0).PageID].Good.Count != 2 {
		t.Fatalf("first read: %d summaries (%+v), %v", len(got), got, err)
	}
	again := map[uuid.UUID]events.PageSummary{}
	if rev2, err := idx.Read(ctx, "acct 1", "2025-04", rev, again); err != nil || len(again) != 0 || rev2 != rev {
		t.Fatalf("nothing new: %d summaries, revision %d → %d, %v", len(again), rev, rev2, err)
	}
	put(page("d", "2025-04", 1))
	if _, err := idx.Read(ctx, "acct 1", "2025-04", rev, again); err != nil || len(again) != 1 {
		t.Fatalf("after one more: %+v, %v", again, err)
	}
}
