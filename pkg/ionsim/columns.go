package ionsim

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// Column value types (SelectedColumn.valueType, ion-api.md §4.4).
const (
	vtString = "STRING"
	vtFloat  = "FLOAT"
	vtInt    = "INT"
	vtMoney  = "MONEY"
	vtDate   = "DATE"
)

// column is one entry of the azure_plan_billing catalogue (ion-api.md §5.1). Grouping columns
// have get; measures (money, usage, seat count, period quantity) have sum and are SUMmed.
type column struct {
	id        string
	key       string
	display   string
	valueType string
	get       func(d *dataset, v *Variant, a *atom) string
	sum       func(a *atom) decimal.Decimal
}

func (c *column) measure() bool                     { return c.sum != nil }
func (c *column) templateID(template string) string { return template + "." + c.key }

// heading is the CSV header / columnHeading: money columns carry the currency, "Seller Cost (EUR)".
func (c *column) heading(currency string) string {
	if c.valueType == vtMoney {
		return c.display + " (" + currency + ")"
	}
	return c.display
}

func str(f func(a *atom) string) func(*dataset, *Variant, *atom) string {
	return func(_ *dataset, _ *Variant, a *atom) string { return f(a) }
}

func usageOnly(f func(a *atom) string) func(*dataset, *Variant, *atom) string {
	return func(_ *dataset, _ *Variant, a *atom) string {
		if a.it.kind != kindUsage {
			return ""
		}
		return f(a)
	}
}

