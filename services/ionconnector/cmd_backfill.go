package ionconnector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("backfill", "request and follow one sync per month of a range, a few at a time; a re-run resumes", backfillCmd)
}

// maxBackfillMonths bounds one backfill (ION_RAW keeps 13 months; Ion itself keeps a few years).
const maxBackfillMonths = 60

// Backfill month states.
const (
	bfPending    = "pending"    // not requested yet
	bfRequested  = "requested"  // published; followed again with the same id on a re-run
	bfReconciled = "reconciled" // done; a re-run skips it
	bfFailed     = "failed"     // finished not reconciled; a re-run requests it again (new id)
)

// backfillMonth is one month of a backfill as stored in KV.
type backfillMonth struct {
	Period    string `json:"period"`
	RequestID string `json:"request_id"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
	Records   int    `json:"records"`
	Delivered int    `json:"delivered"`
	Error     string `json:"error,omitempty"`
}

// backfillState is the KV record of a backfill ("periods" bucket, key backfillKey), so a
// re-run continues where the last one stopped.
type backfillState struct {
	Account   string          `json:"account"`
	From      string          `json:"from"`
	To        string          `json:"to"`
	Customers []string        `json:"customers,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	Months    []backfillMonth `json:"months"`
}

// backfillReport is the --json output.
type backfillReport struct {
	Account    string          `json:"account"`
	From       string          `json:"from"`
	To         string          `json:"to"`
	Months     []backfillMonth `json:"months"`
	Reconciled bool            `json:"reconciled"` // every month reconciled
}

func backfillKey(account, from, to string, customers []string) string {
	k := "backfill." + account + "." + from + "." + to
	if len(customers) > 0 {
		h := sha256.Sum256([]byte(strings.Join(customers, ",")))
		k += ".c" + hex.EncodeToString(h[:6])
	}
	return k
}

// monthsBetween lists from..to inclusive.
func monthsBetween(from, to string) ([]string, error) {
	a, _, err := events.ParsePeriod(from)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	b, _, err := events.ParsePeriod(to)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if b.Before(a) {
		return nil, fmt.Errorf("--to %s is before --from %s", to, from)
	}
	var out []string
	for t := a; !t.After(b); t = t.AddDate(0, 1, 0) {
		if len(out) == maxBackfillMonths {
			return nil, fmt.Errorf("%s..%s is more than %d months; split it", from, to, maxBackfillMonths)
		}
		out = append(out, events.PeriodOf(t))
	}
	return out, nil
}

