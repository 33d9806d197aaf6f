package ion

import (
	"context"
	"net/url"
	"strconv"
)

// ProductInfo names the catalogue product of a subscription.
type ProductInfo struct {
	ProductID          string `json:"productId"`
	ProductDisplayName string `json:"productDisplayName"`
	SkuID              string `json:"skuId"`
	SkuDisplayName     string `json:"skuDisplayName"`
	PlanID             string `json:"planId"`
	PlanDisplayName    string `json:"planDisplayName"`
}

// Subscription is one item of the v3 subscription list. Money is exact; ids are text.
type Subscription struct {
	ID                 ID          `json:"id"` // Ion internal id
	CustomerID         ID          `json:"customerId"`
	ResellerID         ID          `json:"resellerId"`
	CloudProviderID    ID          `json:"cloudProviderId"`
	SubscriptionID     string      `json:"subscriptionId"` // provider GUID
	Name               string      `json:"subscriptionName"`
	ResourceType       string      `json:"resourceType"`
	SkuID              string      `json:"subscriptionSkuId"`
	OfferID            string      `json:"subscriptionOfferId"`
	TotalLicenses      Int64       `json:"subscriptionTotalLicenses"`
	UnitType           string      `json:"unitType"`
	Status             string      `json:"subscriptionStatus"` // compare case-insensitively
	StartDate          Time        `json:"subscriptionStartDate"`
	EndDate            Time        `json:"subscriptionEndDate"`
	BillingType        string      `json:"subscriptionBillingType"`
	BillingCycle       string      `json:"subscriptionBillingCycle"`
	BillingTerm        string      `json:"subscriptionBillingTerm"`
	ProductInfo        ProductInfo `json:"ccpProductInfo"`
	CustomerName       string      `json:"customerName"`
	ParentSubscription ID          `json:"parentSubscriptionId"`
	Price              Decimal     `json:"price"`
	Cost               Decimal     `json:"cost"`
	Margin             Decimal     `json:"margin"`
	Total              Decimal     `json:"total"`
	MSRP               Decimal     `json:"msrp"`
	CustomerCost       Decimal     `json:"customerCost"`
	Currency           string      `json:"currency"`
	BillingCurrency    string      `json:"billingCurrency"`
	LastUpdated        Time        `json:"lastUpdatedDate"`
}

// SubscriptionFilter narrows ListSubscriptions; empty fields are not sent.
type SubscriptionFilter struct {
	CustomerID   string
	ProviderID   string // ProviderMicrosoft for CSP
	Status       string
	ResourceType string // e.g. AZURE::CustomerEntitlement
	Limit        int    // page size; default 100
	Extra        url.Values
}

// ListSubscriptions pages with pagination.limit/offset until a page is empty or totalSize is
// reached.
func (c *Client) ListSubscriptions(ctx context.Context, f SubscriptionFilter) ([]Subscription, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	path := c.v3("/subscriptions")
	var all []Subscription
	for offset := 0; ; {
		q := url.Values{}
		for k, v := range f.Extra {
			q[k] = append([]string(nil), v...)
		}
		set := func(k, v string) {
			if v != "" {
				q.Set(k, v)
			}
		}
		set("customerId", f.CustomerID)
		set("providerId", f.ProviderID)
		set("subscriptionStatus", f.Status)
		set("resourceType", f.ResourceType)
		q.Set("pagination.limit", strconv.Itoa(limit))
		q.Set("pagination.offset", strconv.Itoa(offset))
		var page struct {
			Items      []Subscription `json:"items"`
			TotalCount Int64          `json:"totalCount"`
			Pagination struct {
				TotalSize Int64 `json:"totalSize"`
			} `json:"paginationResponse"`
		}
		if err := c.getJSON(ctx, authV3, path, q, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		total := int(page.Pagination.TotalSize)
		if total == 0 {
			total = int(page.TotalCount)
		}
		offset += len(page.Items)
		if len(page.Items) == 0 || (total > 0 && offset >= total) {
			return all, nil
		}
	}
}
