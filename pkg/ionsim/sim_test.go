package ionsim

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	bad := []Options{
		{Customers: -1},
		{Accounts: []string{"acme"}},
		{Currency: "eur"},
		{Periods: []string{"2025-13"}},
		{Periods: []string{"2025-03..2025-01"}},
		{Variant: Variant{UnauthorizedBody: "html"}},
		{Faults: Faults{Rate429: 1.5}},
	}
	for _, o := range bad {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	s, err := New(Options{Periods: []string{"2025-01..2025-03", "2024-12"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Periods(), ","); got != "2024-12,2025-01,2025-02,2025-03" {
		t.Errorf("periods %s", got)
	}
}

func TestOAuthRotationAndReuse(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	rt0 := h.sim.Credentials().RefreshToken
	code, tr1 := h.refresh(rt0)
	if code != 200 || tr1.AccessToken == "" || tr1.RefreshToken == "" || tr1.RefreshToken == rt0 || tr1.ExpiresIn != 7200 || tr1.TokenType != "Bearer" {
		t.Fatalf("first refresh: %d %+v", code, tr1)
	}
	// The old refresh token is single-use.
	code, bad := h.refresh(rt0)
	if code != 400 || !strings.Contains(bad.Error, "already used") {
		t.Fatalf("reuse: %d %+v", code, bad)
	}
	code, tr2 := h.refresh(tr1.RefreshToken)
	if code != 200 || tr2.RefreshToken == tr1.RefreshToken {
		t.Fatalf("second refresh: %d %+v", code, tr2)
	}
	code, unk := h.refresh("nope")
	if code != 400 || unk.Error != "cannot validate token: redis: nil" {
		t.Fatalf("unknown: %d %+v", code, unk)
	}
	resp, _ := http.PostForm(h.srv.URL+"/oauth/token", url.Values{"grant_type": {"client_credentials"}})
	if resp.StatusCode != 400 {
		t.Errorf("client_credentials grant: %d", resp.StatusCode)
	}
	st := h.sim.Stats()
	if st.RefreshOK != 2 || st.RefreshReuse != 1 || st.RefreshInvalid != 1 || st.Requests["POST /oauth/token"] != 5 {
		t.Errorf("stats %+v", st)
	}
	// Refresh tokens expire after RefreshTokenTTL.
	h2 := newHarness(t, Options{Faults: Faults{RefreshTokenTTL: time.Minute}})
	h2.clock.Advance(2 * time.Minute)
	if code, tr := h2.refresh(h2.sim.Credentials().RefreshToken); code != 400 || !strings.Contains(tr.Error, "expired") {
		t.Errorf("expired refresh: %d %+v", code, tr)
	}
	// A human re-issue works.
	rt, err := h2.sim.IssueRefreshToken("10001")
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := h2.refresh(rt); code != 200 {
		t.Errorf("re-issued token: %d", code)
	}
}

func TestValidateAccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Faults: Faults{AccessTokenTTL: 10 * time.Second}})
	at := h.login()
	validate := func() (int, map[string]any) {
		resp, err := http.PostForm(h.srv.URL+"/oauth/validateAccess", url.Values{"access_token": {at}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	h.clock.Advance(4 * time.Second)
	code, m := validate()
	if code != 200 || m["access_expires_in"] != float64(6) || m["refresh_expires_in"] != float64(32*24*3600-4) {
		t.Fatalf("validate: %d %v", code, m)
	}
	h.clock.Advance(7 * time.Second)
	if code, m = validate(); code != 400 || m["error"] == nil {
		t.Fatalf("expired validate: %d %v", code, m)
	}
}

func TestBearerFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, want string
	}{{"", ""}, {"envelope", `"error":"UNAUTHENTICATED"`}, {"text", "Unauthorized"}} {
		t.Run("401 "+tc.body, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Options{Accounts: []string{"10001", "20002"}, Variant: Variant{UnauthorizedBody: tc.body},
				Faults: Faults{AccessTokenTTL: 5 * time.Second}})
			code, b, _ := h.do("GET", "/api/v3/accounts/10001/customers?pageSize=10", "")
			if code != 401 || (tc.want == "" && len(b) != 0) || !bytes.Contains(b, []byte(tc.want)) {
				t.Fatalf("missing token: %d %q", code, b)
			}
			h.login()
			if code, _, _ = h.do("GET", "/api/v3/accounts/10001/customers?pageSize=10", ""); code != 200 {
				t.Fatalf("fresh token: %d", code)
			}
			h.clock.Advance(6 * time.Second)
			if code, _, _ = h.do("GET", "/api/v3/accounts/10001/customers?pageSize=10", ""); code != 401 {
				t.Fatalf("expired token: %d", code)
			}
			// A token of account 20002 on account 10001 → 403 envelope.
			_, tr := h.refresh(h.sim.CredentialsFor("20002").RefreshToken)
			h.token = tr.AccessToken
			code, b, _ = h.do("GET", "/api/v3/accounts/10001/customers?pageSize=10", "")
			var env envelopeWire
			_ = json.Unmarshal(b, &env)
			if code != 403 || env.Error != "PERMISSION_DENIED" || env.Message != "permission denied to access accounts/10001" ||
				env.Code != 403 || len(env.Details) != 1 || env.Details[0].Type != "type.googleapis.com/google.rpc.RequestInfo" {
				t.Fatalf("other account: %d %s", code, b)
			}
			if st := h.sim.Stats(); st.Unauthorized != 2 || st.Forbidden != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

type envelopeWire struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Code    int    `json:"code"`
	Details []struct {
		Type      string `json:"@type"`
		RequestID string `json:"requestId"`
	} `json:"details"`
}

type customersWire struct {
	Customers []struct {
		Name                 string `json:"name"`
		CustomerOrganization string `json:"customerOrganization"`
		CustomerStatus       string `json:"customerStatus"`
	} `json:"customers"`
	NextPageToken string `json:"nextPageToken"`
}

func TestCustomersPaging(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Customers: 23, Variant: Variant{MaxPageSize: 4}})
	h.login()
	code, b, _ := h.do("GET", "/api/v3/accounts/10001/customers", "")
	var env envelopeWire
	_ = json.Unmarshal(b, &env)
	if code != 400 || env.Error != "INVALID_REQUEST" || env.Message != "At least one of page_size and page_token must be present" || env.Code != 400 {
		t.Fatalf("no page size: %d %s", code, b)
	}
	seen := map[string]bool{}
	pages := 0
	path := "/api/v3/accounts/10001/customers?pageSize=10"
	for {
		var cw customersWire
		h.getJSON(path, &cw)
		pages++
		if len(cw.Customers) > 4 {
			t.Fatalf("page of %d exceeds MaxPageSize", len(cw.Customers))
		}
		for _, c := range cw.Customers {
			id, ok := strings.CutPrefix(c.Name, "accounts/10001/customers/")
			if !ok || seen[id] || c.CustomerStatus != "ACTIVE" {
				t.Fatalf("bad customer %+v", c)
			}
			seen[id] = true
		}
		if cw.NextPageToken == "" {
			break
		}
		// snake_case spellings are accepted too.
		path = "/api/v3/accounts/10001/customers?page_size=10&page_token=" + url.QueryEscape(cw.NextPageToken)
	}
	if len(seen) != 23 || pages != 6 {
		t.Fatalf("got %d customers in %d pages", len(seen), pages)
	}
	if code, _, _ := h.do("GET", "/api/v3/accounts/10001/customers?pageToken=forged", ""); code != 400 {
		t.Errorf("forged token: %d", code)
	}
	truth := h.sim.GroundTruth("2025-02")
	for _, id := range truth.AllCustomers {
		if !seen[id] {
			t.Errorf("customer %s missing from listing", id)
		}
	}
	id := truth.AllCustomers[0]
	var one struct{ Name string }
	h.getJSON("/api/v3/accounts/10001/customers/"+id, &one)
	if one.Name != "accounts/10001/customers/"+id {
		t.Errorf("get customer: %+v", one)
	}
	code, b, _ = h.do("GET", "/api/v3/accounts/10001/customers/999", "")
	if code != 404 || !bytes.Contains(b, []byte(`"NOT_FOUND"`)) || !bytes.Contains(b, []byte("accounts/10001/customers/999")) {
		t.Errorf("404: %d %s", code, b)
	}
	var cp struct {
		CustomerCloudProfiles []struct {
			ProviderID       string `json:"providerId"`
			CustomerTenantID string `json:"customerTenantId"`
		} `json:"customerCloudProfiles"`
	}
	h.getJSON("/api/v3/accounts/10001/customers/"+id+"/cloudProfiles?providerId=30", &cp)
	if len(cp.CustomerCloudProfiles) != 1 || len(cp.CustomerCloudProfiles[0].CustomerTenantID) != 36 {
		t.Errorf("cloud profiles %+v", cp)
	}
}

