package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ionusage/connector/pkg/events"
)

// Defaults of RouterOptions. With them one delivery costs at most
// 3×8s + 0.5s + 1s = 25.5s (see RouterOptions.Budget), inside the default consumer AckWait of
// 30s (DefaultAckWait), and a message is dead-lettered on its 5th failed delivery, before the
// consumer's own MaxDeliver (DefaultMaxDeliver, 10) stops redelivering it.
const (
	DefaultHandlerTimeout     = 8 * time.Second
	DefaultMaxRetries         = 2
	DefaultRetryInitial       = 500 * time.Millisecond
	DefaultRetryMaxInterval   = 5 * time.Second
	DefaultRouterMaxDeliver   = 5
	DefaultRouterCloseTimeout = 30 * time.Second
	metricsNamespace          = "ionconnector"
)

// RetryOptions configures the in-process retries of one delivery. Intervals double from
// InitialInterval up to MaxInterval, without jitter.
type RetryOptions struct {
	MaxRetries      int // retries after the first attempt; 0 means DefaultMaxRetries, -1 none
	InitialInterval time.Duration
	MaxInterval     time.Duration
}

// RouterOptions configures NewRouter.
type RouterOptions struct {
	// Stage names the service (fetcher, transformer, publisher…): the dlq.v1.<stage> subject
	// token and a metrics label.
	Stage  string
	Logger *slog.Logger
	// Publisher receives dead letters. Use a Publisher (whose Close is a no-op) so the
	// router closing handlers cannot break it.
	Publisher message.Publisher
	// Registry, when set, gets watermill's router metrics and ours
	// (ionconnector_dead_letters_total{stage,reason}, ionconnector_handler_errors_total{stage,handler}).
	Registry *prometheus.Registry
	// HandlerTimeout bounds one attempt.
	HandlerTimeout time.Duration
	Retry          RetryOptions
	// MaxDeliver is the delivery on whose failure a message is dead-lettered (reason
	// handler-failed). The consumer's own MaxDeliver must be larger (or unlimited), or the
	// server gives up first and the message is neither processed nor dead-lettered.
	MaxDeliver int
	// CloseTimeout bounds Router.Close; keep it above the Subscriber's CloseTimeout.
	CloseTimeout time.Duration
	// AckWait, when set, is the consumers' AckWait: Validate then checks that Budget fits in
	// it, so the server never redelivers a message we are still retrying.
	AckWait time.Duration
}

// retries is the number of in-process retries after the first attempt, once defaults are
// applied: MaxRetries, or 0 for -1.
func (r RetryOptions) retries() int { return max(r.MaxRetries, 0) }

// setDefaults fills the zero fields. It is idempotent: Validate and Budget each apply it to
// their own copy, and NewRouter applies it again to the validated options.
func (o *RouterOptions) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HandlerTimeout == 0 {
		o.HandlerTimeout = DefaultHandlerTimeout
	}
	// -1 (no retries) is kept as is, so that applying the defaults twice (Validate, then
	// Budget) cannot turn it into the default; retries() reads it as 0.
	if o.Retry.MaxRetries == 0 {
		o.Retry.MaxRetries = DefaultMaxRetries
	}
	if o.Retry.InitialInterval == 0 {
		o.Retry.InitialInterval = DefaultRetryInitial
	}
	if o.Retry.MaxInterval == 0 {
		o.Retry.MaxInterval = max(DefaultRetryMaxInterval, o.Retry.InitialInterval)
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = DefaultRouterMaxDeliver
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = DefaultRouterCloseTimeout
	}
}

// Validate reports options that can never work, after defaults are applied.
func (o RouterOptions) Validate() error {
	o.setDefaults()
	var errs []error
	if err := events.CheckToken(o.Stage); err != nil {
		errs = append(errs, fmt.Errorf("Stage: %w", err))
	}
	if o.Publisher == nil {
		errs = append(errs, errors.New("Publisher is required (dead letters)"))
	}
	if o.HandlerTimeout < 0 || o.Retry.InitialInterval < 0 || o.Retry.MaxInterval < o.Retry.InitialInterval {
		errs = append(errs, errors.New("durations must be positive and MaxInterval ≥ InitialInterval"))
	}
	if o.Retry.MaxRetries < -1 {
		errs = append(errs, errors.New("Retry.MaxRetries must be ≥ -1"))
	}
	if o.MaxDeliver < 1 {
		errs = append(errs, errors.New("MaxDeliver must be ≥ 1"))
	}
	if o.AckWait > 0 && o.Budget() >= o.AckWait {
		errs = append(errs, fmt.Errorf("one delivery may take %s (Budget), not inside AckWait %s: lower HandlerTimeout or retries", o.Budget(), o.AckWait))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: router options: %w", err)
	}
	return nil
}

// Budget is the longest one delivery can take inside the router:
//
//	(R+1) × HandlerTimeout + Σ_{i<R} min(InitialInterval×2^i, MaxInterval)
//
// where R is the number of retries (MaxRetries after defaults; 0 for -1). Each attempt gets its
// own HandlerTimeout (see attemptTimeout) and Retry has no jitter, so this is exact as an upper
// bound for handlers that honour msg.Context(). It must stay below the consumer's
// AckWait, else the server redelivers the message to another worker while we still retry it.
// Long handlers that call InProgress restart AckWait and are outside this arithmetic.
func (o RouterOptions) Budget() time.Duration {
	o.setDefaults()
	retries := o.Retry.retries()
	total := time.Duration(retries+1) * o.HandlerTimeout
	iv := o.Retry.InitialInterval
	for range retries {
		total += min(iv, o.Retry.MaxInterval)
		iv *= 2
	}
	return total
}

// routerBuild holds what the middleware stack needs.
type routerBuild struct {
	opts          RouterOptions
	log           *slog.Logger
	wlog          watermill.LoggerAdapter
	router        *message.Router
	deadLetters   *prometheus.CounterVec
	handlerErrors *prometheus.CounterVec
}

// NewRouter returns a watermill router with our one middleware stack (see middlewareStack for
// the order and why) and, when opts.Registry is set, Prometheus metrics. Add handlers, then
// Run it; Run's context cancellation or Close drains it.
func NewRouter(opts RouterOptions) (*message.Router, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	b := &routerBuild{
		opts: opts,
		log:  opts.Logger.With("stage", opts.Stage),
	}
	b.wlog = watermill.NewSlogLogger(b.log)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: opts.CloseTimeout}, b.wlog)
	if err != nil {
		return nil, fmt.Errorf("bus: new router: %w", err)
	}
	b.router = r

	var reg prometheus.Registerer
	if opts.Registry != nil {
		reg = opts.Registry
	}
	if b.deadLetters, err = counterVec(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "dead_letters_total",
		Help:      "Messages published to the dead-letter stream, by stage and reason.",
	}, []string{"stage", "reason"})); err != nil {
		return nil, fmt.Errorf("bus: register metrics: %w", err)
	}
	if b.handlerErrors, err = counterVec(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "handler_errors_total",
		Help:      "Deliveries whose handler failed after in-process retries, by stage and handler.",
	}, []string{"stage", "handler"})); err != nil {
		return nil, fmt.Errorf("bus: register metrics: %w", err)
	}

	r.AddMiddleware(b.middlewareStack()...)
	if opts.Registry != nil {
		// Added after our stack, so its handler timing is innermost (per attempt).
		metrics.NewPrometheusMetricsBuilder(opts.Registry, metricsNamespace, "").AddPrometheusRouterMetrics(r)
	}
	return r, nil
}
