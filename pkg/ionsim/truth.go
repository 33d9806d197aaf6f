package ionsim

import (
	"fmt"
	"sort"

	"github.com/shopspring/decimal"
)

// CustomerTruth is one customer's totals for a period in one currency, at full precision.
type CustomerTruth struct {
	CustomerID string
	Name       string // customer company
	Currency   string
	// SellerCost is the sum of seller_cost_invoice: the control total a client must reproduce.
	SellerCost   decimal.Decimal
	CustomerCost decimal.Decimal
	Margin       decimal.Decimal
	MSRP         decimal.Decimal
	// Rows is the number of leaf rows at the natural granularity (one per item and day when
	// Variant.Daily, else one per item and month).
	Rows int
}

// Truth is what Ion holds for one account and period.
type Truth struct {
	Account  string
	Period   string
	Currency string
	// Customers with data in the period, by customer id.
	Customers []CustomerTruth
	// AllCustomers are the ids /customers lists (with or without data), ascending.
	AllCustomers []string
	SellerCost   decimal.Decimal
	CustomerCost decimal.Decimal
	Rows         int
	// Restatements applied to the period so far.
	Restatements int
}

// Customer returns one customer's totals (ok=false when it has no data in the period).
func (t Truth) Customer(id string) (CustomerTruth, bool) {
	for _, c := range t.Customers {
		if c.CustomerID == id {
			return c, true
		}
	}
	return CustomerTruth{}, false
}

// GroundTruth returns the primary account's truth for period ("YYYY-MM").
func (s *Sim) GroundTruth(period string) Truth { return s.GroundTruthFor(s.primary, period) }

// GroundTruthFor returns account's truth for period; an unknown account or period has no rows.
func (s *Sim) GroundTruthFor(account, period string) Truth {
	d := s.accounts[account]
	rs := s.restatements()
	t := Truth{Account: account, Period: period, Currency: s.opts.Currency, SellerCost: decimal.Zero,
		CustomerCost: decimal.Zero, Restatements: len(rs[period])}
	if d == nil {
		return t
	}
	key := fmt.Sprintf("%s|%s|%d|%d", account, period, len(rs[period]), s.opts.Now().Unix()/86400)
	s.mu.Lock()
	cached, ok := s.truth[key]
	s.mu.Unlock()
	if ok {
		return cached
	}
	for _, c := range s.listed(d) {
		t.AllCustomers = append(t.AllCustomers, c.id)
	}
	sort.Strings(t.AllCustomers)
	if s.hasPeriod(period) {
		var cur *CustomerTruth
		var lastIt *item
		d.walk([]string{period}, s.opts.Now(), rs, scope{}, func(a *atom) bool {
			if cur == nil || cur.CustomerID != a.c.id {
				t.Customers = append(t.Customers, CustomerTruth{CustomerID: a.c.id, Name: a.c.company, Currency: d.currency,
					SellerCost: decimal.Zero, CustomerCost: decimal.Zero, Margin: decimal.Zero, MSRP: decimal.Zero})
				cur = &t.Customers[len(t.Customers)-1]
			}
			cur.SellerCost = cur.SellerCost.Add(a.seller)
			cur.CustomerCost = cur.CustomerCost.Add(a.cust)
			cur.Margin = cur.Margin.Add(a.margin)
			cur.MSRP = cur.MSRP.Add(a.msrp)
			if s.opts.Variant.Daily || a.it != lastIt {
				cur.Rows++
			}
			lastIt = a.it
			return true
		})
	}
	for _, c := range t.Customers {
		t.SellerCost = t.SellerCost.Add(c.SellerCost)
		t.CustomerCost = t.CustomerCost.Add(c.CustomerCost)
		t.Rows += c.Rows
	}
	s.mu.Lock()
	s.truth[key] = t
	s.mu.Unlock()
	return t
}

// Restate changes some lines of period between two reads, like Ion re-rating usage: every call
// multiplies the seller cost of a deterministic fraction of the period's lines by 1.05 (customer
// cost, margin and MSRP follow). It returns the new truth.
func (s *Sim) Restate(period string, fraction float64) (Truth, error) {
	if !s.hasPeriod(period) {
		return Truth{}, fmt.Errorf("ionsim: restate: period %q has no data", period)
	}
	if fraction <= 0 || fraction > 1 {
		return Truth{}, fmt.Errorf("ionsim: restate: fraction %v not in (0,1]", fraction)
	}
	s.mu.Lock()
	s.restate[period] = append(s.restate[period], restatement{fraction: fraction, factor: decimal.RequireFromString("1.05")})
	s.mu.Unlock()
	s.log.Info("ionsim: period restated", "period", period, "fraction", fraction)
	return s.GroundTruth(period), nil
}

// listed are the customers /customers shows: all but the Variant.UnlistedCustomers last ones.
func (s *Sim) listed(d *dataset) []*customer {
	return d.customers[:max(0, len(d.customers)-s.opts.Variant.UnlistedCustomers)]
}
