package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/services/fetcher"
)

// dryRunConfig writes the YAML config of a test deployment (what an operator passes with
// --config): the CLI reads Ion with the deployment's account and token key.
func dryRunConfig(t *testing.T, env *demoEnv) string {
	t.Helper()
	cfg := env.host.Deps.Config
	a := cfg.Accounts[0]
	y := fmt.Sprintf("token_key_file: %s\nion:\n  requests_per_second: %v\n  burst: %d\naccounts:\n"+
		"  - id: %q\n    name: %q\n    auth: %s\n    ion_url: %s\n    refresh_token_file: %s\n    currency: %s\n",
		cfg.TokenKeyFile, cfg.Ion.RequestsPerSecond, cfg.Ion.Burst, a.ID, a.Name, a.Auth, a.IonURL, a.RefreshTokenFile, a.Currency)
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func dryRunJSON(t *testing.T, envs map[string]string, period string) dryRunReport {
	t.Helper()
	r := runCLI(t, envs, "sync", "--dry-run", "--account", demoAccount, "--period", period, "--json")
	var rep dryRunReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &rep); err != nil || r.code != 0 {
		t.Fatalf("dry run: exit %d, %v\nstdout:\n%s\nstderr:\n%s", r.code, err, r.stdout, r.stderr)
	}
	if !rep.DryRun || !rep.Complete || len(rep.Totals) != 1 || rep.Pages == 0 {
		t.Fatalf("dry run report %+v", rep)
	}
	if !strings.Contains(r.stderr, "dry run: ") {
		t.Errorf("no progress line on stderr:\n%s", r.stderr)
	}
	return rep
}

