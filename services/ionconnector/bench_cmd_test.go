package ionconnector

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestIntegrationBenchTiny runs the bench on about 2,000 records: the last stdout line is the
// JSON result, with positive figures, and the run reconciled.
func TestIntegrationBenchTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end bench (about 10 s)")
	}
	var out, errOut syncBuffer
	code := Main(context.Background(), []string{"bench", "--records", "2000", "--data-dir", t.TempDir(), "--json-only"},
		IO{Stdout: &out, Stderr: &errOut, Env: noEnv})
	if code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Errorf("--json-only printed %d stdout lines, want 1", len(lines))
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("last stdout line is not JSON: %v\n%s", err, out.String())
	}
	for _, k := range []string{"records", "records_per_s", "ceiling_msgs_per_s", "ratio", "peak_rss_mb", "ceiling_peak_rss_mb", "stored_bytes"} {
		v, ok := r[k].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, r[k])
		}
	}
	if n, _ := r["records"].(float64); n < 1500 || n > 2500 {
		t.Errorf("records = %v, want about 2,000", n)
	}
	if r["reconciled"] != true {
		t.Errorf("reconciled = %v", r["reconciled"])
	}
	// The pipeline's peak is its own where the kernel lets bench reset it (Linux ≥ 4.0).
	if _, err := os.Stat("/proc/self/clear_refs"); err == nil && r["peak_rss_reset"] != true {
		t.Errorf("peak_rss_reset = %v with /proc/self/clear_refs present", r["peak_rss_reset"])
	}
	// Without GOMEMLIMIT (noEnv), bench runs under its default soft memory limit.
	if r["memory_limit"] != float64(benchMemoryLimit) {
		t.Errorf("memory_limit = %v, want %d", r["memory_limit"], benchMemoryLimit)
	}
}

// The shape keeps every customer far below the ledger's per-key limit and spreads small runs.
func TestBenchShape(t *testing.T) {
	for _, n := range []int{1, 2000, 100_000, 1_000_000, 5_000_000} {
		c, m := benchShape(n, 30)
		per := 2 * m * 30
		if per > 1500 || c < 1 {
			t.Errorf("benchShape(%d) = %d customers × %d meters: %d records per customer", n, c, m, per)
		}
		if got := c * per; n >= 2000 && (got < n*9/10 || got > n*11/10) {
			t.Errorf("benchShape(%d) gives %d rows", n, got)
		}
	}
}

// The disk check refuses a run that cannot fit.
func TestBenchRefusesWithoutDisk(t *testing.T) {
	var out, errOut syncBuffer
	code := Main(context.Background(), []string{"bench", "--records", "2000000000000", "--data-dir", t.TempDir()},
		IO{Stdout: &out, Stderr: &errOut, Env: noEnv})
	if code == 0 || !strings.Contains(errOut.String(), "not enough disk") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}
