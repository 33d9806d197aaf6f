package usage

import "github.com/ionusage/connector/pkg/events"

// Record is the normalized record: the shared usage.v1.record payload, so the transformer
// publishes what Normalize returns without copying.
type Record = events.UsageRecord

// Flags this package sets beside the events.Flag* values. The x_Flags set is open (additive).
const (
	// FlagNoListPrice: the line had no MSRP, so ListCost (not nullable in FOCUS) is BilledCost.
	FlagNoListPrice = "no-list-price"
	// FlagPricingQuantityRounded: the pricing block size (e.g. "744 Hours") does not divide
	// the quantity exactly, so PricingQuantity is rounded to pricingQuantityPlaces.
	FlagPricingQuantityRounded = "pricing-quantity-rounded"
)
