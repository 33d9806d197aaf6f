package ion_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
)

var simNow = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

// simClock starts at simNow and runs at real speed, so token lifetimes and rate windows pass
// while the generated periods stay fixed.
func simClock() func() time.Time {
	start := time.Now()
	return func() time.Time { return simNow.Add(time.Since(start)) }
}

const simPeriod = "2025-01"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startSim(t testing.TB, o ionsim.Options) (*ionsim.Sim, string) {
	t.Helper()
	if o.Now == nil {
		o.Now = simClock()
	}
	if o.Seed == 0 {
		o.Seed = 7
	}
	if len(o.Periods) == 0 {
		o.Periods = []string{"2024-12..2025-02"}
	}
	sim, err := ionsim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

func simClient(t testing.TB, sim *ionsim.Sim, base string, mod func(*ion.Options)) *ion.Client {
	t.Helper()
	cr := sim.Credentials()
	o := ion.Options{
		BaseURL: base, Account: cr.AccountID,
		V3:                &ion.V3Auth{RefreshToken: cr.RefreshToken},
		V1:                &ion.V1Auth{APIKey: cr.APIKey, APISecret: cr.APISecret},
		RequestsPerSecond: 500, Burst: 50,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 3 * time.Second,
		Timeout: 20 * time.Second, MaxRetries: 8,
		Logger: quiet(),
	}
	if mod != nil {
		mod(&o)
	}
	c, err := ion.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// leafColumns is a pinned, explicit selection at item-and-day grain.
var leafColumns = []string{
	"customer_id", "cloud_account_number", "entitlement_id", "product_id", "sku_id", "meter_id", "resource_uri",
	"charge_type", "unit", "usage_starttime", "usage_endtime",
	"usage", "seller_cost_invoice", "customer_cost_invoice",
}

func periodRange(period string) (time.Time, time.Time, ion.DateRange) {
	start, _ := time.Parse("2006-01", period)
	end := start.AddDate(0, 1, 0)
	return start, end, ion.DateRange{Start: start, End: end.Add(-time.Second)}
}

type fetchStats struct {
	mu       sync.Mutex
	restarts int // report bodies that failed after rows were delivered
	splits   int
}

// fetchCustomer sums leaf seller cost for one customer and period the way the fetcher will:
// rows outside the period are rejected, a bad body after delivered rows restarts the report,
// and a truncated result (daily rows here) is split by date until nothing is truncated.
func fetchCustomer(ctx context.Context, c *ion.Client, reportID, customer, period string, st *fetchStats, _ map[string][]string) (decimal.Decimal, error) {
	start, end, rng := periodRange(period)
	return fetchRange(ctx, c, reportID, customer, start, end, rng, st)
}

func fetchRange(ctx context.Context, c *ion.Client, reportID, customer string, pStart, pEnd time.Time, rng ion.DateRange, st *fetchStats) (decimal.Decimal, error) {
	for attempt := 0; ; attempt++ {
		sum := decimal.Zero
		var outside int
		meta, err := c.ReportData(ctx, reportID, ion.ReportRequest{
			Columns: leafColumns, Range: rng, Filters: map[string][]string{"customer_id": {customer}},
		}, func(r ion.Row) error {
			if r.String("customer_id") != customer {
				return fmt.Errorf("row for customer %q in %s's report", r.String("customer_id"), customer)
			}
			if s := r.Time("usage_starttime"); s.Before(pStart) || !s.Before(pEnd) {
				outside++
				return nil
			}
			sum = sum.Add(r.Decimal("seller_cost_invoice"))
			return nil
		})
		var be *ion.BodyError
		if errors.As(err, &be) && be.Rows > 0 && attempt < 5 {
			st.mu.Lock()
			st.restarts++
			st.mu.Unlock()
			continue // discard the partial rows and ask again
		}
		if err != nil {
			return decimal.Zero, err
		}
		if outside > 0 {
			return decimal.Zero, fmt.Errorf("customer %s: %d rows outside the period", customer, outside)
		}
		if !meta.Truncated {
			return sum, nil
		}
		days := int(rng.End.Sub(rng.Start).Hours()/24) + 1
		if days <= 1 {
			return decimal.Zero, fmt.Errorf("customer %s: one day is still truncated", customer)
		}
		st.mu.Lock()
		st.splits++
		st.mu.Unlock()
		mid := rng.Start.AddDate(0, 0, days/2)
		a, err := fetchRange(ctx, c, reportID, customer, pStart, pEnd, ion.DateRange{Start: rng.Start, End: mid.Add(-time.Second)}, st)
		if err != nil {
			return decimal.Zero, err
		}
		b, err := fetchRange(ctx, c, reportID, customer, pStart, pEnd, ion.DateRange{Start: mid, End: rng.End}, st)
		if err != nil {
			return decimal.Zero, err
		}
		return a.Add(b), nil
	}
}

func compareTruth(t *testing.T, truth ionsim.Truth, got map[string]decimal.Decimal) {
	t.Helper()
	for _, ct := range truth.Customers {
		g, ok := got[ct.CustomerID]
		if !ok {
			t.Errorf("customer %s missing", ct.CustomerID)
			continue
		}
		if !g.Equal(ct.SellerCost) {
			t.Errorf("customer %s: got %s, truth %s", ct.CustomerID, g, ct.SellerCost)
		}
	}
	for id, g := range got {
		if _, ok := truth.Customer(id); !ok && !g.IsZero() {
			t.Errorf("customer %s: %s but no truth", id, g)
		}
	}
}

func TestIntegrationEveryCall(t *testing.T) {
	t.Parallel()
	sim, base := startSim(t, ionsim.Options{Customers: 7, Meters: 2, Variant: ionsim.Variant{Daily: true}})
	c := simClient(t, sim, base, nil)
	ctx := context.Background()

	info, err := c.ValidateAccess(ctx)
	if err != nil || info.AccessExpiresIn <= 0 || info.RefreshExpiresIn <= 0 {
		t.Fatalf("ValidateAccess %+v %v", info, err)
	}
	custs, err := c.ListCustomers(ctx, 3) // 3 pages
	if err != nil || len(custs) != 7 {
		t.Fatalf("ListCustomers %d %v", len(custs), err)
	}
	truth := sim.GroundTruth(simPeriod)
	var ids []string
	for _, cu := range custs {
		if strings.Contains(cu.ID, "/") || cu.Organization == "" || cu.CreateTime.IsZero() {
			t.Errorf("customer %+v", cu)
		}
		ids = append(ids, cu.ID)
	}
	sort.Strings(ids)
	if strings.Join(ids, ",") != strings.Join(truth.AllCustomers, ",") {
		t.Errorf("customers %v, truth %v", ids, truth.AllCustomers)
	}
	one, err := c.GetCustomer(ctx, custs[0].ID)
	if err != nil || one.ID != custs[0].ID {
		t.Fatalf("GetCustomer %+v %v", one, err)
	}
	if _, err := c.GetCustomer(ctx, "999999999"); !errors.Is(err, ion.ErrNotFound) {
		t.Fatalf("GetCustomer unknown: %v", err)
	}
	profiles, err := c.CloudProfiles(ctx, custs[0].ID)
	if err != nil || len(profiles) != 1 || len(profiles[0].CustomerTenantID) != 36 || profiles[0].ProviderID != ion.ProviderMicrosoft {
		t.Fatalf("CloudProfiles %+v %v", profiles, err)
	}
	subs, err := c.ListSubscriptions(ctx, ion.SubscriptionFilter{Limit: 4})
	if err != nil || len(subs) < 7 {
		t.Fatalf("ListSubscriptions %d %v", len(subs), err)
	}
	mine, err := c.ListSubscriptions(ctx, ion.SubscriptionFilter{CustomerID: custs[0].ID, ProviderID: ion.ProviderMicrosoft})
	if err != nil || len(mine) == 0 {
		t.Fatalf("ListSubscriptions customer: %d %v", len(mine), err)
	}
	for _, s := range mine {
		if string(s.CustomerID) != custs[0].ID {
			t.Errorf("foreign subscription %+v", s)
		}
	}
	reports, err := c.ListReports(ctx, "REPORTS_REPORTS_MODULE")
	if err != nil || len(reports) < 2 {
		t.Fatalf("ListReports %v %v", reports, err)
	}
	rep, err := c.FindReport(ctx, ion.TemplateAzurePlanBilling)
	if err != nil || rep.ReportID != ionsim.AzurePlanReportID || rep.Specs == nil || len(rep.Specs.AllColumns) < 50 {
		t.Fatalf("FindReport %+v %v", rep, err)
	}
	if _, err := c.GetReport(ctx, "1"); !errors.Is(err, ion.ErrNotFound) {
		t.Fatalf("GetReport unknown: %v", err)
	}

	// JSON and CSV data give the same totals, equal to the ground truth.
	var st fetchStats
	got := map[string]decimal.Decimal{}
	for _, id := range truth.AllCustomers {
		s, err := fetchCustomer(ctx, c, string(rep.ReportID), id, simPeriod, &st, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[id] = s
	}
	compareTruth(t, truth, got)

	_, _, rng := periodRange(simPeriod)
	csvSum := map[string]decimal.Decimal{}
	meta, err := c.ReportDataCSV(ctx, string(rep.ReportID), ion.ReportRequest{Columns: leafColumns, Range: rng}, func(r ion.Row) error {
		csvSum[r.String("customer_id")] = csvSum[r.String("customer_id")].Add(r.Decimal("seller_cost_invoice"))
		return nil
	})
	if err != nil || meta.Rows == 0 {
		t.Fatalf("CSV %+v %v", meta, err)
	}
	compareTruth(t, truth, csvSum)

	// v1: customer list and the monthly azureplan tree.
	v1c, err := c.ListCustomersV1(ctx)
	if err != nil || len(v1c) != 7 {
		t.Fatalf("ListCustomersV1 %d %v", len(v1c), err)
	}
	v1Sum := map[string]decimal.Decimal{}
	for _, cu := range v1c {
		err := c.AzurePlanV1(ctx, string(cu.ID), simPeriod, truth.Currency, func(l ion.AzurePlanLine) error {
			if l.SubscriptionID == "" || l.Product == "" || l.SKU == "" {
				return fmt.Errorf("incomplete line %+v", l)
			}
			v1Sum[l.CustomerID] = v1Sum[l.CustomerID].Add(l.Cost)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	compareTruth(t, truth, v1Sum)
	if s := sim.Stats(); s.RefreshReuse != 0 || s.RefreshInvalid != 0 {
		t.Fatalf("refresh reuse %d invalid %d", s.RefreshReuse, s.RefreshInvalid)
	}
}

// checkRotated: the sim's clock runs at double speed in the 401 cases, so its tokens expire while
// the client still thinks them fresh: every expiry is a 401, answered by one refresh and a retry.
func checkRotated(t *testing.T, st ionsim.Stats, _ *fetchStats) {
	if st.RefreshOK < 2 || st.Unauthorized == 0 {
		t.Errorf("401 path not exercised: %d refreshes, %d 401s", st.RefreshOK, st.Unauthorized)
	}
}

func fastClock() func() time.Time {
	start := time.Now()
	return func() time.Time { return simNow.Add(2 * time.Since(start)) }
}

// One sub-test per Variant switch and fault: a month's per-customer totals must equal the truth.
func TestIntegrationVariantsAndFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		opts  ionsim.Options
		mod   func(*ion.Options)
		check func(t *testing.T, st ionsim.Stats, fs *fetchStats)
	}{
		{name: "baseline aggregated", opts: ionsim.Options{}},
		{name: "daily", opts: ionsim.Options{Variant: ionsim.Variant{Daily: true}}},
		{name: "end date inclusive", opts: ionsim.Options{Variant: ionsim.Variant{EndDateInclusive: true, Daily: true}}},
		{name: "subtotal rows", opts: ionsim.Options{Variant: ionsim.Variant{SubtotalRows: true, Daily: true}}},
		{name: "money as string", opts: ionsim.Options{Variant: ionsim.Variant{MoneyAsString: true}}},
		{name: "page size cap", opts: ionsim.Options{Variant: ionsim.Variant{MaxPageSize: 2}}},
		{name: "rows cap splits", opts: ionsim.Options{Meters: 4, Variant: ionsim.Variant{Daily: true, RowsCap: 60}},
			check: func(t *testing.T, _ ionsim.Stats, fs *fetchStats) {
				if fs.splits == 0 {
					t.Error("RowsCap never truncated a request: the test does not exercise splitting")
				}
			}},
		{name: "rate limit 429", opts: ionsim.Options{Variant: ionsim.Variant{RateLimit429: true, RateLimitRPS: 5}},
			check: func(t *testing.T, st ionsim.Stats, _ *fetchStats) {
				if st.Served429 == 0 {
					t.Error("no 429 served")
				}
			}},
		{name: "401 empty body", opts: ionsim.Options{Faults: ionsim.Faults{AccessTokenTTL: 2 * time.Second}, Variant: ionsim.Variant{Daily: true}},
			check: checkRotated},
		{name: "401 envelope", opts: ionsim.Options{Faults: ionsim.Faults{AccessTokenTTL: 2 * time.Second}, Variant: ionsim.Variant{UnauthorizedBody: ionsim.UnauthorizedEnvelope, Daily: true}},
			check: checkRotated},
		{name: "401 text", opts: ionsim.Options{Faults: ionsim.Faults{AccessTokenTTL: 2 * time.Second}, Variant: ionsim.Variant{UnauthorizedBody: ionsim.UnauthorizedText, Daily: true}},
			check: checkRotated},
		{name: "faults 429 503", opts: ionsim.Options{Customers: 20, Faults: ionsim.Faults{Rate429: 0.1, Rate503: 0.1}},
			check: func(t *testing.T, st ionsim.Stats, _ *fetchStats) {
				if st.Served429 == 0 || st.Served503 == 0 {
					t.Errorf("faults not exercised: %d 429, %d 503", st.Served429, st.Served503)
				}
			}},
		{name: "truncated json", opts: ionsim.Options{Variant: ionsim.Variant{Daily: true}, Faults: ionsim.Faults{TruncateJSON: 0.3}},
			check: func(t *testing.T, st ionsim.Stats, _ *fetchStats) {
				if st.Truncated == 0 {
					t.Error("no truncated body served")
				}
			}},
		{name: "truncated abort", opts: ionsim.Options{Variant: ionsim.Variant{Daily: true}, Faults: ionsim.Faults{TruncateJSON: 0.3, TruncateAbort: true}}},
		{name: "slow body and latency", opts: ionsim.Options{Faults: ionsim.Faults{SlowBody: time.Millisecond, SlowChunk: 8192, Latency: 5 * time.Millisecond}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.opts
			if o.Customers == 0 {
				o.Customers = 5
			}
			if o.Meters == 0 {
				o.Meters = 2
			}
			if strings.HasPrefix(tc.name, "401") {
				o.Now = fastClock()
			}
			sim, base := startSim(t, o)
			c := simClient(t, sim, base, tc.mod)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			custs, err := c.ListCustomers(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			truth := sim.GroundTruth(simPeriod)
			if len(custs) != len(truth.AllCustomers) {
				t.Fatalf("listed %d customers, truth %d", len(custs), len(truth.AllCustomers))
			}
			rep, err := c.FindReport(ctx, ion.TemplateAzurePlanBilling)
			if err != nil {
				t.Fatal(err)
			}
			var fs fetchStats
			got := map[string]decimal.Decimal{}
			for _, cu := range custs {
				s, err := fetchCustomer(ctx, c, string(rep.ReportID), cu.ID, simPeriod, &fs, nil)
				if err != nil {
					t.Fatal(err)
				}
				got[cu.ID] = s
				if strings.HasPrefix(tc.name, "401") {
					time.Sleep(700 * time.Millisecond) // let tokens expire between calls
				}
			}
			compareTruth(t, truth, got)
			st := sim.Stats()
			if st.RefreshReuse != 0 || st.RefreshInvalid != 0 {
				t.Errorf("refresh reuse %d invalid %d", st.RefreshReuse, st.RefreshInvalid)
			}
			if tc.check != nil {
				tc.check(t, st, &fs)
			}
		})
	}
}

// The acceptance test: 200 customers, 5% injected 429/503, access tokens expiring every
// few seconds; two clients (as two processes) share one KVTokenStore and split the customers.
func TestIntegrationMonthWithFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: 200 customers with faults")
	}
	t.Parallel()
	// "refresh ahead": both clocks agree, tokens are renewed before they expire.
	// "server clock fast": Ion's clock runs at double speed, so tokens die early and both clients
	// meet 401s at once — the lease must still let only one of them spend the refresh token.
	for _, tc := range []struct {
		name  string
		clock func() time.Time
	}{{"refresh ahead", simClock()}, {"server clock fast", fastClock()}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			monthWithFaults(t, tc.clock)
		})
	}
}

func monthWithFaults(t *testing.T, clock func() time.Time) {
	sim, base := startSim(t, ionsim.Options{
		Customers: 200, Meters: 2, Now: clock,
		Variant: ionsim.Variant{Daily: true, SubtotalRows: true},
		Faults:  ionsim.Faults{Rate429: 0.05, Rate503: 0.05, RetryAfter: 1, AccessTokenTTL: 3 * time.Second},
	})
	js := bustest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ion.TokenBucket})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	var clients []*ion.Client
	for _, holder := range []string{"proc-a", "proc-b"} {
		store, err := ion.NewKVTokenStore(kv, key) // one store value per "process"
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, simClient(t, sim, base, func(o *ion.Options) {
			o.V3.Store, o.V3.Holder = store, holder
		}))
	}
	custs, err := clients[0].ListCustomers(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := clients[1].FindReport(ctx, ion.TemplateAzurePlanBilling)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got = map[string]decimal.Decimal{}
		fs  fetchStats
		wg  sync.WaitGroup
	)
	work := make(chan string)
	errs := make(chan error, 8)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(c *ion.Client) {
			defer wg.Done()
			for id := range work {
				s, err := fetchCustomer(ctx, c, string(rep.ReportID), id, simPeriod, &fs, nil)
				if err != nil {
					errs <- fmt.Errorf("customer %s: %w", id, err)
					cancel()
					return
				}
				mu.Lock()
				got[id] = s
				mu.Unlock()
			}
		}(clients[w%2])
	}
	start := time.Now()
feed:
	for _, cu := range custs {
		select {
		case work <- cu.ID:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	truth := sim.GroundTruth(simPeriod)
	if len(custs) != 200 || len(got) != 200 {
		t.Fatalf("customers %d fetched %d", len(custs), len(got))
	}
	compareTruth(t, truth, got)
	total := decimal.Zero
	for _, v := range got {
		total = total.Add(v)
	}
	if !total.Equal(truth.SellerCost) {
		t.Errorf("total %s truth %s", total, truth.SellerCost)
	}
	st := sim.Stats()
	if st.RefreshReuse != 0 || st.RefreshInvalid != 0 {
		t.Fatalf("refresh token reuse %d, invalid %d", st.RefreshReuse, st.RefreshInvalid)
	}
	t.Logf("200 customers in %s: %d refreshes, %d 401s, %d 429s, %d 503s, %d rows, %d restarts",
		time.Since(start).Round(time.Millisecond), st.RefreshOK, st.Unauthorized, st.Served429, st.Served503, st.RowsServed, fs.restarts)
	if st.RefreshOK < 2 || st.Served429 == 0 || st.Served503 == 0 {
		t.Errorf("test did not exercise rotation or faults: %+v", st)
	}
}