func backfillCmd(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	account := fs.String("account", "", "Ion account id (required)")
	from := fs.String("from", "", "first period YYYY-MM (required)")
	to := fs.String("to", "", "last period YYYY-MM, inclusive (required)")
	customer := fs.String("customer", "", "only these Ion customer ids (comma-separated); default every customer")
	parallel := fs.Int("parallel", 2, "months in flight at most (1 to 12)")
	mode := fs.String("auth", "", "source mode v1 or v3 (default: the account's auth in --config, else v3)")
	restart := fs.Bool("restart", false, "forget the stored progress of this range and request every month again")
	asJSON := fs.Bool("json", false, "print the per-month result as one JSON object on stdout")
	cfgPath := fs.String("config", io.Env("ION_CONNECTOR_CONFIG"), "YAML config of the deployment (env ION_CONNECTOR_CONFIG)")
	dataDir := fs.String("data-dir", "", "data dir of the running ionconnector (default: config embedded.data_dir)")
	timeout := fs.Duration("timeout", 6*time.Hour, "give up after this long (a re-run resumes)")
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, "usage: ionconnector backfill --account A --from YYYY-MM --to YYYY-MM [--customer C[,C]] [--parallel N] [--json]\n\n"+
			"Publishes one sync request per month to the running deployment (NATS_URL, or the loopback\n"+
			"listener of `ionconnector run`), at most --parallel in flight, and follows each to its\n"+
			"reconciliation, printing a line per month. Progress is stored in the deployment's KV bucket\n"+
			"\"periods\": run the same command again after an interruption and it continues: reconciled\n"+
			"months are skipped, requested ones are followed again under the same request id (never\n"+
			"requested twice), months that ended not reconciled are requested again.\n"+
			"Exit 0 when every month is reconciled, 1 otherwise, 2 usage.")
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	if *account == "" || *from == "" || *to == "" {
		fmt.Fprintln(io.Stderr, "backfill: --account, --from and --to are required")
		return service.ExitUsage
	}
	if err := events.CheckToken(*account); err != nil {
		fmt.Fprintf(io.Stderr, "backfill: --account: %v\n", err)
		return service.ExitUsage
	}
	months, err := monthsBetween(*from, *to)
	if err != nil {
		fmt.Fprintf(io.Stderr, "backfill: %v\n", err)
		return service.ExitUsage
	}
	if *parallel < 1 || *parallel > 12 {
		fmt.Fprintf(io.Stderr, "backfill: --parallel %d is not from 1 to 12\n", *parallel)
		return service.ExitUsage
	}
	if *mode != "" && *mode != events.ModeV1 && *mode != events.ModeV3 {
		fmt.Fprintf(io.Stderr, "backfill: --auth %q is not v1 or v3\n", *mode)
		return service.ExitUsage
	}
	var customers []string
	for c := range strings.SplitSeq(*customer, ",") {
		if c = strings.TrimSpace(c); c != "" {
			customers = append(customers, c)
		}
	}
	slices.Sort(customers)
	customers = slices.Compact(customers)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	d, code := connectDeployment(ctx, io, "backfill", *cfgPath, *dataDir)
	if d == nil {
		return code
	}
	defer d.Close()
	kv, err := d.deps.JS.KeyValue(ctx, bus.BucketPeriods)
	if err != nil {
		fmt.Fprintf(io.Stderr, "backfill: KV %s: %v\n", bus.BucketPeriods, err)
		return service.ExitFailed
	}
	b := &backfill{kv: kv, key: backfillKey(*account, *from, *to, customers)}
	if *restart {
		if err := kv.Delete(ctx, b.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			fmt.Fprintf(io.Stderr, "backfill: %v\n", err)
			return service.ExitFailed
		}
	}
	resumed, err := b.load(ctx, backfillState{Account: *account, From: *from, To: *to, Customers: customers,
		CreatedAt: time.Now().UTC()}, months)
	if err != nil {
		fmt.Fprintf(io.Stderr, "backfill: %v\n", err)
		return service.ExitFailed
	}

	var todo []int
	for i, m := range b.st.Months {
		if m.Status == bfReconciled {
			continue
		}
		if m.Status == bfFailed || m.Status == bfPending || m.RequestID == "" {
			b.st.Months[i].RequestID = "backfill:" + newRequestID()
			b.st.Months[i].Status = bfPending
			b.st.Months[i].Error = ""
		}
		todo = append(todo, i)
	}
	verb := "starting"
	if resumed {
		verb = "resuming"
	}
	fmt.Fprintf(io.Stderr, "backfill: %s account %s %s..%s: %d months, %d reconciled earlier, %d to follow, at most %d in flight\n",
		verb, *account, *from, *to, len(months), len(months)-len(todo), len(todo), *parallel)
	for _, m := range b.st.Months {
		if m.Status == bfReconciled {
			fmt.Fprintf(io.Stderr, "  %s  reconciled earlier (request %s)\n", m.Period, m.RequestID)
		}
	}
	if err := b.save(ctx); err != nil {
		fmt.Fprintf(io.Stderr, "backfill: %v\n", err)
		return service.ExitFailed
	}

	mode2 := modeFor(d.cfg, *account, *mode)
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	for _, i := range todo {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			b.run(ctx, io, d, i, mode2)
		})
	}
	wg.Wait()

	rep := backfillReport{Account: *account, From: *from, To: *to, Months: b.st.Months, Reconciled: true}
	for _, m := range b.st.Months {
		if m.Status != bfReconciled {
			rep.Reconciled = false
		}
	}
	if *asJSON {
		line, _ := json.Marshal(rep)
		fmt.Fprintln(io.Stdout, string(line))
	} else {
		fmt.Fprintf(io.Stdout, "\nbackfill · account %s · %s..%s\n\n", *account, *from, *to)
		fmt.Fprintf(io.Stdout, "  %-8s  %-10s  %8s  %9s  %s\n", "period", "status", "records", "delivered", "request")
		for _, m := range rep.Months {
			fmt.Fprintf(io.Stdout, "  %-8s  %-10s  %8d  %9d  %s\n", m.Period, m.Status, m.Records, m.Delivered, m.RequestID)
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(io.Stderr, "backfill: interrupted; run the same command again to continue (requested months are followed, not requested again)")
	}
	if !rep.Reconciled {
		return service.ExitFailed
	}
	return service.ExitOK
}

