package ionsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// query returns the first non-empty value among the names: the real service accepts lowerCamelCase
// and snake_case spellings of the same parameter (ion-api.md §2).
func query(r *http.Request, names ...string) string {
	q := r.URL.Query()
	for _, n := range names {
		if v := q.Get(n); v != "" {
			return v
		}
	}
	return ""
}

func (s *Sim) page(key string) { s.count(func(st *Stats) { st.Pages[key]++ }) }

// ---- customers ----------------------------------------------------------------------------------

type v3Address struct {
	Street  string `json:"street"`
	Suite   string `json:"suite"`
	City    string `json:"city"`
	State   string `json:"state"`
	Zip     string `json:"zip"`
	Country string `json:"country"`
}

type v3Customer struct {
	Name                 string    `json:"name"`
	CustomerOrganization string    `json:"customerOrganization"`
	CustomerAddress      v3Address `json:"customerAddress"`
	CustomerName         string    `json:"customerName"`
	CustomerEmail        string    `json:"customerEmail"`
	CustomerTitle        string    `json:"customerTitle"`
	CustomerPhone        string    `json:"customerPhone"`
	CreateTime           string    `json:"createTime"`
	UpdateTime           string    `json:"updateTime"`
	LanguageCode         string    `json:"languageCode"`
	UID                  string    `json:"uid"`
	CustomerStatus       string    `json:"customerStatus"`
}

func (d *dataset) v3Customer(c *customer) v3Customer {
	return v3Customer{
		Name:                 "accounts/" + d.account + "/customers/" + c.id,
		CustomerOrganization: c.company,
		CustomerAddress:      v3Address{Street: c.street, City: c.city, State: c.state, Zip: c.zip, Country: c.country},
		CustomerName:         c.contact, CustomerEmail: c.email, CustomerTitle: c.title, CustomerPhone: c.phone,
		CreateTime:   c.created.Format(time.RFC3339),
		UpdateTime:   c.created.Add(36*time.Hour + 17*time.Minute).Format("2006-01-02T15:04:05.000Z"),
		LanguageCode: c.lang, UID: guid("uid", d.account, c.id), CustomerStatus: "ACTIVE",
	}
}

// Page tokens are opaque to clients but signed, so a forged or stale-format token is a 400.
func (s *Sim) pageToken(account string, offset int) string {
	sig := hash(uint64(s.opts.Seed), hstr(account), uint64(offset)) % 1_000_000_007
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("o=%d;s=%d", offset, sig)))
}

func (s *Sim) parsePageToken(account, tok string) (int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, false
	}
	var off int
	var sig uint64
	if _, err := fmt.Sscanf(string(b), "o=%d;s=%d", &off, &sig); err != nil || off < 0 {
		return 0, false
	}
	return off, s.pageToken(account, off) == tok
}