func TestSubscriptionsPaging(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Customers: 9})
	h.login()
	total, n := -1, 0
	for off := 0; ; off += 7 {
		var sw struct {
			Items []struct {
				ID                 string `json:"id"`
				CustomerID         string `json:"customerId"`
				SubscriptionStatus string `json:"subscriptionStatus"`
				CloudProviderID    string `json:"cloudProviderId"`
			} `json:"items"`
			PaginationResponse struct {
				TotalSize int `json:"totalSize"`
			} `json:"paginationResponse"`
		}
		h.getJSON(fmt.Sprintf("/api/v3/accounts/10001/subscriptions?pagination.limit=7&pagination.offset=%d", off), &sw)
		total = sw.PaginationResponse.TotalSize
		if len(sw.Items) == 0 {
			break
		}
		for _, it := range sw.Items {
			if _, err := strconv.ParseInt(it.ID, 10, 64); err != nil || it.SubscriptionStatus != "active" || it.CloudProviderID != "30" {
				t.Fatalf("item %+v", it)
			}
		}
		n += len(sw.Items)
	}
	if n != total || n < 9*2 {
		t.Fatalf("paged %d of totalSize %d", n, total)
	}
	var one struct {
		Items []struct {
			CustomerID string `json:"customerId"`
		} `json:"items"`
	}
	cust := h.sim.GroundTruth("2025-02").AllCustomers[3]
	h.getJSON("/api/v3/accounts/10001/subscriptions?customer_id="+cust, &one)
	for _, it := range one.Items {
		if it.CustomerID != cust {
			t.Fatalf("filter leaked %s", it.CustomerID)
		}
	}
}

