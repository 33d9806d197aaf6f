package ionconnector

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/ionsim"
)

// lastSummary decodes the JSON object on the last stdout line.
func lastSummary(t *testing.T, stdout, stderr string) Summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var s Summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("last stdout line is not the summary JSON: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	return s
}

// TestIntegrationDemoTwice runs the demo end to end, then again on the same data dir: the first
// run delivers every record and reconciles; the second reconciles and delivers nothing.
func TestIntegrationDemoTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end demo")
	}
	dir := t.TempDir()
	run := func() (int, Summary, string) {
		var out, errOut syncBuffer
		code := Main(context.Background(), []string{"demo", "--data-dir", dir, "--customers", "6", "--listen", "off"},
			IO{Stdout: &out, Stderr: &errOut, Env: noEnv})
		return code, lastSummary(t, out.String(), errOut.String()), errOut.String()
	}
	code, first, stderr := run()
	if code != 0 || !first.Reconciled || first.Delivered == 0 || first.Delivered != first.Records || first.Pages == 0 {
		t.Fatalf("first run: exit %d, %+v\n%s", code, first, stderr)
	}
	if first.Totals["EUR"] == "" {
		t.Fatalf("first run has no EUR total: %+v", first)
	}
	code, second, stderr := run()
	if code != 0 || !second.Reconciled || second.Delivered != 0 || second.Deliveries != 0 || second.Records != first.Records || second.Totals["EUR"] != first.Totals["EUR"] {
		t.Fatalf("second run: exit %d, %+v (first %+v)\n%s", code, second, first, stderr)
	}
}

// TestIntegrationSyncOnceAgainstSandbox runs `sync --once` against a separately started sandbox,
// twice on one data dir: the second run works although the refresh-token file is stale by then
// (its token was spent and rotated) and delivers nothing new.
func TestIntegrationSyncOnceAgainstSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end sync")
	}
	ctx := context.Background()
	sim, err := ionsim.New(ionsim.Options{Seed: 3, Customers: 4, Periods: []string{"2026-09"}, Variant: ionsim.Variant{Daily: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "refresh-token")
	if err := os.WriteFile(tokenFile, []byte(sim.Credentials().RefreshToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "focus")
	args := []string{"sync", "--once", "--ion-url", sim.BaseURL(), "--account", "10001", "--auth", "v3",
		"--refresh-token-file", tokenFile, "--period", "2026-09", "--out", out, "--data-dir", filepath.Join(dir, "data")}
	run := func() (int, Summary, string) {
		var o, e syncBuffer
		code := Main(ctx, args, IO{Stdout: &o, Stderr: &e, Env: noEnv})
		return code, lastSummary(t, o.String(), e.String()), e.String()
	}
	code, first, stderr := run()
	truth := sim.GroundTruth("2026-09")
	if code != 0 || !first.Reconciled || first.Delivered == 0 || first.Totals[truth.Currency] != truth.SellerCost.String() {
		t.Fatalf("first run: exit %d, %+v, truth %s %s\n%s", code, first, truth.Currency, truth.SellerCost, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.csv"))
	if len(files) != first.Deliveries {
		t.Fatalf("%d CSV files for %d deliveries", len(files), first.Deliveries)
	}
	code, second, stderr := run()
	if code != 0 || !second.Reconciled || second.Delivered != 0 {
		t.Fatalf("second run (stale token file): exit %d, %+v\n%s", code, second, stderr)
	}
	if st := sim.Stats(); st.RefreshReuse != 0 {
		t.Fatalf("a refresh token was spent twice: %+v", st)
	}
}

// TestIntegrationDemoResumesAfterInterrupt stops the demo mid-run (as SIGTERM does: its context
// is cancelled), then runs it again on the same data dir: it finishes reconciled and the billing
// receiver holds every record exactly once, at its newest revision.
func TestIntegrationDemoResumesAfterInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end demo")
	}
	dir := t.TempDir()
	args := []string{"demo", "--data-dir", dir, "--customers", "50", "--listen", "off"}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, IO{Stdout: &out, Stderr: &errOut, Env: noEnv}) }()
	// Interrupt once the billing receiver has stored a first delivery: the run is then mid-way
	// (fetching, transforming and delivering at once), whatever the machine's speed.
	stateFile := filepath.Join(dir, "demo", "billing-state.json")
	for {
		if _, err := os.Stat(stateFile); err == nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("demo ended (exit %d) before it could be interrupted:\n%s", code, errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != 1 || !strings.Contains(errOut.String(), "interrupted") {
		t.Fatalf("interrupted run: exit %d, stderr:\n%s", code, errOut.String())
	}

	var out2, errOut2 syncBuffer
	code := Main(context.Background(), args, IO{Stdout: &out2, Stderr: &errOut2, Env: noEnv})
	s := lastSummary(t, out2.String(), errOut2.String())
	if code != 0 || !s.Reconciled {
		t.Fatalf("resumed run: exit %d, %+v\n%s", code, s, errOut2.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "demo", "billing-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		State billingsim.State `json:"state"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.State.Records) != s.Records || st.State.DuplicateRecords != 0 || st.State.Stale != 0 {
		t.Fatalf("receiver holds %d records (want %d), %d duplicates, %d stale",
			len(st.State.Records), s.Records, st.State.DuplicateRecords, st.State.Stale)
	}
}
