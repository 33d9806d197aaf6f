package billing_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus/bustest"
)

// Each reads every message on its filter, however sparse among others, returns the last one's
// stream sequence, and stops at fn's first error.
func TestReaderEach(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := range 20_000 {
		subject := "t.noise"
		if i%2500 == 2499 {
			subject = "t.sparse"
		}
		if _, err := js.PublishAsync(subject, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
		if subject == "t.sparse" {
			want = append(want, uint64(i+1))
		}
	}
	<-js.PublishAsyncComplete()

	r, err := billing.ReadConsumer(ctx, js, "T", "t.sparse")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Delete()
	var got []uint64
	last, err := r.Each(ctx, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		got = append(got, md.Sequence.Stream)
		return nil
	})
	if err != nil || last != want[len(want)-1] || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read %v (last %d, %v), want %v", got, last, err, want)
	}

	stop := errors.New("stop")
	r2, err := billing.ReadConsumer(ctx, js, "T", "t.sparse")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Delete()
	n := 0
	if _, err := r2.Each(ctx, func(jetstream.Msg) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn's error: %v after %d messages", err, n)
	}

	r3, err := billing.ReadConsumer(ctx, js, "T", "t.none")
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Delete()
	if last, err := r3.Each(ctx, func(jetstream.Msg) error { t.Error("a message on an empty filter"); return nil }); last != 0 || err != nil {
		t.Fatalf("empty filter: %d, %v", last, err)
	}
}
