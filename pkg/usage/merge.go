package usage

import (
	"slices"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/events"
)

// MergeDuplicates sums records that share a record id within one sync (DESIGN.md "Identity"):
// costs and quantities are added exactly, the result is flagged summed-duplicate and gets a
// new revision. Nothing is overwritten. Output keeps the order of first appearance; for the
// volatile provenance the smallest source page id and the latest fetch time win, so the result
// does not depend on input order.
func MergeDuplicates(records []Record) []Record {
	idx := make(map[[16]byte]int, len(records))
	out := make([]Record, 0, len(records))
	merged := map[int]bool{}
	for _, r := range records {
		i, dup := idx[r.RecordID]
		if !dup {
			idx[r.RecordID] = len(out)
			r.Flags = slices.Clone(r.Flags)
			out = append(out, r)
			continue
		}
		m := &out[i]
		m.BilledCost = m.BilledCost.Add(r.BilledCost)
		m.EffectiveCost = m.EffectiveCost.Add(r.EffectiveCost)
		m.ListCost = m.ListCost.Add(r.ListCost)
		m.ContractedCost = m.ContractedCost.Add(r.ContractedCost)
		m.CustomerCost = addOpt(m.CustomerCost, r.CustomerCost)
		m.Margin = addOpt(m.Margin, r.Margin)
		m.ConsumedQuantity = addOpt(m.ConsumedQuantity, r.ConsumedQuantity)
		m.PricingQuantity = addOpt(m.PricingQuantity, r.PricingQuantity)
		if r.SourcePageID.String() < m.SourcePageID.String() {
			m.SourcePageID = r.SourcePageID
		}
		if r.FetchedAt.After(m.FetchedAt) {
			m.FetchedAt = r.FetchedAt
		}
		m.Flags = append(m.Flags, r.Flags...)
		merged[i] = true
	}
	for i := range merged {
		m := &out[i]
		m.Flags = append(m.Flags, events.FlagSummedDuplicate)
		slices.Sort(m.Flags)
		m.Flags = slices.Compact(m.Flags)
		m.Revision = m.ContentHash()
	}
	return out
}

// addOpt adds nullable amounts: null only when both are null.
func addOpt(a, b *decimal.Decimal) *decimal.Decimal {
	switch {
	case a == nil && b == nil:
		return nil
	case a == nil:
		c := *b
		return &c
	case b == nil:
		c := *a
		return &c
	}
	c := a.Add(*b)
	return &c
}
