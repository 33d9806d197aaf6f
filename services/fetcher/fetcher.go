// Package fetcher turns sync requests into durable raw Ion pages (DESIGN.md "Ion source").
//
// A sync request is planned (customers, control query, one task per customer) and acknowledged
// once the plan is in KV; the work then runs as short fetch tasks on ion.sync.v1.task.<account>,
// each one Ion request. A truncated answer is split into child tasks; a complete one becomes a
// raw page. The plan record in KV is the checkpoint: a finished task is never fetched again.
package fetcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/ion"
	"github.com/ionusage/connector/pkg/service"
)

// Name is the stage name: router, durable consumer and dead-letter subject token.
const Name = "fetcher"

// Durables and subjects the fetcher consumes (provisioned by bus.Provision).
const (
	durableRequests = "fetcher"
	durableTasks    = "fetcher-tasks"
	filterRequests  = "ion.sync.v1.requested.>"
	filterTasks     = "ion.sync.v1.task.>"
	typeTask        = "ion.sync.v1.task" // internal work item, never leaves the fetcher
	source          = "ionconnector/fetcher"
)

// Options tune a Service; zero values take the defaults.
type Options struct {
	// Holder names this replica in leases; default a random id.
	Holder string
	// InlineMax is the largest body carried inline in a raw page; larger ones go to the
	// object store. Default 32 KiB, well below the 1 MB message limit after JSON escaping.
	InlineMax int
	// RequestBudget is the most Ion HTTP requests (retries included) one sync may spend.
	// Default 20000.
	RequestBudget int
	// TaskTimeout bounds one task's Ion work, retries included. Default 90s; AckWait is kept
	// alive with InProgress meanwhile.
	TaskTimeout time.Duration
	// LeaseTTL is how long an account-period lease lives if its holder dies; it must outlast
	// TaskTimeout (so a slow holder never loses it) and the leases bucket's TTL (2 minutes)
	// bounds it. Default TaskTimeout + 10s.
	LeaseTTL time.Duration
	// MaxDeliver is the router's MaxDeliver: on the failure of that delivery a task message is
	// dead-lettered, so its task is marked failed in the plan first and its sync completes as
	// failed. Default bus.DefaultRouterMaxDeliver; it must stay below the consumers' own
	// MaxDeliver (bus.DefaultMaxDeliver).
	MaxDeliver int
	// HTTPClient is used for Ion; default http.DefaultClient's transport.
	HTTPClient *http.Client
	Now        func() time.Time
}

