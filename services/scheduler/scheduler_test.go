package scheduler

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/pause"
	"github.com/ionusage/connector/pkg/service"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestDefaultPeriods: the periods each default job re-reads around the closing day (a fake
// clock: the slot time is all the computation sees).
func TestDefaultPeriods(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		now          string
		closingDay   int
		open, closed []string
	}{
		// before the closing day: last month is still open
		{"2025-05-09T23:59:00Z", 10, []string{"2025-05", "2025-04"}, []string{"2025-03", "2025-02", "2025-01"}},
		// on the closing day at 00:00 it closes
		{"2025-05-10T00:00:00Z", 10, []string{"2025-05"}, []string{"2025-04", "2025-03", "2025-02"}},
		{"2025-05-31T12:00:00Z", 10, []string{"2025-05"}, []string{"2025-04", "2025-03", "2025-02"}},
		// first of the month: the month just begun and the one that just ended
		{"2025-06-01T00:00:00Z", 10, []string{"2025-06", "2025-05"}, []string{"2025-04", "2025-03", "2025-02"}},
		// across the year boundary
		{"2026-01-03T00:00:00Z", 5, []string{"2026-01", "2025-12"}, []string{"2025-11", "2025-10", "2025-09"}},
		{"2026-01-05T00:00:00Z", 5, []string{"2026-01"}, []string{"2025-12", "2025-11", "2025-10"}},
		// closing day 1: the previous month is never open after midnight of the 1st
		{"2025-03-01T00:00:00Z", 1, []string{"2025-03"}, []string{"2025-02", "2025-01", "2024-12"}},
		{"2025-03-20T00:00:00Z", 28, []string{"2025-03", "2025-02"}, []string{"2025-01", "2024-12", "2024-11"}},
	} {
		now := at(tc.now)
		if got := OpenPeriods(now, tc.closingDay); !slices.Equal(got, tc.open) {
			t.Errorf("OpenPeriods(%s, %d) = %v, want %v", tc.now, tc.closingDay, got, tc.open)
		}
		if got := ClosedPeriods(now, tc.closingDay); !slices.Equal(got, tc.closed) {
			t.Errorf("ClosedPeriods(%s, %d) = %v, want %v", tc.now, tc.closingDay, got, tc.closed)
		}
	}
	// The default jobs of an account without schedules: daily open, weekly closed.
	jobs, err := Jobs(config.Account{ID: "a", ClosingDay: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Name != "@daily" || jobs[0].Closed || jobs[1].Name != "closed-periods@weekly" || !jobs[1].Closed {
		t.Fatalf("default jobs: %+v", jobs)
	}
	jobs, _ = Jobs(config.Account{ID: "a", ClosingDay: 10, Schedules: []string{"0 */6 * * *"}})
	if len(jobs) != 2 || jobs[0].Name != "0 */6 * * *" || !jobs[1].Closed {
		t.Fatalf("configured jobs: %+v", jobs)
	}
}

const acct = "10001"

// env is one embedded nats-server with the topology provisioned.
type env struct {
	url string
	cfg *config.Config
	js  jetstream.JetStream
}

func newEnv(t *testing.T, schedules ...string) *env {
	t.Helper()
	s, nc := bustest.StartServer(t)
	cfg := config.Default()
	cfg.Accounts = []config.Account{{ID: acct, Auth: config.AuthV1, Currency: "EUR", ClosingDay: 10, Schedules: schedules}}
	deps, cleanup, err := service.Build(context.Background(), service.BuildOptions{Config: cfg, Logger: slog.New(slog.DiscardHandler), Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return &env{url: s.ClientURL(), cfg: cfg, js: deps.JS}
}

// replica starts a scheduler on its own connection, as a separate process would have.
func (e *env) replica(t *testing.T, name string) *Scheduler {
	t.Helper()
	nc, err := nats.Connect(e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), service.Deps{Config: e.cfg, Logger: slog.New(slog.DiscardHandler), Conn: nc, JS: js},
		Options{Replica: name})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// requests reads every sync request stored for the account.
func (e *env) requests(t *testing.T) []events.SyncRequest {
	t.Helper()
	ctx := context.Background()
	cons, err := e.js.OrderedConsumer(ctx, events.StreamSync, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SyncRequestedSubject(acct)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []events.SyncRequest
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var r events.SyncRequest
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Fatal(err)
			}
			if m.Headers().Get(events.HeaderID) != r.SyncID().String() {
				t.Fatalf("ce-id %s is not the request's sync id %s", m.Headers().Get(events.HeaderID), r.SyncID())
			}
			out = append(out, r)
		}
		if n == 0 {
			return out
		}
	}
}

func keysOf(reqs []events.SyncRequest) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.RequestID+" "+r.Period+" "+r.Mode)
	}
	sort.Strings(out)
	return out
}

