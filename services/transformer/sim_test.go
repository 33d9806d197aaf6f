package transformer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
)

const testColumnSetVersion = "azure_plan_billing.leaf.v1"

// leafColumns is the pinned selection the tests request: every grouping column the normalizer
// reads, and the money the reseller view needs.
var leafColumns = []string{
	"customer_id", "customer_company_name", "azure_customer_id", "reseller_id", "cloud_account_number",
	"entitlement_id", "entitlement_description", "product_id", "product_name", "sku_id", "sku_name",
	"publisher_name", "meter_category", "meter_sub_category", "meter_name", "meter_id", "region",
	"resource_group", "resource_uri", "unit", "usage", "seat_count", "usage_starttime", "usage_endtime",
	"charge_type", "invoice_number", "seller_cost_invoice", "customer_cost_invoice", "margin_invoice",
	"msrp_cost", "invoice_currency",
}

// sandbox is a started Ion sandbox with a v3 access token.
type sandbox struct {
	sim     *ionsim.Sim
	base    string
	account string
	token   string
	creds   ionsim.Credentials
	columns []map[string]any // the report's allColumns entries, by key
}

func startSandbox(t testing.TB, opts ionsim.Options) *sandbox {
	t.Helper()
	sim, err := ionsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	base, err := sim.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(base, "http") {
		base = sim.BaseURL()
	}
	t.Cleanup(func() { _ = sim.Close() })
	sb := &sandbox{sim: sim, base: base, creds: sim.Credentials()}
	sb.account = sb.creds.AccountID
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {sb.creds.RefreshToken}}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	sb.do(t, http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()), "application/x-www-form-urlencoded", false, &tok)
	sb.token = tok.AccessToken
	var rep struct {
		Specs struct {
			AllColumns []map[string]any `json:"allColumns"`
		} `json:"specs"`
	}
	sb.do(t, http.MethodGet, "/api/v3/accounts/"+sb.account+"/reports/"+ionsim.AzurePlanReportID, nil, "", true, &rep)
	sb.columns = rep.Specs.AllColumns
	return sb
}

func (sb *sandbox) do(t testing.TB, method, path string, body io.Reader, ctype string, bearer bool, into any) []byte {
	t.Helper()
	req, err := http.NewRequest(method, sb.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if bearer {
		req.Header.Set("Authorization", "Bearer "+sb.token)
	}
	if strings.HasPrefix(path, "/api/v1/") {
		req.SetBasicAuth(sb.creds.APIKey, sb.creds.APISecret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return b
}

// v3Request builds the report body the fetcher sends: Ion's own shape, pinned columns, explicit
// filters and currency.
func (sb *sandbox) v3Request(t testing.TB, keys []string, customer string, from, to time.Time) []byte {
	t.Helper()
	byKey := map[string]map[string]any{}
	for _, c := range sb.columns {
		tid, _ := c["columnTemplateId"].(string)
		byKey[tid[strings.LastIndexByte(tid, '.')+1:]] = c
	}
	sel := []map[string]any{}
	for _, k := range keys {
		c, ok := byKey[k]
		if !ok {
			continue // not in this report's catalogue
		}
		sel = append(sel, map[string]any{"id": c["id"], "columnTemplateId": c["columnTemplateId"], "displayName": c["displayName"]})
	}
	filters := []any{}
	if customer != "" {
		c := byKey["customer_id"]
		filters = append(filters, map[string]any{"id": c["id"], "columnTemplateId": c["columnTemplateId"],
			"selectedValues": []any{map[string]any{"valueId": customer, "displayValue": map[string]string{"valueType": "STRING", "stringValue": customer}}}})
	}
	body := map[string]any{
		"reportId": ionsim.AzurePlanReportID, "reportTemplateId": "azure_plan_billing",
		"specs": map[string]any{
			"selectedColumns": sel, "columnFilters": filters, "rowsLimit": "0",
			"dateRangeOption": map[string]any{"selectedRange": map[string]any{"relativeDateRange": "CUSTOM",
				"fixedDateRange": map[string]string{"startDate": from.Format(time.RFC3339), "endDate": to.Format(time.RFC3339)}}},
			"currencyOption": map[string]any{"selectedCurrency": map[string]string{"code": "EUR"}},
		},
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fetchV3 posts a report request and returns the verbatim body.
func (sb *sandbox) fetchV3(t testing.TB, req []byte, csv bool) []byte {
	t.Helper()
	ep := "/data"
	if csv {
		ep = "/reportDataCsv"
	}
	return sb.do(t, http.MethodPost, "/api/v3/accounts/"+sb.account+"/reports/"+ionsim.AzurePlanReportID+ep, bytes.NewReader(req), "application/json", true, nil)
}

func (sb *sandbox) fetchV1(t testing.TB, customer, period string) (query string, body []byte) {
	t.Helper()
	p, _ := time.Parse("2006-01", period)
	q := url.Values{"filter[date_range]": {fmt.Sprintf("m-%d-%d", int(p.Month()), p.Year())}, "filter[customer_id]": {customer}, "filter[report_currency]": {"EUR"}}
	return q.Encode(), sb.do(t, http.MethodGet, "/api/v1/reports/billing/azureplan?"+q.Encode(), nil, "", false, nil)
}

// rawPage wraps a body as the fetcher would. The rows hash is the body's here: stable for a
// given body, which is all identity needs in tests.
func rawPage(account, period, mode, endpoint string, request []byte, key events.PageKey, body []byte, fetched time.Time) events.RawPage {
	sum := sha256.Sum256(body)
	p := events.RawPage{
		SyncID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(period)), Account: account, Period: period, Mode: mode,
		Endpoint: endpoint, Request: request, ColumnSetVersion: testColumnSetVersion, PageKey: key,
		RowsSHA256: hex.EncodeToString(sum[:]), FetchedAt: fetched.UTC(), ContentType: events.ContentJSON, Body: string(body),
	}
	if mode == events.ModeV1 {
		p.ColumnSetVersion = "azureplan.v1"
	}
	p.PageID = events.RawPageID(p.Account, p.Period, p.PageKey, p.RowsSHA256)
	return p
}
