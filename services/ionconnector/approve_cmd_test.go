package ionconnector

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/fetcher"
	"github.com/ionusage/connector/services/publisher"
	"github.com/ionusage/connector/services/transformer"
)

// csvDeliveries counts the FOCUS CSV rows the sink wrote per account and record revision
// ("<record id>/<revision>").
func csvDeliveries(t *testing.T, dir string) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
		if err != nil || len(rows) == 0 {
			t.Fatalf("%s: %d rows, %v", f, len(rows), err)
		}
		col := map[string]int{}
		for i, h := range rows[0] {
			col[h] = i
		}
		for _, r := range rows[1:] {
			acct := r[col["BillingAccountId"]]
			if out[acct] == nil {
				out[acct] = map[string]int{}
			}
			out[acct][r[col["x_RecordId"]]+"/"+r[col["x_Revision"]]]++
		}
	}
	return out
}

// TestIntegrationApprovalHoldsThenDeliversOnce: account 10001 requires approval, 10002 does
// not. A sync of each: 10002 is delivered and reconciles; none of 10001's records reach the
// sink, each waits as an awaiting-approval dead letter, and its reconciliation balances but
// says it awaits approval. approve delivers every record exactly once and the period
// reconciles; approving again does nothing. A re-read after the approval (Ion restated some
// lines) waits again until the next approve.
func TestIntegrationApprovalHoldsThenDeliversOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end operator commands")
	}
	e := newOpEnv(t)
	csvDir := t.TempDir()
	b, err := os.ReadFile(e.fileB)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "currency: EUR\n", "currency: EUR\n    approval_required: true\n", 1) + "sinks:\n  csv:\n    dir: " + csvDir + "\n"
	if err := os.WriteFile(e.fileB, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(e.fileB, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := cfg.Account("10001"); !a.ApprovalRequired {
		t.Fatalf("config: account 10001 does not require approval:\n%s", y)
	}
	d := e.deps(cfg)
	for _, run := range []service.RunFunc{fetcher.Run, transformer.Run, publisher.Run} {
		e.run(d, run)
	}
	ctx := context.Background()

	// reconciled waits for the stored reconciliation of acct's sync req.
	reconciled := func(acct string, req events.SyncRequest) events.Reconciliation {
		t.Helper()
		var r events.Reconciliation
		bustest.Eventually(t, 90*time.Second, func() error {
			var err error
			if r, err = billing.LoadReconciliation(ctx, d.JS, acct, e.period); err != nil {
				return err
			}
			if r.SyncID != req.SyncID() {
				return fmt.Errorf("reconciliation of sync %s, want %s", r.SyncID, req.SyncID())
			}
			return nil
		})
		return r
	}
	awaiting := func() []dlqEntry {
		t.Helper()
		got, err := readDLQ(ctx, d.JS, dlqFilter{Reason: bus.ReasonAwaitingApproval})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	balanced := func(r events.Reconciliation) {
		t.Helper()
		for _, row := range r.Rows {
			if !row.Match {
				t.Errorf("%s %s row %+v does not match", r.Account, r.Period, row)
			}
		}
	}

	held := e.requestSync(d, "10001", "approval-1")
	free := e.requestSync(d, "10002", "free-1")
	if r := reconciled("10002", free); !r.Reconciled || r.Records == 0 {
		t.Errorf("account 10002 (no approval): reconciled %v, %d records: %s", r.Reconciled, r.Records, r.Reason)
	}
	r := reconciled("10001", held)
	balanced(r)
	if r.Reconciled || r.Records != 0 || !strings.Contains(r.Reason, "await approval: ionconnector approve --account 10001 --period "+e.period) {
		t.Errorf("account 10001 before approval: reconciled %v, %d records, reason %q", r.Reconciled, r.Records, r.Reason)
	}
	waiting := awaiting()
	n := len(waiting)
	if n == 0 || r.HeldLines < n {
		t.Fatalf("%d awaiting-approval dead letters, %d held lines", n, r.HeldLines)
	}
	for _, w := range waiting {
		if w.Stage != publisher.Name || w.Account != "10001" {
			t.Errorf("awaiting dead letter %d: stage %s account %s", w.Seq, w.Stage, w.Account)
		}
	}
	if got := csvDeliveries(t, csvDir); len(got["10001"]) != 0 || len(got["10002"]) == 0 {
		t.Errorf("sink before approval: 10001 %d rows, 10002 %d rows", len(got["10001"]), len(got["10002"]))
	}
	res := e.cli("dlq", "list", "--reason", "awaiting-approval", "--account", "10001")
	if res.code != 0 || !strings.Contains(res.stdout, fmt.Sprintf("%d dead letters (awaiting-approval %d)", n, n)) {
		t.Errorf("dlq list --reason awaiting-approval: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	status := func() map[string]periodStatus {
		t.Helper()
		res := e.cli("status", "--json")
		var st statusReport
		if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || res.code != 0 {
			t.Fatalf("status --json: exit %d, %v\n%s%s", res.code, err, res.stdout, res.stderr)
		}
		out := map[string]periodStatus{}
		for _, a := range st.Accounts {
			for _, p := range a.Periods {
				if p.Period == e.period {
					out[a.Account] = p
				}
			}
		}
		return out
	}
	if st := status(); st["10001"].Approval != "awaiting" || st["10001"].AwaitingApproval != n || st["10002"].Approval != "" {
		t.Errorf("status before approval: %+v", st)
	}
	if res := e.cli("status"); !strings.Contains(res.stdout, fmt.Sprintf("AWAITING (%d records)", n)) {
		t.Errorf("status table lacks the awaiting period:\n%s%s", res.stdout, res.stderr)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"approve", "--account", "10002", "--period", e.period}, "account 10002 does not require approval"},
		{[]string{"approve", "--account", "99999", "--period", e.period}, `account "99999" is not configured`},
		{[]string{"approve", "--account", "10001"}, "--account and --period are required"},
		{[]string{"approve", "--account", "10001", "--period", "2025-13"}, "--period"},
		{[]string{"approve", "--account", "10001", "--period", e.period}, "--by is required ($USER is not set)"},
	} {
		if res := e.cli(c.args...); res.code != service.ExitUsage || !strings.Contains(res.stderr, c.want) {
			t.Errorf("%v: exit %d, want 2 and %q\n%s", c.args, res.code, c.want, res.stderr)
		}
	}
	if res := e.cli("approve", "--help"); res.code != 0 || !strings.Contains(res.stderr, "awaiting-approval") {
		t.Errorf("approve --help: exit %d\n%s", res.code, res.stderr)
	}

	// approve: every held record is delivered exactly once and the period reconciles.
	approveJSON := func(by string) approveResult {
		t.Helper()
		res := e.cli("approve", "--account", "10001", "--period", e.period, "--by", by, "--json")
		var out approveResult
		if err := json.Unmarshal([]byte(res.stdout), &out); err != nil || res.code != 0 {
			t.Fatalf("approve: exit %d, %v\n%s%s", res.code, err, res.stdout, res.stderr)
		}
		return out
	}
	a := approveJSON("alice")
	if a.Already || a.Redriven != n || a.StillWaiting != 0 || a.Approval.By != "alice" || a.ReconcileOf != held.SyncID().String() {
		t.Errorf("approve: %+v, want %d redriven", a, n)
	}
	settled := func() {
		t.Helper()
		bustest.Eventually(t, 60*time.Second, func() error {
			ci, err := d.JS.Consumer(ctx, events.StreamUsage, publisher.Name)
			if err != nil {
				return err
			}
			info, err := ci.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("publisher: %d pending, %d in flight", info.NumPending, info.NumAckPending)
			}
			return nil
		})
	}
	var rec events.Reconciliation
	bustest.Eventually(t, 90*time.Second, func() error {
		var err error
		if rec, err = billing.LoadReconciliation(ctx, d.JS, "10001", e.period); err != nil {
			return err
		}
		if !rec.Reconciled {
			return errors.New(rec.Reason)
		}
		return nil
	})
	settled()
	if rec.Records != n {
		t.Errorf("reconciled with %d records delivered, want %d", rec.Records, n)
	}
	if res := e.cli("reconcile", "--account", "10001", "--period", e.period); res.code != 0 || !strings.Contains(res.stdout, "RECONCILED") {
		t.Errorf("reconcile after approve: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	exactlyOnce := func(want int) map[string]int {
		t.Helper()
		got := csvDeliveries(t, csvDir)["10001"]
		if len(got) != want {
			t.Errorf("sink holds %d revisions of account 10001, want %d", len(got), want)
		}
		for k, c := range got {
			if c != 1 {
				t.Errorf("revision %s delivered %d times", k, c)
			}
		}
		return got
	}
	first := exactlyOnce(n)
	t.Logf("%d records held, then delivered once after approve", n)
	if got := awaiting(); len(got) != 0 {
		t.Errorf("%d awaiting-approval dead letters after approve", len(got))
	}
	if st := status(); st["10001"].Approval != "approved" || st["10001"].AwaitingApproval != 0 {
		t.Errorf("status after approval: %+v", st["10001"])
	}

	// Approving again: nothing to do, nothing delivered.
	if a := approveJSON("bob"); !a.Already || a.Redriven != 0 || a.Approval.By != "alice" {
		t.Errorf("second approve: %+v", a)
	}
	if res := e.cli("approve", "--account", "10001", "--period", e.period, "--by", "dave"); res.code != 0 || !strings.Contains(res.stdout, "already approved by alice") {
		t.Errorf("third approve: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	settled()
	exactlyOnce(n)

	// Ion restates some lines; the re-read, fetched after the approval, waits for a new one.
	if _, err := e.sim.Restate(e.period, 1); err != nil {
		t.Fatal(err)
	}
	again := e.requestSync(d, "10001", "approval-2")
	r = reconciled("10001", again)
	settled()
	balanced(r)
	m := len(awaiting())
	if m == 0 || r.Reconciled || !strings.Contains(r.Reason, "await approval") {
		t.Fatalf("re-read after approval: %d awaiting, reconciled %v (%s)", m, r.Reconciled, r.Reason)
	}
	exactlyOnce(n) // nothing of the re-read delivered yet
	t.Logf("re-read after the approval: %d records wait", m)
	a = approveJSON("carol")
	if a.Already || a.Redriven != m || a.ReconcileOf != again.SyncID().String() {
		t.Errorf("approve of the re-read: %+v, want %d redriven", a, m)
	}
	bustest.Eventually(t, 90*time.Second, func() error {
		var err error
		if rec, err = billing.LoadReconciliation(ctx, d.JS, "10001", e.period); err != nil {
			return err
		}
		if !rec.Reconciled {
			return errors.New(rec.Reason)
		}
		return nil
	})
	settled()
	got := exactlyOnce(n + m) // every line restated: each a new revision
	for k := range first {
		if got[k] != 1 {
			t.Errorf("first revision %s lost", k)
		}
	}
}
