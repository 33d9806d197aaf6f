package fetcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/events/schematest"
	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/service"
)

// env is an embedded NATS server with the provisioned topology and an Ion sandbox over HTTP.
type env struct {
	t      *testing.T
	sim    *ionsim.Sim
	deps   depsT
	period string
	accts  []string
}

type depsT struct {
	cfg *config.Config
	log *slog.Logger
	js  jetstream.JetStream
	sd  service.Deps
	run func(ctx context.Context, opts Options) (*Service, error)
}

func newEnv(t *testing.T, so ionsim.Options, mode string, tune func(*config.Config)) *env {
	t.Helper()
	sim, err := ionsim.New(so)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := config.Default()
	cfg.TokenKeyFile = write("token.key", "0123456789abcdef0123456789abcdef")
	accts := so.Accounts
	if len(accts) == 0 {
		accts = []string{ionsim.DefaultAccount}
	}
	for _, a := range accts {
		cr := sim.CredentialsFor(a)
		cfg.Accounts = append(cfg.Accounts, config.Account{ID: a, Auth: mode, IonURL: sim.BaseURL(), Currency: "EUR",
			RefreshTokenFile: write(a+".rt", cr.RefreshToken), APIKeyFile: write(a+".key", cr.APIKey), APISecretFile: write(a+".secret", cr.APISecret)})
	}
	cfg.Ion.RequestsPerSecond, cfg.Ion.Burst, cfg.Ion.MaxRetries, cfg.Ion.Timeout = 1000, 50, 6, 20*time.Second
	cfg.Fetcher.Workers = 4
	if tune != nil {
		tune(cfg)
	}
	_, nc := bustest.StartServer(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() && os.Getenv("FETCHER_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sd, cleanup, err := service.Build(ctx, service.BuildOptions{Config: cfg, Logger: logger, Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e := &env{t: t, sim: sim, period: sim.Periods()[0], accts: accts}
	e.deps = depsT{cfg: cfg, log: logger, js: sd.JS, sd: sd, run: func(ctx context.Context, o Options) (*Service, error) { return New(ctx, sd, o) }}
	return e
}

// start runs a fetcher replica until the returned stop is called.
func (e *env) start(o Options) (stop func()) {
	e.t.Helper()
	return e.startWith(e.deps.sd, o)
}

// startWith runs a fetcher replica on deps (another config, say) until stop is called.
func (e *env) startWith(deps service.Deps, o Options) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, deps, o)
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					e.t.Errorf("fetcher stopped with %v", err)
				}
			case <-time.After(60 * time.Second):
				e.t.Error("fetcher did not stop")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *env) requestSync(acct, mode, id string) events.SyncRequest {
	e.t.Helper()
	req := e.syncRequest(acct, mode, id)
	e.publishRequest(req)
	return req
}

func (e *env) syncRequest(acct, mode, id string) events.SyncRequest {
	return events.SyncRequest{RequestID: id, Account: acct, Period: e.period, Mode: mode, Reason: "manual",
		RequestedBy: "test", RequestedAt: time.Now().UTC()}
}

func (e *env) publishRequest(req events.SyncRequest) {
	e.t.Helper()
	msg, err := events.NewMessage(req.EventMeta("test"), req)
	if err != nil {
		e.t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: e.deps.js, Logger: e.deps.log})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := pub.Publish(req.NATSSubject(), msg); err != nil {
		e.t.Fatal(err)
	}
}

