package publisher

import (
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/events"
)

// reversalOf zeroes every amount and quantity, flags the revision, dates it at the sync's end,
// is a pure function of its inputs (so a redelivered completion yields the same event), never
// writes through the held record's pointers, and refuses what is already a reversal or zero.
func TestReversalOf(t *testing.T) {
	q, cc := decimal.RequireFromString("3.5"), decimal.RequireFromString("12.1")
	cur := events.UsageRecord{BilledCost: decimal.RequireFromString("10"), EffectiveCost: decimal.RequireFromString("10"),
		ListCost: decimal.RequireFromString("11"), ContractedCost: decimal.RequireFromString("10"), BillingCurrency: "EUR",
		BillingAccountID: "a", IonCustomerID: "c", ConsumedQuantity: &q, PricingQuantity: &q, CustomerCost: &cc,
		RecordID: events.ID("r"), FetchedAt: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC), Flags: []string{events.FlagSummedDuplicate}}
	cur.Revision = cur.ContentHash()
	h := billing.Held{Revision: cur.Revision, Seq: 1, Billed: cur.BilledCost}
	c := events.SyncCompleted{FinishedAt: time.Date(2025, 4, 2, 0, 0, 0, 0, time.UTC)}
	r, ok := reversalOf(cur, h, c)
	if !ok {
		t.Fatal("not reversed")
	}
	for name, d := range map[string]decimal.Decimal{"BilledCost": r.BilledCost, "EffectiveCost": r.EffectiveCost,
		"ListCost": r.ListCost, "ContractedCost": r.ContractedCost, "ConsumedQuantity": *r.ConsumedQuantity,
		"PricingQuantity": *r.PricingQuantity, "x_CustomerCost": *r.CustomerCost} {
		if !d.IsZero() {
			t.Errorf("%s = %s", name, d)
		}
	}
	if !q.Equal(decimal.RequireFromString("3.5")) || !cc.Equal(decimal.RequireFromString("12.1")) || !cur.BilledCost.Equal(decimal.RequireFromString("10")) {
		t.Error("the held record was modified")
	}
	if !slices.Equal(r.Flags, []string{events.FlagSummedDuplicate, events.FlagReversal}) || len(cur.Flags) != 1 {
		t.Errorf("flags %v (held %v)", r.Flags, cur.Flags)
	}
	if r.Revision != r.ContentHash() || r.Revision == cur.Revision || !r.FetchedAt.Equal(c.FinishedAt) || r.Margin != nil {
		t.Errorf("revision %.12s (held %.12s), as-of %s, margin %v", r.Revision, cur.Revision, r.FetchedAt, r.Margin)
	}
	again, _ := reversalOf(cur, h, c)
	if again.EventMeta("x").ID != r.EventMeta("x").ID {
		t.Error("a second computation gives another event id")
	}
	if _, ok := reversalOf(r, billing.Held{Revision: r.Revision, Seq: 2}, c); ok {
		t.Error("a reversal reversed again")
	}
	zero := cur
	zero.BilledCost, zero.EffectiveCost, zero.ListCost, zero.ContractedCost = decimal.Zero, decimal.Zero, decimal.Zero, decimal.Zero
	zero.ConsumedQuantity, zero.PricingQuantity, zero.CustomerCost = nil, nil, nil
	if _, ok := reversalOf(zero, billing.Held{}, c); ok {
		t.Error("an all-zero record reversed")
	}
}
