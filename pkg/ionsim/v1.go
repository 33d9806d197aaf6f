package ionsim

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/shopspring/decimal"
)

// v1 uses its own envelope: {"success":..,"message":..,"data":{...}} (ion-api.md §5.2).

func v1Error(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"success": false, "message": msg})
}

func (s *Sim) handleV1Customers(w http.ResponseWriter, r *http.Request, d *dataset) {
	limit, offset := 100, 0
	for name, dst := range map[string]*int{"limit": &limit, "offset": &offset} {
		if v := r.URL.Query().Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				v1Error(w, http.StatusBadRequest, "Invalid "+name)
				return
			}
			*dst = n
		}
	}
	s.page(fmt.Sprintf("v1 customers offset=%d limit=%d", offset, limit))
	list := []map[string]any{}
	listed := s.listed(d)
	for i := offset; i < len(listed) && i < offset+limit; i++ {
		c := listed[i]
		list = append(list, map[string]any{
			"id": c.id, "name": c.contact, "company": c.company, "email": c.email,
			"cloudAccounts":   []map[string]any{{"cloudAccountId": c.tenant, "provider": map[string]string{"name": "Microsoft"}}},
			"priceBooksLinks": []map[string]string{{"priceBookId": c.priceBookID}},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "message": "", "data": map[string]any{"customer": list}})
}

var v1RangeRe = regexp.MustCompile(`^m-(\d{1,2})-(\d{4})$`)

// parseV1Month accepts m-1-2025 and zero-padded m-01-2025 (both seen in TD scripts and the SDK).
func parseV1Month(v string) (string, bool) {
	m := v1RangeRe.FindStringSubmatch(v)
	if m == nil {
		return "", false
	}
	mo, _ := strconv.Atoi(m[1])
	if mo < 1 || mo > 12 {
		return "", false
	}
	return fmt.Sprintf("%s-%02d", m[2], mo), true
}

type v1Node struct {
	Entity map[string]any `json:"entity"`
	Lines  []*v1Node      `json:"lines,omitempty"`
	Data   *v1Data        `json:"data,omitempty"`
	index  map[string]*v1Node
	sums   *v1Sums
}

type v1Data struct {
	Price string `json:"price"`
	Cost  string `json:"cost"`
	Usage string `json:"usage"`
	Unit  string `json:"unit,omitempty"` // absent on licence lines
}

type v1Sums struct{ price, cost, usage decimal.Decimal }

func (n *v1Node) child(id string, mk func() map[string]any) *v1Node {
	if n.index == nil {
		n.index = map[string]*v1Node{}
	}
	c := n.index[id]
	if c == nil {
		c = &v1Node{Entity: mk()}
		n.index[id] = c
		n.Lines = append(n.Lines, c)
	}
	return c
}

func (n *v1Node) finish() {
	if n.sums != nil {
		n.Data.Price, n.Data.Cost, n.Data.Usage = n.sums.price.StringFixed(10), n.sums.cost.StringFixed(10), n.sums.usage.StringFixed(10)
	}
	for _, c := range n.Lines {
		c.finish()
	}
}

// handleV1Billing serves GET /api/v1/reports/billing/{vendor}: the monthly customer →
// subscription → product → sku tree, decimal strings with 10 dp; totals equal the v3 truth.
func (s *Sim) handleV1Billing(w http.ResponseWriter, r *http.Request, d *dataset) {
	vendor := r.PathValue("vendor")
	switch vendor {
	case "azureplan", "aws", "gcp":
	default:
		v1Error(w, http.StatusNotFound, "Unknown vendor "+vendor)
		return
	}
	q := r.URL.Query()
	period, ok := parseV1Month(q.Get("filter[date_range]"))
	if !ok {
		v1Error(w, http.StatusBadRequest, "Invalid filter[date_range]: expected m-<month>-<year>")
		return
	}
	if cur := q.Get("filter[report_currency]"); cur != "" && cur != d.currency {
		v1Error(w, http.StatusBadRequest, "Currency "+cur+" is not available")
		return
	}
	cust := q.Get("filter[customer_id]")
	s.page(fmt.Sprintf("v1 billing %s period=%s customer=%s", vendor, period, cust))
	resp := map[string]any{
		"success": true, "message": "Report data for the selected period",
		"currencyOption": map[string]string{"costCurrency": d.currency, "priceCurrency": d.currency},
	}
	data := []*v1Node{}
	if vendor == "azureplan" && s.hasPeriod(period) {
		sc := scope{}
		if cust != "" {
			sc.customers = map[string]bool{cust: true}
		}
		var cur *v1Node
		var curC *customer
		d.walk([]string{period}, s.opts.Now(), s.restatements(), sc, func(a *atom) bool {
			if a.c != curC {
				curC = a.c
				cur = &v1Node{Entity: map[string]any{"id": a.c.id, "type": "customer", "company": a.c.company, "name": a.c.contact}}
				data = append(data, cur)
			}
			sub := subscriptionOfV1(a)
			n := cur.child(sub, func() map[string]any {
				return map[string]any{"id": sub, "type": "subscription", "cost_currency": d.currency, "price_currency": d.currency}
			})
			prod := productOfV1(a)
			n = n.child(prod, func() map[string]any { return map[string]any{"id": prod, "type": "product"} })
			sku := skuName(a)
			if a.it.kind == kindUsage {
				sku = a.it.meter.name
			}
			n = n.child(sku, func() map[string]any { return map[string]any{"id": sku, "type": "sku"} })
			if n.sums == nil {
				n.sums = &v1Sums{decimal.Zero, decimal.Zero, decimal.Zero}
				n.Data = &v1Data{}
				if a.it.kind == kindUsage {
					n.Data.Unit = a.it.meter.unit
				}
			}
			n.sums.price = n.sums.price.Add(a.cust)
			n.sums.cost = n.sums.cost.Add(a.seller)
			n.sums.usage = n.sums.usage.Add(a.qty)
			return true
		})
		for _, c := range data {
			c.finish()
		}
	}
	resp["data"] = data
	writeJSON(w, http.StatusOK, resp)
}

func subscriptionOfV1(a *atom) string {
	if a.it.ent != nil {
		return a.it.ent.guid
	}
	return a.it.licGUID
}

func productOfV1(a *atom) string {
	switch a.it.kind {
	case kindUsage:
		return a.it.meter.category
	case kindLicence:
		return a.it.lic.product
	}
	return "Azure Credit"
}

func (s *Sim) hasPeriod(p string) bool {
	for _, x := range s.periods {
		if x == p {
			return true
		}
	}
	return false
}

func (s *Sim) restatements() map[string][]restatement {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := make(map[string][]restatement, len(s.restate))
	for k, v := range s.restate {
		rs[k] = v
	}
	return rs
}
