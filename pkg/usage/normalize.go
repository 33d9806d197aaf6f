package usage

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/events"
)

// Fixed values of the reseller-cost view (DESIGN.md "Normalized record").
const (
	ProviderName      = "Microsoft"
	DefaultPublisher  = "Microsoft"
	InvoiceIssuerName = "TD SYNNEX"
)

// pricingQuantityPlaces bounds PricingQuantity when a block size does not divide a quantity
// exactly. Money is never divided, so this is the only rounding in the package.
const pricingQuantityPlaces = 20

// parsed holds a line's validated values.
type parsed struct {
	category               string
	start, end             time.Time
	endDateOnly            bool
	seller                 decimal.Decimal
	customer, margin, msrp *decimal.Decimal
	usage, seats           *decimal.Decimal
	currency               string
}

// Normalize turns one line into a FOCUS 1.2 record in the reseller-cost view. A line that
// cannot be normalized returns *LineError values (joined, in column order; errors.As finds the
// first). Out-of-period rows are normalized all the same: InPeriod decides whether they are
// billed or held, so a held row keeps its amounts for reconcile.
func Normalize(pc PageContext, l Line, tbl ChargeTable) (Record, error) {
	return normalize(DefaultLookups(), pc, l, tbl)
}

func normalize(lk *Lookups, pc PageContext, l Line, tbl ChargeTable) (Record, error) {
	if err := pc.check(); err != nil {
		return Record{}, err
	}
	p, err := validate(pc, l, tbl)
	if err != nil {
		return Record{}, err
	}
	bpStart, bpEnd, _ := pc.periodBounds() // checked above

	r := Record{
		BilledCost:         p.seller,
		EffectiveCost:      p.seller, // CSP usage has no prepaid commitment to amortise
		ContractedCost:     p.seller, // Ion's seller cost is the reseller's negotiated price
		BillingCurrency:    p.currency,
		BillingAccountID:   pc.Account,
		BillingAccountName: optional(pc.AccountName),
		BillingPeriodStart: bpStart,
		BillingPeriodEnd:   bpEnd,
		ChargeCategory:     p.category,
		InvoiceIssuerName:  InvoiceIssuerName,
		ProviderName:       ProviderName,
		PublisherName:      DefaultPublisher,
		Tags:               map[string]string{}, // Ion exposes no Azure tags; {} says "none", not "unknown"

		ColumnSetVersion: pc.ColumnSetVersion,
		SourceMode:       pc.Mode,
		SourcePageID:     pc.SourcePageID,
		FetchedAt:        pc.FetchedAt.UTC(),
		IonCustomerID:    l.Get(ColCustomerID),
		CustomerTenantID: optional(l.Get(ColAzureCustomerID)),
		CustomerName:     l.Get(ColCustomerCompanyName),
		SubscriptionID:   optional(l.Get(ColCloudAccountNumber)),
		MeterID:          optional(l.Get(ColMeterID)),
		InvoiceID:        optional(l.Get(ColInvoiceNumber)),
		CustomerCost:     p.customer,
		Margin:           p.margin,
	}
	if v := l.Get(ColPublisherName); v != "" {
		r.PublisherName = v
	}
	r.ResellerID = optional(l.Get(ColResellerID))
	if r.ResellerID == nil {
		r.ResellerID = optional(pc.ResellerID)
	}

	// v1 rows carry no dates: their charge period is the billing period.
	if pc.Mode == events.ModeV1 {
		r.ChargePeriodStart, r.ChargePeriodEnd = bpStart, bpEnd
	} else {
		r.ChargePeriodStart, r.ChargePeriodEnd = chargePeriod(p.start, p.end, p.endDateOnly)
	}

	if p.msrp != nil {
		r.ListCost = *p.msrp
	} else {
		r.ListCost = p.seller
		r.Flags = append(r.Flags, FlagNoListPrice)
	}

	// Licence rows have no entitlement: their Ion subscription is the sub-account.
	if e := l.Get(ColEntitlementID); e != "" {
		r.SubAccountID = &e
		r.SubAccountName = optional(l.Get(ColEntitlementDescription))
	} else {
		r.SubAccountID = r.SubscriptionID
	}

	r.ChargeDescription = optional(joinNonEmpty(" - ", l.Get(ColProductName), l.Get(ColSkuName), l.Get(ColMeterName)))
	r.SkuID = optional(joinNonEmpty("/", l.Get(ColProductID), l.Get(ColSkuID)))
	r.SkuMeter = optional(l.Get(ColMeterName))

	resourceType := ResourceTypeOf(l.Get(ColResourceURI)) // computed once: it splits the URI
	if uri := strings.ToLower(l.Get(ColResourceURI)); uri != "" {
		r.ResourceID = &uri
		r.ResourceName = optional(uri[strings.LastIndexByte(uri, '/')+1:])
		r.ResourceType = optional(resourceType)
	}

	regionRaw := l.Get(ColRegion)
	if regionRaw == "" {
		regionRaw = l.Get(ColMeteredRegion)
	}
	if regionRaw != "" {
		if reg, ok := lk.Region(regionRaw); ok {
			r.RegionID, r.RegionName = &reg.ID, &reg.Name
		} else {
			// Microsoft's rule for unknown spellings: the id is the name lower-cased without spaces.
			id := strings.ReplaceAll(strings.ToLower(regionRaw), " ", "")
			r.RegionID, r.RegionName = &id, &regionRaw
		}
	}

	// = ServiceFor(uri, …), whose first step is ServiceOfType(ResourceTypeOf(uri)).
	svc, fromType := lk.ServiceOfType(resourceType)
	if !fromType {
		svc = lk.ServiceFor("", l.Get(ColMeterCategory), l.Get(ColProductName))
		r.Flags = append(r.Flags, events.FlagServiceFallback)
	}
	r.ServiceName, r.ServiceCategory = svc.Name, svc.Category

	setQuantities(lk, &r, l, p)

	if p.category == CategoryUsage || p.category == CategoryPurchase {
		pcat := "Standard"
		if l.Get("benefit_id") != "" {
			pcat = "Committed"
		}
		r.PricingCategory = &pcat
	}

	r.RecordID = RecordID(pc, l)
	r.Revision = r.ContentHash()
	return r, nil
}

