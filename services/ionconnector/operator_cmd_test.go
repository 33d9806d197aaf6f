package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/pause"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/fetcher"
)

// opEnv is an embedded server with a loopback listener, the Ion sandbox serving two v1
// accounts, and config files naming one (cfgA) or both (cfgB) of them.
type opEnv struct {
	t          *testing.T
	sim        *ionsim.Sim
	emb        *bus.Embedded
	url        string
	period     string
	cfgA, cfgB *config.Config
	fileB      string
	logger     *slog.Logger
}

func newOpEnv(t *testing.T) *opEnv {
	t.Helper()
	sim, err := ionsim.New(ionsim.Options{Seed: 11, Customers: 2, Meters: 1, Accounts: []string{"10001", "10002"}})
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
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e := &opEnv{t: t, sim: sim, period: sim.Periods()[0], logger: slog.New(slog.DiscardHandler)}
	var yaml strings.Builder
	yaml.WriteString("ion:\n  requests_per_second: 1000\n  burst: 50\naccounts:\n")
	mk := func(ids ...string) *config.Config {
		cfg := config.Default()
		cfg.Ion.RequestsPerSecond, cfg.Ion.Burst = 1000, 50
		for _, id := range ids {
			cr := sim.CredentialsFor(id)
			a := config.Account{ID: id, Auth: config.AuthV1, IonURL: sim.BaseURL(), Currency: "EUR", ClosingDay: config.DefaultClosingDay,
				APIKeyFile: write(id+".key", cr.APIKey), APISecretFile: write(id+".secret", cr.APISecret)}
			cfg.Accounts = append(cfg.Accounts, a)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	e.cfgA, e.cfgB = mk("10001"), mk("10001", "10002")
	for _, a := range e.cfgB.Accounts {
		fmt.Fprintf(&yaml, "  - id: %q\n    auth: v1\n    ion_url: %s\n    api_key_file: %s\n    api_secret_file: %s\n    currency: EUR\n",
			a.ID, a.IonURL, a.APIKeyFile, a.APISecretFile)
	}
	e.fileB = write("config-b.yaml", yaml.String())
	// The services use what the CLI loads, defaults and all (a differing account name would
	// change every record).
	if e.cfgB, err = config.Load(e.fileB, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.emb, err = bus.StartEmbedded(ctx, bus.EmbeddedOptions{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", Logger: e.logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.emb.Shutdown(context.Background()) })
	e.url = e.emb.ClientURL()
	return e
}

// deps connects and provisions with cfg.
func (e *opEnv) deps(cfg *config.Config) service.Deps {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := e.emb.Connect(ctx, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	noHTTP := ""
	d, cleanup, err := service.Build(ctx, service.BuildOptions{Config: cfg, Logger: e.logger, Conn: nc, HTTPListen: &noHTTP})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cleanup)
	return d
}

// run runs a service until the returned stop is called (also at cleanup).
func (e *opEnv) run(d service.Deps, run service.RunFunc) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, d) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			e.t.Errorf("service stopped with %v", err)
		}
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *opEnv) cli(args ...string) cmdResult {
	e.t.Helper()
	return runCLI(e.t, map[string]string{"NATS_URL": e.url, "ION_CONNECTOR_CONFIG": e.fileB}, args...)
}

func (e *opEnv) requestSync(d service.Deps, acct, id string) events.SyncRequest {
	e.t.Helper()
	req := events.SyncRequest{RequestID: id, Account: acct, Period: e.period, Mode: events.ModeV1, Reason: "manual",
		RequestedBy: "test", RequestedAt: time.Now().UTC()}
	m, err := events.NewMessage(req.EventMeta("test"), req)
	if err != nil {
		e.t.Fatal(err)
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: d.JS})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := pub.Publish(req.NATSSubject(), m); err != nil {
		e.t.Fatal(err)
	}
	return req
}

// completions counts the stored completions of a sync.
func (e *opEnv) completions(d service.Deps, req events.SyncRequest) int {
	e.t.Helper()
	n := 0
	err := scanStream(context.Background(), d.JS, events.StreamSync, events.SyncCompletedSubject(req.Account), func(m jetstreamMsg) error {
		var c events.SyncCompleted
		if json.Unmarshal(m.Data(), &c) == nil && c.SyncID == req.SyncID() {
			if c.Status != events.SyncSucceeded {
				e.t.Errorf("sync %s: %s %s", req.RequestID, c.Status, c.Reason)
			}
			n++
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *opEnv) dlq(d service.Deps) []dlqEntry {
	e.t.Helper()
	got, err := readDLQ(context.Background(), d.JS, dlqFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

// TestDLQRedriveOnceAndPauseResume: a sync request for an account the fetcher does not know is
// dead-lettered (undecodable); dlq list finds it by its filters and no other; after the account
// is added to the config, redrive hands it to the fetcher, which completes the sync exactly
// once; a second redrive is refused. A paused account's request is parked, resume re-publishes
// it and its sync completes; status shows all of it; purge needs --yes.
func TestIntegrationDLQRedriveOnceAndPauseResume(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end operator commands")
	}
	e := newOpEnv(t)
	dA := e.deps(e.cfgA)
	stopA := e.run(dA, fetcher.Run)

	req := e.requestSync(dA, "10002", "unknown-then-known")
	bustest.Eventually(t, 30*time.Second, func() error {
		if n := len(e.dlq(dA)); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})

	r := e.cli("dlq", "list", "--json")
	var list []dlqEntry
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.code != 0 || len(list) != 1 {
		t.Fatalf("dlq list --json: exit %d, err %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	dl := list[0]
	if dl.Stage != fetcher.Name || dl.Account != "10002" || dl.Reason != bus.ReasonUndecodable ||
		dl.OriginalSubject != req.NATSSubject() || !strings.Contains(dl.Error, "not configured") {
		t.Errorf("dead letter %+v", dl)
	}
	seq := fmt.Sprint(dl.Seq)
	for _, args := range [][]string{
		{"--stage", "fetcher", "--account", "10002", "--reason", "undecodable"},
		{"--stage", "fetcher"},
		{},
	} {
		r := e.cli(append([]string{"dlq", "list"}, args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, req.NATSSubject()) || !strings.Contains(r.stdout, "1 dead letters (undecodable 1)") {
			t.Errorf("dlq list %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{
		{"--stage", "transformer"}, {"--account", "10001"}, {"--reason", "out-of-period"}, {"--reason", "permanent"},
	} {
		r := e.cli(append([]string{"dlq", "list"}, args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "no dead letters") {
			t.Errorf("dlq list %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	r = e.cli("dlq", "show", seq)
	if r.code != 0 || !strings.Contains(r.stdout, `"account": "10002"`) || !strings.Contains(r.stdout, "reason:            undecodable") {
		t.Errorf("dlq show: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{
		{"dlq", "redrive"}, {"dlq", "redrive", seq, "--stage", "fetcher"}, {"dlq", "show"}, {"dlq", "show", "x"},
		{"dlq", "nope"}, {"dlq", "list", "--account", "a.b"}, {"dlq", "purge"}, {"pause"}, {"resume", "--account", "99999"},
	} {
		if r := e.cli(args...); r.code != service.ExitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, r.code, r.stderr)
		}
	}
	if r := e.cli("dlq", "list", "--help"); r.code != 0 || !strings.Contains(r.stderr, "out-of-period") {
		t.Errorf("dlq list --help: exit %d %s", r.code, r.stderr)
	}

	// Fix the cause: the fetcher now knows the account. Redrive: handled once.
	stopA()
	dB := e.deps(e.cfgB)
	e.run(dB, fetcher.Run)
	r = e.cli("dlq", "redrive", seq)
	if r.code != 0 || !strings.Contains(r.stdout, "redriven dead letter "+seq+" → "+req.NATSSubject()) {
		t.Fatalf("dlq redrive: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bustest.Eventually(t, 60*time.Second, func() error {
		if n := e.completions(dB, req); n != 1 {
			return fmt.Errorf("%d completions", n)
		}
		return nil
	})
	r = e.cli("dlq", "redrive", seq)
	if r.code != service.ExitFailed || !strings.Contains(r.stderr, "no such dead letter") {
		t.Errorf("second redrive: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	time.Sleep(2 * time.Second) // a second handling would complete again within this
	if n := e.completions(dB, req); n != 1 {
		t.Errorf("%d completions after redrive, want exactly 1", n)
	}
	if got := e.dlq(dB); len(got) != 0 {
		t.Errorf("dead letters after redrive: %+v", got)
	}

	// Pause: a request is parked; status shows it; resume completes it.
	r = e.cli("pause", "--account", "10001", "--reason", "month end")
	if r.code != 0 || !strings.Contains(r.stdout, "account 10001 paused") {
		t.Fatalf("pause: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := e.cli("pause", "--account", "10001"); r.code != 0 || !strings.Contains(r.stdout, "already paused") {
		t.Errorf("second pause: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	held := e.requestSync(dB, "10001", "while-paused")
	kv, err := pause.Bucket(context.Background(), dB.JS)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		h, err := pause.ListHeld(context.Background(), kv, "10001")
		if err != nil || len(h) != 1 {
			return fmt.Errorf("%d parked, %v", len(h), err)
		}
		return nil
	})
	r = e.cli("status", "--json")
	var st statusReport
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(st.Accounts) != 2 || !st.Accounts[0].Paused || st.Accounts[0].Pause.Reason != "month end" || st.Accounts[1].Paused {
		t.Errorf("status accounts: %+v", st.Accounts)
	}
	if len(st.Consumers) != len(bus.DefaultConsumers()) || st.Consumers[0].Durable != "fetcher" || st.Consumers[0].Error != "" {
		t.Errorf("status consumers: %+v", st.Consumers)
	}
	if n := e.completions(dB, held); n != 0 {
		t.Errorf("a paused account's sync completed %d times", n)
	}
	r = e.cli("resume", "--account", "10001")
	if r.code != 0 || !strings.Contains(r.stdout, "1 held messages re-published") {
		t.Fatalf("resume: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bustest.Eventually(t, 60*time.Second, func() error {
		if n := e.completions(dB, held); n != 1 {
			return fmt.Errorf("%d completions", n)
		}
		return nil
	})
	r = e.cli("status")
	for _, s := range []string{"Account 10001 (v1): active", "Account 10002 (v1): active", e.period, "CONSUMER", "fetcher-tasks", "DLQ depth: 0"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("status lacks %q:\n%s%s", s, r.stdout, r.stderr)
		}
	}

	// Purge needs --yes.
	bad := events.SyncRequest{RequestID: "bad", Account: "10001", Period: "2025-13", Mode: events.ModeV1}
	m, _ := events.NewMessage(bad.EventMeta("test"), bad)
	pub, _ := bus.NewPublisher(bus.PublisherOptions{JS: dB.JS})
	if err := pub.Publish(bad.NATSSubject(), m); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, func() error {
		if n := len(e.dlq(dB)); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	if r := e.cli("dlq", "purge", "--stage", "fetcher"); r.code != service.ExitUsage || !strings.Contains(r.stderr, "would delete 1") {
		t.Errorf("purge without --yes: exit %d\n%s", r.code, r.stderr)
	}
	if r := e.cli("dlq", "purge", "--stage", "fetcher", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "purged 1") {
		t.Errorf("purge: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := e.dlq(dB); len(got) != 0 {
		t.Errorf("dead letters after purge: %d", len(got))
	}
}
