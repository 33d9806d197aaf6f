package usage

import (
	"fmt"
	"strings"
	"sync"

	"github.com/shopspring/decimal"
)

// Lookups holds the parsed FinOps toolkit tables.
type Lookups struct {
	services map[string]Service   // by lower-case resource type
	units    map[string]unitEntry // by exact UnitOfMeasure
	unitsCI  map[string]unitEntry // by trimmed, lower-case UnitOfMeasure
	regions  map[string]Region    // by lower-case original spelling
}

type unitEntry struct {
	block    decimal.Decimal
	distinct string
}

// Region is the FOCUS RegionId/RegionName of an Azure region spelling.
type Region struct {
	ID   string
	Name string
}

// DefaultLookups returns the embedded tables, parsed once. The data is compiled in, so a parse
// failure is a build defect, caught by the package tests; it panics rather than making every
// caller handle an error that cannot happen in a released binary.
var DefaultLookups = sync.OnceValue(func() *Lookups {
	l, err := LoadLookups()
	if err != nil {
		panic(err)
	}
	return l
})

// LoadLookups parses the embedded Services, PricingUnits and Regions tables.
func LoadLookups() (*Lookups, error) {
	l := &Lookups{
		services: map[string]Service{},
		units:    map[string]unitEntry{},
		unitsCI:  map[string]unitEntry{},
		regions:  map[string]Region{},
	}
	svc, err := readCSV("Services.csv")
	if err != nil {
		return nil, err
	}
	for _, r := range svc {
		rt := strings.ToLower(strings.TrimSpace(r["ResourceType"]))
		if rt == "" {
			continue
		}
		s := Service{
			Name: r["ServiceName"], Category: r["ServiceCategory"], Subcategory: r["ServiceSubcategory"],
			Publisher: r["PublisherName"], Model: r["ServiceModel"],
		}
		// A resource type can be listed under several ConsumedService values (Event Grid
		// also reports storage accounts). Without a consumed service on Ion rows, prefer the
		// row whose consumed service is the type's own namespace, else the first in file order.
		ns, _, _ := strings.Cut(rt, "/")
		if _, seen := l.services[rt]; !seen || strings.EqualFold(r["ConsumedService"], ns) {
			l.services[rt] = s
		}
	}
	pu, err := readCSV("PricingUnits.csv")
	if err != nil {
		return nil, err
	}
	for _, r := range pu {
		b, err := decimal.NewFromString(r["PricingBlockSize"])
		if err != nil || !b.IsPositive() {
			return nil, fmt.Errorf("usage: PricingUnits.csv %q: bad block size %q", r["UnitOfMeasure"], r["PricingBlockSize"])
		}
		e := unitEntry{block: b, distinct: r["DistinctUnits"]}
		l.units[r["UnitOfMeasure"]] = e
		ci := strings.ToLower(strings.TrimSpace(r["UnitOfMeasure"]))
		if _, seen := l.unitsCI[ci]; !seen {
			l.unitsCI[ci] = e
		}
	}
	reg, err := readCSV("Regions.csv")
	if err != nil {
		return nil, err
	}
	for _, r := range reg {
		l.regions[strings.ToLower(r["OriginalValue"])] = Region{ID: r["RegionId"], Name: r["RegionName"]}
	}
	return l, nil
}

// Region maps any spelling ("West Europe", "EU West", "westeurope") to the FOCUS region.
func (l *Lookups) Region(v string) (Region, bool) {
	k := strings.ToLower(strings.TrimSpace(v))
	if k == "" {
		return Region{}, false
	}
	if r, ok := l.regions[k]; ok {
		return r, true
	}
	r, ok := l.regions[strings.ReplaceAll(k, " ", "")]
	return r, ok
}

// PricingUnit returns the block size and distinct unit of an Azure UnitOfMeasure ("10K" →
// 10000, "Units"). Unknown units report false.
func (l *Lookups) PricingUnit(uom string) (block decimal.Decimal, distinct string, ok bool) {
	if e, ok := l.units[uom]; ok {
		return e.block, e.distinct, true
	}
	if e, ok := l.unitsCI[strings.ToLower(strings.TrimSpace(uom))]; ok {
		return e.block, e.distinct, true
	}
	return decimal.Decimal{}, "", false
}