// TestIntegrationThreeReplicasOneRequestPerSlot: three scheduler instances ticking concurrently
// over the same slots publish exactly one request per slot and period.
func TestIntegrationThreeReplicasOneRequestPerSlot(t *testing.T) {
	if testing.Short() {
		t.Skip("embedded NATS")
	}
	e := newEnv(t, "0 */6 * * *")
	reps := []*Scheduler{e.replica(t, "r1"), e.replica(t, "r2"), e.replica(t, "r3")}
	ctx := context.Background()
	tickAll := func(now time.Time) int {
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0
		for _, r := range reps {
			wg.Go(func() {
				for range 3 { // each replica ticks several times per minute, as after a restart
					n, err := r.Tick(ctx, now)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					total += n
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return total
	}
	// 2025-05-08 is a Thursday; no Sunday in the window, so only the 6-hourly job fires.
	if n := tickAll(at("2025-05-08T05:00:00Z")); n != 0 {
		t.Fatalf("baseline tick published %d", n)
	}
	var want []string
	for _, tc := range []struct {
		now  string
		slot string // "" when nothing is due
	}{
		{"2025-05-08T06:00:30Z", "2025-05-08T06:00:00Z"},
		{"2025-05-08T06:01:00Z", ""}, // the same slot again
		{"2025-05-08T12:00:00Z", "2025-05-08T12:00:00Z"},
		{"2025-05-08T18:00:10Z", "2025-05-08T18:00:00Z"},
	} {
		wantN := 0
		if tc.slot != "" {
			wantN = 2 // two open periods before the closing day
			for _, p := range []string{"2025-05", "2025-04"} {
				want = append(want, RequestID("0 */6 * * *", at(tc.slot))+" "+p+" v1")
			}
		}
		if n := tickAll(at(tc.now)); n != wantN {
			t.Fatalf("tick at %s: the replicas together published %d, want %d", tc.now, n, wantN)
		}
	}
	sort.Strings(want)
	if got := keysOf(e.requests(t)); !slices.Equal(got, want) {
		t.Fatalf("stored requests:\n%v\nwant\n%v", got, want)
	}
}

// TestIntegrationCatchUpOnce: after downtime spanning many slots, the latest missed slot is
// published once; further ticks publish nothing until the next slot. A paused account publishes
// nothing and catches up once on resume.
func TestIntegrationCatchUpOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("embedded NATS")
	}
	e := newEnv(t, "@hourly")
	ctx := context.Background()
	s := e.replica(t, "r1")
	if n, err := s.Tick(ctx, at("2025-05-14T10:30:00Z")); err != nil || n != 0 {
		t.Fatalf("baseline: %d %v", n, err)
	}
	// Down for 30 hours; a new process (another replica name) starts. The weekly closed job's
	// Sunday 2025-05-18 is not inside the window.
	s2 := e.replica(t, "r2")
	for i := range 3 {
		n, err := s2.Tick(ctx, at("2025-05-15T16:42:00Z").Add(time.Duration(i)*10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[int]int{0: 1}[i]; n != want {
			t.Fatalf("catch-up tick %d published %d, want %d", i, n, want)
		}
	}
	want := []string{RequestID("@hourly", at("2025-05-15T16:00:00Z")) + " 2025-05 v1"}
	if got := keysOf(e.requests(t)); !slices.Equal(got, want) {
		t.Fatalf("after catch-up: %v, want %v", got, want)
	}

	// Paused across two slots: nothing; resumed: the latest of them once.
	kv, err := pause.Bucket(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pause.Pause(ctx, kv, acct, pause.Info{By: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, now := range []string{"2025-05-15T17:00:00Z", "2025-05-15T18:00:00Z"} {
		if n, err := s2.Tick(ctx, at(now)); err != nil || n != 0 {
			t.Fatalf("paused tick at %s: %d %v", now, n, err)
		}
	}
	if err := kv.Delete(ctx, pause.Key(acct)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Tick(ctx, at("2025-05-15T18:20:00Z")); err != nil || n != 1 {
		t.Fatalf("resumed tick: %d %v, want 1", n, err)
	}
	want = append(want, RequestID("@hourly", at("2025-05-15T18:00:00Z"))+" 2025-05 v1")
	sort.Strings(want)
	if got := keysOf(e.requests(t)); !slices.Equal(got, want) {
		t.Fatalf("after resume: %v, want %v", got, want)
	}
}
