package ionsim

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// ---- request parsing ----------------------------------------------------------------------------

// errBadRequest carries a 400 message.
type errBadRequest struct{ msg string }

func (e errBadRequest) Error() string { return e.msg }

func badf(format string, a ...any) error { return errBadRequest{fmt.Sprintf(format, a...)} }

// field reads a JSON object member by its lowerCamelCase or snake_case name (protobuf-JSON parsing
// accepts both, ion-api.md §2).
func field(m map[string]any, camel string) any {
	if m == nil {
		return nil
	}
	if v, ok := m[camel]; ok {
		return v
	}
	return m[snake(camel)]
}

func snake(camel string) string {
	var b strings.Builder
	for _, r := range camel {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			b.WriteRune(r + 'a' - 'A')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }
func arr(v any) []any          { a, _ := v.([]any); return a }

// scalar renders a JSON string or number (int64 fields arrive either way) as a string.
func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	}
	return ""
}

type reportRequest struct {
	reportID  string
	cols      []*column
	filters   []colFilter
	scope     scope
	rel       string // relative range name, "" when fixed
	from, to  time.Time
	currency  string
	rowsLimit int64
	pageKey   string
}

type colFilter struct {
	col    *column
	values map[string]bool
}

func (s *Sim) parseReportRequest(d *dataset, reportID string, body []byte) (*reportRequest, error) {
	var m map[string]any
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, badf("invalid JSON body: %v", err)
		}
	}
	if id := scalar(field(m, "reportId")); id != "" && id != reportID {
		return nil, badf("reportId %s does not match the path's report %s", id, reportID)
	}
	sp := obj(field(m, "specs"))
	req := &reportRequest{reportID: reportID, currency: d.currency}

	var entries []map[string]any
	for _, e := range arr(field(sp, "selectedColumns")) {
		entries = append(entries, obj(e))
	}
	cols, err := s.resolveColumns(reportID, entries)
	if err != nil {
		return nil, err
	}
	req.cols = cols

	for _, f := range arr(field(sp, "columnFilters")) {
		fm := obj(f)
		c, err := s.findColumn(reportID, fm)
		if err != nil {
			return nil, err
		}
		vals := map[string]bool{}
		for _, sv := range arr(field(fm, "selectedValues")) {
			svm := obj(sv)
			v := scalar(field(svm, "valueId"))
			if v == "" {
				dv := obj(field(svm, "displayValue"))
				for _, k := range []string{"stringValue", "intValue", "dateValue", "floatValue"} {
					if v = scalar(field(dv, k)); v != "" {
						break
					}
				}
			}
			vals[v] = true
		}
		if len(vals) == 0 {
			continue // empty selectedValues = no filter
		}
		if c.measure() {
			return nil, badf("column %s cannot be filtered by value", c.key)
		}
		switch c.key {
		case "customer_id":
			req.scope.customers = intersect(req.scope.customers, vals)
		case "entitlement_id":
			req.scope.entitlements = intersect(req.scope.entitlements, vals)
		default:
			req.filters = append(req.filters, colFilter{c, vals})
		}
	}

	if code := scalar(field(obj(field(obj(field(sp, "currencyOption")), "selectedCurrency")), "code")); code != "" && code != d.currency {
		return nil, badf("currency %s is not available for this report (available: %s)", code, d.currency)
	}
	if rl := scalar(field(sp, "rowsLimit")); rl != "" {
		n, err := strconv.ParseInt(rl, 10, 64)
		if err != nil || n < 0 {
			return nil, badf("invalid rowsLimit %q", rl)
		}
		req.rowsLimit = n
	}
	if err := s.resolveRange(req, obj(field(obj(field(sp, "dateRangeOption")), "selectedRange"))); err != nil {
		return nil, err
	}
	req.pageKey = pageKey(req)
	return req, nil
}

func intersect(a, b map[string]bool) map[string]bool {
	if a == nil {
		return b
	}
	out := map[string]bool{}
	for k := range a {
		if b[k] {
			out[k] = true
		}
	}
	return out
}

