package billing_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/summaries"
)

// A polling Completion finds summaries in the index without reading USAGE; a page the index
// lacks (a summary from before the index) is looked for in USAGE once two checks in a row found
// it missing with the publisher idle, not on the first (it may only be about to be indexed).
func TestCompletionReadsTheIndex(t *testing.T) {
	e := newEnv(t, billingsim.Options{})
	ctx := context.Background()
	c := events.SyncCompleted{SyncID: events.ID("sync"), Account: acct, Period: period, Status: events.SyncSucceeded}
	page := func(name string) events.PageSummary {
		s := events.PageSummary{Stage: events.StageTransformer, PageID: events.ID("page", name), SyncID: c.SyncID,
			Account: acct, Period: period, Customer: cust}
		c.Manifest.Pages = append(c.Manifest.Pages, s.PageID)
		return s
	}
	indexed, old := page("indexed"), page("old")
	idx, err := summaries.Open(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(indexed)
	if err := idx.Put(ctx, indexed, body); err != nil { // in the index only
		t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: e.js})
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.NewMessage(old.EventMeta("test"), old)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(old.NATSSubject(), m); err != nil { // in USAGE only
		t.Fatal(err)
	}

	cp := billing.NewCompletion(billing.ReconcileOptions{JS: e.js}, c)
	for i, want := range []string{"1 of 2 pages", "1 of 2 pages", ""} {
		ok, missing, err := cp.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (want == "") || !strings.Contains(missing, want) {
			t.Fatalf("check %d: complete %v, %q; want %q", i+1, ok, missing, want)
		}
	}
	if got := cp.Summaries(); len(got) != 2 || got[indexed.PageID].PageID != indexed.PageID || got[old.PageID].PageID != old.PageID {
		t.Fatalf("summaries %v", got)
	}
	// Complete, one look, finds both at once.
	if ok, missing, err := billing.Complete(ctx, billing.ReconcileOptions{JS: e.js}, c); err != nil || !ok {
		t.Fatalf("Complete: %v %q %v", ok, missing, err)
	}
}
