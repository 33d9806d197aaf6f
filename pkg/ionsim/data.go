package ionsim

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Everything generated is a pure function of (seed, account, indexes): a splitmix64 hash replaces a
// random stream so any customer, item or day can be produced on its own, in any order, and a
// million-row report never has to be materialised.

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func hash(parts ...uint64) uint64 {
	h := uint64(0x6a09e667f3bcc908)
	for _, p := range parts {
		h = splitmix(h ^ p)
	}
	return h
}

func hstr(s string) uint64 {
	f := fnv.New64a()
	_, _ = f.Write([]byte(s))
	return f.Sum64()
}

// frac maps a hash to [0,1); only used for choices and fault picks, never for money.
func frac(h uint64) float64 { return float64(h>>11) / float64(1<<53) }

func between(h uint64, lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + int64(h%uint64(hi-lo+1))
}

var nsIon = uuid.MustParse("6f1c3a52-9b7e-4c1d-8a43-2d1e0b9c7f10")

func guid(parts ...string) string {
	return uuid.NewSHA1(nsIon, []byte(strings.Join(parts, "/"))).String()
}

type custSeed struct{ company, country, city, state, contact, lang string }

// Names deliberately include non-ASCII letters, commas, quotes, apostrophes and ampersands so
// JSON and CSV escaping are exercised.
var companySeeds = []custSeed{
	{"Müller & Søn ApS", "DK", "København", "", "Jens Müller", "da"},
	{"Contoso, Ltd.", "GB", "London", "", "Alice O'Brien", "en"},
	{`Café "Zur Post" GmbH`, "DE", "München", "BY", "Jörg Weiß", "de"},
	{"Åkesson Bygg AB", "SE", "Göteborg", "", "Åsa Åkesson", "sv"},
	{`Fabrikam "North" B.V.`, "NL", "Utrecht", "", "Daan de Vries", "nl"},
	{"Łódź Software Sp. z o.o.", "PL", "Łódź", "", "Zofia Wójcik", "pl"},
	{"Brasserie L'Étoile SARL", "FR", "Lyon", "", "Amélie Dubois", "fr"},
	{"Nordlys Teknikk AS", "NO", "Tromsø", "", "Øystein Bø", "nb"},
	{"Smith, Jones & Co. LLP", "GB", "Manchester", "", "Sarah Smith", "en"},
	{"Tailspin Toys Oy", "FI", "Espoo", "", "Mikko Mäkinen", "fi"},
	{"Øresund Logistics ApS", "DK", "Helsingør", "", "Søren Ærø", "da"},
	{"Kaffeerösterei Böhm KG", "DE", "Köln", "NW", "Grete Böhm", "de"},
	{"Núñez y Asociados, S.L.", "ES", "Sevilla", "", "José Núñez", "es"},
	{`Dublin "Green" Analytics Ltd`, "IE", "Dublin", "", "Siobhán Ní Bhriain", "en"},
	{"Wingtip Toys A/S", "DK", "Aarhus", "", "Mette Holm", "da"},
	{"Östgöta Energi AB", "SE", "Linköping", "", "Björn Östlund", "sv"},
}

type regionDef struct{ metered, id string } // spellings as in finops-toolkit Regions.csv

var regions = []regionDef{
	{"EU West", "westeurope"}, {"EU North", "northeurope"}, {"DE West Central", "germanywestcentral"},
	{"SE Central", "swedencentral"}, {"US East", "eastus"},
}

// meterDef is one Azure meter; provider types exist in finops-toolkit Services.csv and units in
// PricingUnits.csv.
type meterDef struct {
	category, subCategory, name, unit string
	provider, resPrefix, child        string // resource type path; child adds a nested segment (SQL databases)
	product, productID, sku, skuID    string
	price                             int64 // seller price per unit, 1e-10 of the currency
	qtyMin, qtyMax                    int64 // daily quantity range, 1e-6 units
	perMonth                          bool  // a monthly unit spread over the days of the month
}