func dateStr(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// chargeDates gives a row's Charge StartDate/EndDate: the usage day (Daily) or the month, with the
// end inclusive (last day 00:00) or exclusive (midnight after) per Variant.EndDateInclusive.
func chargeDates(v *Variant, a *atom) (time.Time, time.Time) {
	start, last := a.day, a.day
	if !v.Daily {
		start, last = a.pstart, a.pstart.AddDate(0, 1, -1)
	}
	if v.EndDateInclusive {
		return start, last
	}
	return start, last.AddDate(0, 0, 1)
}

func moneyCol(key, display string, f func(a *atom) decimal.Decimal) column {
	return column{key: key, display: display, valueType: vtMoney, sum: f}
}

func subscriptionGUID(a *atom) string {
	if a.it.kind == kindLicence {
		return a.it.licGUID
	}
	return a.c.planGUID
}

// catalogue builds the full column list in a fixed order; ids are int64 strings as on the wire.
func catalogue() []column {
	seller := func(a *atom) decimal.Decimal { return a.seller }
	cust := func(a *atom) decimal.Decimal { return a.cust }
	margin := func(a *atom) decimal.Decimal { return a.margin }
	cols := []column{
		{key: "customer_id", display: "Customer ID", valueType: vtInt, get: str(func(a *atom) string { return a.c.id })},
		{key: "unique_name", display: "Customer Name", valueType: vtString, get: str(func(a *atom) string { return a.c.company + " (" + a.c.contact + ")" })},
		{key: "customer_company_name", display: "Customer Company", valueType: vtString, get: str(func(a *atom) string { return a.c.company })},
		{key: "customer_company_name_reseller", display: "Customer Company Reseller", valueType: vtString, get: func(d *dataset, _ *Variant, _ *atom) string { return d.resellerName }},
		{key: "customer_country", display: "Customer Country", valueType: vtString, get: str(func(a *atom) string { return a.c.country })},
		{key: "customer_state", display: "Customer State", valueType: vtString, get: str(func(a *atom) string { return a.c.state })},
		{key: "domain_name", display: "Domain Name", valueType: vtString, get: str(func(a *atom) string { return a.c.domain })},
		{key: "azure_customer_id", display: "Azure Customer ID", valueType: vtString, get: str(func(a *atom) string { return a.c.tenant })},
		{key: "azure_customer_country", display: "Azure Customer Country", valueType: vtString, get: str(func(a *atom) string { return a.c.country })},
		{key: "reseller_id", display: "Reseller ID", valueType: vtInt, get: func(d *dataset, _ *Variant, _ *atom) string { return d.account }},
		{key: "reseller_name", display: "Reseller Name", valueType: vtString, get: func(d *dataset, _ *Variant, _ *atom) string { return d.resellerName }},
		{key: "reseller_mpn_id", display: "Reseller MPN ID", valueType: vtString, get: func(d *dataset, _ *Variant, _ *atom) string { return d.resellerMPN }},
		{key: "mpn_id", display: "MPN ID", valueType: vtString, get: str(func(*atom) string { return "5273491" })},
		{key: "cloud_account_number", display: "Subscription ID", valueType: vtString, get: str(subscriptionGUID)},
		{key: "cloud_account_name", display: "Cloud Account Name", valueType: vtString, get: str(subscriptionGUID)},
		{key: "subscription_startdate", display: "Subscription StartDate", valueType: vtDate, get: str(func(a *atom) string {
			if a.it.kind == kindLicence {
				return dateStr(a.it.licStart)
			}
			return dateStr(time.Date(a.c.created.Year(), a.c.created.Month(), a.c.created.Day(), 0, 0, 0, 0, time.UTC))
		})},
		{key: "subscription_enddate", display: "Subscription EndDate", valueType: vtDate, get: str(func(a *atom) string {
			if a.it.kind == kindLicence {
				return dateStr(a.it.licStart.AddDate(1, 0, -1))
			}
			return ""
		})},
		{key: "entitlement_id", display: "EntitlementID", valueType: vtString, get: str(func(a *atom) string {
			if a.it.ent == nil {
				return ""
			}
			return a.it.ent.guid
		})},
		{key: "entitlement_description", display: "Entitlement Description", valueType: vtString, get: str(func(a *atom) string {
			if a.it.ent == nil {
				return ""
			}
			return a.it.ent.desc
		})},
		{key: "product_id", display: "Product ID", valueType: vtString, get: str(func(a *atom) string {
			switch a.it.kind {
			case kindUsage:
				return a.it.meter.productID
			case kindLicence:
				return a.it.lic.productID
			}
			return ""
		})},
		{key: "product_name", display: "Product Name", valueType: vtString, get: str(productName)},
		{key: "sku_id", display: "SKU ID", valueType: vtString, get: str(func(a *atom) string {
			switch a.it.kind {
			case kindUsage:
				return a.it.meter.skuID
			case kindLicence:
				return a.it.lic.skuID
			}
			return ""
		})},
		{key: "sku_name", display: "SKU Name", valueType: vtString, get: str(skuName)},
		{key: "availability_id", display: "Availability ID", valueType: vtString, get: str(func(a *atom) string {
			if a.it.kind == kindCredit {
				return ""
			}
			return fmt.Sprintf("DZH318Z0%04X", a.it.id%0xFFFF)
		})},
		{key: "publisher_id", display: "Publisher ID", valueType: vtString, get: str(func(*atom) string { return "" })},
		{key: "publisher_name", display: "Publisher Name", valueType: vtString, get: str(func(*atom) string { return "Microsoft" })},
		{key: "meter_category", display: "Meter Category", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.meter.category })},
		{key: "meter_sub_category", display: "Meter Sub Category", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.meter.subCategory })},
		{key: "meter_name", display: "Meter Name", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.meter.name })},
		{key: "meter_id", display: "Meter ID", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.meterID })},
		{key: "metered_region", display: "Metered Region", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.region.metered })},
		{key: "region", display: "Region", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.region.id })},
		{key: "resource_group", display: "Resource Group", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.resourceGroup })},
		{key: "resource_uri", display: "Resource URI", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.resourceURI })},
		{key: "unit", display: "Unit", valueType: vtString, get: usageOnly(func(a *atom) string { return a.it.meter.unit })},
		{key: "usage", display: "Usage Quantity", valueType: vtFloat, sum: func(a *atom) decimal.Decimal { return a.qty }},
		{key: "seat_count", display: "Seat Count", valueType: vtFloat, sum: func(a *atom) decimal.Decimal { return decimal.NewFromInt(a.seats) }},
		{key: "period_quantity", display: "Period Quantity", valueType: vtFloat, sum: func(a *atom) decimal.Decimal { return a.qty }},
		{key: "usage_type", display: "Usage Type", valueType: vtString, get: str(func(a *atom) string {
			if a.it.kind == kindLicence {
				return "License"
			}
			return "Consumption"
		})},
		{key: "type", display: "Type", valueType: vtString, get: str(func(a *atom) string {
			if a.it.kind == kindLicence {
				return "NCE"
			}
			return "Azure plan"
		})},
		{key: "segment", display: "Segment", valueType: vtString, get: str(func(*atom) string { return "Commercial" })},
		{key: "usage_starttime", display: "Charge StartDate", valueType: vtDate, get: func(_ *dataset, v *Variant, a *atom) string {
			s, _ := chargeDates(v, a)
			return dateStr(s)
		}},
		{key: "usage_endtime", display: "Charge EndDate", valueType: vtDate, get: func(_ *dataset, v *Variant, a *atom) string {
			_, e := chargeDates(v, a)
			return dateStr(e)
		}},
		{key: "charge_type", display: "Charge Type", valueType: vtString, get: str(chargeType)},
		{key: "benefit_type", display: "Charge or Savings Plan", valueType: vtString, get: usageOnly(func(*atom) string { return "Charge" })},
		{key: "benefit_id", display: "Savings Plan ID", valueType: vtString, get: str(func(*atom) string { return "" })},
		{key: "benefit_order_id", display: "Savings Plan Order ID", valueType: vtString, get: str(func(*atom) string { return "" })},
		{key: "reservation_order_id", display: "Reservation Order ID", valueType: vtString, get: str(func(*atom) string { return "" })},
		{key: "order_date", display: "Order Date", valueType: vtDate, get: str(func(a *atom) string {
			if a.it.kind != kindLicence {
				return ""
			}
			return dateStr(a.it.licStart)
		})},
		{key: "order_number", display: "Order Number", valueType: vtString, get: str(func(a *atom) string { return a.it.orderNumber })},
		{key: "term_and_billing_cycle", display: "Term And Billing Cycle", valueType: vtString, get: str(func(a *atom) string {
			if a.it.kind == kindLicence {
				return "P1Y Monthly"
			}
			return ""
		})},
		{key: "term_and_billingcycle", display: "Billing Cycle", valueType: vtString, get: str(func(*atom) string { return "Monthly" })},
		{key: "billing_frequency", display: "Billing Frequency", valueType: vtString, get: str(func(*atom) string { return "Monthly" })},
		{key: "pac_of_origin", display: "PAC of Origin", valueType: vtString, get: str(func(*atom) string { return "" })},
		{key: "unit_price", display: "Unit Price", valueType: vtFloat, get: str(func(a *atom) string { return a.it.msrpPriceS })},
		{key: "effective_unit_price", display: "Effective Unit Price", valueType: vtFloat, get: str(func(a *atom) string { return a.it.unitPriceS })},
		{key: "discount_rate", display: "Discount Rate", valueType: vtFloat, get: str(func(*atom) string { return "0" })},
		{key: "rate", display: "Rate", valueType: vtFloat, get: str(func(*atom) string { return "1" })},
		{key: "promotion_id", display: "PromotionID", valueType: vtString, get: str(func(*atom) string { return "" })},
		{key: "promotion_rate", display: "Promotion Rate", valueType: vtFloat, get: str(func(*atom) string { return "" })},
		{key: "promotion_startdate", display: "Promotion Start", valueType: vtDate, get: str(func(*atom) string { return "" })},
		{key: "promotion_enddate", display: "Promotion End", valueType: vtDate, get: str(func(*atom) string { return "" })},
		{key: "price_book", display: "Price book", valueType: vtString, get: str(func(a *atom) string { return a.c.priceBook })},
		{key: "price_book_id", display: "Price book ID", valueType: vtInt, get: str(func(a *atom) string { return a.c.priceBookID })},
		{key: "group_tag_id", display: "Group Tag ID", valueType: vtString, get: str(func(a *atom) string { return a.c.tagID })},
		{key: "group_tag_label", display: "Group Tag Label", valueType: vtString, get: str(func(a *atom) string { return a.c.tagLabel })},
		moneyCol("seller_cost", "Seller Cost", seller),
		moneyCol("customer_cost", "Customer Cost", cust),
		moneyCol("margin", "Margin", margin),
		moneyCol("msrp_cost", "MSRP", func(a *atom) decimal.Decimal { return a.msrp }),
		moneyCol("seller_cost_raw", "Seller Cost (Provider Currency)", seller),
		moneyCol("customer_cost_raw", "Customer Cost (Provider Currency)", cust),
		moneyCol("margin_raw", "Margin (Provider Currency)", margin),
		moneyCol("seller_cost_invoice", "Seller Cost (Invoiced Currency)", seller),
		moneyCol("customer_cost_invoice", "Customer Cost (Invoiced Currency)", cust),
		moneyCol("margin_invoice", "Margin (Invoiced Currency)", margin),
		{key: "provider_currency", display: "Provider Currency", valueType: vtString, get: func(d *dataset, _ *Variant, _ *atom) string { return d.currency }},
		{key: "invoice_currency", display: "Invoice Currency", valueType: vtString, get: func(d *dataset, _ *Variant, _ *atom) string { return d.currency }},
		{key: "conversion_rates", display: "Currency Conversion Rates", valueType: vtString, get: str(func(*atom) string { return "" })},
		{key: "invoice_number", display: "Invoice Number", valueType: vtString, get: str(func(a *atom) string {
			return fmt.Sprintf("TD%s%06s", a.pstart.Format("0601"), a.c.id)
		})},
	}
	for i := range cols {
		cols[i].id = fmt.Sprint(799001 + i)
	}
	return cols
}

