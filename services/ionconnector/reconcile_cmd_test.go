package ionconnector

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/publisher"
)

const (
	tAcct   = "acct1"
	tPeriod = "2025-03"
)

func tRecord(cust string, n int, billed string, fetchedAt time.Time) events.UsageRecord {
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	b := decimal.RequireFromString(billed)
	r := events.UsageRecord{
		BilledCost: b, EffectiveCost: b, ListCost: b, ContractedCost: b,
		BillingCurrency: "EUR", BillingAccountID: tAcct, BillingPeriodStart: start, BillingPeriodEnd: start.AddDate(0, 1, 0),
		ChargePeriodStart: start, ChargePeriodEnd: start.AddDate(0, 0, 1), ChargeCategory: "Usage",
		InvoiceIssuerName: "TD SYNNEX", ProviderName: "Microsoft", PublisherName: "Microsoft",
		ServiceName: "Virtual Machines", ServiceCategory: "Compute",
		RecordID:  events.RecordID(tAcct, start, events.ModeV3, "apb-1", cust, fmt.Sprint(n)),
		FetchedAt: fetchedAt, ColumnSetVersion: "apb-1", SourceMode: events.ModeV3, IonCustomerID: cust, CustomerName: cust,
	}
	r.Revision = r.ContentHash()
	return r
}

type cmdResult struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, env map[string]string, args ...string) cmdResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, IO{Stdout: &out, Stderr: &errb, Env: func(k string) string { return env[k] }})
	return cmdResult{code, out.String(), errb.String()}
}

