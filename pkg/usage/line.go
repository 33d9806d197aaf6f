package usage

import (
	"slices"
	"strings"
)

// Column template keys of Ion's azure_plan_billing report (ion-api.md §5.1) that the
// normalizer reads. Any other selected key is carried in Line.Cols and still counts as a
// grouping column of the record id.
const (
	ColCustomerID             = "customer_id"
	ColCustomerCompanyName    = "customer_company_name"
	ColAzureCustomerID        = "azure_customer_id"
	ColResellerID             = "reseller_id"
	ColCloudAccountNumber     = "cloud_account_number"
	ColEntitlementID          = "entitlement_id"
	ColEntitlementDescription = "entitlement_description"
	ColProductID              = "product_id"
	ColProductName            = "product_name"
	ColSkuID                  = "sku_id"
	ColSkuName                = "sku_name"
	ColPublisherName          = "publisher_name"
	ColMeterCategory          = "meter_category"
	ColMeterSubCategory       = "meter_sub_category"
	ColMeterName              = "meter_name"
	ColMeterID                = "meter_id"
	ColRegion                 = "region"
	ColMeteredRegion          = "metered_region"
	ColResourceGroup          = "resource_group"
	ColResourceURI            = "resource_uri"
	ColUnit                   = "unit"
	ColUsage                  = "usage"
	ColSeatCount              = "seat_count"
	ColPeriodQuantity         = "period_quantity"
	ColUsageStart             = "usage_starttime"
	ColUsageEnd               = "usage_endtime"
	ColChargeType             = "charge_type"
	ColInvoiceNumber          = "invoice_number"
	ColUnitPrice              = "unit_price"
	ColEffectiveUnitPrice     = "effective_unit_price"
	ColSellerCost             = "seller_cost"
	ColCustomerCost           = "customer_cost"
	ColMargin                 = "margin"
	ColSellerCostRaw          = "seller_cost_raw"
	ColCustomerCostRaw        = "customer_cost_raw"
	ColMarginRaw              = "margin_raw"
	ColSellerCostInvoice      = "seller_cost_invoice"
	ColCustomerCostInvoice    = "customer_cost_invoice"
	ColMarginInvoice          = "margin_invoice"
	ColMSRPCost               = "msrp_cost"
	ColInvoiceCurrency        = "invoice_currency"
	ColProviderCurrency       = "provider_currency"
)

// summedCols are the columns Ion aggregates (MONEY and FLOAT, aggType SUM) rather than groups
// by. Everything else a line carries is a grouping column and so part of the record id.
var summedCols = map[string]bool{
	ColUsage: true, ColSeatCount: true, ColPeriodQuantity: true,
	ColUnitPrice: true, ColEffectiveUnitPrice: true,
	ColSellerCost: true, ColCustomerCost: true, ColMargin: true,
	ColSellerCostRaw: true, ColCustomerCostRaw: true, ColMarginRaw: true,
	ColSellerCostInvoice: true, ColCustomerCostInvoice: true, ColMarginInvoice: true,
	ColMSRPCost: true,
}

// IsGroupingColumn reports whether a column key is part of a record's identity.
func IsGroupingColumn(key string) bool { return !summedCols[key] }

// Line is one Ion usage line, independent of wire format (v3 JSON values, v3 CSV cells, v1
// tree leaf). Cols maps column template keys to the raw text exactly as decoded: money stays
// decimal text, dates stay as Ion wrote them. A selected column that was empty is present
// with "", which keeps it in the record id.
type Line struct {
	Number int               `json:"line"` // 1-based position within its page
	Cols   map[string]string `json:"cols"`
}

// Get returns a column's value with surrounding whitespace trimmed ("" when absent).
func (l Line) Get(key string) string { return strings.TrimSpace(l.Cols[key]) }

// Has reports whether the column was selected (present, even if empty).
func (l Line) Has(key string) bool {
	_, ok := l.Cols[key]
	return ok
}

// groupingKeys returns the line's grouping column keys in sorted order.
func (l Line) groupingKeys() []string {
	keys := make([]string, 0, len(l.Cols))
	for k := range l.Cols {
		if IsGroupingColumn(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
