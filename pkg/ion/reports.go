package ion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TemplateAzurePlanBilling is the report template of Microsoft CSP billing (licences, Azure
// plan consumption, support).
const TemplateAzurePlanBilling = "azure_plan_billing"

// Report is an Ion report definition. List answers leave Specs nil.
type Report struct {
	ReportID         ID           `json:"reportId"`
	ReportTemplateID string       `json:"reportTemplateId"`
	ReportModule     string       `json:"reportModule"`
	DisplayName      string       `json:"displayName"`
	Category         string       `json:"category"`
	CreateTime       Time         `json:"createTime"`
	ProviderIDs      []ID         `json:"providerIds"`
	Specs            *ReportSpecs `json:"specs"`
}

// ReportSpecs is the part of a report this client reads.
type ReportSpecs struct {
	AllColumns      []ReportColumn `json:"allColumns"`
	SelectedColumns []ReportColumn `json:"selectedColumns"`
	RowsLimit       Int64          `json:"rowsLimit"`
}

// ReportColumn describes a column (ReportColumn and the richer SelectedColumn).
type ReportColumn struct {
	ID               ID     `json:"id"`
	ColumnTemplateID string `json:"columnTemplateId"` // "<template>.<key>"
	DisplayName      string `json:"displayName"`
	Groupable        bool   `json:"groupable"`
	DynamicUniqueKey string `json:"dynamicUniqueKey,omitempty"`
	GroupingLevel    Int64  `json:"groupingLevel,omitempty"`
	ValueType        string `json:"valueType,omitempty"`
	ColumnHeading    string `json:"columnHeading,omitempty"`
	AggType          string `json:"aggType,omitempty"`
}

// Key is the template key ("seller_cost"): the part after the last dot of ColumnTemplateID,
// else the dynamic key, else the id.
func (c ReportColumn) Key() string {
	if c.ColumnTemplateID != "" {
		return c.ColumnTemplateID[strings.LastIndexByte(c.ColumnTemplateID, '.')+1:]
	}
	if c.DynamicUniqueKey != "" {
		return c.DynamicUniqueKey
	}
	return string(c.ID)
}

// Kind is the column's value type (STRING, FLOAT, INT, MONEY, BOOL, DATE, INTERNAL_LINK, ID),
// from the metadata or, when Ion omits it, from the azure_plan_billing catalogue.
func (c ReportColumn) Kind() string {
	if c.ValueType != "" {
		return strings.ToUpper(c.ValueType)
	}
	return keyKind(c.Key())
}

// Aggregated reports whether the report engine sums this column rather than grouping by it.
func (c ReportColumn) Aggregated() bool {
	if c.AggType != "" {
		return !strings.Contains(strings.ToUpper(c.AggType), "UNSPECIFIED") && !strings.Contains(strings.ToUpper(c.AggType), "NONE")
	}
	switch c.Kind() {
	case "MONEY":
		return true
	}
	switch c.Key() {
	case "usage", "seat_count", "period_quantity":
		return true
	}
	return false
}

// keyKind knows the value types of azure_plan_billing columns, for metadata without valueType.
func keyKind(key string) string {
	switch key {
	case "seller_cost", "customer_cost", "margin", "msrp_cost",
		"seller_cost_raw", "customer_cost_raw", "margin_raw", "msrp_cost_raw",
		"seller_cost_invoice", "customer_cost_invoice", "margin_invoice", "msrp_cost_invoice",
		"unit_price", "effective_unit_price":
		return "MONEY"
	case "usage", "seat_count", "period_quantity", "discount_rate", "rate", "promotion_rate":
		return "FLOAT"
	case "usage_starttime", "usage_endtime", "subscription_startdate", "subscription_enddate",
		"order_date", "promotion_startdate", "promotion_enddate":
		return "DATE"
	}
	return "STRING"
}

// ListReports lists the account's reports (without specs). module "" lists all.
func (c *Client) ListReports(ctx context.Context, module string) ([]Report, error) {
	q := url.Values{}
	if module != "" {
		q.Set("module", module)
	}
	var r struct {
		Reports []Report `json:"reports"`
	}
	if err := c.getJSON(ctx, authV3, c.v3("/reports"), q, &r); err != nil {
		return nil, err
	}
	return r.Reports, nil
}

// GetReport returns a report with its specs (allColumns). Results are cached per Client:
// column ids do not change under a running sync.
func (c *Client) GetReport(ctx context.Context, reportID string) (*Report, error) {
	c.mu.Lock()
	r, ok := c.reports[reportID]
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	r = &Report{}
	q := url.Values{"includeMetadata": {"true"}}
	if err := c.getJSON(ctx, authV3, c.v3("/reports/%s", url.PathEscape(reportID)), q, r); err != nil {
		return nil, err
	}
	if r.ReportID == "" {
		r.ReportID = ID(reportID)
	}
	c.mu.Lock()
	c.reports[reportID] = r
	c.mu.Unlock()
	return r, nil
}

// FindReport locates the account's report built on templateID (for Microsoft:
// TemplateAzurePlanBilling), preferring BILLING_REPORTS ones for provider 30, and returns it
// with specs. None is an error matching ErrNotFound.
func (c *Client) FindReport(ctx context.Context, templateID string) (*Report, error) {
	reports, err := c.ListReports(ctx, "")
	if err != nil {
		return nil, err
	}
	best, bestScore := -1, -1
	for i, r := range reports {
		if !strings.EqualFold(r.ReportTemplateID, templateID) {
			continue
		}
		score := 0
		if strings.EqualFold(r.Category, "BILLING_REPORTS") {
			score += 2
		}
		for _, p := range r.ProviderIDs {
			if p == ProviderMicrosoft {
				score++
			}
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return nil, fmt.Errorf("%w: no report with template %q in account %s", ErrNotFound, templateID, c.opts.Account)
	}
	return c.GetReport(ctx, string(reports[best].ReportID))
}

// DateRange is a fixed report range. Ion's end inclusivity is undocumented: callers ask for
// [first day 00:00:00Z, last day 23:59:59Z] and check row dates themselves.
type DateRange struct {
	Start, End time.Time
}

// ReportRequest selects what report data to fetch. The column list, currency and filters are
// always sent explicitly so a report's saved selection never leaks into the result.
type ReportRequest struct {
	// Columns are template keys ("seller_cost_invoice"), full column template ids
	// ("azure_plan_billing.seller_cost_invoice") or column ids ("799050"), in output order.
	Columns  []string
	Currency string // ISO 4217; "" leaves Ion's default
	Range    DateRange
	// Filters restrict rows by column (template key → accepted values), e.g. customer_id.
	Filters   map[string][]string
	RowsLimit int64 // 0: no limit
	// IncludeSubtotals hands subtotal rows (see IsSubtotal) to the callback too. Off by default:
	// summing them with leaf rows double counts.
	IncludeSubtotals bool
}

// ReportMeta summarises a report data answer.
type ReportMeta struct {
	ResultCount        int64 // rows Ion says it returned (incl. child rows)
	AvailableRowsCount int64 // rows that matched
	Truncated          bool  // AvailableRowsCount > ResultCount: split the request
	Rows               int   // rows decoded
	Subtotals          int   // of which subtotal rows
	CacheTimestamp     time.Time
}

// resolveColumns maps requested names onto the report's columns.
func resolveColumns(r *Report, names []string) ([]ReportColumn, error) {
	if len(names) == 0 {
		return nil, errors.New("ion: ReportRequest.Columns is empty; an explicit column list is required")
	}
	var all []ReportColumn
	if r.Specs != nil {
		all = append(all, r.Specs.AllColumns...)
		all = append(all, r.Specs.SelectedColumns...)
	}
	out := make([]ReportColumn, 0, len(names))
	for _, n := range names {
		col, ok := findColumn(all, n)
		if !ok {
			return nil, fmt.Errorf("ion: report %s has no column %q", r.ReportID, n)
		}
		out = append(out, col)
	}
	return out, nil
}

func findColumn(all []ReportColumn, name string) (ReportColumn, bool) {
	for _, c := range all {
		if string(c.ID) == name || c.ColumnTemplateID == name {
			return c, true
		}
	}
	for _, c := range all {
		if c.Key() == name {
			return c, true
		}
	}
	return ReportColumn{}, false
}

// reportBody builds the POST body for /data and /reportDataCsv (camelCase, which Ion parses).
func reportBody(r *Report, cols []ReportColumn, req ReportRequest) ([]byte, error) {
	type jsonColumn struct {
		ID               ID     `json:"id"`
		ColumnTemplateID string `json:"columnTemplateId"`
		DisplayName      string `json:"displayName,omitempty"`
	}
	type strValue struct {
		ValueType   string `json:"valueType"`
		StringValue string `json:"stringValue"`
	}
	type colValue struct {
		DisplayValue strValue `json:"displayValue"`
		ValueID      string   `json:"valueId"`
	}
	type colFilter struct {
		ID               ID         `json:"id"`
		ColumnTemplateID string     `json:"columnTemplateId"`
		SelectedValues   []colValue `json:"selectedValues"`
	}
	sel := make([]jsonColumn, len(cols))
	for i, c := range cols {
		sel[i] = jsonColumn{ID: c.ID, ColumnTemplateID: c.ColumnTemplateID, DisplayName: c.DisplayName}
	}
	var all []ReportColumn
	if r.Specs != nil {
		all = append(all, r.Specs.AllColumns...)
	}
	filters := []colFilter{} // explicit empty list: never the saved filters
	keys := make([]string, 0, len(req.Filters))
	for k := range req.Filters {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		col, ok := findColumn(all, k)
		if !ok {
			return nil, fmt.Errorf("ion: report %s has no column %q to filter on", r.ReportID, k)
		}
		f := colFilter{ID: col.ID, ColumnTemplateID: col.ColumnTemplateID, SelectedValues: []colValue{}}
		for _, v := range req.Filters[k] {
			f.SelectedValues = append(f.SelectedValues, colValue{DisplayValue: strValue{ValueType: "STRING", StringValue: v}, ValueID: v})
		}
		filters = append(filters, f)
	}
	specs := map[string]any{
		"selectedColumns": sel,
		"columnFilters":   filters,
		"rowsLimit":       strconv.FormatInt(req.RowsLimit, 10),
	}
	if !req.Range.Start.IsZero() || !req.Range.End.IsZero() {
		specs["dateRangeOption"] = map[string]any{
			"selectedRange": map[string]any{
				"relativeDateRange": "CUSTOM",
				"fixedDateRange": map[string]string{
					"startDate": req.Range.Start.UTC().Format(time.RFC3339),
					"endDate":   req.Range.End.UTC().Format(time.RFC3339),
				},
			},
		}
	}
	if req.Currency != "" {
		specs["currencyOption"] = map[string]any{"selectedCurrency": map[string]string{"code": req.Currency}}
	}
	body := map[string]any{
		"reportId":         r.ReportID,
		"reportTemplateId": r.ReportTemplateID,
		"specs":            specs,
	}
	if r.ReportModule != "" {
		body["reportModule"] = r.ReportModule
	}
	if r.Category != "" {
		body["category"] = r.Category
	}
	return json.Marshal(body)
}

// ReportData posts the request to /reports/{id}/data and hands each row to fn as it is
// decoded, so memory stays flat whatever the row count. Subtotal rows are skipped unless
// req.IncludeSubtotals.
//
// A body that turns out truncated or malformed is an error matching ErrBadBody (IsRetryable).
// If it fails before any row reached fn the client re-requests by itself; after that the error
// is returned with BodyError.Rows set, and the caller must discard those rows and repeat.
// A truncated result set (more rows available than returned) is not an error: see
// ReportMeta.Truncated.
func (c *Client) ReportData(ctx context.Context, reportID string, req ReportRequest, fn func(Row) error) (ReportMeta, error) {
	r, cols, body, err := c.prepareReport(ctx, reportID, req)
	if err != nil {
		return ReportMeta{}, err
	}
	path := c.v3("/reports/%s/data", url.PathEscape(string(r.ReportID)))
	var meta ReportMeta
	err = c.do(ctx, call{
		method: http.MethodPost, path: path, body: body, auth: authV3,
		handle: func(resp *http.Response) error {
			var err error
			meta, err = decodeReportData(resp.Body, path, cols, req.IncludeSubtotals, fn)
			return err
		},
	})
	return meta, err
}

func (c *Client) prepareReport(ctx context.Context, reportID string, req ReportRequest) (*Report, []ReportColumn, []byte, error) {
	if c.tokens == nil {
		return nil, nil, nil, fmt.Errorf("%w: reports need v3 credentials", ErrNoCredentials)
	}
	r, err := c.GetReport(ctx, reportID)
	if err != nil {
		return nil, nil, nil, err
	}
	cols, err := resolveColumns(r, req.Columns)
	if err != nil {
		return nil, nil, nil, err
	}
	body, err := reportBody(r, cols, req)
	if err != nil {
		return nil, nil, nil, err
	}
	return r, cols, body, nil
}

// ReportDataCSV is ReportData over /reports/{id}/reportDataCsv. Ion returns the whole CSV as one
// JSON string ({"results":"<csv>","resultCount":"N"}), so memory grows with the answer; prefer
// ReportData for large reports. Cells are matched to columns by position against the columns
// sent, after the header row has been checked to name those columns in that order (heading,
// display name or key; a money heading's currency suffix is optional): a reordered CSV is a
// BodyError, never money in the wrong field.
func (c *Client) ReportDataCSV(ctx context.Context, reportID string, req ReportRequest, fn func(Row) error) (ReportMeta, error) {
	r, cols, body, err := c.prepareReport(ctx, reportID, req)
	if err != nil {
		return ReportMeta{}, err
	}
	path := c.v3("/reports/%s/reportDataCsv", url.PathEscape(string(r.ReportID)))
	var meta ReportMeta
	err = c.do(ctx, call{
		method: http.MethodPost, path: path, body: body, auth: authV3,
		handle: func(resp *http.Response) error {
			var err error
			meta, err = decodeReportCSV(resp.Body, path, cols, req.IncludeSubtotals, fn)
			return err
		},
	})
	return meta, err
}
