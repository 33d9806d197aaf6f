package fetcher

import (
	"context"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/pause"
)

// TestPausedAccountHeldThenResumed: a paused account's request is parked, not fetched (Ion is
// never called, nothing completes, nothing dead-letters); resume re-publishes it and the sync
// then completes in full: nothing lost.
func TestPausedAccountHeldThenResumed(t *testing.T) {
	e := newEnv(t, ionsim.Options{Seed: 5, Customers: 2, Meters: 1}, events.ModeV3, nil)
	acct := e.accts[0]
	ctx := context.Background()
	kv, err := pause.Bucket(ctx, e.deps.js)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := pause.Pause(ctx, kv, acct, pause.Info{PausedAt: time.Now(), By: "test", Reason: "invoice run"}); err != nil || !ok {
		t.Fatalf("pause: %v %v", ok, err)
	}
	e.start(Options{})
	req := e.requestSync(acct, events.ModeV3, "while-paused")
	var held []pause.Held
	deadline := time.Now().Add(20 * time.Second)
	for len(held) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if held, err = pause.ListHeld(ctx, kv, acct); err != nil {
			t.Fatal(err)
		}
	}
	if len(held) != 1 || held[0].Subject != req.NATSSubject() {
		t.Fatalf("parked %+v, want the request", held)
	}
	time.Sleep(time.Second) // a wrongly processed request would reach Ion within this
	if n := e.sim.Stats().Requests; len(n) != 0 {
		t.Errorf("a paused account called Ion: %v", n)
	}
	if n := e.count(events.StreamSync, events.SyncCompletedSubject(acct)); n != 0 {
		t.Errorf("%d completions while paused", n)
	}
	if n := e.count(events.StreamDLQ, "dlq.v1.>"); n != 0 {
		t.Errorf("%d dead letters while paused", n)
	}

	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: e.deps.js})
	if err != nil {
		t.Fatal(err)
	}
	n, was, err := pause.Resume(ctx, kv, pub, acct)
	if err != nil || n != 1 || !was {
		t.Fatalf("resume: %d re-published, was paused %v, err %v", n, was, err)
	}
	c := e.completed(req, 2*time.Minute)
	if c.Status != events.SyncSucceeded {
		t.Fatalf("sync after resume %s: %s", c.Status, c.Reason)
	}
	_, sums := e.pages(acct)
	e.checkTotals(acct, c, sums)
	if held, _ := pause.ListHeld(ctx, kv, acct); len(held) != 0 {
		t.Errorf("still parked after resume: %d", len(held))
	}
	if n, was, err := pause.Resume(ctx, kv, pub, acct); n != 0 || was || err != nil {
		t.Errorf("second resume: %d %v %v", n, was, err)
	}
}