var meters = []meterDef{
	{"Virtual Machines", "Dv3/DSv3 Series", "D2 v3", "1 Hour", "Microsoft.Compute/virtualMachines", "vm-app", "", "Virtual Machines Dv3 Series", "DZH318Z0BQ4L", "D2 v3", "0011", 912345678, 24_000000, 24_000000, false},
	{"Virtual Machines", "BS Series", "B2ms", "1 Hour", "Microsoft.Compute/virtualMachines", "vm-jump", "", "Virtual Machines BS Series", "DZH318Z0BQ4W", "B2ms", "0045", 832101234, 1_000000, 24_000000, false},
	{"Storage", "Premium SSD Managed Disks", "P10 LRS Disk", "1/Month", "Microsoft.Compute/disks", "disk-os", "", "Premium SSD Managed Disks", "DZH318Z0BP04", "P10 LRS", "000J", 179200000000, 1_000000, 1_000000, true},
	{"Storage", "General Block Blob v2", "Hot LRS Data Stored", "1 GB/Month", "Microsoft.Storage/storageAccounts", "stdata", "", "General Block Blob v2", "DZH318Z0BPH7", "Hot LRS", "001T", 196012345, 10_000000, 2000_000000, true},
	{"Storage", "General Block Blob v2", "Hot LRS Write Operations", "10K", "Microsoft.Storage/storageAccounts", "stlogs", "", "General Block Blob v2", "DZH318Z0BPH7", "Hot LRS", "001T", 509876543, 100000, 300_000000, false},
	{"Bandwidth", "Rtn Preference: MGN", "Standard Data Transfer Out", "1 GB", "Microsoft.Network/publicIPAddresses", "pip-egress", "", "Rtn Preference: MGN", "DZH318Z0BNVX", "Standard", "0003", 807000000, 10000, 40_000000, false},
	{"SQL Database", "General Purpose - Compute Gen5", "vCore", "1 Hour", "Microsoft.Sql/servers", "sql-main", "databases", "SQL Database Single/Elastic Pool General Purpose - Compute Gen5", "DZH318Z0BQPS", "General Purpose", "0053", 1813000000, 48_000000, 48_000000, false},
	{"Azure App Service", "Premium v3 Plan", "P1 v3 App", "1 Hour", "Microsoft.Web/serverfarms", "asp-web", "", "Azure App Service Premium v3 Plan", "DZH318Z0BQ8K", "P1 v3", "0004", 1990000000, 24_000000, 24_000000, false},
	{"Virtual Network", "IP Addresses", "Standard IPv4 Static Public IP", "1 Hour", "Microsoft.Network/publicIPAddresses", "pip-static", "", "IP Addresses", "DZH318Z0BNVS", "Standard", "000P", 46000000, 24_000000, 24_000000, false},
	{"Key Vault", "Key Vault", "Standard Operations", "10K", "Microsoft.KeyVault/vaults", "kv-app", "", "Key Vault", "DZH318Z0BQD1", "Standard", "0001", 290000000, 10000, 30_000000, false},
}

type licenceDef struct {
	product, productID, skuID string
	price                     int64 // seller price per seat and month, 1e-10
}

var licences = []licenceDef{
	{"Microsoft 365 Business Premium", "CFQ7TTC0LCHC", "0002", 187000000000},
	{"Microsoft 365 E3", "CFQ7TTC0LFLX", "0001", 301500000000},
	{"Exchange Online (Plan 1)", "CFQ7TTC0LH16", "0001", 33600000000},
	{"Microsoft Entra ID P1", "CFQ7TTC0LFLS", "0002", 50400000000},
	{"Microsoft Defender for Business", "CFQ7TTC0LH18", "0001", 24300000000},
}

// Charge types emitted (ion-api.md §9 leaves the real set unknown): Usage (Azure consumption),
// Purchase (licence cycle charges) and Credit (negative Azure credits).
const (
	ChargeUsage    = "Usage"
	ChargePurchase = "Purchase"
	ChargeCredit   = "Credit"
)

type itemKind int

const (
	kindUsage itemKind = iota
	kindCredit
	kindLicence
)

type customer struct {
	idx                                     int
	id                                      string
	company, contact, email, title, phone   string
	street, city, state, zip, country, lang string
	tenant, domain                          string
	created                                 time.Time
	planGUID, planIonID                     string // the Azure plan subscription
	markup, msrpFactor                      decimal.Decimal
	priceBook, priceBookID                  string
	tagID, tagLabel                         string
	ents                                    []*entitlement
}

type entitlement struct {
	guid, desc, ionID string
}