// TestIntegrationSyncDryRun: on a running deployment, a dry run of a fresh period shows every
// record new, with totals equal to Ion's ground truth per customer, and delivers, publishes and
// stores nothing; after a real sync it shows everything unchanged with a zero delta; after Ion
// restates part of the period, its per-customer deltas add up exactly to the ground truth's
// change (and a sync then delivers exactly that).
func TestIntegrationSyncDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end dry run")
	}
	const period = "2026-09"
	env, url := startTestDeployment(t, period)
	js := env.host.Deps.JS
	envs := map[string]string{"NATS_URL": url, "ION_CONNECTOR_CONFIG": dryRunConfig(t, env)}
	truth := env.sim.GroundTruth(period)

	// 1. A fresh period: everything new, the invoice goes from nothing to the ground truth.
	rep := dryRunJSON(t, envs, period)
	tot := rep.Totals[0]
	t.Logf("fresh dry run: %d customers, %d records, %d pages, %d Ion requests, %d ms", len(rep.Customers), tot.New, rep.Pages, rep.IonRequests, rep.ElapsedMS)
	start, _, _ := events.ParsePeriod(period)
	if closed := !time.Now().Before(events.PeriodCloses(start, config.DefaultClosingDay)); closed != (rep.CorrectedIn != "") {
		t.Errorf("period %s closed %v, report says corrected in %q", period, closed, rep.CorrectedIn)
	}
	if tot.Currency != truth.Currency || !tot.Now.IsZero() || !tot.After.Equal(truth.SellerCost) || !tot.Delta.Equal(truth.SellerCost) ||
		tot.New == 0 || tot.Changed+tot.Unchanged+tot.Gone+tot.Kept != 0 {
		t.Fatalf("fresh period totals %+v, ground truth %s %s", tot, truth.Currency, truth.SellerCost)
	}
	seen := 0
	for _, row := range rep.Customers {
		ct, ok := truth.Customer(row.Customer)
		if !ok {
			if !row.After.IsZero() {
				t.Errorf("customer %s without data in Ion: %+v", row.Customer, row)
			}
			continue
		}
		seen++
		if !row.After.Equal(ct.SellerCost) || row.Name != ct.Name {
			t.Errorf("customer %s: after %s name %q, ground truth %s %q", row.Customer, row.After, row.Name, ct.SellerCost, ct.Name)
		}
	}
	if seen != len(truth.Customers) {
		t.Errorf("%d customers with data in the report, ground truth has %d", seen, len(truth.Customers))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range []string{events.StreamSync, events.StreamRaw, events.StreamUsage, events.StreamBilling} {
		st, err := js.Stream(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := st.Info(ctx); err != nil || info.State.Msgs != 0 {
			t.Errorf("stream %s after a dry run: %v messages (%v)", s, info.State.Msgs, err)
		}
	}
	for _, b := range []string{bus.BucketLedger, bus.BucketFetchState} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if keys, err := kv.Keys(ctx); !errors.Is(err, jetstream.ErrNoKeysFound) {
			t.Errorf("bucket %s after a dry run: keys %v (%v)", b, keys, err)
		}
	}
	if st := env.billing.State(); len(st.Records) != 0 || st.Deliveries != 0 {
		t.Errorf("the billing receiver got %d records in %d deliveries from a dry run", len(st.Records), st.Deliveries)
	}

	// 2. A real sync (its fetcher uses the refresh token the dry run rotated), then a dry run:
	// nothing changes.
	r := runCLI(t, envs, "sync", "--account", demoAccount, "--period", period, "--json")
	if s := lastSummary(t, r.stdout, r.stderr); r.code != 0 || !s.Reconciled || s.Delivered == 0 {
		t.Fatalf("sync: exit %d %+v\n%s", r.code, s, r.stderr)
	}
	held := env.billing.State()
	rep = dryRunJSON(t, envs, period)
	tot = rep.Totals[0]
	if !tot.Delta.IsZero() || !tot.Now.Equal(truth.SellerCost) || tot.Unchanged != len(held.Records) || tot.New+tot.Changed+tot.Gone+tot.Kept != 0 {
		t.Fatalf("after the sync: totals %+v, receiver holds %d records, ground truth %s", tot, len(held.Records), truth.SellerCost)
	}
	for _, row := range rep.Customers {
		if want := held.Totals[row.Customer][row.Currency]; !row.Now.Equal(want) || !row.Delta.IsZero() {
			t.Errorf("customer %s: now %s delta %s, the receiver holds %s", row.Customer, row.Now, row.Delta, want)
		}
	}
	// The table: a line per customer and a total line, amounts at 2 dp.
	r = runCLI(t, envs, "sync", "--dry-run", "--account", demoAccount, "--period", period)
	if r.code != 0 || !strings.Contains(r.stdout, "total") || !strings.Contains(r.stdout, truth.SellerCost.StringFixedBank(2)) ||
		!strings.Contains(r.stdout, "read is complete") {
		t.Fatalf("dry run table: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("dry run table after the sync:\n%s", r.stdout)

	// 3. Ion restates part of the period: the deltas add up to exactly the change.
	truth2, err := env.sim.Restate(period, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	change := truth2.SellerCost.Sub(truth.SellerCost)
	rep = dryRunJSON(t, envs, period)
	sum := decimal.Zero
	for _, row := range rep.Customers {
		sum = sum.Add(row.Delta)
		ct, _ := truth2.Customer(row.Customer)
		if !row.After.Equal(ct.SellerCost) {
			t.Errorf("customer %s after restatement: after %s, ground truth %s", row.Customer, row.After, ct.SellerCost)
		}
	}
	tot = rep.Totals[0]
	if change.IsZero() || !sum.Equal(change) || !tot.Delta.Equal(change) || tot.Changed == 0 || !tot.After.Equal(truth2.SellerCost) {
		t.Fatalf("restated: deltas add up to %s (total %+v), ground truth changed by %s", sum, tot, change)
	}
	if st := env.billing.State(); len(st.Records) != len(held.Records) || st.Deliveries != held.Deliveries {
		t.Errorf("dry runs delivered: receiver %d records in %d deliveries, was %d in %d", len(st.Records), st.Deliveries, len(held.Records), held.Deliveries)
	}
	// A sync now delivers what the dry run showed.
	r = runCLI(t, envs, "sync", "--account", demoAccount, "--period", period, "--json")
	if s := lastSummary(t, r.stdout, r.stderr); r.code != 0 || !s.Reconciled || s.Delivered != tot.Changed+tot.New {
		t.Fatalf("sync after restatement: exit %d %+v, dry run showed %d changed\n%s", r.code, s, tot.Changed, r.stderr)
	}
	for _, row := range rep.Customers {
		if got := env.billing.State().Totals[row.Customer][row.Currency]; !got.Equal(row.After) {
			t.Errorf("customer %s: receiver holds %s, the dry run said %s", row.Customer, got, row.After)
		}
	}
	t.Logf("restated: %d changed records, delta %s %s", tot.Changed, tot.Currency, tot.Delta)
}

// TestSyncDryRunRefusals: --dry-run with --once or --request-id, or for an account the config
// lacks, is a usage error.
func TestSyncDryRunRefusals(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--once", "--out", t.TempDir()}, "cannot run with --once"},
		{[]string{"--request-id", "x"}, "publishes no request"},
		{nil, "not in the config"},
	} {
		args := append([]string{"sync", "--dry-run", "--account", "10001", "--period", "2025-03"}, c.args...)
		r := runCLI(t, nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d\n%s", c.args, r.code, r.stderr)
		}
	}
}

// TestDryRunDiff: a golden page read as the transformer reads it (6 records, one line held out
// of period, one with an unknown charge type) compared with a ledger partition that holds one
// record at its revision, one at another, one rejected by a sink at its revision, and one the
// page lacks: new/changed/unchanged and gone only for a complete read, kept otherwise.
func TestDryRunDiff(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "transformer", "testdata", "v3_json.page.json"))
	if err != nil {
		t.Fatal(err)
	}
	var page events.RawPage
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	body := []byte(page.Body)
	page.Body = ""
	read := &dryRead{records: map[string]map[string]events.UsageRecord{}, dead: map[string]map[string]int{}}
	acct := config.Account{ID: page.Account, Currency: "EUR"}
	if err := read.add(acct, fetcher.CollectedPage{Page: page, Body: body}); err != nil {
		t.Fatal(err)
	}
	cust := page.PageKey.Customer
	recs := read.records[cust]
	dead := read.dead[cust]
	if len(recs) != 6 || len(read.records) != 1 || dead["out-of-period"] != 1 || dead["unknown-charge-type"] != 1 || read.unlisted {
		t.Fatalf("read %d records %v, dead letters %v, unlisted %v", len(recs), read.records, read.dead, read.unlisted)
	}
	ids := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	r0, r1, r2, r3 := recs[ids[0]], recs[ids[1]], recs[ids[2]], recs[ids[3]]
	t0 := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	part := &billing.Partition{Records: map[string]billing.Held{
		ids[0]:     {Revision: r0.Revision, Currency: "EUR", Billed: r0.BilledCost},
		ids[1]:     {Revision: "older", Currency: "EUR", Billed: r1.BilledCost.Add(decimal.RequireFromString("1.005"))},
		"vanished": {Revision: "x", Currency: "EUR", Billed: decimal.RequireFromString("2.5")},
		"reversed": {Revision: "y", Currency: "EUR", Billed: decimal.Zero},
		// Held at an old revision whose successor, the one re-read now, a sink rejected: the
		// deliverer skips it as dead, and the ledger's sums count it dead-lettered, not billed.
		ids[3]: {Revision: "old3", AsOf: t0, Currency: "EUR", Billed: decimal.RequireFromString("100")},
	}, Dead: map[string]billing.Dead{ids[2]: {Revision: r2.Revision}, ids[3]: {Revision: r3.Revision, AsOf: t0.Add(time.Hour)}}}
	total := decimal.Zero
	for _, r := range recs {
		total = total.Add(r.BilledCost)
	}
	now := r0.BilledCost.Add(r1.BilledCost).Add(decimal.RequireFromString("3.505"))
	afterComplete := total.Sub(r2.BilledCost).Sub(r3.BilledCost) // rejected revisions stay off the invoice

	rows := diffCustomer(recs, part, true)
	if len(rows) != 1 {
		t.Fatalf("rows %+v", rows)
	}
	got := rows[0]
	if got.New != 2 || got.Changed != 1 || got.Unchanged != 3 || got.Gone != 1 || got.Kept != 0 ||
		!got.Now.Equal(now) || !got.After.Equal(afterComplete) || !got.Delta.Equal(afterComplete.Sub(now)) {
		t.Errorf("complete read: %+v; want now %s after %s", got, now, afterComplete)
	}
	got = diffCustomer(recs, part, false)[0]
	afterKept := afterComplete.Add(decimal.RequireFromString("2.5"))
	if got.Gone != 0 || got.Kept != 1 || !got.After.Equal(afterKept) {
		t.Errorf("incomplete read: %+v; want after %s", got, afterKept)
	}
	got.Customer, got.DeadLetters = cust, dead
	rep := dryRunReport{Account: page.Account, Period: page.Period, Mode: page.Mode, Customers: []dryRunRow{got, got}}
	rep.Totals = dryRunTotals(rep.Customers)
	if tt := rep.Totals[0]; tt.Kept != 2 || !tt.Delta.Equal(got.Delta.Mul(decimal.NewFromInt(2))) || tt.DeadLetters["out-of-period"] != 2 {
		t.Errorf("totals %+v", tt)
	}
	var out strings.Builder
	printDryRun(&out, rep)
	for _, want := range []string{"1 out-of-period, 1 unknown-charge-type", "READ NOT COMPLETE", "(1 kept)", got.After.StringFixedBank(2)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestIntegrationSyncDryRunV1: a v1 (API key) account's dry run on a provisioned store with no
// services running: every record new, the totals Ion's ground truth, nothing stored.
func TestIntegrationSyncDryRunV1(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end dry run")
	}
	e := newOpEnv(t)
	d := e.deps(e.cfgB)
	r := e.cli("sync", "--dry-run", "--account", "10002", "--period", e.period, "--json")
	var rep dryRunReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &rep); err != nil || r.code != 0 {
		t.Fatalf("dry run: exit %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	truth := e.sim.GroundTruthFor("10002", e.period)
	if len(rep.Totals) != 1 || rep.Mode != events.ModeV1 || !rep.Complete || !rep.Totals[0].After.Equal(truth.SellerCost) ||
		rep.Totals[0].New == 0 || truth.SellerCost.IsZero() {
		t.Fatalf("v1 dry run %+v, ground truth %s", rep, truth.SellerCost)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range []string{bus.BucketLedger, bus.BucketFetchState, bus.BucketPeriods} {
		kv, err := d.JS.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if keys, err := kv.Keys(ctx); !errors.Is(err, jetstream.ErrNoKeysFound) {
			t.Errorf("bucket %s after a dry run: keys %v (%v)", b, keys, err)
		}
	}
}