// setQuantities follows Microsoft's FOCUS conversion (learn.microsoft.com FinOps toolkit
// "FOCUS mapping"; open-data "Pricing units"): the source quantity is the consumed quantity
// in distinct units, ConsumedUnit and PricingUnit are PricingUnits.csv's DistinctUnits, and
// PricingQuantity = quantity / PricingBlockSize ("10K" → blocks of 10000). Ion's Usage
// Quantity is assumed to mean what Cost Management's Quantity means; the ratio
// ConsumedQuantity / PricingQuantity keeps the block size recoverable.
func setQuantities(lk *Lookups, r *Record, l Line, p parsed) {
	q := p.usage
	if q == nil {
		q = p.seats // licence rows count seats, not usage
	}
	uom := l.Get(ColUnit)
	unit := uom
	block := decimal.NewFromInt(1)
	if b, distinct, ok := lk.PricingUnit(uom); ok {
		block, unit = b, distinct
	}
	if unit == "" && p.category == CategoryPurchase && q != nil {
		unit = "Licenses"
	}
	if q != nil {
		pq := *q
		if !block.Equal(decimal.NewFromInt(1)) {
			pq = q.DivRound(block, pricingQuantityPlaces)
			if !pq.Mul(block).Equal(*q) {
				r.Flags = append(r.Flags, FlagPricingQuantityRounded)
			}
		}
		r.PricingQuantity = &pq
	}
	r.PricingUnit = optional(unit)
	// FOCUS: ConsumedQuantity and ConsumedUnit apply to Usage rows only.
	if p.category == CategoryUsage && p.usage != nil {
		cq := *p.usage
		r.ConsumedQuantity = &cq
		r.ConsumedUnit = optional(unit)
	}
}

// validate checks a line and parses its numbers and dates, collecting every problem.
func validate(pc PageContext, l Line, tbl ChargeTable) (parsed, error) {
	var p parsed
	var errs []error
	bad := func(col, reason, msg string, err error) {
		errs = append(errs, &LineError{Line: l.Number, Column: col, Reason: reason, Msg: msg, Err: err})
	}
	required := func(col string) string {
		v := l.Get(col)
		if v == "" {
			bad(col, ReasonMissingField, "required value is empty or missing", nil)
		}
		return v
	}
	money := func(col string) *decimal.Decimal {
		v := l.Get(col)
		if v == "" {
			return nil
		}
		d, err := decimal.NewFromString(v)
		if err != nil {
			bad(col, ReasonBadNumber, fmt.Sprintf("%q is not a decimal number", v), err)
			return nil
		}
		return &d
	}

	required(ColCustomerID)

	p.currency = strings.ToUpper(required(ColInvoiceCurrency))
	if p.currency != "" && pc.Currency != "" && !strings.EqualFold(p.currency, pc.Currency) {
		bad(ColInvoiceCurrency, ReasonCurrencyMismatch, fmt.Sprintf("line is in %s, page was requested in %s", p.currency, strings.ToUpper(pc.Currency)), nil)
	}
	if pcur := l.Get(ColV1PriceCurrency); pcur != "" && p.currency != "" && !strings.EqualFold(pcur, p.currency) {
		bad(ColV1PriceCurrency, ReasonCurrencyMismatch, fmt.Sprintf("price is in %s, cost in %s", strings.ToUpper(pcur), p.currency), nil)
	}

	if required(ColSellerCostInvoice) != "" {
		if d := money(ColSellerCostInvoice); d != nil {
			p.seller = *d
		}
	}
	p.customer = money(ColCustomerCostInvoice)
	p.margin = money(ColMarginInvoice)
	p.msrp = money(ColMSRPCost)
	p.usage = money(ColUsage)
	p.seats = money(ColSeatCount)

	if pc.Mode == events.ModeV3 {
		var sOK, eOK bool
		if v := required(ColUsageStart); v != "" {
			t, _, err := parseDate(v)
			if err != nil {
				bad(ColUsageStart, ReasonBadDate, "unreadable date", err)
			}
			p.start, sOK = t, err == nil
		}
		if v := required(ColUsageEnd); v != "" {
			t, dateOnly, err := parseDate(v)
			if err != nil {
				bad(ColUsageEnd, ReasonBadDate, "unreadable date", err)
			}
			p.end, p.endDateOnly, eOK = t, dateOnly, err == nil
		}
		if sOK && eOK && p.end.Before(p.start) {
			bad(ColUsageEnd, ReasonBadDate, fmt.Sprintf("ends %s before it starts %s", l.Get(ColUsageEnd), l.Get(ColUsageStart)), nil)
		}
	}

	if ct := required(ColChargeType); ct != "" {
		c, ok := tbl.Category(ct)
		if !ok {
			bad(ColChargeType, ReasonUnknownChargeType, fmt.Sprintf("charge type %q is not in the charge table", ct), nil)
		}
		p.category = c
	}
	return p, errors.Join(errs...)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func joinNonEmpty(sep string, parts ...string) string {
	out := make([]string, 0, len(parts))
	for _, s := range parts {
		if s != "" && (len(out) == 0 || out[len(out)-1] != s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, sep)
}