type item struct {
	id     uint64
	kind   itemKind
	cust   *customer
	ent    *entitlement // nil for licences
	meter  *meterDef
	region regionDef
	// usage
	resourceGroup, resourceURI, meterID string
	// licence
	lic                    *licenceDef
	licGUID, licIonID      string
	seats                  int64
	licStart               time.Time
	orderNumber            string
	unitPrice, msrpPrice   decimal.Decimal // seller / MSRP price per unit
	unitPriceS, msrpPriceS string          // 10 dp
}

type dataset struct {
	seed         uint64
	account      string
	currency     string
	resellerName string
	resellerMPN  string
	customers    []*customer
	byID         map[string]*customer
	opts         *Options
	accountIndex int
	priceUnitDiv decimal.Decimal
}

var (
	markups = []string{"1.191", "1.15", "1.12", "1.2"}
	books   = []string{"MSRP", "Partner Gold", "Partner Silver", "Enterprise"}
)

func newDataset(seed uint64, account string, accountIndex int, opts Options) *dataset {
	s := hash(seed, hstr(account))
	d := &dataset{
		seed: s, account: account, currency: opts.Currency, opts: &opts, accountIndex: accountIndex,
		resellerName: []string{"Nordic Cloud Partners A/S", "Alpen IT-Service GmbH", "Baltic Bytes SIA"}[accountIndex%3],
		resellerMPN:  fmt.Sprint(4000000 + s%999999),
		byID:         map[string]*customer{},
	}
	base := time.Date(2021, 3, 1, 0, 0, 0, 0, time.UTC)
	rot := int(s % uint64(len(companySeeds)))
	for i := 0; i < opts.Customers; i++ {
		hc := hash(s, 1, uint64(i))
		cs := companySeeds[(i+rot)%len(companySeeds)]
		company := cs.company
		if round := i / len(companySeeds); round > 0 {
			company = fmt.Sprintf("%s %d", company, round+1)
		}
		c := &customer{
			idx: i, id: fmt.Sprint(10050 + 7*i + int(hc%5)),
			company: company, contact: cs.contact, country: cs.country, city: cs.city, state: cs.state, lang: cs.lang,
			title: []string{"IT Manager", "CFO", "Owner", "Head of Operations"}[hc%4],
			phone: fmt.Sprintf("+%d %08d", 30+hc%60, hc%100000000),
			zip:   fmt.Sprintf("%04d", 1000+hc%8999), street: fmt.Sprintf("Hovedgaden %d", 1+hc%120),
			created: base.Add(time.Duration(hc%(3*365*24)) * time.Hour),
		}
		slug := asciiSlug(company)
		c.domain = fmt.Sprintf("%s%d.onmicrosoft.com", slug, i)
		c.email = strings.ToLower(asciiSlug(cs.contact)) + "@" + slug + ".example"
		c.tenant = guid("tenant", account, c.id)
		c.planGUID = guid("plan", account, c.id)
		c.planIonID = fmt.Sprint(2277000 + 100*i)
		mi := (hc >> 8) % uint64(len(markups))
		c.markup = decimal.RequireFromString(markups[mi])
		c.msrpFactor = decimal.RequireFromString("1.191")
		c.priceBook, c.priceBookID = books[mi], fmt.Sprint(310+mi)
		if hc%4 == 0 {
			c.tagID, c.tagLabel = "7", "Key accounts"
		}
		nEnt := 1 + int((hc>>16)%3)
		for j := 0; j < nEnt; j++ {
			c.ents = append(c.ents, &entitlement{
				guid:  guid("entitlement", account, c.id, fmt.Sprint(j)),
				desc:  []string{"Azure subscription 1", "Production", "Dev/Test"}[j],
				ionID: fmt.Sprint(2277000 + 100*i + 1 + j),
			})
		}
		d.customers = append(d.customers, c)
		d.byID[c.id] = c
	}
	return d
}

