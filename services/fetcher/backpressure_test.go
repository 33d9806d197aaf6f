package fetcher

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
)

// A live transformer that falls behind pauses the fetch tasks (none held, so no AckWait runs);
// once it catches up the sync finishes.
func TestBackpressurePausesFetchTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a sandbox sync")
	}
	const max = 2
	e := newEnv(t, ionsim.Options{Seed: 3, Customers: 12, Meters: 1, Variant: ionsim.Variant{Daily: true}}, events.ModeV3,
		func(c *config.Config) { c.Fetcher.Workers, c.Fetcher.MaxBacklog = 1, max })
	backlogRefresh = time.Millisecond // a sandbox task takes a few ms
	t.Cleanup(func() { backlogRefresh = 0 })
	ctx := context.Background()
	info := func(stream, durable string) *jetstream.ConsumerInfo {
		t.Helper()
		c, err := e.deps.js.Consumer(ctx, stream, durable)
		if err != nil {
			t.Fatal(err)
		}
		i, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	raw, err := e.deps.js.Consumer(ctx, events.StreamRaw, transformerDurable)
	if err != nil {
		t.Fatal(err)
	}
	// A transformer that is live (its pull waits, then it holds a page) but makes no progress.
	held := make(chan jetstream.MessageBatch, 1)
	go func() {
		b, err := raw.Fetch(1, jetstream.FetchMaxWait(time.Minute))
		if err == nil {
			held <- b
		}
	}()
	bustest.Eventually(t, 10*time.Second, func() error {
		if info(events.StreamRaw, transformerDurable).NumWaiting == 0 {
			return errors.New("the transformer's pull is not waiting yet")
		}
		return nil
	})
	e.start(Options{})
	req := e.requestSync(e.accts[0], events.ModeV3, "backpressure")
	// Paused: tasks left, none held, the raw backlog over the bound, and the tasks' position
	// unchanged over 20 polls in a row.
	var floor uint64
	streak := 0
	bustest.Eventually(t, time.Minute, func() error {
		tasks := info(events.StreamSync, durableTasks)
		r := info(events.StreamRaw, transformerDurable)
		backlog := r.NumPending + uint64(r.NumAckPending)
		if tasks.NumPending == 0 || tasks.NumAckPending != 0 || backlog <= max || tasks.AckFloor.Stream != floor {
			floor, streak = tasks.AckFloor.Stream, 0
			return fmt.Errorf("not paused: tasks pending %d, ack pending %d; raw backlog %d", tasks.NumPending, tasks.NumAckPending, backlog)
		}
		if streak++; streak < 20 {
			return errors.New("paused for a moment only")
		}
		return nil
	})
	// The transformer catches up: the fetcher resumes and the sync completes.
	for m := range (<-held).Messages() {
		_ = m.Ack()
	}
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := raw.Fetch(10, jetstream.FetchMaxWait(200*time.Millisecond))
			if err != nil {
				continue
			}
			for m := range b.Messages() {
				_ = m.Ack()
			}
		}
	}()
	e.completed(req, time.Minute)
	close(stop)
	<-drained
}
