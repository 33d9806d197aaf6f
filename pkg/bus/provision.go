package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ionusage/connector/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// KV buckets and the object store (DESIGN.md "Delivery semantics", "Ion source").
const (
	BucketTokens     = "ion_tokens"     // encrypted v3 refresh tokens, a few revisions kept for recovery
	BucketFetchState = "fetch_state"    // sync plans, checkpoints, page key → canonical hash
	BucketLeases     = "leases"         // token-refresh and sync leases; expire if the holder dies
	BucketLedger     = "ledger"         // delivery ledger, updated by compare-and-set
	BucketPeriods    = "periods"        // period state: pinned source mode, closed flag
	BucketSummaries  = "summaries"      // the transformer's page summaries, the reconciler's index of them
	ObjectRawBodies  = "ion_raw_bodies" // raw Ion bodies larger than a message, named by SHA-256
)

// Topology defaults.
const (
	DefaultMaxAge          = 4464 * time.Hour // 186 days: config.DefaultMaxAge
	DefaultRawMaxAge       = 9600 * time.Hour // 400 days
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultAckWait         = 30 * time.Second
	DefaultMaxDeliver      = 10
	LeaseTTL               = 2 * time.Minute

	// MinRawMaxAge is 13 months at their longest (8×31 + 4×30 + 29 days): ION_RAW is the audit log
	// that lets operators re-run a period without calling Ion again.
	MinRawMaxAge = 397 * 24 * time.Hour
)

// Topology is everything Provision creates: streams, durable consumers, KV and object buckets.
type Topology struct {
	Replicas        int           // 1 or 3 (any 1..5 the cluster can hold); default 1
	MaxAge          time.Duration // every stream but ION_RAW; default DefaultMaxAge
	RawMaxAge       time.Duration // ION_RAW and the raw-body object store; default DefaultRawMaxAge
	DuplicateWindow time.Duration // Nats-Msg-Id dedup window; default 10m, must be <= MaxAge
	MaxMsgSize      int32         // per stream; 0 = the server's max_payload
	Consumers       []ConsumerSpec
	Logger          *slog.Logger
}

// ConsumerSpec is one pull durable. There is no BackOff: the subscriber delays NAKs itself,
// because the server applies BackOff only to AckWait expiry.
type ConsumerSpec struct {
	Stream         string
	Durable        string
	FilterSubjects []string
	Workers        int           // MaxAckPending: the server never hands out more than we can work on
	AckWait        time.Duration // default DefaultAckWait
	MaxDeliver     int           // default DefaultMaxDeliver; -1 = unlimited
}

// DefaultConsumers are the pipeline's durables (DESIGN.md "Flow").
func DefaultConsumers() []ConsumerSpec {
	return []ConsumerSpec{
		{Stream: events.StreamSync, Durable: "fetcher", FilterSubjects: []string{"ion.sync.v1.requested.>"}},
		{Stream: events.StreamSync, Durable: "fetcher-tasks", FilterSubjects: []string{"ion.sync.v1.task.>"}},
		{Stream: events.StreamRaw, Durable: "transformer", FilterSubjects: []string{"ion.raw.v1.page.>"}},
		// Unlimited: the publisher has no router to dead-letter a record on its last delivery, so
		// a server-side MaxDeliver would silently stop redelivering records during a sink outage
		// of a few minutes (the ledger makes every redelivery safe).
		{Stream: events.StreamUsage, Durable: "publisher", FilterSubjects: []string{"usage.v1.record.>"}, MaxDeliver: -1},
		{Stream: events.StreamSync, Durable: "reconciler", FilterSubjects: []string{"ion.sync.v1.completed.>"}},
	}
}

// Defaults fills zero fields. A nil Consumers means DefaultConsumers(); an empty, non-nil slice
// means none.
func (t *Topology) Defaults() {
	if t.Replicas == 0 {
		t.Replicas = 1
	}
	if t.MaxAge == 0 {
		t.MaxAge = DefaultMaxAge
	}
	if t.RawMaxAge == 0 {
		t.RawMaxAge = DefaultRawMaxAge
	}
	if t.DuplicateWindow == 0 {
		t.DuplicateWindow = DefaultDuplicateWindow
	}
	if t.Consumers == nil {
		t.Consumers = DefaultConsumers()
	}
	if t.Logger == nil {
		t.Logger = slog.Default()
	}
	for i := range t.Consumers {
		c := &t.Consumers[i]
		if c.Workers == 0 {
			c.Workers = 1
		}
		if c.AckWait == 0 {
			c.AckWait = DefaultAckWait
		}
		if c.MaxDeliver == 0 {
			c.MaxDeliver = DefaultMaxDeliver
		}
	}
}

