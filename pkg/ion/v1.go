package ion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// CustomerV1 is a customer of the v1 API (ids differ from v3 ones only in form: both are Ion's).
type CustomerV1 struct {
	ID            ID     `json:"id"`
	Name          string `json:"name"`
	Company       string `json:"company"`
	CloudAccounts []struct {
		CloudAccountID string `json:"cloudAccountId"`
		Provider       struct {
			Name string `json:"name"`
		} `json:"provider"`
	} `json:"cloudAccounts"`
}

// v1 envelope: {"success":bool,"message":"…","data":…}. A 200 with success=false is an error.
type v1Envelope struct {
	Success *bool  `json:"success"`
	Message string `json:"message"`
}

// ListCustomersV1 lists customers with the v1 API (limit/offset, data.customer[]).
func (c *Client) ListCustomersV1(ctx context.Context) ([]CustomerV1, error) {
	const limit = 100
	var all []CustomerV1
	for offset := 0; ; offset += limit {
		var r struct {
			v1Envelope
			Data struct {
				Customer []CustomerV1 `json:"customer"`
			} `json:"data"`
		}
		q := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
		if err := c.getJSON(ctx, authV1, "/api/v1/customers", q, &r); err != nil {
			return nil, err
		}
		if r.Success != nil && !*r.Success {
			return nil, &APIError{Status: http.StatusOK, Message: clean(c.redact(r.Message)), Method: http.MethodGet, Path: "/api/v1/customers"}
		}
		all = append(all, r.Data.Customer...)
		if len(r.Data.Customer) < limit {
			return all, nil
		}
		if offset > 10_000_000 {
			return nil, &BodyError{Path: "/api/v1/customers", Reason: "paging does not end"}
		}
	}
}

// AzurePlanLine is one leaf of the v1 azureplan report: a SKU's monthly aggregate for one
// subscription of one customer.
type AzurePlanLine struct {
	CustomerID      string
	CustomerName    string
	CustomerCompany string
	SubscriptionID  string
	CostCurrency    string
	PriceCurrency   string
	Product         string // level 2, ≈ meter category or licence name
	SKU             string // level 3, ≈ meter / SKU
	Price           decimal.Decimal
	Cost            decimal.Decimal
	Usage           decimal.Decimal
	Unit            string // absent on licence lines
	Path            []PlanEntity
}

// PlanEntity is one node of the report tree.
type PlanEntity struct {
	ID            ID     `json:"id"`
	Type          string `json:"type"`
	Name          string `json:"name"`
	Company       string `json:"company"`
	CostCurrency  string `json:"cost_currency"`
	PriceCurrency string `json:"price_currency"`
}

type planNode struct {
	Entity PlanEntity `json:"entity"`
	Lines  []planNode `json:"lines"`
	Data   *struct {
		Price Decimal `json:"price"`
		Cost  Decimal `json:"cost"`
		Usage Decimal `json:"usage"`
		Unit  string  `json:"unit"`
	} `json:"data"`
}

// maxPlanDepth is far beyond Microsoft's 4 levels (GCP has 5) and bounds recursion.
const maxPlanDepth = 16

// AzurePlanV1 fetches GET /api/v1/reports/billing/azureplan for one customer and month
// (period "YYYY-MM") and hands each leaf line to fn. currency "" leaves Ion's default.
func (c *Client) AzurePlanV1(ctx context.Context, customerID, period, currency string, fn func(AzurePlanLine) error) error {
	p, err := time.Parse("2006-01", period)
	if err != nil {
		return fmt.Errorf("ion: AzurePlanV1: period %q is not YYYY-MM", period)
	}
	q := url.Values{
		"filter[date_range]":  {fmt.Sprintf("m-%d-%d", int(p.Month()), p.Year())},
		"filter[customer_id]": {customerID},
	}
	if currency != "" {
		q.Set("filter[report_currency]", currency)
	}
	const path = "/api/v1/reports/billing/azureplan"
	delivered := 0
	return c.do(ctx, call{
		method: http.MethodGet, path: path, query: q, auth: authV1,
		handle: func(resp *http.Response) error {
			return decodeAzurePlan(resp.Body, path, c.redact, func(l AzurePlanLine) error {
				delivered++
				return fn(l)
			}, &delivered)
		},
	})
}