// Every key of ion-api.md §5.1, copied from the note (not from the catalogue code).
var noteKeys = strings.Fields(`customer_id unique_name customer_company_name customer_company_name_reseller customer_country
customer_state domain_name azure_customer_id azure_customer_country reseller_id reseller_name reseller_mpn_id mpn_id
cloud_account_number cloud_account_name subscription_startdate subscription_enddate entitlement_id entitlement_description
product_id product_name sku_id sku_name availability_id publisher_id publisher_name meter_category meter_sub_category
meter_name meter_id metered_region region resource_group resource_uri unit usage seat_count period_quantity usage_type type
segment usage_starttime usage_endtime charge_type benefit_type benefit_id benefit_order_id reservation_order_id order_date
order_number term_and_billing_cycle term_and_billingcycle billing_frequency pac_of_origin unit_price effective_unit_price
discount_rate rate promotion_id promotion_rate promotion_startdate promotion_enddate price_book price_book_id group_tag_id
group_tag_label seller_cost customer_cost margin msrp_cost seller_cost_raw customer_cost_raw margin_raw seller_cost_invoice
customer_cost_invoice margin_invoice provider_currency invoice_currency conversion_rates invoice_number`)

func TestReportCatalogue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	h.login()
	var list struct {
		Reports []map[string]any `json:"reports"`
	}
	h.getJSON("/api/v3/accounts/10001/reports?module=REPORTS_REPORTS_MODULE", &list)
	found := false
	for _, r := range list.Reports {
		if r["specs"] != nil {
			t.Errorf("list carries specs: %v", r["reportId"])
		}
		if r["reportTemplateId"] == "azure_plan_billing" {
			found = r["reportId"] == "49038" && r["category"] == "BILLING_REPORTS" && fmt.Sprint(r["providerIds"]) == "[30]"
		}
	}
	if !found || len(list.Reports) != 2 {
		t.Fatalf("reports %v", list.Reports)
	}
	var rep struct {
		Specs struct {
			AllColumns []struct {
				ID               string `json:"id"`
				ColumnTemplateID string `json:"columnTemplateId"`
				ValueType        string `json:"valueType"`
				ColumnHeading    string `json:"columnHeading"`
				Groupable        bool   `json:"groupable"`
			} `json:"allColumns"`
			SelectedColumns []any `json:"selectedColumns"`
		} `json:"specs"`
	}
	h.getJSON("/api/v3/accounts/10001/reports/49038?includeMetadata=true", &rep)
	have := map[string]string{}
	for _, c := range rep.Specs.AllColumns {
		if _, err := strconv.ParseInt(c.ID, 10, 64); err != nil {
			t.Errorf("column id %q", c.ID)
		}
		key, ok := strings.CutPrefix(c.ColumnTemplateID, "azure_plan_billing.")
		if !ok {
			t.Errorf("template id %q", c.ColumnTemplateID)
		}
		have[key] = c.ValueType + "|" + c.ColumnHeading
	}
	for _, k := range noteKeys {
		if _, ok := have[k]; !ok {
			t.Errorf("catalogue misses %s", k)
		}
	}
	if len(have) != len(noteKeys) {
		t.Errorf("catalogue has %d columns, note %d", len(have), len(noteKeys))
	}
	if have["seller_cost"] != "MONEY|Seller Cost (EUR)" || have["usage"] != "FLOAT|Usage Quantity" {
		t.Errorf("money/usage columns: %q %q", have["seller_cost"], have["usage"])
	}
	if len(rep.Specs.SelectedColumns) == 0 {
		t.Error("no saved selection")
	}
	if code, _, _ := h.do("GET", "/api/v3/accounts/10001/reports/1", ""); code != 404 {
		t.Errorf("unknown report: %d", code)
	}
}

