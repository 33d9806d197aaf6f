package fetcher

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// TestCollectReadsWhatASyncPublishes: Collect over a row cap that forces splits (and 429/503
// faults) stores and publishes nothing, yet yields exactly the pages a real sync then publishes
// (same page ids, so same keys, splits and canonical rows), adding up to the ground truth.
func TestCollectReadsWhatASyncPublishes(t *testing.T) {
	e := newEnv(t, simOptions(5, 2), events.ModeV3, nil)
	acct := e.accts[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tokens, err := e.deps.js.KeyValue(ctx, bus.BucketTokens)
	if err != nil {
		t.Fatal(err)
	}
	periods, err := e.deps.js.KeyValue(ctx, bus.BucketPeriods)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	sums := map[string]decimal.Decimal{}
	progressed := 0
	res, err := Collect(ctx, CollectOptions{Config: e.deps.cfg, Account: acct, Period: e.period, Tokens: tokens, Periods: periods,
		Logger: e.deps.log,
		Page: func(_ context.Context, p CollectedPage) error {
			rp := p.Page
			rp.Body = string(p.Body)
			if err := rp.Validate(); err != nil || len(p.Body) == 0 {
				t.Errorf("page %s with its body attached: %v", p.Page.PageID, err)
			}
			got = append(got, p.Page.PageID.String())
			return nil
		},
		Progress: func(CollectProgress) { progressed++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Mode != events.ModeV3 || res.Pages != len(got) || progressed == 0 {
		t.Fatalf("result %+v, %d pages handed over, %d progress calls", res, len(got), progressed)
	}
	for _, ct := range res.Control {
		sums[ct.Currency] = sums[ct.Currency].Add(ct.BilledCost)
	}
	truth := e.sim.GroundTruth(e.period)
	if !sums[truth.Currency].Equal(truth.SellerCost) {
		t.Errorf("control totals %v, ground truth %s", sums, truth.SellerCost)
	}
	if len(got) <= 5 {
		t.Errorf("%d pages for 5 customers: the row cap forced no split", len(got))
	}
	if len(res.Directory) == 0 {
		t.Error("no customer directory")
	}

	// Nothing was stored (but the rotated token) or published.
	for _, b := range []string{bus.BucketFetchState, bus.BucketPeriods, bus.BucketLeases} {
		kv, err := e.deps.js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if keys, err := kv.Keys(ctx); !errors.Is(err, jetstream.ErrNoKeysFound) {
			t.Errorf("bucket %s after Collect: keys %v, err %v", b, keys, err)
		}
	}
	for _, s := range []string{events.StreamRaw, events.StreamSync} {
		if n := e.count(s, ">"); n != 0 {
			t.Errorf("stream %s: %d messages after Collect", s, n)
		}
	}

	// A real sync now publishes exactly the pages Collect read.
	e.start(Options{})
	c := e.completed(e.requestSync(acct, events.ModeV3, "real"), 5*time.Minute)
	if c.Status != events.SyncSucceeded {
		t.Fatalf("sync %s: %s", c.Status, c.Reason)
	}
	slices.Sort(got)
	if want := uuidStrings(c.Manifest.Pages); !slices.Equal(got, want) {
		t.Errorf("Collect read pages\n%v\nthe sync published\n%v", got, want)
	}
	if !slices.Equal(res.Customers, c.Manifest.Customers) {
		t.Errorf("Collect customers %v, sync manifest %v", res.Customers, c.Manifest.Customers)
	}

	// The period is now pinned to v3: a v1 account cannot collect it.
	v1 := *e.deps.cfg
	v1.Accounts = slices.Clone(v1.Accounts)
	v1.Accounts[0].Auth = events.ModeV1
	if _, err := Collect(ctx, CollectOptions{Config: &v1, Account: acct, Period: e.period, Periods: periods,
		Page: func(context.Context, CollectedPage) error { return nil }}); !errors.Is(err, errModeMismatch) {
		t.Errorf("v1 collect of a v3-pinned period: %v", err)
	}
}