// pageKey names what a request asked for, so tests can count repeated fetches of one slice.
func pageKey(req *reportRequest) string {
	keys := func(m map[string]bool) string {
		if m == nil {
			return "*"
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	var cols []string
	for _, c := range req.cols {
		cols = append(cols, c.key)
	}
	h := sha256.Sum256([]byte(strings.Join(cols, ",")))
	return fmt.Sprintf("report %s customers=%s entitlements=%s range=%s..%s cols=%s", req.reportID,
		keys(req.scope.customers), keys(req.scope.entitlements), req.from.Format(time.RFC3339), req.to.Format(time.RFC3339),
		hex.EncodeToString(h[:6]))
}

func (s *Sim) columnsFor(reportID string) []column {
	if reportID == OtherReportID {
		return s.awsCols
	}
	return s.cols
}

func (s *Sim) findColumn(reportID string, m map[string]any) (*column, error) {
	cols := s.columnsFor(reportID)
	id := scalar(field(m, "id"))
	tmpl := scalar(field(m, "columnTemplateId"))
	for i := range cols {
		c := &cols[i]
		if (id != "" && c.id == id) || (id == "" && tmpl != "" && strings.HasSuffix(tmpl, "."+c.key)) {
			return c, nil
		}
	}
	return nil, badf("unknown column (id %q, columnTemplateId %q)", id, tmpl)
}

// resolveColumns maps SelectedColumn entries (by id, else columnTemplateId) to catalogue columns;
// none selects the report's saved selection.
func (s *Sim) resolveColumns(reportID string, entries []map[string]any) ([]*column, error) {
	cols := s.columnsFor(reportID)
	if len(entries) == 0 {
		keys := defaultSelection
		if reportID == OtherReportID {
			keys = []string{"customer_id", "cost"}
		}
		var out []*column
		for _, k := range keys {
			for i := range cols {
				if cols[i].key == k {
					out = append(out, &cols[i])
				}
			}
		}
		return out, nil
	}
	out := make([]*column, 0, len(entries))
	for _, e := range entries {
		c, err := s.findColumn(reportID, e)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func parseInstant(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	return time.Parse("2006-01-02", v)
}

func dayOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// resolveRange turns selectedRange into [from, to] instants and the day predicate. A relative range
// is evaluated against Now; ranges ending "today" end at today 00:00 (as in the real MONTH_TO_DATE
// example), closed periods end at their last day (inclusive variant) or the next midnight.
func (s *Sim) resolveRange(req *reportRequest, sel map[string]any) error {
	rel := strings.ToUpper(scalar(field(sel, "relativeDateRange")))
	fixed := obj(field(sel, "fixedDateRange"))
	if sel == nil {
		rel = "LAST_MONTH" // the report's saved selection
	}
	today := dayOf(s.opts.Now())
	incl := s.opts.Variant.EndDateInclusive
	closed := func(first, last time.Time) (time.Time, time.Time) {
		if incl {
			return first, last
		}
		return first, last.AddDate(0, 0, 1)
	}
	month := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	quarter := time.Date(today.Year(), time.Month((int(today.Month())-1)/3*3+1), 1, 0, 0, 0, 0, time.UTC)
	year := time.Date(today.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	week := today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7))
	switch rel {
	case "", "CUSTOM", "UNKNOWN_RELATIVE_DATE_RANGE":
		if fixed == nil {
			return badf("selectedRange needs relativeDateRange or fixedDateRange")
		}
		a, b := scalar(field(fixed, "startDate")), scalar(field(fixed, "endDate"))
		if a == "" || b == "" {
			return badf("fixedDateRange needs startDate and endDate")
		}
		from, err1 := parseInstant(a)
		to, err2 := parseInstant(b)
		if err := errors.Join(err1, err2); err != nil {
			return badf("fixedDateRange: %v", err)
		}
		if to.Before(from) {
			return badf("fixedDateRange ends before it starts")
		}
		req.from, req.to = from, to
		rel = ""
	case "TODAY":
		req.from, req.to = today, today
	case "MONTH_TO_DATE":
		req.from, req.to = month, today
	case "QUARTER_TO_DATE":
		req.from, req.to = quarter, today
	case "YEAR_TO_DATE":
		req.from, req.to = year, today
	case "WEEK_TO_DATE":
		req.from, req.to = week, today
	case "LAST_MONTH":
		req.from, req.to = closed(month.AddDate(0, -1, 0), month.AddDate(0, 0, -1))
	case "TWO_MONTHS_AGO":
		req.from, req.to = closed(month.AddDate(0, -2, 0), month.AddDate(0, -1, -1))
	case "LATEST_MONTH":
		if today.After(month) { // the current month has at least one day of data
			req.from, req.to = month, today
		} else {
			req.from, req.to = closed(month.AddDate(0, -1, 0), month.AddDate(0, 0, -1))
		}
	case "LAST_QUARTER":
		req.from, req.to = closed(quarter.AddDate(0, -3, 0), quarter.AddDate(0, 0, -1))
	case "LAST_YEAR":
		req.from, req.to = closed(year.AddDate(-1, 0, 0), year.AddDate(0, 0, -1))
	case "LAST_WEEK":
		req.from, req.to = closed(week.AddDate(0, 0, -7), week.AddDate(0, 0, -1))
	default:
		return badf("unknown relativeDateRange %q", rel)
	}
	req.rel = rel
	from, to := dayOf(req.from), req.to
	if incl {
		req.scope.inRange = func(day time.Time) bool { return !day.Before(from) && !day.After(to) }
	} else {
		req.scope.inRange = func(day time.Time) bool { return !day.Before(from) && day.Before(to) }
	}
	return nil
}

// ---- aggregation --------------------------------------------------------------------------------

type rowKind int

const (
	rowLeaf rowKind = iota
	rowSubtotal
	rowTotal
)

// Flush scopes: groups never span a customer when a customer-owned column is selected, nor an item
// when the item key columns are, so the aggregator can emit and forget at those boundaries. Only
// selections without such columns (e.g. by meter category alone) hold all groups until the end.
const (
	flushEnd = iota
	flushCustomer
	flushItem
)

type group struct {
	vals []string
	sums []decimal.Decimal
}

type aggregator struct {
	d        *dataset
	v        *Variant
	groupBy  []*column
	measures []*column
	filters  []colFilter
	flush    int
	emit     func(kind rowKind, g *group) bool

	idx     map[string]int
	groups  []*group
	key     []byte
	vals    []string
	lastC   *customer
	lastIt  *item
	subSums []decimal.Decimal
	allSums []decimal.Decimal
	stopped bool
	atoms   int64
}

func newAggregator(d *dataset, v *Variant, cols []*column, filters []colFilter, emit func(rowKind, *group) bool) *aggregator {
	a := &aggregator{d: d, v: v, filters: filters, emit: emit, idx: map[string]int{}}
	sel := map[string]bool{}
	for _, c := range cols {
		if c.measure() {
			a.measures = append(a.measures, c)
		} else {
			a.groupBy = append(a.groupBy, c)
			sel[c.key] = true
		}
	}
	has := func(keys []string, all bool) bool {
		n := 0
		for _, k := range keys {
			if sel[k] {
				n++
			}
		}
		return (all && n == len(keys)) || (!all && n > 0)
	}
	switch {
	case has(itemKeys, true):
		a.flush = flushItem
	case has(customerKeys, false):
		a.flush = flushCustomer
	}
	a.vals = make([]string, len(a.groupBy))
	a.subSums = zeros(len(a.measures))
	a.allSums = zeros(len(a.measures))
	return a
}

func zeros(n int) []decimal.Decimal {
	z := make([]decimal.Decimal, n)
	for i := range z {
		z[i] = decimal.Zero
	}
	return z
}

// add folds one atom in; it returns false once emit asked to stop.
func (a *aggregator) add(at *atom) bool {
	for _, f := range a.filters {
		if !f.values[f.col.get(a.d, a.v, at)] {
			return true
		}
	}
	a.atoms++
	if a.lastC != nil && at.c != a.lastC && a.flush >= flushCustomer {
		a.flushGroups()
		a.subtotal()
	} else if a.lastIt != nil && at.it != a.lastIt && a.flush == flushItem {
		a.flushGroups()
	}
	a.lastC, a.lastIt = at.c, at.it
	a.key = a.key[:0]
	for i, c := range a.groupBy {
		a.vals[i] = c.get(a.d, a.v, at)
		a.key = append(a.key, a.vals[i]...)
		a.key = append(a.key, 0x1f)
	}
	gi, ok := a.idx[string(a.key)]
	if !ok {
		g := &group{vals: append([]string(nil), a.vals...), sums: zeros(len(a.measures))}
		gi = len(a.groups)
		a.idx[string(a.key)] = gi
		a.groups = append(a.groups, g)
	}
	g := a.groups[gi]
	for i, m := range a.measures {
		x := m.sum(at)
		g.sums[i] = g.sums[i].Add(x)
		if a.v.SubtotalRows {
			a.subSums[i] = a.subSums[i].Add(x)
			a.allSums[i] = a.allSums[i].Add(x)
		}
	}
	return !a.stopped
}

func (a *aggregator) flushGroups() {
	for _, g := range a.groups {
		if !a.stopped && !a.emit(rowLeaf, g) {
			a.stopped = true
		}
	}
	clear(a.idx)
	a.groups = a.groups[:0]
}

func (a *aggregator) subtotal() {
	if !a.v.SubtotalRows || len(a.groupBy) == 0 || a.flush < flushCustomer || a.stopped {
		return
	}
	if !a.emit(rowSubtotal, &group{sums: a.subSums}) {
		a.stopped = true
	}
	a.subSums = zeros(len(a.measures))
}

func (a *aggregator) finish() {
	a.flushGroups()
	if a.lastC != nil {
		a.subtotal()
	}
	if a.v.SubtotalRows && len(a.groupBy) > 0 && !a.stopped && a.atoms > 0 {
		a.emit(rowTotal, &group{sums: a.allSums})
	}
}

// run walks the request's slice of data through the aggregator.
func (s *Sim) run(d *dataset, req *reportRequest, emit func(rowKind, *group) bool) {
	if req.reportID == OtherReportID {
		return // the AWS report has no Microsoft data
	}
	s.mu.Lock()
	rs := make(map[string][]restatement, len(s.restate))
	for k, v := range s.restate {
		rs[k] = v
	}
	s.mu.Unlock()
	v := s.opts.Variant
	ag := newAggregator(d, &v, req.cols, req.filters, emit)
	d.walk(s.periods, s.opts.Now(), rs, req.scope, ag.add)
	ag.finish()
}

// ---- handlers -----------------------------------------------------------------------------------

func (s *Sim) reportPrologue(w http.ResponseWriter, r *http.Request) (*dataset, *reportRequest, bool) {
	d := s.accounts[r.PathValue("account")]
	if _, ok := s.reportHeader(d, r.PathValue("report")); !ok {
		writeEnvelope(w, r, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("report %s not found", r.PathValue("report")))
		return nil, nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		writeEnvelope(w, r, http.StatusBadRequest, "INVALID_REQUEST", "cannot read body")
		return nil, nil, false
	}
	req, err := s.parseReportRequest(d, r.PathValue("report"), body)
	if err != nil {
		var br errBadRequest
		if errors.As(err, &br) {
			writeEnvelope(w, r, http.StatusBadRequest, "INVALID_ARGUMENT", br.msg)
		} else {
			writeEnvelope(w, r, http.StatusInternalServerError, "INTERNAL_ERROR", "Internal Server Error")
		}
		return nil, nil, false
	}
	s.page(req.pageKey)
	return d, req, true
}

// limit is the effective row cap: the request's rowsLimit and the server's RowsCap, 0 = none.
func (s *Sim) limit(req *reportRequest) int64 {
	l := req.rowsLimit
	if c := int64(s.opts.Variant.RowsCap); c > 0 && (l == 0 || c < l) {
		l = c
	}
	return l
}

func (s *Sim) echo(d *dataset, req *reportRequest) reportJSON {
	rep, _ := s.reportHeader(d, req.reportID)
	sp := &specsJSON{ColumnFilters: []any{}, TagKeys: []any{}, CustomerFields: []any{}, ConversionRates: []any{},
		CloudAcctFields: []nameValue{}, RowsLimit: strconv.FormatInt(req.rowsLimit, 10)}
	sp.SelectedColumns = selectedList(req.cols, rep.ReportTemplateID, d.currency)
	rng := &fixedJSON{StartDate: req.from.Format(time.RFC3339), EndDate: req.to.Format(time.RFC3339)}
	if req.rel != "" {
		sp.DateRangeOption.SelectedRange = dateRangeJSON{RelativeDateRange: req.rel, RelativeActualDateRange: rng}
	} else {
		sp.DateRangeOption.SelectedRange = dateRangeJSON{RelativeDateRange: "CUSTOM", FixedDateRange: rng}
	}
	sp.DateRangeOption.BillingDay = "0"
	sp.CurrencyOption.SelectedCurrency = currencyOf(d.currency)
	add := func(col string, m map[string]bool) {
		if m == nil {
			return
		}
		var vals []map[string]string
		for k := range m {
			vals = append(vals, map[string]string{"valueId": k})
		}
		sort.Slice(vals, func(i, j int) bool { return vals[i]["valueId"] < vals[j]["valueId"] })
		sp.ColumnFilters = append(sp.ColumnFilters, map[string]any{"columnTemplateId": rep.ReportTemplateID + "." + col, "selectedValues": vals})
	}
	add("customer_id", req.scope.customers)
	add("entitlement_id", req.scope.entitlements)
	rep.Specs = sp
	return rep
}

func (s *Sim) handleReportData(w http.ResponseWriter, r *http.Request) {
	d, req, ok := s.reportPrologue(w, r)
	if !ok {
		return
	}
	var rb bytes.Buffer
	enc := json.NewEncoder(&rb)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s.echo(d, req))
	rep := bytes.TrimSpace(rb.Bytes())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{"report":`)
	bw.Write(rep)
	bw.WriteString(`,"results":{"rows":[`)
	lim := s.limit(req)
	var written, available int64
	var buf []byte
	moneyStr := s.opts.Variant.MoneyAsString
	s.run(d, req, func(kind rowKind, g *group) bool {
		available++
		if lim > 0 && written >= lim {
			return true // keep counting what could have been returned
		}
		buf = buf[:0]
		if written > 0 {
			buf = append(buf, ',')
		}
		buf = appendRowJSON(buf, req.cols, kind, g, d.currency, moneyStr)
		written++
		_, err := bw.Write(buf)
		return err == nil
	})
	fmt.Fprintf(bw, `]},"resultCount":"%d","availableRowsCount":"%d","cacheTimestamp":"%s"}`+"\n",
		written, available, s.opts.Now().UTC().Format(time.RFC3339))
	_ = bw.Flush()
	s.count(func(st *Stats) { st.RowsServed += written })
}

func (s *Sim) handleReportCSV(w http.ResponseWriter, r *http.Request) {
	d, req, ok := s.reportPrologue(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{"results":"`)
	cw := csv.NewWriter(jsonStringWriter{bw})
	head := make([]string, len(req.cols))
	for i, c := range req.cols {
		head[i] = c.heading(d.currency)
	}
	_ = cw.Write(head)
	lim := s.limit(req)
	var written int64
	rec := make([]string, len(req.cols))
	s.run(d, req, func(kind rowKind, g *group) bool {
		if lim > 0 && written >= lim {
			return false // CSV carries no availableRowsCount, so there is nothing left to count
		}
		csvRecord(rec, req.cols, kind, g)
		written++
		return cw.Write(rec) == nil
	})
	cw.Flush()
	fmt.Fprintf(bw, `","resultCount":"%d"}`+"\n", written)
	_ = bw.Flush()
	s.count(func(st *Stats) { st.RowsServed += written })
}

// cellValue returns the i-th selected column's value for a row, and its value type; subtotal and
// total rows carry "Subtotal"/"Total" in the first grouping column and empty strings elsewhere.
func rowCells(cols []*column, kind rowKind, g *group, fn func(c *column, vt, val string, money *decimal.Decimal)) {
	gi, mi := 0, 0
	for _, c := range cols {
		if c.measure() {
			fn(c, c.valueType, "", &g.sums[mi])
			mi++
			continue
		}
		switch kind {
		case rowLeaf:
			fn(c, c.valueType, g.vals[gi], nil)
		default:
			v := ""
			if gi == 0 {
				v = map[rowKind]string{rowSubtotal: "Subtotal", rowTotal: "Total"}[kind]
			}
			fn(c, vtString, v, nil)
		}
		gi++
	}
}

func appendRowJSON(b []byte, cols []*column, kind rowKind, g *group, currency string, moneyStr bool) []byte {
	b = append(b, `{"values":[`...)
	first := true
	rowCells(cols, kind, g, func(c *column, vt, val string, sum *decimal.Decimal) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"valueType":"`...)
		b = append(b, vt...)
		b = append(b, '"')
		switch {
		case vt == vtMoney:
			b = append(b, `,"moneyValue":{"currency":`...)
			b = appendJSONString(b, currency)
			b = append(b, `,"value":`...)
			// Never through float64: the decimal's own digits are written as the JSON number.
			if moneyStr {
				b = appendJSONString(b, sum.StringFixed(10))
			} else {
				b = append(b, sum.StringFixed(10)...)
			}
			b = append(b, '}')
		case sum != nil: // FLOAT measure
			b = append(b, `,"floatValue":`...)
			b = append(b, sum.String()...)
		case val == "":
			if vt == vtString {
				b = append(b, `,"stringValue":""`...)
			}
		case vt == vtFloat:
			b = append(b, `,"floatValue":`...)
			b = append(b, val...)
		case vt == vtInt:
			b = append(b, `,"intValue":`...)
			b = appendJSONString(b, val)
		case vt == vtDate:
			b = append(b, `,"dateValue":`...)
			b = appendJSONString(b, val)
		default:
			b = append(b, `,"stringValue":`...)
			b = appendJSONString(b, val)
		}
		b = append(b, '}')
	})
	return append(b, "]}"...)
}

func csvRecord(rec []string, cols []*column, kind rowKind, g *group) {
	i := 0
	rowCells(cols, kind, g, func(c *column, vt, val string, sum *decimal.Decimal) {
		switch {
		case vt == vtMoney:
			rec[i] = sum.StringFixed(10)
		case sum != nil:
			rec[i] = sum.String()
		default:
			rec[i] = val
		}
		i++
	})
}

const hexDigits = "0123456789abcdef"

// appendJSONString escapes like encoding/json minus HTML escaping; UTF-8 passes through.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONEscaped(b, s)
	return append(b, '"')
}

func appendJSONEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	return append(b, s[start:]...)
}

// jsonStringWriter writes its input as the inside of a JSON string, so CSV text can be streamed
// into the "results" member without holding it.
type jsonStringWriter struct{ w *bufio.Writer }

func (j jsonStringWriter) Write(p []byte) (int, error) {
	var buf [256]byte
	for off := 0; off < len(p); off += 128 {
		end := min(off+128, len(p))
		if _, err := j.w.Write(appendJSONEscaped(buf[:0], string(p[off:end]))); err != nil {
			return off, err
		}
	}
	return len(p), nil
}
