// Package scheduler publishes sync requests on per-account schedules.
//
// Each account has jobs: its configured cron schedules (each slot re-reads every open period),
// or by default "@daily"; and always a weekly re-read of the periods closed less than three
// months ago ("closed-periods@weekly"), because Microsoft restates late.
//
// Several replicas may run. Per job the latest slot that fired is kept in the KV bucket
// "periods"; a tick compares it with the latest slot due, so a slot missed during downtime is
// caught up once (only the latest one), not once per missed tick. The replica that creates the
// slot's record in the "leases" bucket (KV Create) publishes; the request ids
// ("sched:<schedule>:<slot RFC3339>") and therefore the event ids are deterministic, so even a
// replica that takes over an expired claim is deduplicated by JetStream.
package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/cron"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/pause"
	"github.com/ionusage/connector/pkg/service"
)

// Name is the service name.
const Name = "scheduler"

// Default jobs.
const (
	// DefaultOpenSchedule re-reads the open periods when an account configures no schedule.
	DefaultOpenSchedule = "@daily"
	// ClosedSchedule re-reads the periods closed less than ClosedReReadMonths ago.
	ClosedSchedule = "@weekly"
	// ClosedReReadMonths is how long after closing a period is still re-read.
	ClosedReReadMonths = 3
	closedJobPrefix    = "closed-periods"
)

// RequestID is the request id of a scheduled sync: one per schedule and slot.
func RequestID(schedule string, slot time.Time) string {
	return "sched:" + schedule + ":" + slot.UTC().Format(time.RFC3339)
}

// Job is one schedule of an account.
type Job struct {
	Name   string // the schedule as it appears in request ids
	Closed bool   // re-reads closed periods instead of open ones
	sched  cron.Schedule
}

// Periods returns the periods a slot of the job at slot re-reads.
func (j Job) Periods(slot time.Time, closingDay int) []string {
	if j.Closed {
		return ClosedPeriods(slot, closingDay)
	}
	return OpenPeriods(slot, closingDay)
}

// Jobs returns an account's jobs.
func Jobs(a config.Account) ([]Job, error) {
	var jobs []Job
	exprs := a.Schedules
	if len(exprs) == 0 {
		exprs = []string{DefaultOpenSchedule}
	}
	for _, e := range exprs {
		s, err := cron.Parse(e)
		if err != nil {
			return nil, fmt.Errorf("account %s: schedule %q: %w", a.ID, e, err)
		}
		jobs = append(jobs, Job{Name: s.String(), sched: s})
	}
	s, err := cron.Parse(ClosedSchedule)
	if err != nil {
		return nil, err
	}
	return append(jobs, Job{Name: closedJobPrefix + ClosedSchedule, Closed: true, sched: s}), nil
}

func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// OpenPeriods returns the periods open at t, newest first: the current month and, before the
// closing day, the previous one.
func OpenPeriods(t time.Time, closingDay int) []string {
	cur := monthOf(t)
	out := []string{events.PeriodOf(cur)}
	if prev := cur.AddDate(0, -1, 0); t.Before(events.PeriodCloses(prev, closingDay)) {
		out = append(out, events.PeriodOf(prev))
	}
	return out
}

// ClosedPeriods returns the periods closed at t for less than ClosedReReadMonths, newest first.
func ClosedPeriods(t time.Time, closingDay int) []string {
	var out []string
	cur := monthOf(t)
	for k := 1; k <= ClosedReReadMonths+1; k++ {
		p := cur.AddDate(0, -k, 0)
		c := events.PeriodCloses(p, closingDay)
		if !t.Before(c) && t.Before(c.AddDate(0, ClosedReReadMonths, 0)) {
			out = append(out, events.PeriodOf(p))
		}
	}
	return out
}

