package fetcher

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
)

// planOnly plans req with a replica that does not consume (its tasks stay queued for the
// replica the test starts next) and returns the number of tasks.
func (e *env) planOnly(req events.SyncRequest) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := e.deps.run(ctx, Options{Holder: "planner"})
	if err != nil {
		e.t.Fatal(err)
	}
	msg, err := events.NewMessage(req.EventMeta("test"), req)
	if err != nil {
		e.t.Fatal(err)
	}
	msg.SetContext(ctx)
	if err := s.syncRequested(msg); err != nil {
		e.t.Fatal(err)
	}
	p, _, err := s.loadPlan(ctx, req.SyncID())
	if err != nil {
		e.t.Fatal(err)
	}
	if p.Error != "" || len(p.pending()) == 0 {
		e.t.Fatalf("plan error %q, %d pending tasks", p.Error, len(p.pending()))
	}
	return len(p.pending())
}

// TestAccountRemovedMidSyncEndsFailed: the tasks of a planned sync run on a replica whose
// configuration no longer has the account. Each task fails permanently; the sync must still
// complete, as failed, naming the reason (it used to stay pending forever).
func TestAccountRemovedMidSyncEndsFailed(t *testing.T) {
	e := newEnv(t, ionsim.Options{Seed: 3, Customers: 3, Meters: 1}, events.ModeV3, nil)
	acct := e.accts[0]
	req := e.syncRequest(acct, events.ModeV3, "orphaned")
	tasks := e.planOnly(req)

	cfg := *e.deps.cfg
	cfg.Accounts = nil
	deps := e.deps.sd
	deps.Config = &cfg
	e.startWith(deps, Options{Holder: "reloaded"})

	c := e.completed(req, 2*time.Minute)
	if c.Status != events.SyncFailed || !strings.Contains(c.Reason, `account "`+acct+`" is no longer configured`) {
		t.Errorf("status %s reason %q, want failed because the account is no longer configured", c.Status, c.Reason)
	}
	if len(c.Manifest.Pages) != 0 {
		t.Errorf("failed sync lists %d pages", len(c.Manifest.Pages))
	}
	if !strings.Contains(c.Reason, "fetch failed") || (tasks > 3) != strings.Contains(c.Reason, "more)") {
		t.Errorf("reason %q does not list the %d failed tasks", c.Reason, tasks)
	}
	// The task messages are dead-lettered too, and so is the failed sync.
	dl := e.deadLetterWhere("a permanent task failure", time.Minute, func(dl events.DeadLetter) bool {
		return dl.Reason == bus.ReasonPermanent && strings.Contains(dl.Error, "no longer configured")
	})
	if !strings.HasPrefix(dl.OriginalSubject, "ion.sync.v1.task.") {
		t.Errorf("dead letter of %s, want a task", dl.OriginalSubject)
	}
	if dl := e.deadLetter(req.SyncID().String(), time.Minute); dl.Reason != "sync-failed" || dl.Error != c.Reason {
		t.Errorf("sync dead letter reason %q error %q", dl.Reason, dl.Error)
	}
}

// TestLastDeliveryEndsFailed: another holder keeps the account-period lease, so every task
// times out waiting for it. On the last delivery the router allows (MaxDeliver 1 here) the
// task is marked failed and the sync completes as failed with the reason.
func TestLastDeliveryEndsFailed(t *testing.T) {
	e := newEnv(t, ionsim.Options{Seed: 3, Customers: 2, Meters: 1}, events.ModeV3, nil)
	acct := e.accts[0]
	req := e.syncRequest(acct, events.ModeV3, "starved")
	e.planOnly(req)

	ctx := context.Background()
	leases, err := e.deps.js.KeyValue(ctx, bus.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := json.Marshal(lease{Holder: "elsewhere", Expires: time.Now().Add(time.Hour)})
	if _, err := leases.Put(ctx, "sync."+acct+"."+e.period, v); err != nil {
		t.Fatal(err)
	}
	e.start(Options{Holder: "late", MaxDeliver: 1, TaskTimeout: time.Second, LeaseTTL: 2 * time.Second})
	c := e.completed(req, 2*time.Minute)
	if c.Status != events.SyncFailed || !strings.Contains(c.Reason, "account-period lease") {
		t.Errorf("status %s reason %q, want failed waiting for the lease", c.Status, c.Reason)
	}
}

// TestDryRunRefused: dry runs are refused before any Ion call or KV write, with the reason.
func TestDryRunRefused(t *testing.T) {
	e := newEnv(t, ionsim.Options{Seed: 3, Customers: 2, Meters: 1}, events.ModeV3, nil)
	acct := e.accts[0]
	e.start(Options{})
	req := e.syncRequest(acct, events.ModeV3, "dry")
	req.DryRun = true
	e.publishRequest(req)
	dl := e.deadLetter(req.SyncID().String(), time.Minute)
	if dl.Reason != bus.ReasonPermanent || !strings.Contains(dl.Error, "nothing was fetched; use `ionconnector sync --dry-run`") {
		t.Errorf("dead letter reason %q error %q", dl.Reason, dl.Error)
	}
	if n := e.sim.Stats().Requests; len(n) != 0 {
		t.Errorf("a refused dry run called Ion: %v", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range []string{bus.BucketFetchState, bus.BucketPeriods, bus.BucketLeases} {
		kv, err := e.deps.js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if keys, err := kv.Keys(ctx); !errors.Is(err, jetstream.ErrNoKeysFound) {
			t.Errorf("bucket %s after a refused dry run: keys %v, err %v", b, keys, err)
		}
	}
	if n := e.count(events.StreamSync, events.SyncCompletedSubject(acct)); n != 0 {
		t.Errorf("%d completed events for a refused dry run", n)
	}
}