// Validate reports every problem at once. Call it after Defaults.
func (t Topology) Validate() error {
	var errs []error
	if t.Replicas < 1 || t.Replicas > 5 {
		errs = append(errs, fmt.Errorf("topology: replicas %d, want 1..5 (1 or 3 in practice)", t.Replicas))
	}
	if t.MaxAge < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("topology: max age %s is too short", t.MaxAge))
	}
	if t.RawMaxAge < MinRawMaxAge {
		errs = append(errs, fmt.Errorf("topology: raw max age %s is below 13 months (%s); ION_RAW is the audit log", t.RawMaxAge, MinRawMaxAge))
	}
	if t.DuplicateWindow <= 0 || t.DuplicateWindow > t.MaxAge {
		errs = append(errs, fmt.Errorf("topology: duplicate window %s must be positive and at most max age %s", t.DuplicateWindow, t.MaxAge))
	}
	if t.MaxMsgSize < 0 {
		errs = append(errs, fmt.Errorf("topology: max message size %d is negative", t.MaxMsgSize))
	}
	seen := map[string]bool{}
	for _, c := range t.Consumers {
		if err := c.validate(); err != nil {
			errs = append(errs, err)
		}
		key := c.Stream + "/" + c.Durable
		if seen[key] {
			errs = append(errs, fmt.Errorf("topology: consumer %s listed twice", key))
		}
		seen[key] = true
	}
	return errors.Join(errs...)
}

func (c ConsumerSpec) validate() error {
	name := c.Stream + "/" + c.Durable
	streamSubject, ok := events.StreamSubjects[c.Stream]
	var errs []error
	if !ok {
		errs = append(errs, fmt.Errorf("consumer %s: unknown stream %q", name, c.Stream))
	}
	if c.Durable == "" || strings.ContainsAny(c.Durable, ".*> \t\n") {
		errs = append(errs, fmt.Errorf("consumer %s: durable name %q is empty or has . * > or whitespace", name, c.Durable))
	}
	if len(c.FilterSubjects) == 0 {
		errs = append(errs, fmt.Errorf("consumer %s: no filter subjects", name))
	}
	for _, f := range c.FilterSubjects {
		if ok && !strings.HasPrefix(f, strings.TrimSuffix(streamSubject, ">")) {
			errs = append(errs, fmt.Errorf("consumer %s: filter %q is outside stream subjects %q", name, f, streamSubject))
		}
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("consumer %s: workers %d, want >= 1", name, c.Workers))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("consumer %s: ack wait %s, want >= 1s", name, c.AckWait))
	}
	if c.MaxDeliver < 1 && c.MaxDeliver != -1 {
		errs = append(errs, fmt.Errorf("consumer %s: max deliver %d, want >= 1 or -1", name, c.MaxDeliver))
	}
	return errors.Join(errs...)
}

// UsageDuplicateWindow caps USAGE's duplicate window. The server keeps every message id of the
// window in memory, and USAGE has one message per record, so its map is the one that grows with
// volume (rate × window: about 80 bytes and two heap objects an id, which every GC cycle scans).
// Its duplicates come from a page transformed again while its delivery is retried (in-process
// retries take at most 25.5s) or redriven twice at once; anything later the ledger ignores, as it
// ignores every revision it holds (the window is a first line only, DESIGN.md "Delivery
// semantics"). One minute cost 5M bench runs 16 % of their throughput (docs/performance.md).
const UsageDuplicateWindow = 30 * time.Second

// StreamConfigs returns the five pipeline streams as Provision creates them.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	names := make([]string, 0, len(events.StreamSubjects))
	for name := range events.StreamSubjects {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]jetstream.StreamConfig, 0, len(names))
	for _, name := range names {
		maxAge := t.MaxAge
		if name == events.StreamRaw {
			maxAge = t.RawMaxAge
		}
		dup := t.DuplicateWindow
		if name == events.StreamUsage {
			dup = min(dup, UsageDuplicateWindow)
		}
		cfg := jetstream.StreamConfig{
			Name:        name,
			Subjects:    []string{events.StreamSubjects[name]},
			Retention:   jetstream.LimitsPolicy, // a replayable log, never deleted on ack
			Storage:     jetstream.FileStorage,
			Compression: jetstream.S2Compression,
			Discard:     jetstream.DiscardOld,
			MaxAge:      maxAge,
			Duplicates:  dup,
			Replicas:    t.Replicas,
			MaxMsgs:     -1,
			MaxBytes:    -1,
			MaxMsgSize:  -1,
		}
		if t.MaxMsgSize > 0 {
			cfg.MaxMsgSize = t.MaxMsgSize
		}
		out = append(out, cfg)
	}
	return out
}

