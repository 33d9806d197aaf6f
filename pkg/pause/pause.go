// Package pause holds an account's work while an operator has paused it. The flag is the key
// "paused.<account>" in the "periods" KV bucket (value: Info as JSON): the scheduler publishes
// no sync request while it exists, and the fetcher parks every sync request and fetch task of
// the account under "held.<account>.<id>" instead of working on it. Resume deletes the flag
// and re-publishes every parked message to its original subject, so nothing is lost however
// long the pause lasts (a NAKed message would run out of deliveries and be dead-lettered).
package pause

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// Info is the value of a pause flag.
type Info struct {
	PausedAt time.Time `json:"paused_at"`
	By       string    `json:"by"`
	Reason   string    `json:"reason,omitempty"`
}

// Key is the pause flag of an account in the periods bucket (agreed with the scheduler).
func Key(account string) string { return "paused." + account }

// heldPrefix is where parked messages of an account live.
func heldPrefix(account string) string { return "held." + bus.KVToken(account) + "." }

// Held is one parked message: enough to publish it again as it was.
type Held struct {
	Subject string            `json:"subject"`
	ID      string            `json:"id"` // the original message id (Nats-Msg-Id / ce-id)
	Headers map[string]string `json:"headers,omitempty"`
	Payload []byte            `json:"payload"`
	Stage   string            `json:"stage"`
	HeldAt  time.Time         `json:"held_at"`
}

// Bucket opens the periods bucket (provisioned by bus.Provision).
func Bucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bus.BucketPeriods)
	if err != nil {
		return nil, fmt.Errorf("pause: KV bucket %s: %w", bus.BucketPeriods, err)
	}
	return kv, nil
}

// Get reports whether account is paused, and how.
func Get(ctx context.Context, kv jetstream.KeyValue, account string) (Info, bool, error) {
	e, err := kv.Get(ctx, Key(account))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Info{}, false, nil
	}
	if err != nil {
		return Info{}, false, fmt.Errorf("pause: read %s: %w", Key(account), err)
	}
	var in Info
	_ = json.Unmarshal(e.Value(), &in) // an unreadable value still means paused
	return in, true, nil
}

// Pause sets the flag; pausing a paused account keeps the first Info and reports false.
func Pause(ctx context.Context, kv jetstream.KeyValue, account string, in Info) (bool, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return false, err
	}
	if _, err := kv.Create(ctx, Key(account), b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("pause: write %s: %w", Key(account), err)
	}
	return true, nil
}

// HeldFrom captures a received message for Hold.
func HeldFrom(msg *message.Message, stage string, now time.Time) Held {
	h := Held{Subject: msg.Metadata.Get(bus.MetaSubject), ID: msg.UUID, Payload: msg.Payload, Stage: stage,
		HeldAt: now.UTC(), Headers: map[string]string{}}
	for k, v := range msg.Metadata {
		if !strings.HasPrefix(k, "_") && k != "Nats-Msg-Id" {
			h.Headers[k] = v
		}
	}
	return h
}

func heldKey(account, id string) string {
	return heldPrefix(account) + events.ID("held", id).String()
}

// Hold parks h; parking the same message twice keeps one copy.
func Hold(ctx context.Context, kv jetstream.KeyValue, account string, h Held) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, heldKey(account, h.ID), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("pause: park message %s: %w", h.ID, err)
	}
	return nil
}

// Unhold removes a parked message the caller is going to process itself after all (the
// account was resumed while it was being parked).
func Unhold(ctx context.Context, kv jetstream.KeyValue, account, id string) error {
	if err := kv.Delete(ctx, heldKey(account, id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// ListHeld returns the parked messages of account.
func ListHeld(ctx context.Context, kv jetstream.KeyValue, account string) ([]Held, error) {
	lister, err := kv.ListKeysFiltered(ctx, heldPrefix(account)+"*")
	if err != nil {
		return nil, err
	}
	var out []Held
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var h Held
		if err := json.Unmarshal(e.Value(), &h); err == nil {
			out = append(out, h)
		}
	}
	return out, nil
}

// Publisher is what Resume re-publishes with (*bus.Publisher).
type Publisher interface {
	PublishCtx(ctx context.Context, topic string, msgs ...*message.Message) error
}

// Resume deletes the flag, then re-publishes every parked message of the account to its
// original subject and removes it. The new message id is deterministic (the parked entry's key
// and revision), so a resume interrupted and run again publishes nothing twice within the
// duplicate window; the fetcher is idempotent beyond it. It returns how many it re-published
// and whether the account was paused at all.
func Resume(ctx context.Context, kv jetstream.KeyValue, pub Publisher, account string) (n int, wasPaused bool, err error) {
	if _, wasPaused, err = Get(ctx, kv, account); err != nil {
		return 0, false, err
	}
	if wasPaused {
		if err := kv.Delete(ctx, Key(account)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, true, fmt.Errorf("pause: delete %s: %w", Key(account), err)
		}
	}
	lister, err := kv.ListKeysFiltered(ctx, heldPrefix(account)+"*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, wasPaused, nil
		}
		return 0, wasPaused, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // taken back by the fetcher
		}
		if err != nil {
			return n, wasPaused, err
		}
		var h Held
		if err := json.Unmarshal(e.Value(), &h); err != nil {
			return n, wasPaused, fmt.Errorf("pause: parked message %s: %w", k, err)
		}
		m := message.NewMessage(events.ID("resumed", k, strconv.FormatUint(e.Revision(), 10)).String(), h.Payload)
		for hk, hv := range h.Headers {
			m.Metadata.Set(hk, hv)
		}
		if err := pub.PublishCtx(ctx, h.Subject, m); err != nil {
			return n, wasPaused, fmt.Errorf("pause: re-publish parked message %s: %w", h.ID, err)
		}
		if err := kv.Delete(ctx, k, jetstream.LastRevision(e.Revision())); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return n, wasPaused, fmt.Errorf("pause: remove parked message %s: %w", h.ID, err)
		}
		n++
	}
	return n, wasPaused, nil
}