func productName(a *atom) string {
	switch a.it.kind {
	case kindUsage:
		return a.it.meter.product
	case kindLicence:
		return a.it.lic.product
	}
	return "Azure Credit"
}

func skuName(a *atom) string {
	switch a.it.kind {
	case kindUsage:
		return a.it.meter.sku
	case kindLicence:
		return a.it.lic.product
	}
	return "Azure Credit"
}

func chargeType(a *atom) string {
	switch a.it.kind {
	case kindLicence:
		return ChargePurchase
	case kindCredit:
		return ChargeCredit
	}
	return ChargeUsage
}

// Columns that pin a group to one customer (their values are owned by one customer) and the set
// that pins it to one item; they let aggregation flush per customer or per item, so streaming
// stays bounded (see aggregate).
var (
	customerKeys = []string{"customer_id", "unique_name", "customer_company_name", "domain_name", "azure_customer_id", "cloud_account_number", "cloud_account_name"}
	itemKeys     = []string{"cloud_account_number", "entitlement_id", "resource_uri", "meter_id", "charge_type"}
)

// defaultSelection is the report's saved selection, used when a request sends no selectedColumns.
var defaultSelection = []string{
	"customer_id", "customer_company_name", "azure_customer_id", "cloud_account_number", "entitlement_id",
	"product_name", "sku_name", "meter_category", "meter_name", "meter_id", "region", "resource_uri", "unit",
	"usage_starttime", "usage_endtime", "charge_type", "usage", "seller_cost", "customer_cost", "margin",
	"msrp_cost", "invoice_currency",
}