// decodeAzurePlan streams the envelope and decodes one customer subtree at a time.
func decodeAzurePlan(body io.Reader, path string, redact func(string) string, fn func(AzurePlanLine) error, delivered *int) error {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	dec := json.NewDecoder(body)
	bad := func(err error) error {
		var cb callbackError
		if errors.As(err, &cb) {
			return cb.err
		}
		var be *BodyError
		if errors.As(err, &be) {
			return be
		}
		return &BodyError{Path: path, Reason: describeJSONErr(err), Rows: *delivered}
	}
	if err := expectDelim(dec, '{'); err != nil {
		return bad(err)
	}
	success, message := true, ""
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return bad(err)
		}
		switch key {
		case "success":
			var b *bool
			if err := dec.Decode(&b); err != nil {
				return bad(err)
			}
			if b != nil {
				success = *b
			}
		case "message":
			var m any
			if err := dec.Decode(&m); err != nil {
				return bad(err)
			}
			if s, ok := m.(string); ok {
				message = s
			}
		case "data":
			t, err := dec.Token()
			if err != nil {
				return bad(err)
			}
			if t == nil {
				continue
			}
			if d, ok := t.(json.Delim); !ok || d != '[' {
				if d == '{' { // an empty result sometimes comes as {}; anything else in an object is not "no lines"
					if dec.More() {
						return bad(errors.New("data: a non-empty object, want an array (or {} for no lines)"))
					}
					if err := expectDelim(dec, '}'); err != nil {
						return bad(err)
					}
					continue
				}
				return bad(errors.New("data: want an array"))
			}
			for dec.More() {
				var n planNode
				if err := dec.Decode(&n); err != nil {
					return bad(err)
				}
				if err := walkPlan(n, nil, 0, fn); err != nil {
					if _, ok := err.(callbackError); ok {
						return bad(err)
					}
					return &BodyError{Path: path, Reason: err.Error(), Rows: *delivered}
				}
			}
			if err := expectDelim(dec, ']'); err != nil {
				return bad(err)
			}
		default:
			if err := skipValue(dec); err != nil {
				return bad(err)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return bad(err)
	}
	if !success {
		return &APIError{Status: http.StatusOK, Message: clean(redact(message)), Method: http.MethodGet, Path: path}
	}
	return nil
}

// walkPlan yields nodes without children that carry data. A node with both children and data
// is an aggregate of its children and is skipped, so nothing is counted twice.
func walkPlan(n planNode, path []PlanEntity, depth int, fn func(AzurePlanLine) error) error {
	if depth >= maxPlanDepth {
		return fmt.Errorf("report tree deeper than %d levels", maxPlanDepth)
	}
	path = append(path[:len(path):len(path)], n.Entity)
	if len(n.Lines) > 0 {
		for _, ch := range n.Lines {
			if err := walkPlan(ch, path, depth+1, fn); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Data == nil {
		return nil
	}
	l := AzurePlanLine{
		Price: n.Data.Price.Decimal, Cost: n.Data.Cost.Decimal, Usage: n.Data.Usage.Decimal,
		Unit: n.Data.Unit, Path: path,
	}
	for i, e := range path {
		switch {
		case e.Type == "customer" || (i == 0 && e.Type == ""):
			l.CustomerID, l.CustomerName, l.CustomerCompany = string(e.ID), e.Name, e.Company
		case e.Type == "subscription" || (i == 1 && e.Type == ""):
			l.SubscriptionID, l.CostCurrency, l.PriceCurrency = string(e.ID), e.CostCurrency, e.PriceCurrency
		case e.Type == "product" || (i == 2 && e.Type == ""):
			l.Product = string(e.ID)
		case e.Type == "sku" || (i == 3 && e.Type == ""):
			l.SKU = string(e.ID)
		}
	}
	if err := fn(l); err != nil {
		return callbackError{err}
	}
	return nil
}