// ConsumerConfig returns the pull durable for c.
func (c ConsumerSpec) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Durable,
		FilterSubjects: c.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        c.AckWait,
		MaxDeliver:     c.MaxDeliver,
		MaxAckPending:  c.Workers,
	}
}

// Provision creates or updates every stream, durable consumer, KV bucket and object store of
// the pipeline. It is idempotent: with an unchanged Topology a second call changes nothing, and
// existing messages and consumer positions are kept.
func Provision(ctx context.Context, js jetstream.JetStream, t Topology) error {
	t.Defaults()
	if err := t.Validate(); err != nil {
		return err
	}
	log := t.Logger
	for _, cfg := range t.StreamConfigs() {
		if err := ensureStream(ctx, js, cfg, log); err != nil {
			return err
		}
	}
	for _, c := range t.Consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.ConsumerConfig()); err != nil {
			return fmt.Errorf("provision consumer %s on stream %s: %w", c.Durable, c.Stream, err)
		}
		log.Debug("consumer provisioned", "stream", c.Stream, "durable", c.Durable, "max_ack_pending", c.Workers)
	}
	for _, kv := range t.kvConfigs() {
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("provision KV bucket %s: %w", kv.Bucket, replicasHint(err, t.Replicas))
		}
		log.Debug("KV bucket provisioned", "bucket", kv.Bucket)
	}
	obj := jetstream.ObjectStoreConfig{
		Bucket:      ObjectRawBodies,
		Description: "raw Ion bodies larger than a message, named by SHA-256",
		TTL:         t.RawMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		Compression: true,
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, obj); err != nil {
		return fmt.Errorf("provision object store %s: %w", obj.Bucket, replicasHint(err, t.Replicas))
	}
	log.Info("JetStream topology provisioned", "replicas", t.Replicas, "streams", len(events.StreamSubjects), "consumers", len(t.Consumers))
	return nil
}

func (t Topology) kvConfigs() []jetstream.KeyValueConfig {
	kv := func(bucket, desc string, history uint8, ttl time.Duration) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{
			Bucket: bucket, Description: desc, History: history, TTL: ttl,
			Storage: jetstream.FileStorage, Replicas: t.Replicas, Compression: true,
		}
	}
	return []jetstream.KeyValueConfig{
		kv(BucketTokens, "encrypted Ion refresh tokens", 5, 0),
		kv(BucketFetchState, "sync plans, checkpoints, page hashes", 1, 0),
		kv(BucketLeases, "leases; expire when the holder dies", 1, LeaseTTL),
		kv(BucketLedger, "delivery ledger (compare-and-set)", 1, 0),
		kv(BucketPeriods, "billing period state", 5, 0),
		// As long as USAGE keeps the summaries it indexes.
		kv(BucketSummaries, "transformer page summaries by account, period and page", 1, t.MaxAge),
	}
}

// ensureStream creates or updates one stream. A refused update of an existing stream names the
// replica change, the usual cause (R3 on a single node, or scaling a stream the server can't).
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log *slog.Logger) error {
	s, err := js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return fmt.Errorf("provision stream %s: create: %w", cfg.Name, replicasHint(err, cfg.Replicas))
		}
		log.Info("stream created", "stream", cfg.Name, "replicas", cfg.Replicas, "max_age", cfg.MaxAge)
		return nil
	case err != nil:
		return fmt.Errorf("provision stream %s: look up: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config.Replicas
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		if have != cfg.Replicas {
			return fmt.Errorf("provision stream %s: the server refused to change replicas %d → %d: %w", cfg.Name, have, cfg.Replicas, err)
		}
		return fmt.Errorf("provision stream %s: update: %w", cfg.Name, err)
	}
	if have != cfg.Replicas {
		log.Warn("stream replicas changed", "stream", cfg.Name, "from", have, "to", cfg.Replicas)
	}
	return nil
}

func replicasHint(err error, replicas int) error {
	if replicas > 1 && strings.Contains(strings.ToLower(err.Error()), "replicas") {
		return fmt.Errorf("%w (replicas %d needs a cluster of at least %d nodes)", err, replicas, replicas)
	}
	return err
}

// WaitForJetStream polls until JetStream answers, e.g. while a fresh cluster elects its meta
// leader. It returns the last error when ctx ends.
func WaitForJetStream(ctx context.Context, js jetstream.JetStream) error {
	const pause = 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("JetStream not ready: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(pause):
		}
	}
}
