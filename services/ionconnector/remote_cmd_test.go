package ionconnector

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// TestSyncRemoteRefusals: a data dir that no running deployment holds is refused (nothing would
// work on the request), and so is a backwards backfill.
func TestSyncRemoteRefusals(t *testing.T) {
	t.Parallel()
	r := runCLI(t, nil, "sync", "--account", "10001", "--period", "2025-03", "--data-dir", filepath.Join(t.TempDir(), "none"))
	if r.code == 0 || !strings.Contains(r.stderr, "no ionconnector data dir") {
		t.Fatalf("missing data dir: exit %d\n%s", r.code, r.stderr)
	}
	r = runCLI(t, nil, "backfill", "--account", "10001", "--from", "2025-03", "--to", "2025-01")
	if r.code != 2 || !strings.Contains(r.stderr, "before") {
		t.Fatalf("backwards range: exit %d\n%s", r.code, r.stderr)
	}
}

// startTestDeployment starts the sandbox, the billing receiver and every service on an embedded
// server with a loopback listener: a running deployment the commands reach through NATS_URL.
func startTestDeployment(t *testing.T, periods string) (*demoEnv, string) {
	t.Helper()
	dir := t.TempDir()
	env, err := startDemoEnv(context.Background(), demoEnvOptions{
		Dir: dir, DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", Customers: 3, Seed: 7,
		Period: periods, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return env, env.host.Embedded.ClientURL()
}

// TestIntegrationSyncCommand: `sync` publishes to a running deployment through its listener and
// follows the request to a reconciled end.
func TestIntegrationSyncCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end sync")
	}
	env, url := startTestDeployment(t, "2026-09")
	r := runCLI(t, map[string]string{"NATS_URL": url}, "sync", "--account", demoAccount, "--period", "2026-09", "--json")
	if r.code != 0 {
		t.Fatalf("sync: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := lastSummary(t, r.stdout, r.stderr)
	truth := env.sim.GroundTruth("2026-09")
	if !s.Reconciled || s.Delivered == 0 || s.Totals[truth.Currency] != truth.SellerCost.String() {
		t.Fatalf("summary %+v, truth %s %s\n%s", s, truth.Currency, truth.SellerCost, r.stderr)
	}
	// A second sync is a second request (a new id): it reconciles and delivers nothing new.
	r = runCLI(t, map[string]string{"NATS_URL": url}, "sync", "--account", demoAccount, "--period", "2026-09", "--json")
	if s2 := lastSummary(t, r.stdout, r.stderr); r.code != 0 || !s2.Reconciled || s2.Delivered != 0 {
		t.Fatalf("second sync: exit %d %+v\n%s", r.code, s2, r.stderr)
	}
}

// TestIntegrationBackfillResumes: a backfill of two months, interrupted once the first is
// reconciled and run again, requests each month exactly once and ends with both reconciled.
func TestIntegrationBackfillResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end backfill")
	}
	env, url := startTestDeployment(t, "2026-07..2026-08")
	js := env.host.Deps.JS
	envs := map[string]string{"NATS_URL": url}
	args := []string{"backfill", "--account", demoAccount, "--from", "2026-07", "--to", "2026-08", "--parallel", "1", "--json"}
	key := backfillKey(demoAccount, "2026-07", "2026-08", nil)

	// First run: stopped (as by SIGTERM) as soon as the first month is recorded reconciled.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		kv, err := js.KeyValue(ctx, bus.BucketPeriods)
		if err != nil {
			return
		}
		for ctx.Err() == nil {
			if e, err := kv.Get(ctx, key); err == nil {
				var st backfillState
				if json.Unmarshal(e.Value(), &st) == nil && st.Months[0].Status == bfReconciled {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var out, errOut syncBuffer
	code := Main(ctx, args, IO{Stdout: &out, Stderr: &errOut, Env: func(k string) string { return envs[k] }})
	cancel()
	var first backfillReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(out.String())), &first); err != nil {
		t.Fatalf("first run output: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if first.Months[0].Status != bfReconciled {
		t.Fatalf("first run: exit %d, %+v\n%s", code, first, errOut.String())
	}
	t.Logf("first run: exit %d, months %+v", code, first.Months)

	// Second run: continues; the first month is not requested again.
	r := runCLI(t, envs, args...)
	var second backfillReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &second); err != nil || r.code != 0 || !second.Reconciled {
		t.Fatalf("second run: exit %d %v %+v\n%s", r.code, err, second, r.stderr)
	}
	if !strings.Contains(r.stderr, "reconciled earlier") || second.Months[0].RequestID != first.Months[0].RequestID {
		t.Fatalf("second run did not resume:\n%s", r.stderr)
	}
	for _, m := range second.Months {
		if m.Status != bfReconciled || m.Records == 0 {
			t.Fatalf("month %+v", m)
		}
	}

	// Exactly one stored backfill request per month.
	perPeriod := map[string][]string{}
	cons, err := js.OrderedConsumer(context.Background(), events.StreamSync, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SyncRequestedSubject(demoAccount)}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var req events.SyncRequest
			if json.Unmarshal(m.Data(), &req) == nil && req.Reason == "backfill" {
				perPeriod[req.Period] = append(perPeriod[req.Period], req.RequestID)
			}
		}
		if n == 0 {
			break
		}
	}
	if len(perPeriod) != 2 || len(perPeriod["2026-07"]) != 1 || len(perPeriod["2026-08"]) != 1 {
		t.Fatalf("backfill requests per period: %v", perPeriod)
	}
	// Everything done: a third run requests nothing.
	r = runCLI(t, envs, args...)
	if r.code != 0 || strings.Contains(r.stderr, "requested (") {
		t.Fatalf("third run: exit %d\n%s", r.code, r.stderr)
	}
}
