package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/events"
)

// Environment of the child process of TestSIGTERMWhileHandlingLosesNothing.
const (
	envChild   = "BUS_TEST_SIGTERM_CHILD"
	envURL     = "BUS_TEST_NATS_URL"
	envOut     = "BUS_TEST_PROCESSED_FILE"
	childDelay = 150 * time.Millisecond
)

// TestSIGTERMWhileHandlingLosesNothing runs a stage in a child process (this test binary,
// re-executed), sends it SIGTERM while it is handling messages, then lets a second child finish
// the durable. Every published id must have been processed, and the durable must end with
// nothing pending: shutdown neither acks unprocessed messages nor strands them.
func TestSIGTERMWhileHandlingLosesNothing(t *testing.T) {
	if os.Getenv(envChild) == "1" {
		runSIGTERMChild(t)
		return
	}
	t.Parallel()
	srv, nc := bustest.StartServer(t)
	r := provisionRig(t, nc)
	const total = 20
	var ids []string
	for i := range total {
		m := rawPage(t, 1000+i)
		ids = append(ids, m.UUID)
		publish(t, r, m)
	}
	out := filepath.Join(t.TempDir(), "processed")

	child := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSIGTERMWhileHandlingLosesNothing$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), envChild+"=1", envURL+"="+srv.ClientURL(), envOut+"="+out)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, &buf
	}
	stop := func(cmd *exec.Cmd, buf *bytes.Buffer) {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("child exited with %v:\n%s", err, buf)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("child did not stop after SIGTERM:\n%s", buf)
		}
	}

	cmd, buf := child()
	bustest.Eventually(t, 30*time.Second, func() error {
		if n := len(processedIDs(t, out)); n < 3 {
			return fmt.Errorf("child processed %d so far", n)
		}
		return nil
	})
	stop(cmd, buf) // mid-processing: each message takes childDelay
	first := processedIDs(t, out)
	t.Logf("first child processed %d of %d before SIGTERM", len(first), total)
	if len(first) >= total {
		t.Fatalf("first child finished everything; SIGTERM did not land mid-processing")
	}

	cmd, buf = child()
	bustest.Eventually(t, 60*time.Second, func() error {
		info := consumerInfo(t, r)
		if info.NumPending != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != total {
			return fmt.Errorf("pending %d, ack pending %d, ack floor %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
		}
		return nil
	})
	stop(cmd, buf)

	got := processedIDs(t, out)
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for _, id := range ids {
		if seen[id] == 0 {
			t.Errorf("id %s was never processed (lost)", id)
		}
	}
	t.Logf("processed %d times for %d ids (%d duplicates)", len(got), total, len(got)-len(seen))
}

func processedIDs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// runSIGTERMChild is the child: a production-configured stage whose slow handler records each
// id durably before returning, stopped by SIGTERM through signal.NotifyContext.
func runSIGTERMChild(t *testing.T) {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	nc, err := nats.Connect(os.Getenv(envURL))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(os.Getenv(envOut), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js})
	if err != nil {
		t.Fatal(err)
	}
	router, err := bus.NewRouter(bus.RouterOptions{Stage: testStage, Publisher: pub, Logger: quietLogger(), AckWait: bus.DefaultAckWait})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.NewSubscriber(bus.SubscriberOptions{
		JS: js, Stream: events.StreamRaw, Logger: quietLogger(),
		Consumer: func(string) string { return testDurable },
	})
	if err != nil {
		t.Fatal(err)
	}
	router.AddConsumerHandler("slow", testTopic, sub, func(msg *message.Message) error {
		select {
		case <-time.After(childDelay):
		case <-msg.Context().Done():
			return msg.Context().Err()
		}
		if _, err := f.WriteString(msg.UUID + "\n"); err != nil {
			return err
		}
		return f.Sync()
	})
	if err := router.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
