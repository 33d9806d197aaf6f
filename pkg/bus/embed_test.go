package bus

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startEmbeddedT(t *testing.T, opts EmbeddedOptions) *Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e, err := StartEmbedded(ctx, opts)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

func TestEmbeddedLockAndRestartKeepsData(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()

	e := startEmbeddedT(t, EmbeddedOptions{DataDir: dir, Listen: "127.0.0.1:0"})
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(e.ClientURL(), ":0") {
		t.Fatalf("ClientURL = %q, want a loopback URL with the real port", e.ClientURL())
	}
	// The TCP listener works for other processes and the nats CLI.
	tcp, err := nats.Connect(e.ClientURL())
	if err != nil {
		t.Fatalf("connect over TCP: %v", err)
	}
	tcp.Close()

	nc, err := e.Connect(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, "keep.x", []byte("v")); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}

	// A second server on the same store must be refused, naming the dir.
	_, err = StartEmbedded(ctx, EmbeddedOptions{DataDir: dir, Listen: ListenOff, Logger: quietLogger()})
	if !errors.Is(err, ErrDataDirLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "another ionconnector") {
		t.Fatalf("second StartEmbedded on %s: err = %v, want ErrDataDirLocked naming the dir", dir, err)
	}
	// Operator commands find the holder's listener through the lock file.
	if got := HolderURL(dir); got != e.ClientURL() {
		t.Fatalf("HolderURL = %q while the server runs, want %q", got, e.ClientURL())
	}

	nc.Close()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	// Nobody holds the dir: the URL left in the file is stale and not reported.
	if got := HolderURL(dir); got != "" {
		t.Fatalf("HolderURL = %q after shutdown, want empty", got)
	}
	// The lock is released and the data survives; a holder without a listener names no URL.
	e2 := startEmbeddedT(t, EmbeddedOptions{DataDir: dir, Listen: ListenOff})
	if got := HolderURL(dir); got != "" {
		t.Fatalf("HolderURL = %q for a holder without a listener, want empty", got)
	}
	nc2, err := e2.Connect(ctx, "test2")
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	s, err := js2.Stream(ctx, "KEEP")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	if n := s.CachedInfo().State.Msgs; n != 3 {
		t.Fatalf("after restart the stream holds %d messages, want 3", n)
	}
}

func TestEmbeddedListenTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	dir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = StartEmbedded(ctx, EmbeddedOptions{DataDir: dir, Listen: addr, Logger: quietLogger()})
	if !errors.Is(err, ErrListenInUse) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("err = %v, want ErrListenInUse naming %s and --listen", err, addr)
	}
	// A failed start must not keep the data dir locked.
	startEmbeddedT(t, EmbeddedOptions{DataDir: dir, Listen: "127.0.0.1:0"})
}

func TestEmbeddedListenOff(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := startEmbeddedT(t, EmbeddedOptions{DataDir: t.TempDir(), Listen: ListenOff, MaxPayload: 2 << 20})
	if e.ClientURL() != "" {
		t.Fatalf("ClientURL = %q with the listener off, want empty", e.ClientURL())
	}
	nc, err := e.Connect(ctx, "inproc")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 2<<20 {
		t.Fatalf("max payload %d, want %d", got, 2<<20)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream not available in process: %v", err)
	}
}

func TestEmbeddedOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, bad := range []EmbeddedOptions{{Listen: "4222"}, {Listen: "127.0.0.1:x"}, {MaxPayload: -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}

// A listen failure inside the server (here an address that is not ours; port 0 skips the
// pre-check) must come back as an error at once, not after the start timeout.
func TestEmbeddedServerStartFailure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := StartEmbedded(ctx, EmbeddedOptions{DataDir: t.TempDir(), Listen: "192.0.2.1:0", Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1:0") || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("err = %v, want a listen error naming the address and --listen", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("start failure took %s to report", d)
	}
}
