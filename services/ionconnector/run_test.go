package ionconnector

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/events/schematest"
)

// TestAllInOneDeadLettersBadRequests runs every service in one process on an embedded server,
// as `ionconnector run` does, and proves that the fetcher's real handler sends an undecodable
// request and a request for an unknown account to the DLQ with their reasons, while a valid
// request is consumed, and that cancelling the context stops the whole pipeline cleanly.
func TestAllInOneDeadLettersBadRequests(t *testing.T) {
	cfg := config.Default()
	cfg.Embedded.DataDir = t.TempDir()
	cfg.Embedded.Listen = "127.0.0.1:0"
	cfg.Accounts = []config.Account{{ID: "10001", Auth: config.AuthV1, Currency: "EUR"}}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := startHost(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runPipeline(runCtx, h.Deps) }()

	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: h.Deps.JS, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(msg *message.Message) {
		t.Helper()
		if err := pub.Publish(events.SyncRequestedSubject("10001"), msg); err != nil {
			t.Fatal(err)
		}
	}
	good := events.SyncRequest{RequestID: "r-good", Account: "10001", Period: "2026-10", Mode: events.ModeV1,
		Reason: "manual", RequestedBy: "test", RequestedAt: time.Now().UTC()}
	gm, err := events.NewMessage(good.EventMeta("test"), good)
	if err != nil {
		t.Fatal(err)
	}
	publish(gm)
	garbage := message.NewMessage("0b5c7a1e-8a0c-4c1e-9a53-58a3b9e0b0a1", []byte("{not json"))
	garbage.Metadata.Set(events.HeaderType, events.TypeSyncRequested)
	publish(garbage)
	unknown := good
	unknown.RequestID, unknown.Account = "r-unknown", "99999"
	um, err := events.NewMessage(unknown.EventMeta("test"), unknown)
	if err != nil {
		t.Fatal(err)
	}
	publish(um) // published on account 10001's subject, but names an account that is not configured

	dlq, err := h.Deps.JS.OrderedConsumer(ctx, events.StreamDLQ, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"dlq.v1.fetcher.>"}})
	if err != nil {
		t.Fatal(err)
	}
	// The valid request's sync fails later (its account has no credentials) with a sync-failed
	// dead letter of its own; only the two undecodable ones matter here.
	got := map[string]events.DeadLetter{}
	for got[garbage.UUID].Reason == "" || got[um.UUID].Reason == "" {
		m, err := dlq.Next(jetstream.FetchMaxWait(20 * time.Second))
		if err != nil {
			t.Fatalf("waiting for dead letters (have %d): %v", len(got), err)
		}
		schematest.Validate(t, events.TypeDeadLetter, m.Data())
		var dl events.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		if m.Subject() != "dlq.v1.fetcher.10001" {
			t.Errorf("dead letter on %s, want dlq.v1.fetcher.10001", m.Subject())
		}
		if dl.Reason == "undecodable" {
			got[dl.OriginalID] = dl
		}
	}
	if dl := got[garbage.UUID]; dl.Reason != "undecodable" || string(dl.Payload) != "{not json" {
		t.Errorf("garbage dead letter = reason %q payload %q", dl.Reason, dl.Payload)
	}
	if dl := got[um.UUID]; dl.Reason != "undecodable" || dl.Error == "" {
		t.Errorf("unknown-account dead letter = reason %q error %q", dl.Reason, dl.Error)
	}
	if _, ok := got[gm.UUID]; ok {
		t.Error("the valid request was dead-lettered as undecodable")
	}
	// The valid request is acked: the fetcher's durable has nothing pending.
	cons, err := h.Deps.JS.Consumer(ctx, events.StreamSync, "fetcher")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fetcher consumer: pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pipeline stopped with %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("pipeline did not stop after cancel")
	}
}
