package ionconnector

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func noEnv(string) string { return "" }

func TestUnknownCommandIsUsageError(t *testing.T) {
	var out, errOut syncBuffer
	if code := Main(context.Background(), []string{"frobnicate"}, IO{Stdout: &out, Stderr: &errOut, Env: noEnv}); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), `unknown command "frobnicate"`) || !strings.Contains(errOut.String(), "ionsim") {
		t.Fatalf("stderr = %q", errOut.String())
	}
}

// TestIonsimCommandPrintsCredentials runs `ionconnector ionsim` and checks that it serves and
// prints the credentials it accepts.
func TestIonsimCommandPrintsCredentials(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"ionsim", "--listen", "127.0.0.1:0", "--seed", "7", "--customers", "3", "--period", "2026-10"},
			IO{Stdout: &out, Stderr: &errOut, Env: noEnv})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "refresh token") {
		if time.Now().After(deadline) {
			t.Fatalf("no credentials printed; stdout %q stderr %q", out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"base URL       http://127.0.0.1:", "account id     10001", "v1 API key", "3 customers"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out.String())
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d; stderr %s", code, errOut.String())
	}
}