// The control query (customer, currency, seller_cost_invoice) must equal ground truth exactly in
// every variant, with subtotal rows skipped.
func TestControlTotalsEqualTruth(t *testing.T) {
	t.Parallel()
	for _, v := range []Variant{
		{},
		{Daily: true},
		{Daily: true, EndDateInclusive: true, SubtotalRows: true},
		{SubtotalRows: true, MoneyAsString: true},
	} {
		t.Run(fmt.Sprintf("%+v", v), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Options{Customers: 7, Variant: v})
			h.login()
			for _, p := range []string{"2025-01", "2025-02", "2025-03"} {
				start, _ := time.Parse("2006-01", p)
				end := start.AddDate(0, 1, 0).Add(-time.Second)
				dr := h.data(fixedBody(cols("customer_id", "invoice_currency", "seller_cost_invoice"), start.Format(time.RFC3339), end.Format(time.RFC3339)))
				got := controlTotals(t, dr)
				truth := h.sim.GroundTruth(p)
				if len(got) != len(truth.Customers) || len(truth.Customers) == 0 {
					t.Fatalf("%s: %d groups, truth %d", p, len(got), len(truth.Customers))
				}
				for _, c := range truth.Customers {
					if g := got[c.CustomerID+"|"+c.Currency]; !g.Equal(c.SellerCost) {
						t.Errorf("%s customer %s: got %s want %s", p, c.CustomerID, g, c.SellerCost)
					}
				}
				if v.SubtotalRows && len(dr.Results.Rows) != 2*len(truth.Customers)+1 {
					t.Errorf("%s: %d rows with subtotals", p, len(dr.Results.Rows))
				}
				if dr.ResultCount != strconv.Itoa(len(dr.Results.Rows)) || dr.AvailableRowsCount != dr.ResultCount {
					t.Errorf("counts %s/%s for %d rows", dr.ResultCount, dr.AvailableRowsCount, len(dr.Results.Rows))
				}
			}
			// Leaf rows: one per item and day (Daily) or per item and month.
			leaf := cols("customer_id", "cloud_account_number", "entitlement_id", "resource_uri", "meter_id", "charge_type",
				"usage_starttime", "usage_endtime", "seller_cost_invoice")
			dr := h.data(fixedBody(leaf, "2025-02-01T00:00:00Z", "2025-02-28T23:59:59Z"))
			leaves := 0
			sum := decimal.Zero
			for _, r := range dr.Results.Rows {
				if r.Values[0].ValueType == "STRING" {
					continue
				}
				leaves++
				d, _ := decimal.NewFromString(r.Values[8].text())
				sum = sum.Add(d)
			}
			truth := h.sim.GroundTruth("2025-02")
			if leaves != truth.Rows || !sum.Equal(truth.SellerCost) {
				t.Errorf("leaf rows %d sum %s, truth %d %s", leaves, sum, truth.Rows, truth.SellerCost)
			}
		})
	}
}

func TestMoneyWireForms(t *testing.T) {
	t.Parallel()
	for _, asString := range []bool{false, true} {
		h := newHarness(t, Options{Variant: Variant{MoneyAsString: asString}})
		h.login()
		dr := h.data(fixedBody(cols("customer_id", "seller_cost"), "2025-02-01T00:00:00Z", "2025-02-28T23:59:59Z"))
		raw := string(dr.Results.Rows[0].Values[1].MoneyValue.Value)
		if strings.HasPrefix(raw, `"`) != asString {
			t.Errorf("MoneyAsString=%v: value %s", asString, raw)
		}
		if frac := raw[strings.IndexByte(raw, '.')+1:]; len(strings.Trim(frac, `"`)) != 10 {
			t.Errorf("value %s is not 10 dp", raw)
		}
	}
}