// items returns all of a customer's items: usage and a credit per entitlement, then licences.
// They are built on each call, not kept: at bench scale (3,333 customers × ~50 items) keeping
// them was ~115 MB of the process's heap, which the pipeline being measured then paid for in
// garbage collection; a request reads one customer's (or, for control totals, each in turn).
func (d *dataset) items(c *customer) []*item {
	s, i, account := d.seed, c.idx, d.account
	hc := hash(s, 1, uint64(i))
	var out []*item
	for j, e := range c.ents {
		for k := 0; k < d.opts.Meters; k++ {
			hi := hash(s, 2, uint64(i), uint64(j), uint64(k))
			m := &meters[hi%uint64(len(meters))]
			r := regions[(hi>>8)%uint64(len(regions))]
			if (hi>>16)%4 != 0 { // most resources live in the customer's home region
				r = regions[hc%2]
			}
			rg := fmt.Sprintf("rg-%s-%s", []string{"prod", "web", "data", "shared"}[(hi>>20)%4], r.id)
			name := fmt.Sprintf("%s-%02d", m.resPrefix, k+1)
			uri := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", e.guid, rg, m.provider, name)
			if m.child != "" {
				uri += "/" + m.child + "/" + fmt.Sprintf("db-%02d", k+1)
			}
			it := &item{
				id: hi, kind: kindUsage, cust: c, ent: e, meter: m, region: r,
				resourceGroup: rg, resourceURI: uri, meterID: guid("meter", m.name, r.id),
			}
			// ±10 % around the list price, kept at 10 dp.
			p := m.price*9/10 + int64(hi>>24)%(m.price/5+1)
			it.setPrices(decimal.New(p, -10), c.msrpFactor)
			out = append(out, it)
		}
		// One credit item per entitlement; it bills in some months only.
		out = append(out, &item{id: hash(s, 3, uint64(i), uint64(j)), kind: kindCredit, cust: c, ent: e, region: regions[hc%2]})
	}
	nLic := int((hc >> 24) % 3)
	for l := 0; l < nLic; l++ {
		hl := hash(s, 4, uint64(i), uint64(l))
		ld := &licences[hl%uint64(len(licences))]
		it := &item{
			id: hl, kind: kindLicence, cust: c, lic: ld, region: regions[hc%2],
			licGUID: guid("licence", account, c.id, fmt.Sprint(l)), licIonID: fmt.Sprint(2277000 + 100*i + 50 + l),
			seats:       between(hl>>8, 1, 50),
			licStart:    c.created.AddDate(0, int(hl>>16)%12, int(hl>>20)%27),
			orderNumber: fmt.Sprint(88000000 + hl%1000000),
		}
		it.licStart = time.Date(it.licStart.Year(), it.licStart.Month(), it.licStart.Day(), 0, 0, 0, 0, time.UTC)
		it.setPrices(decimal.New(ld.price, -10), c.msrpFactor)
		out = append(out, it)
	}
	return out
}

func (it *item) setPrices(seller, msrpFactor decimal.Decimal) {
	it.unitPrice = seller
	it.msrpPrice = seller.Mul(msrpFactor).Round(10)
	it.unitPriceS = it.unitPrice.StringFixed(10)
	it.msrpPriceS = it.msrpPrice.StringFixed(10)
}

func asciiSlug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case strings.ContainsRune("åäàáâ", r):
			b.WriteByte('a')
		case strings.ContainsRune("öøóô", r):
			b.WriteByte('o')
		case strings.ContainsRune("üú", r):
			b.WriteByte('u')
		case strings.ContainsRune("éèê", r):
			b.WriteByte('e')
		case r == 'ł':
			b.WriteByte('l')
		case r == 'ñ':
			b.WriteByte('n')
		case r == 'ß':
			b.WriteString("ss")
		case r == 'æ':
			b.WriteString("ae")
		}
	}
	return b.String()
}

// atom is one generated line: one item on one usage day (licences and credits bill one day a month).
type atom struct {
	c      *customer
	it     *item
	period string
	pstart time.Time // first day of the period
	day    time.Time // UTC midnight of the usage day
	qty    decimal.Decimal
	seats  int64
	seller decimal.Decimal
	cust   decimal.Decimal
	margin decimal.Decimal
	msrp   decimal.Decimal
}

// restatement bumps the seller cost of a deterministic fraction of a period's lines.
type restatement struct {
	fraction float64
	factor   decimal.Decimal
}

// scope limits a walk; nil sets mean "all".
type scope struct {
	customers    map[string]bool
	entitlements map[string]bool // entitlement_id values ("" selects licences)
	inRange      func(day time.Time) bool
}

