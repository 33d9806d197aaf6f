package fetcher

import (
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
)

// A sync limited to some customers says so in its completion (filtered), so the reconciler
// never takes it for a complete re-read; an unfiltered one does not.
func TestCompletionMarksFilteredSync(t *testing.T) {
	e := newEnv(t, ionsim.Options{Seed: 3, Customers: 3, Meters: 1}, events.ModeV1, nil)
	acct := e.accts[0]
	e.start(Options{})
	all := e.completed(e.requestSync(acct, events.ModeV1, "all"), 2*time.Minute)
	if all.Status != events.SyncSucceeded || all.Filtered {
		t.Fatalf("unfiltered sync: status %s (%s), filtered %v", all.Status, all.Reason, all.Filtered)
	}
	req := events.SyncRequest{RequestID: "one", Account: acct, Period: e.period, Mode: events.ModeV1, Reason: "manual",
		RequestedBy: "test", RequestedAt: time.Now().UTC(), Customers: all.Manifest.Customers[:1]}
	msg, err := events.NewMessage(req.EventMeta("test"), req)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: e.deps.js, Logger: e.deps.log})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(req.NATSSubject(), msg); err != nil {
		t.Fatal(err)
	}
	one := e.completed(req, 2*time.Minute)
	if one.Status != events.SyncSucceeded || !one.Filtered || len(one.Manifest.Customers) != 1 {
		t.Errorf("filtered sync: status %s (%s), filtered %v, customers %v", one.Status, one.Reason, one.Filtered, one.Manifest.Customers)
	}
}