func TestRowsCapTruncation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Variant: Variant{RowsCap: 25, Daily: true}})
	h.login()
	body := fixedBody(cols("customer_id", "resource_uri", "usage_starttime", "seller_cost"), "2025-02-01T00:00:00Z", "2025-02-28T23:59:59Z")
	dr := h.data(body)
	avail, _ := strconv.Atoi(dr.AvailableRowsCount)
	if dr.ResultCount != "25" || len(dr.Results.Rows) != 25 || avail <= 25 {
		t.Fatalf("capped: result %s available %s rows %d", dr.ResultCount, dr.AvailableRowsCount, len(dr.Results.Rows))
	}
	// rowsLimit in the body caps below RowsCap; a single customer fits under the cap.
	dr = h.data(strings.Replace(body, `"specs":{`, `"specs":{"rowsLimit":"5",`, 1))
	if dr.ResultCount != "5" {
		t.Errorf("rowsLimit 5: %s", dr.ResultCount)
	}
	cust := h.sim.GroundTruth("2025-02").Customers[0].CustomerID
	one := strings.Replace(body, `"specs":{`, `"specs":{"columnFilters":[{"columnTemplateId":"azure_plan_billing.customer_id","selectedValues":[{"valueId":"`+cust+`"}]}],`, 1)
	h2 := newHarness(t, Options{Variant: Variant{Daily: false}})
	h2.login()
	dr = h2.data(one)
	if dr.ResultCount != dr.AvailableRowsCount {
		t.Errorf("filtered: %s/%s", dr.ResultCount, dr.AvailableRowsCount)
	}
	for _, r := range dr.Results.Rows {
		if r.Values[0].IntValue != cust {
			t.Fatalf("filter leaked customer %s", r.Values[0].IntValue)
		}
	}
}

func TestSnakeCaseBodyEqualsCamel(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Variant: Variant{Daily: true}})
	h.login()
	cust := h.sim.GroundTruth("2025-01").Customers[1].CustomerID
	camel := `{"reportId":"49038","reportModule":"REPORTS_REPORTS_MODULE","specs":{"selectedColumns":` +
		cols("customer_id", "meter_name", "usage_starttime", "usage", "seller_cost_invoice") +
		`,"columnFilters":[{"columnTemplateId":"azure_plan_billing.customer_id","selectedValues":[{"displayValue":{"intValue":"` + cust + `"}}]}]` +
		`,"dateRangeOption":{"selectedRange":{"fixedDateRange":{"startDate":"2025-01-01T00:00:00Z","endDate":"2025-01-31T23:59:59Z"}}}` +
		`,"currencyOption":{"selectedCurrency":{"code":"EUR"}},"rowsLimit":"0"}}`
	snakeBody := `{"report_id":49038,"report_module":"REPORTS_REPORTS_MODULE","specs":{"selected_columns":[` +
		`{"column_template_id":"azure_plan_billing.customer_id"},{"column_template_id":"azure_plan_billing.meter_name"},` +
		`{"column_template_id":"azure_plan_billing.usage_starttime"},{"column_template_id":"azure_plan_billing.usage"},` +
		`{"column_template_id":"azure_plan_billing.seller_cost_invoice"}],` +
		`"column_filters":[{"column_template_id":"azure_plan_billing.customer_id","selected_values":[{"value_id":"` + cust + `"}]}],` +
		`"date_range_option":{"selected_range":{"fixed_date_range":{"start_date":"2025-01-01T00:00:00Z","end_date":"2025-01-31T23:59:59Z"}}},` +
		`"currency_option":{"selected_currency":{"code":"EUR"}},"rows_limit":0}}`
	a, b := h.data(camel), h.data(snakeBody)
	ja, _ := json.Marshal(a.Results)
	jb, _ := json.Marshal(b.Results)
	if len(a.Results.Rows) == 0 || !bytes.Equal(ja, jb) {
		t.Fatalf("camel %d rows, snake %d rows, equal=%v", len(a.Results.Rows), len(b.Results.Rows), bytes.Equal(ja, jb))
	}
	// Column ids work as well as template ids; a wrong reportId or currency is a 400.
	byID := strings.Replace(camel, `{"columnTemplateId":"azure_plan_billing.customer_id"},`, `{"id":"799001"},`, 1)
	if c := h.data(byID); len(c.Results.Rows) != len(a.Results.Rows) {
		t.Error("selection by column id differs")
	}
	for _, bad := range []string{
		strings.Replace(camel, `"reportId":"49038"`, `"reportId":"1"`, 1),
		strings.Replace(camel, `"code":"EUR"`, `"code":"USD"`, 1),
		strings.Replace(camel, `meter_name`, `no_such_column`, 1),
		`{"specs":{"dateRangeOption":{"selectedRange":{"relativeDateRange":"NEXT_DECADE"}}}}`,
		`{not json`,
	} {
		if code, body, _ := h.do("POST", "/api/v3/accounts/10001/reports/49038/data", bad); code != 400 || !bytes.Contains(body, []byte(`"INVALID_ARGUMENT"`)) {
			t.Errorf("bad body accepted: %d %s", code, body)
		}
	}
}

func TestCSVEqualsJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Variant: Variant{Daily: true, SubtotalRows: true}})
	h.login()
	keys := []string{"customer_id", "customer_company_name", "unique_name", "product_name", "unit", "usage_starttime", "usage", "seller_cost", "customer_cost", "margin", "msrp_cost"}
	body := fixedBody(cols(keys...), "2025-02-01T00:00:00Z", "2025-02-28T23:59:59Z")
	dr := h.data(body)
	code, raw, _ := h.do("POST", "/api/v3/accounts/10001/reports/49038/reportDataCsv", body)
	if code != 200 {
		t.Fatalf("csv: %d %s", code, raw)
	}
	var cr struct {
		Results     string `json:"results"`
		ResultCount string `json:"resultCount"`
	}
	if err := json.Unmarshal(raw, &cr); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(cr.Results)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], "|") != "Customer ID|Customer Company|Customer Name|Product Name|Unit|Charge StartDate|Usage Quantity|Seller Cost (EUR)|Customer Cost (EUR)|Margin (EUR)|MSRP (EUR)" {
		t.Errorf("header %q", recs[0])
	}
	if cr.ResultCount != dr.ResultCount || len(recs)-1 != len(dr.Results.Rows) {
		t.Fatalf("csv %s rows (%d records), json %s", cr.ResultCount, len(recs)-1, dr.ResultCount)
	}
	sawQuote := false
	for i, row := range dr.Results.Rows {
		for j, v := range row.Values {
			if recs[i+1][j] != v.text() {
				t.Fatalf("row %d col %s: csv %q json %q", i, keys[j], recs[i+1][j], v.text())
			}
			sawQuote = sawQuote || strings.ContainsAny(v.text(), `",`)
		}
	}
	if !sawQuote {
		t.Error("no name with a comma or quote exercised the escaping")
	}
}

type v1Tree struct {
	Success bool `json:"success"`
	Data    []struct {
		Entity map[string]string `json:"entity"`
		Lines  []struct {
			Entity map[string]string `json:"entity"`
			Lines  []struct {
				Entity map[string]string `json:"entity"`
				Lines  []struct {
					Entity map[string]string  `json:"entity"`
					Data   map[string]*string `json:"data"`
				} `json:"lines"`
			} `json:"lines"`
		} `json:"lines"`
	} `json:"data"`
}