func (s *Sim) handleCustomers(w http.ResponseWriter, r *http.Request) {
	d := s.accounts[r.PathValue("account")]
	sizeS := query(r, "pageSize", "page_size")
	tok := query(r, "pageToken", "page_token")
	if sizeS == "" && tok == "" {
		writeEnvelope(w, r, http.StatusBadRequest, "INVALID_REQUEST", "At least one of page_size and page_token must be present")
		return
	}
	size := 100
	if sizeS != "" {
		n, err := strconv.Atoi(sizeS)
		if err != nil || n < 0 {
			writeEnvelope(w, r, http.StatusBadRequest, "INVALID_ARGUMENT", "invalid page_size: "+sizeS)
			return
		}
		if n > 0 {
			size = n
		}
	}
	if m := s.opts.Variant.MaxPageSize; m > 0 && size > m {
		size = m // silently capped: a short page is not the last page
	}
	offset := 0
	if tok != "" {
		var ok bool
		if offset, ok = s.parsePageToken(d.account, tok); !ok {
			writeEnvelope(w, r, http.StatusBadRequest, "INVALID_ARGUMENT", "invalid page_token")
			return
		}
	}
	s.page(fmt.Sprintf("customers offset=%d size=%d", offset, size))
	name := strings.ToLower(query(r, "filter.customerName", "filter.customer_name"))
	status := strings.ToUpper(query(r, "filter.customerStatus", "filter.customer_status"))
	email := strings.ToLower(query(r, "filter.customerEmail", "filter.customer_email"))
	var match []*customer
	for _, c := range s.listed(d) {
		if name != "" && !strings.Contains(strings.ToLower(c.company), name) && !strings.Contains(strings.ToLower(c.contact), name) {
			continue
		}
		if status != "" && status != "CUSTOMER_STATUS_UNSPECIFIED" && status != "ACTIVE" {
			continue
		}
		if email != "" && strings.ToLower(c.email) != email {
			continue
		}
		match = append(match, c)
	}
	out := struct {
		Customers     []v3Customer `json:"customers"`
		NextPageToken string       `json:"nextPageToken,omitempty"`
	}{Customers: []v3Customer{}}
	for i := offset; i < len(match) && i < offset+size; i++ {
		out.Customers = append(out.Customers, d.v3Customer(match[i]))
	}
	if offset+size < len(match) {
		out.NextPageToken = s.pageToken(d.account, offset+size)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) customerOr404(w http.ResponseWriter, r *http.Request) (*dataset, *customer) {
	d := s.accounts[r.PathValue("account")]
	c := d.byID[r.PathValue("customer")]
	if c == nil {
		writeEnvelope(w, r, http.StatusNotFound, "NOT_FOUND",
			fmt.Sprintf("resource 'accounts/%s/customers/%s' not found", d.account, r.PathValue("customer")))
	}
	return d, c
}

func (s *Sim) handleCustomer(w http.ResponseWriter, r *http.Request) {
	d, c := s.customerOr404(w, r)
	if c != nil {
		writeJSON(w, http.StatusOK, d.v3Customer(c))
	}
}

func (s *Sim) handleCloudProfiles(w http.ResponseWriter, r *http.Request) {
	_, c := s.customerOr404(w, r)
	if c == nil {
		return
	}
	profiles := []map[string]any{}
	if p := query(r, "providerId", "provider_id"); p == "" || p == "30" {
		profiles = append(profiles, map[string]any{
			"providerId": "30", "displayName": "Microsoft CSP", "shortName": "microsoft", "enabled": true,
			"customerTenantId": c.tenant, "customerDomain": c.domain, "billingAccounts": []any{},
			"allowDelegatedAccess": true, "gdapStatus": "ACTIVE", "gdapLevel": "STANDARD",
			"gdapRoles": []string{"Directory Readers"}, "agreementStatus": "ACCEPTED",
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"customerId": c.id, "customerOrganization": c.company, "customerCloudProfiles": profiles,
	})
}

// ---- subscriptions ------------------------------------------------------------------------------

// jsonMoney writes a decimal as a JSON number without passing through float64.
func jsonMoney(d decimal.Decimal) json.Number { return json.Number(d.String()) }

func (d *dataset) subscriptions() []map[string]any {
	var out []map[string]any
	for _, c := range d.customers {
		start := time.Date(c.created.Year(), c.created.Month(), c.created.Day(), 0, 0, 0, 0, time.UTC)
		base := func(id, subID, name, rtype string) map[string]any {
			return map[string]any{
				"id": id, "customerId": c.id, "resellerId": d.account, "isvId": "0", "cloudProviderId": "30",
				"subscriptionId": subID, "subscriptionName": name, "resourceType": rtype,
				"subscriptionStatus": "active", "customerName": c.company, "partnerName": d.resellerName,
				"cloudProviderName": "Microsoft CSP", "currency": d.currency, "billingCurrency": d.currency,
				"subscriptionStartDate": start.Format(time.RFC3339), "subscriptionPurchasedDate": start.Format(time.RFC3339),
				"lastUpdatedDate": start.Add(72 * time.Hour).Format(time.RFC3339), "isTrial": false,
			}
		}
		plan := base(c.planIonID, c.planGUID, "Azure plan", "AZURE::Subscription")
		plan["subscriptionBillingType"] = "usage"
		plan["unitType"] = "Usage-based"
		out = append(out, plan)
		for _, e := range c.ents {
			m := base(e.ionID, e.guid, e.desc, "AZURE::CustomerEntitlement")
			m["parentSubscriptionId"] = c.planIonID
			m["subscriptionBillingType"] = "usage"
			out = append(out, m)
		}
		for _, it := range d.items(c) {
			if it.kind != kindLicence {
				continue
			}
			m := base(it.licIonID, it.licGUID, it.lic.product, "AZURE::Subscription")
			seats := decimal.NewFromInt(it.seats)
			cost := seats.Mul(it.unitPrice)
			price := it.unitPrice.Mul(c.markup).Round(10)
			total := seats.Mul(price)
			m["subscriptionStartDate"] = it.licStart.Format(time.RFC3339)
			m["subscriptionEndDate"] = it.licStart.AddDate(1, 0, -1).Format(time.RFC3339)
			m["subscriptionTotalLicenses"] = strconv.FormatInt(it.seats, 10)
			m["unitType"] = "Licenses"
			m["subscriptionSkuId"] = it.lic.productID
			m["subscriptionOfferId"] = fmt.Sprintf("%s,%s,%s", c.country, it.lic.productID, it.lic.skuID)
			m["subscriptionBillingType"] = "license"
			m["subscriptionBillingCycle"] = "monthly"
			m["subscriptionBillingTerm"] = "P1Y"
			m["autoRenew"] = true
			m["mfgPartNumber"] = it.lic.productID + ":" + it.lic.skuID + ":P1Y:M"
			m["price"], m["cost"], m["margin"] = jsonMoney(price), jsonMoney(cost), jsonMoney(total.Sub(cost))
			m["total"], m["msrp"], m["customerCost"] = jsonMoney(total), jsonMoney(it.msrpPrice), jsonMoney(total)
			m["ccpProductInfo"] = map[string]any{"productId": it.lic.productID, "productDisplayName": it.lic.product,
				"skuId": it.lic.skuID, "skuDisplayName": it.lic.product}
			out = append(out, m)
		}
	}
	return out
}

func (s *Sim) handleSubscriptions(w http.ResponseWriter, r *http.Request) {
	d := s.accounts[r.PathValue("account")]
	limit, offset := 100, 0
	for _, p := range []struct {
		dst   *int
		names []string
	}{{&limit, []string{"pagination.limit"}}, {&offset, []string{"pagination.offset"}}} {
		if v := query(r, p.names...); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				writeEnvelope(w, r, http.StatusBadRequest, "INVALID_ARGUMENT", "invalid "+p.names[0]+": "+v)
				return
			}
			*p.dst = n
		}
	}
	if limit == 0 {
		limit = 100
	}
	cust := query(r, "customerId", "customer_id")
	status := strings.ToLower(query(r, "subscriptionStatus", "subscription_status"))
	subID := query(r, "subscriptionId", "subscription_id")
	prov := query(r, "providerId", "provider_id")
	s.page(fmt.Sprintf("subscriptions customer=%s offset=%d limit=%d", cust, offset, limit))
	var match []map[string]any
	for _, m := range d.subscriptions() {
		if (cust != "" && m["customerId"] != cust) || (status != "" && m["subscriptionStatus"] != status) ||
			(subID != "" && m["subscriptionId"] != subID) || (prov != "" && prov != "30") {
			continue
		}
		match = append(match, m)
	}
	items := []map[string]any{}
	for i := offset; i < len(match) && i < offset+limit; i++ {
		items = append(items, match[i])
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"items": items, "paginationResponse": map[string]any{"totalSize": len(match)},
	})
}