// walk generates atoms in a fixed order: customer → item → period → day. fn returning false stops.
// cur is reused between calls, so fn must copy what it keeps.
func (d *dataset) walk(periods []string, now time.Time, restate map[string][]restatement, sc scope, fn func(a *atom) bool) {
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	type pinfo struct {
		name        string
		start       time.Time
		days, limit int
		h           uint64
	}
	ps := make([]pinfo, 0, len(periods))
	for _, p := range periods {
		t, _ := time.Parse("2006-01", p)
		days := t.AddDate(0, 1, -1).Day()
		limit := days
		if !t.Before(today) || t.AddDate(0, 1, 0).After(today) {
			// Current month: only days before today; future months: nothing.
			limit = int(today.Sub(t).Hours() / 24)
			if limit > days {
				limit = days
			}
		}
		if limit <= 0 {
			continue
		}
		ps = append(ps, pinfo{p, t, days, limit, hstr(p)})
	}
	var a atom
	for _, c := range d.customers {
		if sc.customers != nil && !sc.customers[c.id] {
			continue
		}
		for _, it := range d.items(c) {
			entID := ""
			if it.ent != nil {
				entID = it.ent.guid
			}
			if sc.entitlements != nil && !sc.entitlements[entID] {
				continue
			}
			for _, p := range ps {
				hp := hash(it.id, p.h)
				switch it.kind {
				case kindUsage:
					if frac(hp) >= 0.92 { // resource absent this month
						continue
					}
				case kindCredit:
					if frac(hp) >= 0.35 {
						continue
					}
				case kindLicence:
					if it.licStart.After(p.start.AddDate(0, 1, -1)) {
						continue
					}
				}
				first, last := 1, p.limit
				if it.kind != kindUsage {
					// Credits and licence cycle charges bill on one day of the month.
					day := 1 + int(hp>>32)%p.days
					if it.kind == kindLicence {
						day = min(it.licStart.Day(), p.days)
					}
					if day > p.limit {
						continue
					}
					first, last = day, day
				}
				for dn := first; dn <= last; dn++ {
					day := p.start.AddDate(0, 0, dn-1)
					if sc.inRange != nil && !sc.inRange(day) {
						continue
					}
					d.fill(&a, c, it, p.name, p.start, p.days, day, dn, restate[p.name])
					if !fn(&a) {
						return
					}
				}
			}
		}
	}
}

// fill computes one atom's quantities and money. Money is exact: integer-scaled decimals, rounded to
// 10 dp after each multiplication, margin by subtraction so customer = seller + margin holds exactly.
func (d *dataset) fill(a *atom, c *customer, it *item, period string, pstart time.Time, days int, day time.Time, dn int, rs []restatement) {
	*a = atom{c: c, it: it, period: period, pstart: pstart, day: day}
	hd := hash(it.id, uint64(day.Unix()))
	switch it.kind {
	case kindUsage:
		m := it.meter
		q := between(hd, m.qtyMin, m.qtyMax)
		if m.qtyMin == m.qtyMax && m.unit == "1 Hour" && hd%10 == 0 {
			q = between(hd>>8, 1_000000, m.qtyMax) // a partial day: resource stopped or started
		}
		qty := decimal.New(q, -6)
		if m.perMonth {
			qty = qty.Div(decimal.NewFromInt(int64(days))).Round(6)
		}
		a.qty = qty
		a.seller = qty.Mul(it.unitPrice).Round(10)
	case kindCredit:
		a.qty = decimal.NewFromInt(1)
		a.seller = decimal.New(-between(hd, 5_0000000000, 80_0000000000), -10)
	case kindLicence:
		a.seats = it.seats
		a.qty = decimal.NewFromInt(it.seats)
		a.seller = a.qty.Mul(it.unitPrice)
	}
	for k, r := range rs {
		if frac(hash(d.seed, it.id, uint64(day.Unix()), uint64(k+1))) < r.fraction {
			a.seller = a.seller.Mul(r.factor).Round(10)
		}
	}
	a.cust = a.seller.Mul(c.markup).Round(10)
	a.margin = a.cust.Sub(a.seller)
	a.msrp = a.seller.Mul(c.msrpFactor).Round(10)
	_ = dn
}