// populate runs a publisher (with its reconciler) on an embedded server in dir, delivers two
// customers' records (one superseded by a second revision), publishes the transformer
// summaries and a reconciling completion for tPeriod and a failed one for 2025-04, waits for
// both reconciliations, then runs check while the server still holds the data dir.
func populate(t *testing.T, dir string, check func(clientURL string)) (want []events.UsageRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	cfg := config.Default()
	cfg.Embedded.DataDir, cfg.Embedded.Listen = dir, "127.0.0.1:0"
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DataDir: dir, Listen: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = emb.Shutdown(context.Background()) }()
	nc, err := emb.Connect(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	noHTTP := ""
	deps, cleanup, err := service.Build(ctx, service.BuildOptions{Config: cfg, Logger: logger, Conn: nc, HTTPListen: &noHTTP})
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	sink, err := billing.NewCSVSink(billing.CSVSinkOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := publisher.New(ctx, publisher.Options{Deps: deps, Sinks: []billing.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() { stop(); <-done }()

	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: deps.JS, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	send := func(meta events.Meta, subject string, v any) {
		t.Helper()
		m, err := events.NewMessage(meta, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.PublishCtx(ctx, subject, m); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2025, 4, 2, 6, 0, 0, 0, time.UTC)
	cur := map[uuid.UUID]events.UsageRecord{}
	for _, r := range []events.UsageRecord{
		tRecord("c2", 0, "3.3333333333", t0), tRecord("c2", 1, "-1.0000000003", t0),
		tRecord("c1", 0, "10.1234567891", t0), tRecord("c1", 1, "0.0000000001", t0), tRecord("c1", 2, "7.5", t0),
	} {
		send(r.EventMeta("test"), r.NATSSubject(), r)
		cur[r.RecordID] = r
	}
	ledger, err := billing.OpenLedger(ctx, deps.JS)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		parts, err := ledger.Partitions(ctx, tAcct, tPeriod)
		if err != nil {
			return err
		}
		n := 0
		for _, p := range parts {
			n += len(p.Records)
		}
		if n != 5 {
			return fmt.Errorf("%d records delivered", n)
		}
		return nil
	})
	// A newer revision of c1's first record supersedes the delivered one.
	v2 := tRecord("c1", 0, "12.0000000005", t0.Add(24*time.Hour))
	send(v2.EventMeta("test"), v2.NATSSubject(), v2)
	cur[v2.RecordID] = v2

	sums := map[string]decimal.Decimal{}
	for _, r := range cur {
		sums[r.IonCustomerID] = sums[r.IonCustomerID].Add(r.BilledCost)
		want = append(want, r)
	}
	syncID := events.ID("test-sync", "cli")
	var pages []uuid.UUID
	for _, c := range []string{"c1", "c2"} {
		ps := events.PageSummary{Stage: events.StageTransformer, PageID: events.ID("test-page", c), SyncID: syncID,
			Account: tAcct, Period: tPeriod, Customer: c, ProcessedAt: t0}
		if c == "c1" {
			ps.Held.Add("EUR", decimal.RequireFromString("5.0000000001"))
		}
		send(ps.EventMeta("test"), ps.NATSSubject(), ps)
		pages = append(pages, ps.PageID)
	}
	ok := events.SyncCompleted{SyncID: syncID, RequestID: "manual/cli", Account: tAcct, Period: tPeriod, Mode: events.ModeV3,
		Status: events.SyncSucceeded, Manifest: events.Manifest{Pages: pages, Customers: []string{"c1", "c2"}},
		ControlTotals: []events.ControlTotal{
			{Customer: "c1", Currency: "EUR", BilledCost: sums["c1"].Add(decimal.RequireFromString("5.0000000001"))},
			{Customer: "c2", Currency: "EUR", BilledCost: sums["c2"]},
		},
		StartedAt: t0, FinishedAt: t0}
	send(ok.EventMeta("test"), ok.NATSSubject(), ok)
	failed := events.SyncCompleted{SyncID: events.ID("test-sync", "failed"), RequestID: "manual/failed", Account: tAcct,
		Period: "2025-04", Mode: events.ModeV3, Status: events.SyncFailed, Reason: "ion: 401 unauthorized", StartedAt: t0, FinishedAt: t0}
	send(failed.EventMeta("test"), failed.NATSSubject(), failed)

	bustest.Eventually(t, 60*time.Second, func() error {
		for _, period := range []string{tPeriod, "2025-04"} {
			if _, err := billing.LoadReconciliation(ctx, deps.JS, tAcct, period); err != nil {
				return err
			}
		}
		return nil
	})
	check(emb.ClientURL())
	slices.SortFunc(want, func(a, b events.UsageRecord) int {
		if c := strings.Compare(a.IonCustomerID, b.IonCustomerID); c != 0 {
			return c
		}
		return strings.Compare(a.RecordID.String(), b.RecordID.String())
	})
	return want
}

// reconcile and snapshot read a deployment's store: while it runs through NATS_URL or the
// listener its lock file names, and from the data dir once it has stopped.
func TestReconcileAndSnapshotCommands(t *testing.T) {
	dir := t.TempDir()
	want := populate(t, dir, func(url string) {
		// The data dir is held: the command goes through the listener the holder recorded.
		r := runCLI(t, nil, "reconcile", "--account", tAcct, "--period", tPeriod, "--data-dir", dir)
		if r.code != service.ExitOK || !strings.Contains(r.stdout, "RECONCILED") {
			t.Errorf("reconcile on a held data dir: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = runCLI(t, map[string]string{"NATS_URL": url}, "reconcile", "--account", tAcct, "--period", tPeriod)
		if r.code != service.ExitOK || !strings.Contains(r.stdout, "RECONCILED") {
			t.Errorf("reconcile via NATS_URL: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	// The server is down: the commands open the data dir themselves.
	r := runCLI(t, nil, "reconcile", "--account", tAcct, "--period", tPeriod, "--data-dir", dir)
	if r.code != service.ExitOK {
		t.Fatalf("reconcile: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// c1: 12.0000000005 + 0.0000000001 + 7.5 delivered, 5.0000000001 held.
	for _, s := range []string{"CUSTOMER", "DEAD-LETTERED", "19.5000000006", "24.5000000007", "5.0000000001", "24.50", "19.50",
		"2.3333333330", "2.33", "Delivered BilledCost EUR: 21.8333333336 (21.83)", "5 records delivered", "1 held lines", "RECONCILED"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("reconcile output lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "NO\n") || strings.Contains(r.stdout, "NOT RECONCILED") {
		t.Errorf("reconcile output reports a mismatch:\n%s", r.stdout)
	}

	r = runCLI(t, nil, "reconcile", "--account", tAcct, "--period", tPeriod, "--data-dir", dir, "--json")
	var rec events.Reconciliation
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || r.code != 0 || !rec.Reconciled || len(rec.Rows) != 2 {
		t.Errorf("reconcile --json: exit %d, err %v, %+v", r.code, err, rec)
	}

	r = runCLI(t, nil, "reconcile", "--account", tAcct, "--period", "2025-04", "--data-dir", dir)
	if r.code != service.ExitFailed || !strings.Contains(r.stdout, "NOT RECONCILED: sync failed: ion: 401 unauthorized") {
		t.Errorf("reconcile of a failed sync: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, nil, "reconcile", "--account", tAcct, "--period", "2025-05", "--data-dir", dir)
	if r.code != service.ExitFailed || !strings.Contains(r.stderr, "no reconciliation stored") {
		t.Errorf("reconcile with nothing stored: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"reconcile", "--account", tAcct, "--data-dir", dir},
		{"reconcile", "--account", tAcct, "--period", "2025-13", "--data-dir", dir},
		{"reconcile", "--account", "a.b", "--period", tPeriod, "--data-dir", dir},
		{"snapshot", "--account", tAcct, "--period", tPeriod, "--data-dir", dir},
	} {
		if r := runCLI(t, nil, args...); r.code != service.ExitUsage {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
	}
	if r := runCLI(t, nil, "reconcile", "--account", tAcct, "--period", tPeriod, "--data-dir", filepath.Join(dir, "missing")); r.code != service.ExitFailed {
		t.Errorf("reconcile on a missing data dir: exit %d (%s)", r.code, r.stderr)
	}

	out := filepath.Join(t.TempDir(), "snapshot.csv")
	r = runCLI(t, nil, "snapshot", "--account", tAcct, "--period", tPeriod, "--out", out, "--data-dir", dir)
	if r.code != service.ExitOK || !strings.Contains(r.stdout, "wrote 5 records") || !strings.Contains(r.stdout, "BilledCost EUR: 21.8333333336 (21.83)") {
		t.Fatalf("snapshot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(want)+1 || !slices.Equal(rows[0], billing.FOCUSColumns) {
		t.Fatalf("snapshot has %d rows, header %v", len(rows), rows[0])
	}
	col := map[string]int{}
	for i, c := range rows[0] {
		col[c] = i
	}
	total := decimal.Zero
	for i, w := range want {
		row := rows[i+1]
		seq := "1"
		if w.RecordID == tRecord("c1", 0, "0", time.Time{}).RecordID {
			seq = "2"
		}
		if row[col["x_RecordId"]] != w.RecordID.String() || row[col["x_Revision"]] != w.Revision ||
			row[col["BilledCost"]] != w.BilledCost.String() || row[col["x_RevisionSeq"]] != seq {
			t.Errorf("row %d = %s %.8s %s seq %s, want %s %.8s %s seq %s", i+1, row[col["x_RecordId"]], row[col["x_Revision"]],
				row[col["BilledCost"]], row[col["x_RevisionSeq"]], w.RecordID, w.Revision, w.BilledCost, seq)
		}
		total = total.Add(decimal.RequireFromString(row[col["BilledCost"]]))
	}
	if !total.Equal(decimal.RequireFromString("21.8333333336")) {
		t.Errorf("snapshot BilledCost total %s", total)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a read command created a data dir: %v", err)
	}

	// A holder without a listener cannot be reached: the command says so instead of waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DataDir: dir, Listen: bus.ListenOff, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = emb.Shutdown(context.Background()) }()
	r = runCLI(t, nil, "reconcile", "--account", tAcct, "--period", tPeriod, "--data-dir", dir)
	if r.code != service.ExitUsage || !strings.Contains(r.stderr, "without a listener") || !strings.Contains(r.stderr, "NATS_URL=") {
		t.Errorf("reconcile on a data dir held without a listener: exit %d, stderr %q", r.code, r.stderr)
	}
}
