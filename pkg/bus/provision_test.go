package bus

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestProvisionIdempotent(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, nc := bustest.StartServer(t)
	js, _ := jetstream.New(nc)
	topo := Topology{MaxMsgSize: 512 << 10, Logger: quietLogger()}
	topo.Consumers = DefaultConsumers()
	topo.Consumers[3].Workers = 4 // publisher
	topo.Consumers[3].AckWait = 45 * time.Second

	if err := Provision(ctx, js, topo); err != nil {
		t.Fatalf("first Provision: %v", err)
	}
	checkStreams(ctx, t, js)
	checkBuckets(ctx, t, js)

	// Move the publisher durable forward, so a second Provision must keep its position.
	if _, err := js.Publish(ctx, events.UsageRecordSubject("A", "C"), []byte("{}"), jetstream.WithMsgID("m1")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, events.StreamUsage, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(ctx, t, js)

	if err := Provision(ctx, js, topo); err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if after := snapshot(ctx, t, js); !slices.Equal(before, after) {
		t.Fatalf("second Provision changed state:\nbefore %v\nafter  %v", before, after)
	}

	// Durables live on the server: a new connection sees them where we left them.
	nc2, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	if after := snapshot(ctx, t, js2); !slices.Equal(before, after) {
		t.Fatalf("after reconnect:\nbefore %v\nafter  %v", before, after)
	}
	ci, err := js2.Consumer(ctx, events.StreamUsage, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	info := ci.CachedInfo()
	if info.AckFloor.Stream != 1 || info.NumPending != 0 {
		t.Fatalf("publisher durable ack floor %d pending %d, want 1 and 0", info.AckFloor.Stream, info.NumPending)
	}
	c := info.Config
	if c.AckPolicy != jetstream.AckExplicitPolicy || c.DeliverPolicy != jetstream.DeliverAllPolicy ||
		c.MaxAckPending != 4 || c.AckWait != 45*time.Second || c.MaxDeliver != -1 ||
		len(c.BackOff) != 0 || !slices.Equal(c.FilterSubjects, []string{"usage.v1.record.>"}) {
		t.Fatalf("publisher durable config %+v", c)
	}
}

// snapshot is what must not change across an idempotent Provision: creation times, message
// counts, and every consumer's position and config.
func snapshot(ctx context.Context, t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var out []string
	for name := range events.StreamSubjects {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		i := s.CachedInfo()
		out = append(out, name+" created="+i.Created.String()+" msgs="+strconv.FormatUint(i.State.Msgs, 10))
	}
	for _, c := range DefaultConsumers() {
		ci, err := js.Consumer(ctx, c.Stream, c.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", c.Durable, err)
		}
		i := ci.CachedInfo()
		out = append(out, c.Durable+" created="+i.Created.String()+" ackfloor="+strconv.FormatUint(i.AckFloor.Stream, 10)+
			" delivered="+strconv.FormatUint(i.Delivered.Stream, 10)+" maxackpending="+strconv.Itoa(i.Config.MaxAckPending))
	}
	slices.Sort(out)
	return out
}

func checkStreams(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for name, subject := range events.StreamSubjects {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		c := s.CachedInfo().Config
		wantAge := DefaultMaxAge
		if name == events.StreamRaw {
			wantAge = DefaultRawMaxAge
		}
		wantDup := DefaultDuplicateWindow
		if name == events.StreamUsage {
			wantDup = UsageDuplicateWindow // capped: its id map grows with volume
		}
		if !slices.Equal(c.Subjects, []string{subject}) || c.Retention != jetstream.LimitsPolicy ||
			c.Storage != jetstream.FileStorage || c.Compression != jetstream.S2Compression ||
			c.MaxAge != wantAge || c.Duplicates != wantDup || c.Replicas != 1 || c.MaxMsgSize != 512<<10 {
			t.Errorf("stream %s config: subjects %v retention %v storage %v compression %v max age %s duplicates %s replicas %d max msg %d",
				name, c.Subjects, c.Retention, c.Storage, c.Compression, c.MaxAge, c.Duplicates, c.Replicas, c.MaxMsgSize)
		}
	}
}

func checkBuckets(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for bucket, want := range map[string]struct {
		history int64
		ttl     time.Duration
	}{
		BucketTokens: {5, 0}, BucketFetchState: {1, 0}, BucketLeases: {1, LeaseTTL}, BucketLedger: {1, 0}, BucketPeriods: {5, 0},
	} {
		s, err := js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatalf("KV %s: %v", bucket, err)
		}
		c := s.CachedInfo().Config
		if c.MaxMsgsPerSubject != want.history || c.MaxAge != want.ttl || c.Storage != jetstream.FileStorage || c.Compression != jetstream.S2Compression {
			t.Errorf("KV %s: history %d ttl %s storage %v compression %v", bucket, c.MaxMsgsPerSubject, c.MaxAge, c.Storage, c.Compression)
		}
	}
	s, err := js.Stream(ctx, "OBJ_"+ObjectRawBodies)
	if err != nil {
		t.Fatalf("object store: %v", err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != DefaultRawMaxAge || c.Compression != jetstream.S2Compression {
		t.Errorf("object store: max age %s compression %v", c.MaxAge, c.Compression)
	}
	// The ledger's compare-and-set works with history 1.
	kv, err := js.KeyValue(ctx, BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "k", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "k", []byte("2"), rev); err != nil {
		t.Fatalf("CAS update: %v", err)
	}
	if _, err := kv.Update(ctx, "k", []byte("3"), rev); err == nil {
		t.Fatal("CAS update with a stale revision succeeded")
	}
}

func TestProvisionReplicaChangeRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := bustest.JetStream(t)
	if err := Provision(ctx, js, Topology{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	err := Provision(ctx, js, Topology{Replicas: 3, Logger: quietLogger()})
	t.Logf("refused: %v", err)
	if err == nil || !strings.Contains(err.Error(), "replicas 1 → 3") {
		t.Fatalf("R1 → R3 on one node: err = %v, want a refused replica change", err)
	}
}

func TestTopologyValidate(t *testing.T) {
	t.Parallel()
	for name, mod := range map[string]func(*Topology){
		"replicas":          func(t *Topology) { t.Replicas = 7 },
		"raw age":           func(t *Topology) { t.RawMaxAge = 30 * 24 * time.Hour },
		"dup window":        func(t *Topology) { t.DuplicateWindow = t.MaxAge + time.Hour },
		"unknown stream":    func(t *Topology) { t.Consumers[0].Stream = "NOPE" },
		"filter outside":    func(t *Topology) { t.Consumers[0].FilterSubjects = []string{"usage.v1.>"} },
		"bad durable":       func(t *Topology) { t.Consumers[0].Durable = "a.b" },
		"duplicate durable": func(t *Topology) { t.Consumers = append(t.Consumers, t.Consumers[0]) },
		"workers":           func(t *Topology) { t.Consumers[0].Workers = -1 },
	} {
		topo := Topology{}
		topo.Defaults()
		if err := topo.Validate(); err != nil {
			t.Fatalf("defaults invalid: %v", err)
		}
		mod(&topo)
		if err := topo.Validate(); err == nil {
			t.Errorf("%s: Validate = nil, want an error", name)
		}
	}
}

func TestWaitForJetStream(t *testing.T) {
	t.Parallel()
	js := bustest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitForJetStream(ctx, js); err != nil {
		t.Fatalf("ready server: %v", err)
	}

	// A server without JetStream never becomes ready; the error says so when ctx ends.
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("plain server not ready")
	}
	plain, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pjs, _ := jetstream.New(plain)
	short, cancel2 := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel2()
	err = WaitForJetStream(short, pjs)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "JetStream not ready") {
		t.Fatalf("err = %v, want a deadline error", err)
	}
}

// The publisher settles records itself (no router dead-letters them on a last delivery), so its
// durable must never stop redelivering: a sink outage longer than MaxDeliver NAKs would otherwise
// leave records neither delivered nor dead-lettered.
func TestPublisherDurableNeverStopsRedelivering(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js := bustest.JetStream(t)
	if err := Provision(ctx, js, Topology{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, events.UsageRecordSubject("A", "C"), []byte("{}"), jetstream.WithMsgID("m1")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, events.StreamUsage, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= DefaultMaxDeliver+2; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatalf("delivery %d: %v (the server stopped redelivering)", i, err)
		}
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
	}
}
