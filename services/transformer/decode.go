package transformer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/usage"
)

// decoded is what a stored body yields: leaf lines in page order plus what the request said.
type decoded struct {
	Lines     []usage.Line
	Currency  string // currency the page was requested in; "" when the request named none
	Subtotals int    // subtotal rows skipped (never billed: summing them double counts)
	Truncated bool   // Ion had more rows than it returned; the fetcher should have split
}

// errUndecodable wraps events.ErrUndecodable so the router dead-letters the whole page at once.
func errUndecodable(format string, args ...any) error {
	return fmt.Errorf("%w: transformer: %s", events.ErrUndecodable, fmt.Sprintf(format, args...))
}

// decodePage turns a stored Ion body into usage lines, choosing the decoder by mode, endpoint
// and content type. Every failure here concerns the page as a whole and is undecodable.
func decodePage(page events.RawPage, body []byte) (decoded, error) {
	switch page.Mode {
	case events.ModeV1:
		return decodeV1(page, body)
	case events.ModeV3:
		req, err := parseV3Request(page.Request)
		if err != nil {
			return decoded{}, err
		}
		if isCSV(page) {
			return decodeV3CSV(req, body)
		}
		return decodeV3JSON(req, body)
	}
	return decoded{}, errUndecodable("mode %q is neither %q nor %q", page.Mode, events.ModeV1, events.ModeV3)
}

func isCSV(page events.RawPage) bool {
	return strings.HasPrefix(page.ContentType, events.ContentCSV) ||
		strings.HasSuffix(strings.TrimSpace(page.Endpoint), "/reportDataCsv")
}

// v3Request is the part of the POST …/data body the transformer needs: the pinned columns in
// output order and the currency. The fetcher sends Ion's own report body shape.
type v3Request struct {
	Columns  []ion.ReportColumn
	Currency string
}

func parseV3Request(raw json.RawMessage) (v3Request, error) {
	var body struct {
		Specs *struct {
			SelectedColumns []ion.ReportColumn `json:"selectedColumns"`
			CurrencyOption  struct {
				SelectedCurrency struct {
					Code string `json:"code"`
				} `json:"selectedCurrency"`
			} `json:"currencyOption"`
		} `json:"specs"`
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return v3Request{}, errUndecodable("v3 page has no request: the column list is unknown")
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return v3Request{}, errUndecodable("v3 request: %v", err)
	}
	if body.Specs == nil || len(body.Specs.SelectedColumns) == 0 {
		return v3Request{}, errUndecodable("v3 request has no specs.selectedColumns")
	}
	seen := map[string]bool{}
	for i, c := range body.Specs.SelectedColumns {
		// A bare numeric id cannot be mapped to a template key without the report: refuse it
		// rather than emit records keyed by a column id.
		if c.ColumnTemplateID == "" && c.DynamicUniqueKey == "" {
			return v3Request{}, errUndecodable("v3 request column %d (id %q) has no columnTemplateId", i, c.ID)
		}
		k := c.Key()
		if seen[k] {
			return v3Request{}, errUndecodable("v3 request selects column %q twice", k)
		}
		seen[k] = true
	}
	return v3Request{Columns: body.Specs.SelectedColumns, Currency: body.Specs.CurrencyOption.SelectedCurrency.Code}, nil
}

func decodeV3JSON(req v3Request, body []byte) (decoded, error) {
	var out decoded
	out.Currency = req.Currency
	// lineFromRow copies each cell's text, so the decoder may reuse one row's values.
	meta, err := ion.DecodeReportDataTransient(bytes.NewReader(body), req.Columns, func(r ion.Row) error {
		out.Lines = append(out.Lines, lineFromRow(len(out.Lines)+1, r))
		return nil
	})
	if err != nil {
		return decoded{}, errUndecodable("v3 report data: %v", err)
	}
	out.Subtotals, out.Truncated = meta.Subtotals, meta.Truncated
	return out, nil
}

// decodeV3CSV reads every cell as text: numbers are then validated per line by pkg/usage, so
// one bad cell dead-letters its line instead of the page. Aggregation is pinned from the
// column keys so subtotal detection does not depend on the (now textual) value type.
func decodeV3CSV(req v3Request, body []byte) (decoded, error) {
	cols := make([]ion.ReportColumn, len(req.Columns))
	for i, c := range req.Columns {
		agg := "NONE"
		if c.Aggregated() {
			agg = "SUM"
		}
		c.ValueType, c.AggType = "STRING", agg
		cols[i] = c
	}
	// A body stored as bare CSV (content type text/csv) gets Ion's envelope back.
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
		env, err := json.Marshal(map[string]string{"results": string(body)})
		if err != nil {
			return decoded{}, errUndecodable("csv: %v", err)
		}
		body = env
	}
	var out decoded
	out.Currency = req.Currency
	meta, err := ion.DecodeReportCSV(bytes.NewReader(body), cols, func(r ion.Row) error {
		out.Lines = append(out.Lines, lineFromRow(len(out.Lines)+1, r))
		return nil
	})
	if err != nil {
		return decoded{}, errUndecodable("v3 report csv: %v", err)
	}
	out.Subtotals, out.Truncated = meta.Subtotals, meta.Truncated
	return out, nil
}

// lineFromRow keeps each cell's text as Ion wrote it; a null cell is present and empty, so it
// still counts in the record id.
func lineFromRow(n int, r ion.Row) usage.Line {
	cols := r.Columns()
	l := usage.Line{Number: n, Cols: make(map[string]string, len(cols))}
	for i, c := range cols {
		v := ""
		if i < len(r.Values) && !r.Values[i].Null {
			v = r.Values[i].Text
		}
		l.Cols[c.Key()] = v
	}
	return l
}

func decodeV1(page events.RawPage, body []byte) (decoded, error) {
	var out decoded
	out.Currency = v1Currency(page.Request)
	err := ion.DecodeAzurePlan(bytes.NewReader(body), func(a ion.AzurePlanLine) error {
		out.Lines = append(out.Lines, usage.LineFromV1(len(out.Lines)+1, usage.V1Leaf{
			CustomerID: a.CustomerID, CustomerCompany: a.CustomerCompany, SubscriptionID: a.SubscriptionID,
			CostCurrency: a.CostCurrency, PriceCurrency: a.PriceCurrency, Product: a.Product, Sku: a.SKU,
			Price: a.Price.String(), Cost: a.Cost.String(), Usage: a.Usage.String(), Unit: a.Unit,
		}))
		return nil
	})
	if err != nil {
		return decoded{}, errUndecodable("v1 azureplan: %v", err)
	}
	return out, nil
}

// v1Currency reads filter[report_currency] from the v1 request, stored either as a query string
// or as a JSON object of parameters (string or list values). "" when absent.
func v1Currency(raw json.RawMessage) string {
	const key = "filter[report_currency]"
	var s string
	if json.Unmarshal(raw, &s) == nil {
		q, err := url.ParseQuery(strings.TrimPrefix(s, "?"))
		if err == nil {
			return q.Get(key)
		}
		return ""
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	for _, k := range []string{key, "query", "params"} {
		v, ok := m[k]
		if !ok {
			continue
		}
		if k != key {
			return v1Currency(v)
		}
		var one string
		if json.Unmarshal(v, &one) == nil {
			return one
		}
		var many []string
		if json.Unmarshal(v, &many) == nil && len(many) > 0 {
			return many[0]
		}
	}
	return ""
}

// errBody marks a body that cannot be read or does not match its reference.
var errBody = errors.New("raw body")
