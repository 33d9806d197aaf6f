package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

type nopPublisher struct{}

func (nopPublisher) Publish(string, ...*message.Message) error { return nil }
func (nopPublisher) Close() error                              { return nil }

// TestAttemptTimeoutRestoresContext: each attempt gets a context with its own deadline, derived
// from the message's context; that context is cancelled when the attempt returns and the
// message holds its original context again.
func TestAttemptTimeoutRestoresContext(t *testing.T) {
	t.Parallel()
	type key struct{}
	orig := context.WithValue(context.Background(), key{}, "v")
	msg := message.NewMessage("1", nil)
	msg.SetContext(orig)
	var seen []context.Context
	h := attemptTimeout(time.Minute)(func(m *message.Message) ([]*message.Message, error) {
		seen = append(seen, m.Context())
		return nil, errors.New("fail")
	})
	for range 2 {
		_, _ = h(msg)
		if msg.Context() != orig {
			t.Fatal("message context not restored after the attempt")
		}
	}
	d0, ok0 := seen[0].Deadline()
	d1, ok1 := seen[1].Deadline()
	if !ok0 || !ok1 || !d1.After(d0) {
		t.Errorf("deadlines %v (%v), %v (%v): want one per attempt, the second later", d0, ok0, d1, ok1)
	}
	for i, c := range seen {
		if c.Value(key{}) != "v" {
			t.Errorf("attempt %d context not derived from the message's", i+1)
		}
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("attempt %d context err %v after it returned, want Canceled", i+1, c.Err())
		}
	}
}

// TestRetryStackFreshContextPerAttempt runs the router's middleware stack directly: a handler
// that honours its context and fails once succeeds on its in-process retry.
func TestRetryStackFreshContextPerAttempt(t *testing.T) {
	t.Parallel()
	o := RouterOptions{HandlerTimeout: time.Minute, Retry: RetryOptions{InitialInterval: time.Millisecond}}
	o.setDefaults()
	b := &routerBuild{opts: o}
	calls := 0
	var h message.HandlerFunc = func(m *message.Message) ([]*message.Message, error) {
		calls++
		if err := m.Context().Err(); err != nil {
			return nil, err
		}
		if calls == 1 {
			return nil, errors.New("transient")
		}
		return nil, nil
	}
	stack := b.middlewareStack()
	if len(stack) != 5 {
		t.Fatalf("stack has %d middleware; update this test", len(stack))
	}
	// Retry and the per-attempt timeout (the two innermost), composed as the router does.
	h = stack[3](stack[4](h))
	msg := message.NewMessage("1", nil)
	msg.SetContext(context.Background())
	if _, err := h(msg); err != nil || calls != 2 {
		t.Fatalf("err %v after %d calls; want success on the 2nd call", err, calls)
	}
	if msg.Context() != context.Background() {
		t.Error("message context not restored")
	}
}

// TestRouterOptionsBudget checks the documented arithmetic and that MaxRetries -1 means no
// retries in Validate as well as in Budget.
func TestRouterOptionsBudget(t *testing.T) {
	t.Parallel()
	base := RouterOptions{Stage: "publisher", Publisher: nopPublisher{}, AckWait: DefaultAckWait}
	if got, want := base.Budget(), 3*DefaultHandlerTimeout+500*time.Millisecond+time.Second; got != want {
		t.Errorf("default Budget = %s, want %s", got, want)
	}
	if err := base.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}

	none := base
	none.HandlerTimeout = 25 * time.Second // fits AckWait 30s once, not three times
	none.Retry.MaxRetries = -1
	if got := none.Budget(); got != 25*time.Second {
		t.Errorf("MaxRetries -1: Budget = %s, want 25s", got)
	}
	if err := none.Validate(); err != nil {
		t.Errorf("MaxRetries -1 with AckWait: %v", err)
	}
	none.setDefaults()
	none.setDefaults() // idempotent: -1 stays "none"
	if none.Retry.MaxRetries != -1 || none.Retry.retries() != 0 || none.Budget() != 25*time.Second {
		t.Errorf("after setDefaults: MaxRetries %d, retries %d, Budget %s", none.Retry.MaxRetries, none.Retry.retries(), none.Budget())
	}

	three := none
	three.Retry.MaxRetries = 0 // the default, 2 retries: 3×25s does not fit
	if err := three.Validate(); err == nil {
		t.Error("default retries with a 25s HandlerTimeout validated against AckWait 30s")
	}
	bad := none
	bad.Retry.MaxRetries = -2
	if err := bad.Validate(); err == nil {
		t.Error("MaxRetries -2 validated")
	}
}