func (o *Options) setDefaults() {
	if o.Holder == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.Holder = "fetcher-" + hex.EncodeToString(b[:])
	}
	if o.InlineMax == 0 {
		o.InlineMax = 32 << 10
	}
	if o.RequestBudget == 0 {
		o.RequestBudget = 20000
	}
	if o.TaskTimeout == 0 {
		o.TaskTimeout = 90 * time.Second
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = o.TaskTimeout + 10*time.Second
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = bus.DefaultRouterMaxDeliver
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Service is one fetcher replica.
type Service struct {
	deps    service.Deps
	opts    Options
	log     *slog.Logger
	state   jetstream.KeyValue // fetch_state: plans, page hashes
	leases  jetstream.KeyValue
	periods jetstream.KeyValue
	tokens  jetstream.KeyValue
	bodies  jetstream.ObjectStore
	pub     *bus.Publisher
	http    *http.Client

	mu      sync.Mutex
	clients map[string]*ion.Client

	// dry is set by Collect (collect.go): pages and events go to it; nothing is stored or published.
	dry *collector
}

// New opens the buckets the fetcher needs; they are provisioned by bus.Provision.
func New(ctx context.Context, deps service.Deps, opts Options) (*Service, error) {
	if err := deps.Validate(); err != nil {
		return nil, err
	}
	if opts.InlineMax < 0 || opts.RequestBudget < 0 || opts.LeaseTTL < 0 || opts.TaskTimeout < 0 || opts.MaxDeliver < 0 {
		return nil, errors.New("fetcher: options must not be negative")
	}
	opts.setDefaults()
	if opts.LeaseTTL <= opts.TaskTimeout || opts.LeaseTTL > bus.LeaseTTL {
		return nil, fmt.Errorf("fetcher: LeaseTTL %s must exceed TaskTimeout %s and stay within the leases bucket TTL %s", opts.LeaseTTL, opts.TaskTimeout, bus.LeaseTTL)
	}
	s := &Service{deps: deps, opts: opts, log: deps.Logger.With("holder", opts.Holder), clients: map[string]*ion.Client{}}
	var err error
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{{bus.BucketFetchState, &s.state}, {bus.BucketLeases, &s.leases}, {bus.BucketPeriods, &s.periods}, {bus.BucketTokens, &s.tokens}} {
		if *b.kv, err = deps.JS.KeyValue(ctx, b.name); err != nil {
			return nil, fmt.Errorf("fetcher: KV bucket %s: %w", b.name, err)
		}
	}
	if s.bodies, err = deps.JS.ObjectStore(ctx, bus.ObjectRawBodies); err != nil {
		return nil, fmt.Errorf("fetcher: object store %s: %w", bus.ObjectRawBodies, err)
	}
	if s.pub, err = bus.NewPublisher(bus.PublisherOptions{JS: deps.JS, Logger: deps.Logger}); err != nil {
		return nil, err
	}
	// Every Ion request passes the budget counter carried in its context.
	s.http = &http.Client{Transport: budgetTransport{next: transportOf(opts.HTTPClient)}, Timeout: opts.HTTPClient.Timeout}
	return s, nil
}

// Run consumes sync requests and fetch tasks until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	st, err := service.NewStageWith(s.deps, Name, func(o *bus.RouterOptions) { o.MaxDeliver = s.opts.MaxDeliver })
	if err != nil {
		return err
	}
	if err := st.Consume(events.StreamSync, durableRequests, filterRequests, s.syncRequested); err != nil {
		return err
	}
	gate, err := s.transformerBacklog()
	if err != nil {
		return err
	}
	// Only fetch tasks wait: a sync request is acknowledged once its plan is stored, and its
	// tasks are what produce pages.
	if err := st.ConsumeGated(events.StreamSync, durableTasks, filterTasks, gate, s.runTask); err != nil {
		return err
	}
	return st.Run(ctx)
}

// transformerBacklog is the fetcher's backpressure: start no new fetch task while more than
// fetcher.max_backlog raw pages wait for the transformer, so the transformer reads pages and
// their bodies from the server's cache rather than old compressed blocks (bus.Backlog; nil
// when off).
func (s *Service) transformerBacklog() (func(context.Context) error, error) {
	n := s.deps.Config.Fetcher.MaxBacklog
	if n == config.BacklogOff {
		return nil, nil
	}
	b, err := bus.NewBacklog(bus.BacklogOptions{
		JS: s.deps.JS, Stream: events.StreamRaw, Durable: transformerDurable, Max: n, Refresh: backlogRefresh, Logger: s.deps.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("fetcher: %w", err)
	}
	return b.Wait, nil
}

// backlogRefresh is how old the transformer's backlog may be (0: bus.DefaultBacklogRefresh).
// Tests shorten it: the sandbox's tasks all pass within one default refresh.
var backlogRefresh time.Duration

// transformerDurable is the transformer's durable on ION_RAW (bus.DefaultConsumers).
const transformerDurable = "transformer"

// Run is the service entry point shared by the standalone binary and ionconnector.
func Run(ctx context.Context, deps service.Deps) error {
	s, err := New(ctx, deps, Options{})
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// client returns the account's Ion client, built once: one rate limiter per account.
func (s *Service) client(ctx context.Context, acct string) (*ion.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[acct]; ok {
		return c, nil
	}
	a, ok := s.deps.Config.Account(acct)
	if !ok {
		return nil, fmt.Errorf("account %q is not configured", acct)
	}
	c, err := NewIonClient(IonClientOptions{
		Config: s.deps.Config, Account: a, Tokens: s.tokens, Holder: s.opts.Holder,
		HTTPClient: s.http, Logger: s.deps.Logger,
	})
	if err != nil {
		return nil, err
	}
	s.clients[acct] = c
	return c, nil
}
