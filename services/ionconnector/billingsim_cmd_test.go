package ionconnector

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/bus/bustest"
	"github.com/ionusage/connector/pkg/service"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestBillingsimCommand(t *testing.T) {
	env := func(string) string { return "" }
	var errb syncBuf
	if code := Main(context.Background(), []string{"billingsim"}, IO{Stdout: &errb, Stderr: &errb, Env: env}); code != service.ExitUsage {
		t.Fatalf("without --secret-file: exit %d, want %d", code, service.ExitUsage)
	}
	sf := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(sf, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuf
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"billingsim", "--listen", "127.0.0.1:0", "--secret-file", sf, "--fail-rate", "0.3"}, IO{Stdout: &out, Stderr: &errb, Env: env})
	}()
	var url string
	bustest.Eventually(t, 10*time.Second, func() error {
		if _, rest, ok := strings.Cut(out.String(), "GET "); ok {
			url = strings.TrimSuffix(strings.TrimSpace(rest), "/state")
			return nil
		}
		return context.DeadlineExceeded
	})
	st, err := billingsim.FetchState(context.Background(), url)
	if err != nil || len(st.Records) != 0 {
		t.Fatalf("state %+v %v", st, err)
	}
	cancel()
	if code := <-done; code != service.ExitOK {
		t.Fatalf("exit %d; stderr %s", code, errb.String())
	}
}