// ---- reports ------------------------------------------------------------------------------------

type reportJSON struct {
	ReportID         string      `json:"reportId"`
	ReportTemplateID string      `json:"reportTemplateId"`
	ReportModule     string      `json:"reportModule"`
	DisplayName      string      `json:"displayName"`
	Category         string      `json:"category"`
	CreatedBy        string      `json:"createdBy"`
	LastUpdatedBy    string      `json:"lastUpdatedBy"`
	CreateTime       string      `json:"createTime"`
	AccessTime       string      `json:"accessTime"`
	ProviderIDs      []string    `json:"providerIds"`
	Options          []nameValue `json:"options"`
	Specs            *specsJSON  `json:"specs,omitempty"`
}

type nameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type columnJSON struct {
	ID               string   `json:"id"`
	ColumnTemplateID string   `json:"columnTemplateId"`
	DisplayName      string   `json:"displayName"`
	Groupable        bool     `json:"groupable"`
	DynamicUniqueKey string   `json:"dynamicUniqueKey"`
	Params           []string `json:"params"`
	ValueType        string   `json:"valueType"`
	ColumnHeading    string   `json:"columnHeading"`
}

type selectedJSON struct {
	ID               string `json:"id"`
	ColumnTemplateID string `json:"columnTemplateId"`
	DisplayName      string `json:"displayName"`
	GroupingLevel    int    `json:"groupingLevel,omitempty"`
	IsInvoiceKey     bool   `json:"isInvoiceKey"`
	ValueType        string `json:"valueType"`
	ColumnHeading    string `json:"columnHeading"`
	AggType          string `json:"aggType,omitempty"`
}

