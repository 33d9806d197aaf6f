// Package summaries indexes the transformer's page summaries by account, period and page in the
// KV bucket "summaries". The summaries themselves are events in USAGE (usage.v1.summary.<acct>),
// among millions of records: finding a sync's pages there means walking and decompressing every
// block of the stream, and a sync's manifest names pages summarised by earlier syncs too, so the
// walk would cover the whole retention. The index is read instead; its values are the events'
// bodies, written by the transformer right after it publishes each one.
package summaries

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// Index is the KV bucket of page summaries.
type Index struct {
	kv jetstream.KeyValue
}

// Open binds the provisioned bucket.
func Open(ctx context.Context, js jetstream.JetStream) (*Index, error) {
	kv, err := js.KeyValue(ctx, bus.BucketSummaries)
	if err != nil {
		return nil, fmt.Errorf("summaries: open bucket %s: %w", bus.BucketSummaries, err)
	}
	return &Index{kv: kv}, nil
}

// Key is a page's key: "<account>.<period>.<page id>".
func Key(account, period string, page uuid.UUID) string {
	return prefix(account, period) + page.String()
}

func prefix(account, period string) string { return bus.KVToken(account) + "." + period + "." }

// Put indexes a transformer summary; body is the summary event's body (its JSON). A later Put
// of the same page replaces it, as a later summary event does.
func (x *Index) Put(ctx context.Context, s events.PageSummary, body []byte) error {
	if _, err := x.kv.Put(ctx, Key(s.Account, s.Period, s.PageID), body); err != nil {
		return fmt.Errorf("summaries: index page %s: %w", s.PageID, err)
	}
	return nil
}

// Read adds to out the transformer summaries of an account and period indexed after KV revision
// from (0: all of them) and returns the revision read up to, also with an error: out holds
// everything up to it.
func (x *Index) Read(ctx context.Context, account, period string, from uint64, out map[uuid.UUID]events.PageSummary) (uint64, error) {
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from+1))
	}
	w, err := x.kv.WatchFiltered(ctx, []string{prefix(account, period) + "*"}, opts...)
	if err != nil {
		return from, fmt.Errorf("summaries: read %s %s: %w", account, period, err)
	}
	defer func() { _ = w.Stop() }()
	last := from
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return last, fmt.Errorf("summaries: read %s %s: watch ended", account, period)
			}
			if e == nil {
				return last, nil // caught up
			}
			last = max(last, e.Revision())
			var s events.PageSummary
			if json.Unmarshal(e.Value(), &s) != nil || s.Stage != events.StageTransformer || s.Period != period {
				continue // only the transformer writes here; never trust a stray value
			}
			out[s.PageID] = s
		}
	}
}
