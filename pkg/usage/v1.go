package usage

// V1 charge types: the v1 azureplan report has no charge type column, so the adapter names
// its two kinds of leaf and the ChargeTable maps them like any other charge type.
const (
	// ColV1PriceCurrency is the v1 subscription's price_currency, the currency of the customer
	// price; only v1 lines carry it.
	ColV1PriceCurrency = "price_currency"

	V1ChargeUsage   = "v1-usage"   // leaf with a unit: Azure plan consumption
	V1ChargeLicense = "v1-license" // leaf without a unit: a licence
)

// V1Leaf is one leaf of the v1 azureplan billing tree (ion-api.md §5.2): customer →
// subscription → product → sku → data. Values are the raw decimal strings Ion sent.
type V1Leaf struct {
	CustomerID      string `json:"customer_id"`      // level 0 entity id (Ion v1 customer id)
	CustomerCompany string `json:"customer_company"` // level 0 entity company
	SubscriptionID  string `json:"subscription_id"`  // level 1 entity id
	CostCurrency    string `json:"cost_currency"`    // level 1 cost_currency
	PriceCurrency   string `json:"price_currency"`   // level 1 price_currency
	Product         string `json:"product"`          // level 2 entity id (≈ meter category or licence name)
	Sku             string `json:"sku"`              // level 3 entity id (≈ meter or sku name)
	Price           string `json:"price"`            // data.price: customer price
	Cost            string `json:"cost"`             // data.cost: seller cost
	Usage           string `json:"usage"`            // data.usage
	Unit            string `json:"unit"`             // data.unit, absent on licence leaves
}

// LineFromV1 maps a v1 leaf onto the v3 column keys so one normalizer handles both modes.
// v1 rows have no meter, resource or daily dates: the record's charge period is the billing
// period. The product becomes both product and meter category, which is what it usually is
// ("Bandwidth", "Premium SSD Managed Disks") and lets the service fallback classify it.
func LineFromV1(number int, leaf V1Leaf) Line {
	charge := V1ChargeUsage
	if leaf.Unit == "" {
		charge = V1ChargeLicense
	}
	return Line{Number: number, Cols: map[string]string{
		ColCustomerID:          leaf.CustomerID,
		ColCustomerCompanyName: leaf.CustomerCompany,
		ColCloudAccountNumber:  leaf.SubscriptionID,
		ColProductName:         leaf.Product,
		ColMeterCategory:       leaf.Product,
		ColSkuName:             leaf.Sku,
		ColUnit:                leaf.Unit,
		ColUsage:               leaf.Usage,
		ColChargeType:          charge,
		ColSellerCostInvoice:   leaf.Cost,
		ColCustomerCostInvoice: leaf.Price,
		ColInvoiceCurrency:     leaf.CostCurrency,
		ColV1PriceCurrency:     leaf.PriceCurrency,
	}}
}