func TestV1TreeEqualsV3Truth(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Customers: 6})
	c := h.sim.Credentials()
	get := func(path string, user, pass string) (int, []byte) {
		req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	if code, _ := get("/api/v1/customers", c.APIKey, "wrong"); code != 401 {
		t.Fatalf("wrong secret: %d", code)
	}
	code, b := get("/api/v1/customers?limit=100&offset=0", c.APIKey, c.APISecret)
	var cl struct {
		Success bool `json:"success"`
		Data    struct {
			Customer []struct {
				ID      string `json:"id"`
				Company string `json:"company"`
			} `json:"customer"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &cl); err != nil || code != 200 || !cl.Success || len(cl.Data.Customer) != 6 {
		t.Fatalf("v1 customers: %d %s", code, b)
	}
	for _, dr := range []string{"m-2-2025", "m-02-2025"} {
		truth := h.sim.GroundTruth("2025-02")
		total := decimal.Zero
		for _, cu := range cl.Data.Customer {
			code, b := get("/api/v1/reports/billing/azureplan?filter[date_range]="+dr+"&filter[customer_id]="+cu.ID+"&filter[report_currency]=EUR", c.APIKey, c.APISecret)
			var tree v1Tree
			if err := json.Unmarshal(b, &tree); err != nil || code != 200 || !tree.Success {
				t.Fatalf("tree: %d %s", code, b)
			}
			sum := decimal.Zero
			for _, cust := range tree.Data {
				for _, sub := range cust.Lines {
					for _, prod := range sub.Lines {
						for _, sku := range prod.Lines {
							cost := sku.Data["cost"]
							if cost == nil || len(*cost) < 12 || (*cost)[len(*cost)-11] != '.' {
								t.Fatalf("cost %v is not a 10-dp string", cost)
							}
							d := decimal.RequireFromString(*cost)
							sum = sum.Add(d)
							_, hasUnit := sku.Data["unit"]
							if prod.Entity["id"] == "Virtual Machines" && !hasUnit {
								t.Errorf("usage line without unit")
							}
							if strings.HasPrefix(prod.Entity["id"], "Microsoft 365") && hasUnit {
								t.Errorf("licence line with unit")
							}
						}
					}
				}
			}
			want, _ := truth.Customer(cu.ID)
			if !sum.Equal(want.SellerCost) {
				t.Errorf("%s customer %s: v1 %s v3 truth %s", dr, cu.ID, sum, want.SellerCost)
			}
			total = total.Add(sum)
		}
		if !total.Equal(truth.SellerCost) {
			t.Errorf("v1 total %s, truth %s", total, truth.SellerCost)
		}
	}
	if code, _ := get("/api/v1/reports/billing/azureplan?filter[date_range]=2025-02", c.APIKey, c.APISecret); code != 400 {
		t.Errorf("bad date range: %d", code)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	fetch := func(seed int64) ([]byte, []byte, string) {
		h := newHarness(t, Options{Seed: seed, Variant: Variant{Daily: true}})
		h.login()
		_, cust, _ := h.do("GET", "/api/v3/accounts/10001/customers?pageSize=100", "")
		_, data, _ := h.do("POST", "/api/v3/accounts/10001/reports/49038/data", `{"specs":{"dateRangeOption":{"selectedRange":{"relativeDateRange":"LAST_MONTH"}}}}`)
		return cust, data, h.sim.Credentials().RefreshToken
	}
	c1, d1, t1 := fetch(7)
	c2, d2, t2 := fetch(7)
	c3, d3, _ := fetch(8)
	if !bytes.Equal(c1, c2) || !bytes.Equal(d1, d2) || t1 != t2 {
		t.Fatal("same seed, different bytes")
	}
	if bytes.Equal(c1, c3) || bytes.Equal(d1, d3) {
		t.Fatal("different seeds, same bytes")
	}
}

func TestRelativeRangesAndInclusiveEnd(t *testing.T) {
	t.Parallel()
	for _, incl := range []bool{false, true} {
		h := newHarness(t, Options{Variant: Variant{Daily: true, EndDateInclusive: incl}})
		h.login()
		sel := cols("customer_id", "invoice_currency", "seller_cost_invoice")
		dr := h.data(`{"specs":{"selectedColumns":` + sel + `,"dateRangeOption":{"selectedRange":{"relativeDateRange":"LAST_MONTH"}}}}`)
		sum := decimal.Zero
		for _, v := range controlTotals(t, dr) {
			sum = sum.Add(v)
		}
		if want := h.sim.GroundTruth("2025-02").SellerCost; !sum.Equal(want) {
			t.Errorf("incl=%v LAST_MONTH %s, truth %s", incl, sum, want)
		}
		// An end at the next month's midnight pulls in that day only when the end is inclusive.
		dr = h.data(fixedBody(cols("usage_starttime", "seller_cost"), "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"))
		sawFeb := false
		for _, r := range dr.Results.Rows {
			sawFeb = sawFeb || strings.HasPrefix(r.Values[0].text(), "2025-02")
		}
		if sawFeb != incl {
			t.Errorf("incl=%v: rows of 2025-02-01 present=%v", incl, sawFeb)
		}
		// MONTH_TO_DATE covers the current (incomplete) month: days before today only.
		dr = h.data(`{"specs":{"selectedColumns":` + cols("usage_starttime", "seller_cost") + `,"dateRangeOption":{"selectedRange":{"relativeDateRange":"MONTH_TO_DATE"}}}}`)
		for _, r := range dr.Results.Rows {
			if d := r.Values[0].text(); d < "2025-03-01" || d >= "2025-03-15" {
				t.Errorf("MONTH_TO_DATE row dated %s", d)
			}
		}
		if len(dr.Results.Rows) != 14 {
			t.Errorf("MONTH_TO_DATE: %d days", len(dr.Results.Rows))
		}
	}
}

func TestRestate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Customers: 4})
	h.login()
	before := h.sim.GroundTruth("2025-01")
	after, err := h.sim.Restate("2025-01", 0.3)
	if err != nil {
		t.Fatal(err)
	}
	if !after.SellerCost.GreaterThan(before.SellerCost) || after.Restatements != 1 {
		t.Fatalf("restate: %s → %s", before.SellerCost, after.SellerCost)
	}
	dr := h.data(fixedBody(cols("customer_id", "invoice_currency", "seller_cost_invoice"), "2025-01-01T00:00:00Z", "2025-01-31T23:59:59Z"))
	for _, c := range after.Customers {
		if g := controlTotals(t, dr)[c.CustomerID+"|EUR"]; !g.Equal(c.SellerCost) {
			t.Errorf("customer %s: %s, restated truth %s", c.CustomerID, g, c.SellerCost)
		}
	}
	if other := h.sim.GroundTruth("2025-02"); other.Restatements != 0 {
		t.Error("restating one period touched another")
	}
	if _, err := h.sim.Restate("1999-01", 0.1); err == nil {
		t.Error("restated a period without data")
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Faults: Faults{Rate429: 1, RetryAfter: 3}})
	code, _, hdr := h.do("GET", "/api/v3/accounts/10001/customers?pageSize=1", "")
	if code != 429 || hdr.Get("Retry-After") != "3" {
		t.Errorf("429: %d %q", code, hdr.Get("Retry-After"))
	}
	h = newHarness(t, Options{Faults: Faults{Rate503: 1}})
	if code, b, _ := h.do("GET", "/api/v3/accounts/10001/customers?pageSize=1", ""); code != 503 || !bytes.Contains(b, []byte("UNAVAILABLE")) {
		t.Errorf("503: %d %s", code, b)
	}
	// Truncation hits report bodies only: OAuth and customers stay whole.
	h = newHarness(t, Options{Faults: Faults{TruncateJSON: 1}})
	h.login()
	code, b, _ := h.do("GET", "/api/v3/accounts/10001/customers?pageSize=100", "")
	if code != 200 || !json.Valid(b) {
		t.Fatalf("customers truncated: %d", code)
	}
	code, b, _ = h.do("POST", "/api/v3/accounts/10001/reports/49038/data", "")
	if code != 200 || json.Valid(b) {
		t.Fatalf("report not truncated: %d valid=%v", code, json.Valid(b))
	}
	if st := h.sim.Stats(); st.Truncated != 1 {
		t.Errorf("truncated count %d", st.Truncated)
	}
	// A fraction hits about that share, reproducibly.
	count := func() int {
		h := newHarness(t, Options{Seed: 3, Faults: Faults{Rate429: 0.3}})
		n := 0
		for i := 0; i < 200; i++ {
			if code, _, _ := h.do("GET", "/api/v3/accounts/10001/customers?pageSize=1", ""); code == 429 {
				n++
			}
		}
		return n
	}
	n1, n2 := count(), count()
	if n1 != n2 || n1 < 40 || n1 > 80 {
		t.Errorf("429 picks %d and %d of 200", n1, n2)
	}
	// The variant rate limit: RateLimitRPS per second of the sim clock.
	h = newHarness(t, Options{Variant: Variant{RateLimit429: true, RateLimitRPS: 3}})
	h.login()
	codes := []int{}
	for i := 0; i < 5; i++ {
		c, _, _ := h.do("GET", "/api/v3/accounts/10001/customers?pageSize=1", "")
		codes = append(codes, c)
	}
	h.clock.Advance(time.Second)
	c, _, _ := h.do("GET", "/api/v3/accounts/10001/customers?pageSize=1", "")
	if fmt.Sprint(codes) != "[200 200 200 429 429]" || c != 200 {
		t.Errorf("rate limit codes %v then %d", codes, c)
	}
}

func TestStartAndDescribe(t *testing.T) {
	t.Parallel()
	s, err := New(Options{Seed: 5, Customers: 2, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	addr, err := s.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.PostForm("http://"+addr+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.Credentials().RefreshToken}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("token over TCP: %v %v", err, resp)
	}
	resp.Body.Close()
	var buf bytes.Buffer
	if err := s.Describe(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"http://" + addr, "10001", s.Credentials().RefreshToken, s.Credentials().APISecret, "curl"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("describe lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestLostTokenResponseSpendsToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Faults: Faults{LoseTokenResponse: 1}})
	rt := h.sim.Credentials().RefreshToken
	resp, err := http.PostForm(h.srv.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("response arrived: %d", resp.StatusCode)
	}
	// The client retries with the token it still holds: spent.
	if code, tr := h.refresh(rt); code != 400 || !strings.Contains(tr.Error, "already used") {
		t.Fatalf("retry with the spent token: %d %+v", code, tr)
	}
	if st := h.sim.Stats(); st.LostTokens != 1 || st.RefreshReuse != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTruncateAbortAndPages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Faults: Faults{TruncateJSON: 1, TruncateAbort: true}})
	h.login()
	req, _ := http.NewRequest("POST", h.srv.URL+"/api/v3/accounts/10001/reports/49038/data", strings.NewReader(""))
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		var buf bytes.Buffer
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("aborted body read without error")
	}
	st := h.sim.Stats()
	n := 0
	for k, v := range st.Pages {
		if strings.HasPrefix(k, "report 49038 customers=* ") {
			n += v
		}
	}
	if n != 1 || st.Requests["POST /api/v3/accounts/{account}/reports/{report}/data"] != 1 {
		t.Errorf("pages %v requests %v", st.Pages, st.Requests)
	}
}

// UnlistedCustomers hides customers from /customers but not from report data.
func TestUnlistedCustomers(t *testing.T) {
	sim, err := New(Options{Seed: 1, Customers: 4, Meters: 1, Variant: Variant{UnlistedCustomers: 1}})
	if err != nil {
		t.Fatal(err)
	}
	p := sim.Periods()[0]
	tr := sim.GroundTruth(p)
	if len(tr.AllCustomers) != 3 {
		t.Fatalf("AllCustomers %v, want 3", tr.AllCustomers)
	}
	hidden := sim.accounts[sim.primary].customers[3].id
	if _, ok := tr.Customer(hidden); !ok {
		t.Errorf("unlisted customer %s has no data", hidden)
	}
	for _, id := range tr.AllCustomers {
		if id == hidden {
			t.Errorf("unlisted customer %s is listed", hidden)
		}
	}
}