// backfill is the stored progress of one backfill; run's goroutines share it.
type backfill struct {
	kv  jetstream.KeyValue
	key string
	mu  sync.Mutex
	st  backfillState
	rev uint64 // 0: not stored yet
	out sync.Mutex
}

// load reads the stored progress, or starts fresh from fresh; resumed reports a stored one.
func (b *backfill) load(ctx context.Context, fresh backfillState, months []string) (resumed bool, err error) {
	e, err := b.kv.Get(ctx, b.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		b.st = fresh
		for _, p := range months {
			b.st.Months = append(b.st.Months, backfillMonth{Period: p, Status: bfPending})
		}
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read progress %s: %w", b.key, err)
	}
	if err := json.Unmarshal(e.Value(), &b.st); err != nil {
		return false, fmt.Errorf("progress %s is unreadable (%v); run with --restart", b.key, err)
	}
	b.rev = e.Revision()
	return true, nil
}

// save stores the progress with compare-and-set, so two backfills of one range cannot both
// run unnoticed. Callers hold b.mu or run alone.
func (b *backfill) save(ctx context.Context) error {
	v, err := json.Marshal(b.st)
	if err != nil {
		return err
	}
	// A write must land even when ctx was just cancelled (SIGTERM): it records what happened.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var rev uint64
	if b.rev == 0 {
		rev, err = b.kv.Create(ctx, b.key, v)
	} else {
		rev, err = b.kv.Update(ctx, b.key, v, b.rev)
	}
	if err != nil {
		return fmt.Errorf("store progress %s (is another backfill of this range running?): %w", b.key, err)
	}
	b.rev = rev
	return nil
}

func (b *backfill) update(ctx context.Context, i int, f func(*backfillMonth)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.st.Months[i])
	return b.save(ctx)
}

// run requests (or follows again) month i and records the outcome.
func (b *backfill) run(ctx context.Context, io IO, d *deployment, i int, mode string) {
	b.mu.Lock()
	m := b.st.Months[i]
	b.mu.Unlock()
	if m.Status == bfPending {
		// Recorded before publishing: a crash in between follows (re-publishes) the same id.
		if err := b.update(ctx, i, func(m *backfillMonth) { m.Status = bfRequested; m.Attempts++ }); err != nil {
			b.print(io, "  %s  error: %v\n", m.Period, err)
			return
		}
	}
	b.print(io, "  %s  requested (request %s)\n", m.Period, m.RequestID)
	res, err := followSync(ctx, d.deps, followOptions{
		Account: b.st.Account, Period: m.Period, Mode: mode, Reason: "backfill", RequestedBy: "ionconnector backfill",
		RequestID: m.RequestID, Customers: b.st.Customers,
	})
	if err != nil {
		if ctx.Err() != nil {
			b.print(io, "  %s  interrupted while in flight; a re-run follows it\n", m.Period)
			return
		}
		_ = b.update(ctx, i, func(m *backfillMonth) { m.Error = err.Error() })
		b.print(io, "  %s  error: %v\n", m.Period, err)
		return
	}
	status := bfFailed
	if res.Summary.Reconciled {
		status = bfReconciled
	}
	if err := b.update(ctx, i, func(m *backfillMonth) {
		m.Status, m.Records, m.Delivered = status, res.Summary.Records, res.Summary.Delivered
		m.Error = ""
		if status == bfFailed {
			m.Error = "not reconciled (see `ionconnector reconcile`)"
		}
	}); err != nil {
		b.print(io, "  %s  error: %v\n", m.Period, err)
		return
	}
	b.print(io, "  %s  %s · %d records · %d delivered\n", m.Period, status, res.Summary.Records, res.Summary.Delivered)
}

func (b *backfill) print(io IO, format string, args ...any) {
	b.out.Lock()
	defer b.out.Unlock()
	fmt.Fprintf(io.Stderr, format, args...)
}