type currencyJSON struct {
	Code         string `json:"code"`
	Symbol       string `json:"symbol"`
	Name         string `json:"name"`
	DisplayOrder int    `json:"displayOrder"`
}

type dateRangeJSON struct {
	RelativeDateRange       string     `json:"relativeDateRange,omitempty"`
	RelativeActualDateRange *fixedJSON `json:"relativeActualDateRange,omitempty"`
	FixedDateRange          *fixedJSON `json:"fixedDateRange,omitempty"`
}

type fixedJSON struct {
	StartDate string `json:"startDate"`
	EndDate   string `json:"endDate"`
}

type specsJSON struct {
	AllColumns      []columnJSON   `json:"allColumns,omitempty"`
	SelectedColumns []selectedJSON `json:"selectedColumns"`
	ColumnFilters   []any          `json:"columnFilters"`
	TagKeys         []any          `json:"tagKeys"`
	IsTagKeysTrunc  bool           `json:"isTagKeysTruncated"`
	CustomerFields  []any          `json:"customerFieldKeys"`
	CloudAcctFields []nameValue    `json:"cloudAccountFieldKeys"`
	DateRangeOption struct {
		AvailableRange *dateRangeJSON `json:"availableRange,omitempty"`
		SelectedRange  dateRangeJSON  `json:"selectedRange"`
		BillingDay     string         `json:"billingDay"`
	} `json:"dateRangeOption"`
	CurrencyOption struct {
		AvailableCurrencies []currencyJSON `json:"availableCurrencies,omitempty"`
		SelectedCurrency    currencyJSON   `json:"selectedCurrency"`
	} `json:"currencyOption"`
	ConversionRates []any  `json:"conversionRates"`
	RowsLimit       string `json:"rowsLimit"`
}

var currencyNames = map[string][2]string{
	"EUR": {"€", "Euro"}, "USD": {"$", "US Dollar"}, "SEK": {"kr", "Swedish Krona"}, "DKK": {"kr.", "Danish Krone"},
	"NOK": {"kr", "Norwegian Krone"}, "GBP": {"£", "Pound Sterling"},
}

func currencyOf(code string) currencyJSON {
	n := currencyNames[code]
	if n[1] == "" {
		n = [2]string{code, code}
	}
	return currencyJSON{Code: code, Symbol: n[0], Name: n[1], DisplayOrder: 1}
}

