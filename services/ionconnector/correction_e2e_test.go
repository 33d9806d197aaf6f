package ionconnector

import (
	"context"
	"encoding/csv"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/services/fetcher"
	"github.com/ionusage/connector/services/publisher"
	"github.com/ionusage/connector/services/transformer"
)

// clock is the publisher's acceptance clock, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// csvFileRows reads every FOCUS CSV file in dir not in skip, as column → value maps.
func csvFileRows(t *testing.T, dir string, skip map[string]bool) (rows []map[string]string, files []string) {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		if skip[f] {
			continue
		}
		files = append(files, f)
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(fh).ReadAll()
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs[1:] {
			m := map[string]string{}
			for i, h := range recs[0] {
				m[h] = rec[i]
			}
			rows = append(rows, m)
		}
	}
	return rows, files
}

// The Done-when of closed periods: sync a period while it is open, let it close, restate it in
// the sandbox and sync again. The second sync delivers only Correction rows, invoiced in the next
// open period, whose amounts sum exactly to the sandbox's change and which each name the record
// and revision they correct; it still reconciles against Ion's restated totals; a third sync
// delivers nothing.
func TestIntegrationRestatedClosedPeriodDeliversCorrections(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end sync")
	}
	const period = "2026-09" // closes 2026-10-10 with the default closing day
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	sim, err := ionsim.New(ionsim.Options{Seed: 5, Customers: 3, Currency: "EUR", Periods: []string{period},
		Variant: ionsim.Variant{Daily: true}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "refresh-token")
	if err := os.WriteFile(tokenFile, []byte(sim.CredentialsFor(demoAccount).RefreshToken), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "token-key")
	if _, err := readOrCreateSecret(keyFile, 32); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Embedded.DataDir, cfg.Embedded.Listen = filepath.Join(dir, "nats"), config.ListenOff
	cfg.TokenKeyFile = keyFile
	cfg.Ion.RequestsPerSecond, cfg.Ion.Burst = 1000, 100
	cfg.Accounts = []config.Account{{ID: demoAccount, Name: "Correction partner", Auth: config.AuthV3, IonURL: sim.BaseURL(),
		RefreshTokenFile: tokenFile, Currency: "EUR", ClosingDay: config.DefaultClosingDay}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := startHost(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	secret := []byte("correction-test-secret")
	recv, err := billingsim.New(billingsim.Options{Secret: secret, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	url, err := recv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = recv.Close(context.Background()) }()
	hs, err := billing.NewHTTPSink(billing.HTTPSinkOptions{URL: url + "/deliveries", Secret: secret, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	csvDir := filepath.Join(dir, "focus")
	cs, err := billing.NewCSVSink(billing.CSVSinkOptions{Dir: csvDir})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 10, 5, 12, 0, 0, 0, time.UTC)} // 2026-09 still open
	pub, err := publisher.New(ctx, publisher.Options{Deps: h.Deps, Sinks: []billing.Sink{hs, cs}, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, run := range []func(context.Context) error{
		func(ctx context.Context) error { return fetcher.Run(ctx, h.Deps) },
		func(ctx context.Context) error { return transformer.Run(ctx, h.Deps) },
		pub.Run,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	syncOnce := func(n int) followResult {
		t.Helper()
		fr, err := followSync(ctx, h.Deps, followOptions{Account: demoAccount, Period: period, Mode: config.AuthV3,
			Reason: "test", RequestedBy: "correction test"})
		if err != nil {
			select {
			case e := <-errs:
				t.Fatalf("sync %d: %v (pipeline: %v)", n, err, e)
			default:
			}
			t.Fatalf("sync %d: %v", n, err)
		}
		if !fr.Summary.Reconciled {
			t.Fatalf("sync %d not reconciled: %+v; %+v", n, fr.Summary, fr.Reconciliation)
		}
		return fr
	}

	// 1. The open period, delivered in full.
	syncOnce(1)
	before := sim.GroundTruth(period)
	rows1, files1 := csvFileRows(t, csvDir, nil)
	held := map[string]string{} // x_RecordId → x_Revision delivered while open
	for _, r := range rows1 {
		if r["ChargeClass"] != "" {
			t.Fatalf("sync 1 delivered a %s row", r["ChargeClass"])
		}
		held[r["x_RecordId"]] = r["x_Revision"]
	}
	st1 := recv.State()
	if got := st1.Totals; len(rows1) == 0 || !sumTotals(got).Equal(before.SellerCost) {
		t.Fatalf("sync 1: %d rows, receiver totals %v, want %s", len(rows1), got, before.SellerCost)
	}

	// 2. The period closes; Ion restates a third of its lines.
	clk.set(time.Date(2026, 10, 20, 9, 0, 0, 0, time.UTC))
	after, err := sim.Restate(period, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	change := after.SellerCost.Sub(before.SellerCost)
	if change.IsZero() {
		t.Fatal("the restatement changed nothing")
	}
	fr2 := syncOnce(2)
	skip := map[string]bool{}
	for _, f := range files1 {
		skip[f] = true
	}
	rows2, files2 := csvFileRows(t, csvDir, skip)
	if len(rows2) == 0 || len(files2) != fr2.Summary.Deliveries {
		t.Fatalf("sync 2: %d rows in %d files for %d deliveries", len(rows2), len(files2), fr2.Summary.Deliveries)
	}
	billed, custCost := decimal.Zero, decimal.Zero
	for _, r := range rows2 {
		if r["ChargeClass"] != billing.ChargeClassCorrection || !timeIs(r["BillingPeriodStart"], "2026-10-01T00:00:00Z") ||
			!timeIs(r["BillingPeriodEnd"], "2026-11-01T00:00:00Z") || r["ChargePeriodStart"] >= "2026-10" {
			t.Errorf("sync 2 row %s: class %q billing period %s..%s charge period from %s; want a Correction invoiced in 2026-10 for September usage",
				r["x_RecordId"], r["ChargeClass"], r["BillingPeriodStart"], r["BillingPeriodEnd"], r["ChargePeriodStart"])
		}
		if rev, ok := held[r["x_CorrectsRecordId"]]; !ok || r["x_CorrectsRevision"] != rev || held[r["x_RecordId"]] != "" {
			t.Errorf("sync 2 row %s corrects %s/%.12s; want a record delivered by sync 1 at the revision it delivered (%.12s), under a new id",
				r["x_RecordId"], r["x_CorrectsRecordId"], r["x_CorrectsRevision"], rev)
		}
		billed = billed.Add(decimal.RequireFromString(r["BilledCost"]))
		custCost = custCost.Add(decimal.RequireFromString(r["x_CustomerCost"]))
	}
	if !billed.Equal(change) {
		t.Errorf("correction rows sum to %s, the sandbox changed by %s", billed, change)
	}
	if want := after.CustomerCost.Sub(before.CustomerCost); !custCost.Equal(want) {
		t.Errorf("correction rows' x_CustomerCost sums to %s, the sandbox changed by %s", custCost, want)
	}
	st2 := recv.State()
	if !sumTotals(st2.Totals).Equal(after.SellerCost) || st2.Superseded != 0 || st2.DuplicateRecords != 0 {
		t.Errorf("receiver after the corrections: totals %v superseded %d duplicates %d; want %s, 0, 0",
			st2.Totals, st2.Superseded, st2.DuplicateRecords, after.SellerCost)
	}
	t.Logf("sync 2: %d correction rows in %d deliveries, sum %s", len(rows2), len(files2), billed)

	// 3. Nothing changed since: nothing delivered.
	fr3 := syncOnce(3)
	_, files3 := csvFileRows(t, csvDir, nil)
	if fr3.Summary.Delivered != 0 || len(files3) != len(files1)+len(files2) || recv.State().Deliveries != st2.Deliveries {
		t.Errorf("sync 3 delivered %d records, %d new files", fr3.Summary.Delivered, len(files3)-len(files1)-len(files2))
	}
}

func sumTotals(t map[string]map[string]decimal.Decimal) decimal.Decimal {
	s := decimal.Zero
	for _, byCur := range t {
		for _, v := range byCur {
			s = s.Add(v)
		}
	}
	return s
}

func timeIs(s, want string) bool {
	got, err := time.Parse(time.RFC3339, s)
	w, _ := time.Parse(time.RFC3339, want)
	return err == nil && got.Equal(w)
}
