package ionsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var testNow = time.Date(2025, 3, 15, 10, 0, 0, 0, time.UTC)

type harness struct {
	t     *testing.T
	sim   *Sim
	srv   *httptest.Server
	clock *clock
	token string
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	clk := &clock{t: testNow}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.Seed == 0 {
		opts.Seed = 42
	}
	if opts.Customers == 0 {
		opts.Customers = 5
	}
	if opts.Meters == 0 {
		opts.Meters = 3
	}
	if len(opts.Periods) == 0 {
		opts.Periods = []string{"2024-12..2025-03"}
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &harness{t: t, sim: s, srv: srv, clock: clk}
}

type tokenResp struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	Error        string `json:"error"`
}

func (h *harness) refresh(rt string) (int, tokenResp) {
	h.t.Helper()
	resp, err := http.PostForm(h.srv.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResp
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		h.t.Fatalf("token body: %v", err)
	}
	return resp.StatusCode, tr
}

// login exchanges the initial refresh token once.
func (h *harness) login() string {
	h.t.Helper()
	code, tr := h.refresh(h.sim.Credentials().RefreshToken)
	if code != 200 {
		h.t.Fatalf("login: %d %+v", code, tr)
	}
	h.token = tr.AccessToken
	return tr.AccessToken
}

func (h *harness) do(method, path, body string) (int, []byte, http.Header) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, b, resp.Header
}

func (h *harness) getJSON(path string, v any) {
	h.t.Helper()
	code, b, _ := h.do("GET", path, "")
	if code != 200 {
		h.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
}

// Client-side wire types, written from the note (not shared with the sim's own types).
type wireValue struct {
	ValueType   string          `json:"valueType"`
	StringValue *string         `json:"stringValue"`
	IntValue    string          `json:"intValue"`
	FloatValue  json.RawMessage `json:"floatValue"`
	DateValue   string          `json:"dateValue"`
	MoneyValue  *struct {
		Currency string          `json:"currency"`
		Value    json.RawMessage `json:"value"`
	} `json:"moneyValue"`
}

// text renders a value the way the CSV does, parsing money without float64.
func (v wireValue) text() string {
	switch {
	case v.MoneyValue != nil:
		return strings.Trim(string(v.MoneyValue.Value), `"`)
	case v.FloatValue != nil:
		return string(v.FloatValue)
	case v.IntValue != "":
		return v.IntValue
	case v.DateValue != "":
		return v.DateValue
	case v.StringValue != nil:
		return *v.StringValue
	}
	return ""
}

type dataResp struct {
	Report  json.RawMessage `json:"report"`
	Results struct {
		Rows []struct {
			Values []wireValue `json:"values"`
		} `json:"rows"`
	} `json:"results"`
	ResultCount        string `json:"resultCount"`
	AvailableRowsCount string `json:"availableRowsCount"`
	CacheTimestamp     string `json:"cacheTimestamp"`
}

func (h *harness) data(body string) dataResp {
	h.t.Helper()
	code, b, _ := h.do("POST", "/api/v3/accounts/10001/reports/49038/data", body)
	if code != 200 {
		h.t.Fatalf("data: %d %s", code, b)
	}
	var dr dataResp
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&dr); err != nil {
		h.t.Fatalf("data body: %v", err)
	}
	return dr
}

func cols(keys ...string) string {
	var parts []string
	for _, k := range keys {
		parts = append(parts, `{"columnTemplateId":"azure_plan_billing.`+k+`"}`)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func fixedBody(selected, start, end string) string {
	return `{"reportId":"49038","specs":{"selectedColumns":` + selected +
		`,"dateRangeOption":{"selectedRange":{"fixedDateRange":{"startDate":"` + start + `","endDate":"` + end + `"}}}}}`
}

// controlTotals sums money per (customer, currency) from a customer_id, invoice_currency,
// seller_cost_invoice selection, skipping subtotal rows (first cell "Subtotal"/"Total").
func controlTotals(t *testing.T, dr dataResp) map[string]decimal.Decimal {
	t.Helper()
	out := map[string]decimal.Decimal{}
	for _, r := range dr.Results.Rows {
		if r.Values[0].ValueType == "STRING" {
			continue // subtotal row
		}
		v, err := decimal.NewFromString(r.Values[2].text())
		if err != nil {
			t.Fatal(err)
		}
		k := r.Values[0].text() + "|" + r.Values[1].text()
		out[k] = out[k].Add(v)
	}
	return out
}