// completed waits for the completion of a sync.
func (e *env) completed(req events.SyncRequest, timeout time.Duration) events.SyncCompleted {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		msgs := e.read(ctx, events.StreamSync, events.SyncCompletedSubject(req.Account))
		for _, m := range msgs {
			var c events.SyncCompleted
			if err := json.Unmarshal(m.Data(), &c); err != nil {
				e.t.Fatal(err)
			}
			if c.SyncID == req.SyncID() {
				schematest.Validate(e.t, events.TypeSyncCompleted, m.Data())
				return c
			}
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("sync %s did not complete within %s", req.RequestID, timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// read returns every message stored under subject.
func (e *env) read(ctx context.Context, stream, subject string) []jetstream.Msg {
	e.t.Helper()
	st, err := e.deps.js.Stream(ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	if n == 0 {
		return nil
	}
	oc, err := e.deps.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < n {
		m, err := oc.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			e.t.Fatalf("read %s: %v (have %d of %d)", subject, err, len(out), n)
		}
		out = append(out, m)
	}
	return out
}

func (e *env) count(stream, subject string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.deps.js.Stream(ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// pages decodes every raw page of acct, checks it against its schema and rules, and sums its
// seller cost by customer and currency from the stored bytes alone (as the transformer will).
func (e *env) pages(acct string) (map[uuid.UUID]events.RawPage, map[[2]string]decimal.Decimal) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	obj, err := e.deps.js.ObjectStore(ctx, bus.ObjectRawBodies)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[uuid.UUID]events.RawPage{}
	sums := map[[2]string]decimal.Decimal{}
	for _, m := range e.read(ctx, events.StreamRaw, events.RawPageSubject(acct)) {
		schematest.Validate(e.t, events.TypeRawPage, m.Data())
		var p events.RawPage
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			e.t.Fatal(err)
		}
		if err := p.Validate(); err != nil {
			e.t.Fatal(err)
		}
		if _, dup := out[p.PageID]; dup {
			e.t.Errorf("page %s published twice", p.PageID)
		}
		out[p.PageID] = p
		body := []byte(p.Body)
		if p.BodyRef != nil {
			if body, err = obj.GetBytes(ctx, p.BodyRef.Name); err != nil {
				e.t.Fatalf("page %s body %s: %v", p.PageID, p.BodyRef.Name, err)
			}
		}
		if p.Mode == events.ModeV1 {
			if err := ion.DecodeAzurePlan(bytes.NewReader(body), func(l ion.AzurePlanLine) error {
				k := [2]string{l.CustomerID, l.CostCurrency}
				sums[k] = sums[k].Add(l.Cost)
				return nil
			}); err != nil {
				e.t.Fatal(err)
			}
			continue
		}
		cols := requestColumns(e.t, p.Request)
		var hashRowsIn []ion.Row
		if _, err := ion.DecodeReportData(bytes.NewReader(body), cols, func(r ion.Row) error {
			hashRowsIn = append(hashRowsIn, r)
			k := [2]string{r.String("customer_id"), r.String("invoice_currency")}
			sums[k] = sums[k].Add(r.Decimal("seller_cost_invoice"))
			return nil
		}); err != nil {
			e.t.Fatal(err)
		}
		if h, _, _ := hashRows(cols, hashRowsIn); h != p.RowsSHA256 {
			e.t.Errorf("page %s: rows hash %s, stored body hashes to %s", p.PageID, p.RowsSHA256, h)
		}
	}
	return out, sums
}

// requestColumns reads the pinned column list back from a page's request.
func requestColumns(t *testing.T, req json.RawMessage) []ion.ReportColumn {
	var r struct {
		Specs struct {
			SelectedColumns []ion.ReportColumn `json:"selectedColumns"`
		} `json:"specs"`
	}
	if err := json.Unmarshal(req, &r); err != nil || len(r.Specs.SelectedColumns) != len(PinnedColumns) {
		t.Fatalf("page request has no pinned column list (%v): %s", err, req)
	}
	return r.Specs.SelectedColumns
}

// checkTotals compares pages, control totals and the sandbox's ground truth per customer.
func (e *env) checkTotals(acct string, c events.SyncCompleted, sums map[[2]string]decimal.Decimal) {
	e.t.Helper()
	truth := e.sim.GroundTruthFor(acct, e.period)
	if len(truth.Customers) == 0 {
		e.t.Fatal("ground truth has no customers")
	}
	control := map[[2]string]decimal.Decimal{}
	for _, ct := range c.ControlTotals {
		control[[2]string{ct.Customer, ct.Currency}] = ct.BilledCost
	}
	if len(control) != len(truth.Customers) {
		e.t.Errorf("%d control totals, ground truth has %d customers", len(control), len(truth.Customers))
	}
	total := decimal.Zero
	listed := map[string]bool{}
	for _, id := range c.Manifest.Customers {
		listed[id] = true
	}
	for _, ct := range truth.Customers {
		if !listed[ct.CustomerID] {
			e.t.Errorf("customer %s with usage is missing from the manifest", ct.CustomerID)
		}
		k := [2]string{ct.CustomerID, ct.Currency}
		if !control[k].Equal(ct.SellerCost) {
			e.t.Errorf("customer %s: control total %s, ground truth %s", ct.CustomerID, control[k], ct.SellerCost)
		}
		if !sums[k].Equal(ct.SellerCost) {
			e.t.Errorf("customer %s: raw pages add up to %s, ground truth %s", ct.CustomerID, sums[k], ct.SellerCost)
		}
		total = total.Add(sums[k])
	}
	if !total.Equal(truth.SellerCost) {
		e.t.Errorf("pages total %s, ground truth %s", total, truth.SellerCost)
	}
}

// reportPagesOnce checks the sandbox served every page (report body, customers page) once.
func (e *env) reportPagesOnce() int {
	e.t.Helper()
	n := 0
	for k, v := range e.sim.Stats().Pages {
		n++
		if v != 1 {
			e.t.Errorf("sandbox served page %q %d times", k, v)
		}
	}
	return n
}

// simOptions: daily rows, a row cap that splits every customer by entitlement and most by date
// (the control query, one row per customer, stays under it), two customers with usage that
// /customers does not list, and 429/503 faults.
func simOptions(customers, meters int) ionsim.Options {
	return ionsim.Options{Seed: 7, Customers: customers, Meters: meters,
		Variant: ionsim.Variant{Daily: true, RowsCap: max(50, customers+20), UnlistedCustomers: 2},
		Faults:  ionsim.Faults{Rate429: 0.02, Rate503: 0.02}}
}

// scenario: a month with faults and a row cap forcing splits; the fetcher is stopped once a
// third of the pages are out and a new replica finishes; then an immediate second sync.
func scenario(t *testing.T, customers, meters int) {
	start := time.Now()
	e := newEnv(t, simOptions(customers, meters), events.ModeV3, nil)
	acct := e.accts[0]
	stop := e.start(Options{Holder: "a"})
	req := e.requestSync(acct, events.ModeV3, "first")
	want := customers / 3
	bustest.Eventually(t, 5*time.Minute, func() error {
		if e.count(events.StreamSync, events.SyncCompletedSubject(acct)) > 0 {
			return nil // finished (or failed) early: the checks below say which
		}
		if n := e.count(events.StreamRaw, events.RawPageSubject(acct)); n < want {
			return errors.New("waiting for pages")
		}
		return nil
	})
	stop()
	mid := e.count(events.StreamRaw, events.RawPageSubject(acct))
	e.start(Options{Holder: "b"})
	c := e.completed(req, 10*time.Minute)
	if c.Status != events.SyncSucceeded {
		t.Fatalf("sync %s: %s", c.Status, c.Reason)
	}
	pages, sums := e.pages(acct)
	if len(pages) != len(c.Manifest.Pages) {
		t.Errorf("%d pages published, manifest lists %d", len(pages), len(c.Manifest.Pages))
	}
	for _, id := range c.Manifest.Pages {
		if _, ok := pages[id]; !ok {
			t.Errorf("manifest page %s was never published", id)
		}
	}
	if len(pages) <= customers {
		t.Errorf("%d pages for %d customers: the row cap forced no split", len(pages), customers)
	}
	if mid >= len(pages) {
		t.Errorf("stopped after %d of %d pages: not mid-sync", mid, len(pages))
	}
	e.checkTotals(acct, c, sums)
	served := e.reportPagesOnce()
	st := e.sim.Stats()
	t.Logf("first sync: %d customers, %d pages (%d before the restart), %d distinct sandbox pages, requests %v, 429s %d, 503s %d, rows %d, %s",
		customers, len(pages), mid, served, st.Requests, st.Served429, st.Served503, st.RowsServed, time.Since(start).Round(time.Millisecond))

	// An immediate second sync reads everything again and publishes nothing.
	start = time.Now()
	before := e.count(events.StreamRaw, events.RawPageSubject(acct))
	req2 := e.requestSync(acct, events.ModeV3, "second")
	c2 := e.completed(req2, 10*time.Minute)
	if c2.Status != events.SyncSucceeded {
		t.Fatalf("second sync %s: %s", c2.Status, c2.Reason)
	}
	if after := e.count(events.StreamRaw, events.RawPageSubject(acct)); after != before {
		t.Errorf("second sync published %d pages, want 0", after-before)
	}
	if strings.Join(uuidStrings(c2.Manifest.Pages), ",") != strings.Join(uuidStrings(c.Manifest.Pages), ",") {
		t.Error("second sync's manifest differs from the first's")
	}
	t.Logf("second sync: %d pages in manifest, 0 published, %s", len(c2.Manifest.Pages), time.Since(start).Round(time.Millisecond))
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

func TestSyncRestartAndResync(t *testing.T) { scenario(t, 9, 2) }

func TestIntegrationMonth100Customers(t *testing.T) {
	if testing.Short() {
		t.Skip("month-scale integration test")
	}
	scenario(t, 100, 3)
}

// TestSyncV1 fetches one azureplan report per customer; the control totals are the trees' sums.
func TestSyncV1(t *testing.T) {
	e := newEnv(t, ionsim.Options{Seed: 3, Customers: 5, Meters: 2, Faults: ionsim.Faults{Rate503: 0.05}}, events.ModeV1, nil)
	acct := e.accts[0]
	e.start(Options{})
	c := e.completed(e.requestSync(acct, events.ModeV1, "v1"), 2*time.Minute)
	if c.Status != events.SyncSucceeded {
		t.Fatalf("sync %s: %s", c.Status, c.Reason)
	}
	pages, sums := e.pages(acct)
	if len(pages) != len(c.Manifest.Customers) {
		t.Errorf("%d pages for %d customers, want one per customer", len(pages), len(c.Manifest.Customers))
	}
	e.checkTotals(acct, c, sums)
}

// TestModePinned: a period pinned to v1 refuses a v3 request with a clear reason.
func TestModePinned(t *testing.T) {
	e := newEnv(t, ionsim.Options{Seed: 3, Customers: 2, Meters: 1}, events.ModeV3, nil)
	acct := e.accts[0]
	ctx := context.Background()
	kv, err := e.deps.js.KeyValue(ctx, bus.BucketPeriods)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, acct+"."+e.period+".mode", []byte(events.ModeV1)); err != nil { // an earlier v1 sync
		t.Fatal(err)
	}
	e.start(Options{})
	req := e.requestSync(acct, events.ModeV3, "other-mode")
	dl := e.deadLetter(req.SyncID().String(), time.Minute)
	if dl.Reason != bus.ReasonPermanent || !strings.Contains(dl.Error, "pinned to source mode v1") {
		t.Errorf("dead letter reason %q error %q", dl.Reason, dl.Error)
	}
	if n := e.sim.Stats().Requests; len(n) != 0 {
		t.Errorf("a refused request called Ion: %v", n)
	}
}

func (e *env) deadLetter(originalID string, timeout time.Duration) events.DeadLetter {
	e.t.Helper()
	return e.deadLetterWhere("original id "+originalID, timeout, func(dl events.DeadLetter) bool { return dl.OriginalID == originalID })
}

func (e *env) deadLetterWhere(what string, timeout time.Duration, match func(events.DeadLetter) bool) events.DeadLetter {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for _, m := range e.read(ctx, events.StreamDLQ, "dlq.v1.fetcher.>") {
			schematest.Validate(e.t, events.TypeDeadLetter, m.Data())
			var dl events.DeadLetter
			if err := json.Unmarshal(m.Data(), &dl); err != nil {
				e.t.Fatal(err)
			}
			if match(dl) {
				cancel()
				return dl
			}
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("no dead letter with %s", what)
	return events.DeadLetter{}
}

// TestFailingIonEndsFailed: every Ion call answers 503; the sync ends failed with the reason.
func TestFailingIonEndsFailed(t *testing.T) {
	so := ionsim.Options{Seed: 3, Customers: 3, Meters: 1, Faults: ionsim.Faults{Rate503: 1}}
	e := newEnv(t, so, events.ModeV3, func(c *config.Config) { c.Ion.MaxRetries = 1 })
	acct := e.accts[0]
	e.start(Options{})
	req := e.requestSync(acct, events.ModeV3, "doomed")
	c := e.completed(req, 2*time.Minute)
	if c.Status != events.SyncFailed || !strings.Contains(c.Reason, "503") {
		t.Errorf("status %s reason %q, want failed with the 503", c.Status, c.Reason)
	}
	if len(c.Manifest.Pages) != 0 {
		t.Errorf("failed sync lists %d pages", len(c.Manifest.Pages))
	}
	dl := e.deadLetter(req.SyncID().String(), time.Minute)
	if dl.Reason != "sync-failed" || dl.Error != c.Reason {
		t.Errorf("dead letter reason %q error %q", dl.Reason, dl.Error)
	}
}

// TestBudgetSpentEndsFailed: a sync that runs out of its request budget mid-way fails.
func TestBudgetSpentEndsFailed(t *testing.T) {
	e := newEnv(t, simOptions(4, 2), events.ModeV3, nil)
	acct := e.accts[0]
	e.start(Options{RequestBudget: 12})
	c := e.completed(e.requestSync(acct, events.ModeV3, "poor"), 2*time.Minute)
	if c.Status != events.SyncFailed || !strings.Contains(c.Reason, "budget") {
		t.Errorf("status %s reason %q, want failed for the budget", c.Status, c.Reason)
	}
	if got := e.sim.Stats(); sum(got.Requests) > 12 { // token refreshes count too
		t.Errorf("sandbox saw %d requests, budget 12: %v", sum(got.Requests), got.Requests)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestTwoFetchersShareWork: two replicas on the same durables, two accounts; both work, and
// no account ever has Ion requests in flight from both at once.
func TestTwoFetchersShareWork(t *testing.T) {
	so := simOptions(6, 2)
	so.Accounts = []string{"10001", "10002"}
	e := newEnv(t, so, events.ModeV3, nil)
	w := &watch{inflight: map[string]map[string]int{}, work: map[string]int{}}
	e.start(Options{Holder: "a", HTTPClient: &http.Client{Transport: w.rt("a")}})
	e.start(Options{Holder: "b", HTTPClient: &http.Client{Transport: w.rt("b")}})
	var reqs []events.SyncRequest
	for _, a := range e.accts {
		reqs = append(reqs, e.requestSync(a, events.ModeV3, "both"))
	}
	for i, r := range reqs {
		c := e.completed(r, 5*time.Minute)
		if c.Status != events.SyncSucceeded {
			t.Fatalf("sync %s: %s", c.Status, c.Reason)
		}
		_, sums := e.pages(e.accts[i])
		e.checkTotals(e.accts[i], c, sums)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.overlap != "" {
		t.Error(w.overlap)
	}
	if w.work["a"] == 0 || w.work["b"] == 0 {
		t.Errorf("work not shared: requests by replica %v", w.work)
	}
	t.Logf("requests by replica: %v", w.work)
}

// watch records Ion requests in flight per account and replica.
type watch struct {
	mu       sync.Mutex
	inflight map[string]map[string]int // account → holder → in flight
	work     map[string]int
	overlap  string
}

func (w *watch) rt(holder string) http.RoundTripper {
	return rtFunc(func(r *http.Request) (*http.Response, error) {
		acct := ""
		if p := strings.Split(r.URL.Path, "/"); len(p) > 4 && p[3] == "accounts" {
			acct = p[4]
		}
		if acct != "" {
			w.mu.Lock()
			if w.inflight[acct] == nil {
				w.inflight[acct] = map[string]int{}
			}
			w.inflight[acct][holder]++
			w.work[holder]++
			for h, n := range w.inflight[acct] {
				if h != holder && n > 0 && w.overlap == "" {
					w.overlap = "account " + acct + ": replicas " + h + " and " + holder + " fetch at once"
				}
			}
			w.mu.Unlock()
			defer func() {
				w.mu.Lock()
				w.inflight[acct][holder]--
				w.mu.Unlock()
			}()
		}
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			// Count the body read as part of the request: drain it while still "in flight".
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(b))
			if rerr != nil {
				return nil, rerr
			}
		}
		return resp, err
	})
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