func (s *Sim) reportHeader(d *dataset, id string) (reportJSON, bool) {
	created := time.Date(2024, 8, 29, 12, 34, 29, 0, time.UTC)
	base := reportJSON{
		ReportID: id, ReportModule: "REPORTS_REPORTS_MODULE", Category: "BILLING_REPORTS",
		CreatedBy: "integration@" + asciiSlug(d.resellerName) + ".example", LastUpdatedBy: "integration@" + asciiSlug(d.resellerName) + ".example",
		CreateTime: created.Format(time.RFC3339), AccessTime: s.opts.Now().UTC().Format(time.RFC3339),
		Options: []nameValue{},
	}
	switch id {
	case AzurePlanReportID:
		base.ReportTemplateID, base.DisplayName, base.ProviderIDs = "azure_plan_billing", "Microsoft CSP Billing Customers Report", []string{"30"}
	case OtherReportID:
		base.ReportTemplateID, base.DisplayName, base.ProviderIDs = "aws_billing", "AWS Billing Report", []string{"1"}
	default:
		return reportJSON{}, false
	}
	return base, true
}

func (s *Sim) handleReports(w http.ResponseWriter, r *http.Request) {
	d := s.accounts[r.PathValue("account")]
	out := []reportJSON{}
	switch m := query(r, "module"); m {
	case "", "REPORTS_MODULE_UNSPECIFIED", "REPORTS_REPORTS_MODULE":
		for _, id := range []string{OtherReportID, AzurePlanReportID} {
			rep, _ := s.reportHeader(d, id)
			out = append(out, rep)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"reports": out})
}

func (s *Sim) handleReport(w http.ResponseWriter, r *http.Request) {
	d := s.accounts[r.PathValue("account")]
	rep, ok := s.reportHeader(d, r.PathValue("report"))
	if !ok {
		writeEnvelope(w, r, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("report %s not found", r.PathValue("report")))
		return
	}
	cols := s.columnsFor(rep.ReportID)
	sp := &specsJSON{ColumnFilters: []any{}, TagKeys: []any{}, CustomerFields: []any{}, ConversionRates: []any{},
		CloudAcctFields: []nameValue{}, RowsLimit: "0"}
	for i := range cols {
		c := &cols[i]
		sp.AllColumns = append(sp.AllColumns, columnJSON{ID: c.id, ColumnTemplateID: c.templateID(rep.ReportTemplateID), DisplayName: c.display,
			Groupable: !c.measure(), Params: []string{}, ValueType: c.valueType, ColumnHeading: c.heading(d.currency)})
	}
	sel, _ := s.resolveColumns(rep.ReportID, nil)
	sp.SelectedColumns = selectedList(sel, rep.ReportTemplateID, d.currency)
	sp.DateRangeOption.SelectedRange = dateRangeJSON{RelativeDateRange: "LAST_MONTH"}
	if len(s.periods) > 0 {
		first, _ := time.Parse("2006-01", s.periods[0])
		last, _ := time.Parse("2006-01", s.periods[len(s.periods)-1])
		sp.DateRangeOption.AvailableRange = &dateRangeJSON{FixedDateRange: &fixedJSON{
			StartDate: first.Format(time.RFC3339), EndDate: last.AddDate(0, 1, 0).Add(-time.Second).Format(time.RFC3339)}}
	}
	sp.DateRangeOption.BillingDay = "0"
	sp.CurrencyOption.AvailableCurrencies = []currencyJSON{currencyOf(d.currency)}
	sp.CurrencyOption.SelectedCurrency = currencyOf(d.currency)
	rep.Specs = sp
	writeJSON(w, http.StatusOK, rep)
}

func selectedList(sel []*column, template, currency string) []selectedJSON {
	out := make([]selectedJSON, 0, len(sel))
	level := 0
	for _, c := range sel {
		sj := selectedJSON{ID: c.id, ColumnTemplateID: c.templateID(template), DisplayName: c.display, ValueType: c.valueType,
			ColumnHeading: c.heading(currency)}
		if c.measure() {
			sj.AggType = "SUM_COLUMN_AGGREGATION_TYPE"
		} else {
			level++
			sj.GroupingLevel = level
			sj.IsInvoiceKey = c.key == "customer_id"
		}
		out = append(out, sj)
	}
	return out
}