// Options configure a Scheduler beyond its Deps.
type Options struct {
	// Replica names this instance in logs and slot claims; default hostname and a random suffix.
	Replica string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Scheduler publishes the sync requests of every configured account.
type Scheduler struct {
	deps    service.Deps
	opts    Options
	pub     *bus.Publisher
	state   jetstream.KeyValue // "periods": last fired slot per job, pause keys
	claims  jetstream.KeyValue // "leases": one record per slot, first creator publishes
	jobs    map[string][]Job
	log     *slog.Logger
	account []config.Account
}

// New prepares a scheduler; the KV buckets must be provisioned.
func New(ctx context.Context, deps service.Deps, o Options) (*Scheduler, error) {
	if err := deps.Validate(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Replica == "" {
		host, _ := os.Hostname()
		o.Replica = host + "-" + uuid.NewString()[:8]
	}
	s := &Scheduler{deps: deps, opts: o, jobs: map[string][]Job{}, account: deps.Config.Accounts,
		log: deps.Logger.With("replica", o.Replica)}
	var err error
	if s.pub, err = bus.NewPublisher(bus.PublisherOptions{JS: deps.JS, Logger: deps.Logger}); err != nil {
		return nil, err
	}
	if s.state, err = deps.JS.KeyValue(ctx, bus.BucketPeriods); err != nil {
		return nil, fmt.Errorf("scheduler: KV %s: %w", bus.BucketPeriods, err)
	}
	if s.claims, err = deps.JS.KeyValue(ctx, bus.BucketLeases); err != nil {
		return nil, fmt.Errorf("scheduler: KV %s: %w", bus.BucketLeases, err)
	}
	for _, a := range s.account {
		if s.jobs[a.ID], err = Jobs(a); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Run publishes scheduled sync requests until ctx ends.
func Run(ctx context.Context, deps service.Deps) error {
	s, err := New(ctx, deps, Options{})
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run ticks once a minute (just after the minute turns; slots are whole minutes) until ctx ends.
// A failed tick is logged and retried on the next one.
func (s *Scheduler) Run(ctx context.Context) error {
	s.log.Info("scheduler running", "accounts", len(s.account))
	for {
		if _, err := s.Tick(ctx, s.opts.Now()); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("scheduler tick", "err", err)
		}
		now := s.opts.Now()
		wait := now.Truncate(time.Minute).Add(time.Minute + time.Second).Sub(now)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// jobState is the value of a job's record in "periods".
type jobState struct {
	Schedule string    `json:"schedule"`
	LastSlot time.Time `json:"last_slot"`
}

// slotClaim is the value of a slot's record in "leases".
type slotClaim struct {
	Replica string    `json:"replica"`
	At      time.Time `json:"at"`
}

func jobKey(account string, j Job) string {
	h := sha256.Sum256([]byte(j.Name))
	return "sched." + account + "." + hex.EncodeToString(h[:8])
}

// Tick publishes what is due at now and returns the number of requests this replica published.
// Per job: with no record yet, the latest slot due becomes the baseline and nothing is
// published (a new deployment or account waits for its next slot); if the latest slot due is
// after the recorded one, that slot fires once, whatever was missed before it.
func (s *Scheduler) Tick(ctx context.Context, now time.Time) (int, error) {
	published := 0
	var errs []error
	for _, a := range s.account {
		paused, err := s.paused(ctx, a.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if paused {
			s.log.Debug("account paused: schedules held", "account", a.ID)
			continue
		}
		for _, j := range s.jobs[a.ID] {
			n, err := s.tickJob(ctx, a, j, now)
			published += n
			if err != nil {
				errs = append(errs, fmt.Errorf("account %s schedule %q: %w", a.ID, j.Name, err))
			}
		}
	}
	return published, errors.Join(errs...)
}

// paused reads the account's pause flag (pkg/pause: key "paused.<account>" in "periods").
// While it is set nothing is published and no slot advances, so the latest slot missed while
// paused fires once on resume.
func (s *Scheduler) paused(ctx context.Context, account string) (bool, error) {
	_, paused, err := pause.Get(ctx, s.state, account)
	return paused, err
}

func (s *Scheduler) tickJob(ctx context.Context, a config.Account, j Job, now time.Time) (int, error) {
	due, ok := j.sched.Prev(now)
	if !ok {
		return 0, nil
	}
	key := jobKey(a.ID, j)
	entry, err := s.state.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		b, _ := json.Marshal(jobState{Schedule: j.Name, LastSlot: due})
		if _, err := s.state.Create(ctx, key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, err
		}
		s.log.Info("schedule baseline", "account", a.ID, "schedule", j.Name, "slot", due)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var st jobState
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		return 0, fmt.Errorf("record %s: %w", key, err)
	}
	if !due.After(st.LastSlot) {
		return 0, nil
	}
	// Claim the slot: only the replica that creates its record publishes. The claim expires with
	// the bucket's TTL, so if its holder dies before recording the slot, another replica retries.
	claim, _ := json.Marshal(slotClaim{Replica: s.opts.Replica, At: now})
	if _, err := s.claims.Create(ctx, key+"."+strconv.FormatInt(due.Unix(), 10), claim); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil
		}
		return 0, fmt.Errorf("claim slot: %w", err)
	}
	n := 0
	for _, p := range j.Periods(due, a.ClosingDay) {
		req := events.SyncRequest{
			RequestID: RequestID(j.Name, due), Account: a.ID, Period: p, Mode: modeOf(a),
			Reason: "scheduled", RequestedBy: "scheduler/" + s.opts.Replica, RequestedAt: now.UTC(),
		}
		msg, err := events.NewMessage(req.EventMeta(Name), req)
		if err != nil {
			return n, err
		}
		if err := s.pub.PublishCtx(ctx, req.NATSSubject(), msg); err != nil {
			return n, fmt.Errorf("publish %s: %w", p, err)
		}
		n++
	}
	if missed := countSlots(j, st.LastSlot, due); missed > 1 {
		s.log.Info("caught up a missed schedule once", "account", a.ID, "schedule", j.Name, "slot", due, "slots_missed", missed-1)
	}
	s.log.Info("scheduled sync requested", "account", a.ID, "schedule", j.Name, "slot", due, "requests", n)
	st.LastSlot = due
	b, _ := json.Marshal(st)
	if _, err := s.state.Update(ctx, key, b, entry.Revision()); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return n, fmt.Errorf("record slot: %w", err)
	}
	return n, nil
}

// countSlots counts the slots in (after, upTo], stopping at 1000.
func countSlots(j Job, after, upTo time.Time) int {
	n := 0
	for t, ok := j.sched.Next(after); ok && !t.After(upTo) && n < 1000; t, ok = j.sched.Next(t) {
		n++
	}
	return n
}

func modeOf(a config.Account) string {
	if a.Auth == config.AuthV1 {
		return events.ModeV1
	}
	return events.ModeV3
}
