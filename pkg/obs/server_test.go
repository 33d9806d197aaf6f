package obs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func startServer(t *testing.T, reg *prometheus.Registry) *Server {
	t.Helper()
	s, err := NewServer(ServerOptions{Listen: "127.0.0.1:0", Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	pages := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "fetcher", Name: "pages_total", Help: "Pages fetched.",
	})
	reg.MustRegister(pages)
	pages.Add(3)

	s := startServer(t, reg)
	base := "http://" + s.Addr()
	if strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr() = %s, want the bound port", s.Addr())
	}

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz = %d %q", code, body)
	}

	var connected atomic.Bool
	s.AddCheck("nats", func(context.Context) error {
		if !connected.Load() {
			return errors.New("not connected to nats://user:pw@nats:4222")
		}
		return nil
	})
	s.AddCheck("ledger", func(context.Context) error { return nil })

	code, body := get(t, base+"/readyz")
	var rep ReadyReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || rep.Ready || len(rep.Failing) != 1 || rep.Failing[0] != "nats" ||
		rep.Checks["ledger"] != "ok" || rep.Checks["nats"] != "not connected to nats://nats:4222" {
		t.Fatalf("readyz before connect = %d %s", code, body)
	}

	connected.Store(true)
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("readyz after connect = %d %s", code, body)
	}

	code, body = get(t, base+"/metrics")
	for _, want := range []string{
		"ionconnector_fetcher_pages_total 3",
		"go_goroutines ",
		"process_start_time_seconds ",
		`promhttp_metric_handler_requests_total{code="200"}`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics (%d) lacks %q", code, want)
		}
	}
}

func TestServerReadyzFailsWhileStopping(t *testing.T) {
	t.Parallel()
	s, err := NewServer(ServerOptions{Listen: "127.0.0.1:0", Registry: NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(t.Context()); err != nil { // before Start: only marks it stopping
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"failing":["shutdown"]`) {
		t.Fatalf("readyz while stopping = %d %s", rec.Code, rec.Body)
	}
}

func TestServerChecksThatPanicOrHang(t *testing.T) {
	t.Parallel()
	s, err := NewServer(ServerOptions{Listen: "127.0.0.1:0", Registry: prometheus.NewRegistry(), CheckTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.AddCheck("boom", func(context.Context) error { panic("bad") })
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	s.AddCheck("stuck", func(context.Context) error { <-block; return nil }) // ignores ctx
	rep := s.runChecks(t.Context())
	if rep.Ready || strings.Join(rep.Failing, ",") != "boom,stuck" {
		t.Fatalf("report = %+v", rep)
	}
}

func TestServerOptionsValidation(t *testing.T) {
	t.Parallel()
	_, err := NewServer(ServerOptions{Listen: "nope"})
	if err == nil || !strings.Contains(err.Error(), "Listen") || !strings.Contains(err.Error(), "Registry") {
		t.Fatalf("want both problems, got %v", err)
	}
	s := startServer(t, NewRegistry())
	if err := s.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
	// Two servers may share a registry: the runtime collectors are added once.
	reg := NewRegistry()
	startServer(t, reg)
	startServer(t, reg)
}
