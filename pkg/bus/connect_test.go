package bus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/nats-io/nats.go/jetstream"
)

// connLogBuffer is a bytes.Buffer safe for the nats.go callback goroutines.
type connLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *connLogBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *connLogBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestConnectRequiresURL(t *testing.T) {
	t.Parallel()
	_, err := Connect(context.Background(), ConnOptions{})
	if !errors.Is(err, ErrNoURL) || !strings.Contains(err.Error(), "NATS_URL is required") {
		t.Fatalf("err = %v, want ErrNoURL", err)
	}
	_, err = Connect(context.Background(), ConnOptions{URL: "nats://127.0.0.1:1", TLSCertFile: "c.pem"})
	if err == nil || !strings.Contains(err.Error(), "certificate and key") {
		t.Fatalf("cert without key: err = %v", err)
	}
	_, err = Connect(context.Background(), ConnOptions{URL: "nats://127.0.0.1:1", CredsFile: "/nonexistent/x.creds"})
	if err == nil || !strings.Contains(err.Error(), "credentials file") {
		t.Fatalf("missing creds file: err = %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                       "nats://127.0.0.1:4222",
		"nats://bob:s3cret@h:4222":                    "nats://redacted@h:4222",
		"nats://tok3n@h:4222, nats://a:s3cret@g:4222": "nats://redacted@h:4222,nats://redacted@g:4222",
		"nats://u:s3cret%zz@h:4222":                   "nats://redacted@h:4222",
		"tls://bob:s3cret@[::1]:4222":                 "tls://redacted@[::1]:4222",
		"127.0.0.1:4222":                              "127.0.0.1:4222",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConnectFailureIsRedacted(t *testing.T) {
	t.Parallel()
	dead := bustest.FreePorts(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Connect(ctx, ConnOptions{URL: "nats://bob:s3cret@127.0.0.1:" + strconv.Itoa(dead), Logger: quietLogger()})
	if err == nil {
		t.Fatal("connect to a dead port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "redacted@127.0.0.1") {
		t.Fatalf("error leaks or lacks the redacted URL: %v", err)
	}
}

// A cluster URL list with one dead member connects; a server restart is logged as disconnect
// and reconnect, and no log line carries the password.
func TestConnectReconnectsAndNeverLogsSecrets(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	e := startEmbeddedT(t, EmbeddedOptions{DataDir: dir, Listen: "127.0.0.1:0"})
	addr := strings.TrimPrefix(e.ClientURL(), "nats://")
	dead := bustest.FreePorts(t, 1)[0]

	var logs connLogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nc, err := Connect(ctx, ConnOptions{
		URL:    "nats://bob:s3cret@127.0.0.1:" + strconv.Itoa(dead) + ", nats://bob:s3cret@" + addr,
		Name:   "connect-test",
		Logger: log,
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream over Connect: %v", err)
	}

	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "NATS disconnected") {
			return errors.New("no disconnect logged")
		}
		return nil
	})
	startEmbeddedT(t, EmbeddedOptions{DataDir: dir, Listen: addr})
	bustest.Eventually(t, 20*time.Second, func() error {
		if !nc.IsConnected() || !strings.Contains(logs.String(), "NATS reconnected") {
			return errors.New("not reconnected yet")
		}
		return nil
	})
	if out := logs.String(); strings.Contains(out, "s3cret") {
		t.Fatalf("logs leak the password:\n%s", out)
	}
}
