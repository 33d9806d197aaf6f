package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerOptions configures NewServer.
type ServerOptions struct {
	// Listen is host:port; port 0 picks a free one (see Server.Addr).
	Listen string
	// Registry is served on /metrics. NewServer adds the Go and process collectors to it if
	// it lacks them.
	Registry *prometheus.Registry
	// Logger receives serve errors; nil discards them.
	Logger *slog.Logger
	// CheckTimeout bounds each readiness check; 0 means DefaultCheckTimeout. Kubernetes probes
	// time out after a second by default, so a check must not wait on a dead peer for long.
	CheckTimeout time.Duration
}

// DefaultCheckTimeout is the default ServerOptions.CheckTimeout.
const DefaultCheckTimeout = 900 * time.Millisecond

func (o *ServerOptions) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		errs = append(errs, fmt.Errorf("obs: Listen %q is not host:port", o.Listen))
	}
	if o.Registry == nil {
		errs = append(errs, errors.New("obs: Registry is nil"))
	}
	if o.CheckTimeout < 0 {
		errs = append(errs, errors.New("obs: CheckTimeout is negative"))
	}
	return errors.Join(errs...)
}

func (o *ServerOptions) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CheckTimeout == 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
}

// Server serves /healthz, /readyz and /metrics.
type Server struct {
	opts ServerOptions
	srv  *http.Server

	mu     sync.Mutex
	checks map[string]func(context.Context) error
	ln     net.Listener
	served chan struct{} // closed when Serve returns

	stopping atomic.Bool
}

// NewServer checks opts and builds a server; Start makes it listen.
func NewServer(opts ServerOptions) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	if err := registerRuntime(opts.Registry); err != nil {
		return nil, fmt.Errorf("obs: registering runtime collectors: %w", err)
	}
	s := &Server{opts: opts, checks: map[string]func(context.Context) error{}}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(opts.Registry,
		promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelError),
			Registry: opts.Registry, // counts its own errors
		})))
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// AddCheck registers a readiness check; a check of the same name is replaced. A check should
// ask its dependency cheaply (a NATS connection's status, not a round trip to Ion) and honour
// ctx, which carries ServerOptions.CheckTimeout.
func (s *Server) AddCheck(name string, fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = fn
}

// Start listens and serves in the background, returning once the listener is bound so that
// Addr is known and probes cannot race the start. ctx bounds only the listen itself.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("obs: server already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("obs: %w", err)
	}
	s.ln = ln
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		// Not returned to anyone, so logged: a dead health port must be visible.
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("health and metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return nil
}

// Addr is the bound address ("127.0.0.1:43121"), or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown reports not-ready from now on, then stops accepting connections and waits for
// in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.mu.Lock()
	started, served := s.ln != nil, s.served
	s.mu.Unlock()
	if !started {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("obs: shutdown: %w", err)
	}
	select {
	case <-served:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	// Liveness means only that the process answers; dependencies belong to /readyz, or a
	// broker outage would restart every pod.
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// ReadyReport is the JSON body of /readyz.
type ReadyReport struct {
	Ready   bool              `json:"ready"`
	Failing []string          `json:"failing,omitempty"` // sorted names of failing checks
	Checks  map[string]string `json:"checks"`            // name -> "ok" or the error
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rep := s.runChecks(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !rep.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rep)
}

// runChecks runs every check concurrently, each under CheckTimeout.
func (s *Server) runChecks(ctx context.Context) ReadyReport {
	s.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()

	rep := ReadyReport{Checks: make(map[string]string, len(checks)+1)}
	if s.stopping.Load() {
		rep.Checks["shutdown"] = "shutting down"
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.CheckTimeout)
	defer cancel()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for name, fn := range checks {
		wg.Go(func() {
			err := runCheck(ctx, fn)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Checks[name] = StripUserinfo(err.Error())
			} else {
				rep.Checks[name] = "ok"
			}
		})
	}
	wg.Wait()
	for name, res := range rep.Checks {
		if res != "ok" {
			rep.Failing = append(rep.Failing, name)
		}
	}
	slices.Sort(rep.Failing)
	rep.Ready = len(rep.Failing) == 0
	return rep
}

// runCheck turns a panic into a failure: a probe must not take the process down. It also
// stops waiting at ctx's deadline for a check that ignores ctx.
func runCheck(ctx context.Context, fn func(context.Context) error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("check did not finish: %w", ctx.Err())
	}
}
