package bus

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ionusage/connector/pkg/events"
)

// Dead-letter reasons set by the router (events.DeadLetter.Reason). Stages may add their own
// line-level reasons; these are the message-level ones.
const (
	ReasonUndecodable   = "undecodable"    // the error wraps events.ErrUndecodable
	ReasonPermanent     = "permanent"      // the error is marked with Permanent
	ReasonHandlerFailed = "handler-failed" // still failing after MaxDeliver deliveries
)

// ReasonAwaitingApproval: the publisher holds a whole record of an approval_required account
// until `ionconnector approve` covers its period and fetch time (docs/decisions.md 18).
const ReasonAwaitingApproval = "awaiting-approval"

// permanentError marks an error that no retry can fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the router stops retrying and dead-letters the message at
// once (reason "permanent"). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// hopeless reports errors that a retry, in process or by redelivery, cannot fix.
func hopeless(err error) bool {
	return errors.Is(err, events.ErrUndecodable) || IsPermanent(err)
}

// middlewareStack returns the ONE middleware stack of every router, outermost first:
//
//  1. deadLetter: the last word on a failed message. Undecodable or Permanent errors, and
//     failures of the MaxDeliver-th delivery, are published to dlq.v1.<stage>.<acct> and the
//     original is acked; any other error is returned, so the message is NAKed with delay and
//     redelivered. Never during router shutdown: the message is then just left un-acked.
//  2. correlation: gives an ingress message a correlation id (its event id) and copies it to
//     the messages the handler produces.
//  3. Recoverer: a panic becomes an error. It sits outside Retry on purpose: a panic is a bug,
//     retrying it in process only repeats it; it is redelivered (with NAK delay) and
//     dead-lettered after MaxDeliver deliveries like any failure.
//  4. Retry: a few quick in-process retries for transient errors, skipped for hopeless ones
//     and for context.Canceled (the subscriber's context ended: shutdown). Its whole budget
//     (RouterOptions.Budget) must stay inside the consumer's AckWait, or the server redelivers
//     the message while we still retry it.
//  5. attemptTimeout: bounds each attempt by HandlerTimeout with a fresh deadline derived from
//     the context Retry was called with, and restores that context when the attempt ends;
//     handlers must honour msg.Context(). It must sit inside Retry and must not be watermill's
//     middleware.Timeout, which leaves the message holding the ended attempt's cancelled
//     context, so every retry after the first would fail at once.
//
// Metrics (when a Registry is given) come after these, innermost, so they time each attempt.
func (b *routerBuild) middlewareStack() []message.HandlerMiddleware {
	o := b.opts
	retry := middleware.Retry{
		MaxRetries:          o.Retry.retries(),
		InitialInterval:     o.Retry.InitialInterval,
		MaxInterval:         o.Retry.MaxInterval,
		Multiplier:          2,
		RandomizationFactor: 0, // deterministic, so Budget is a true upper bound
		ShouldRetry: func(p middleware.RetryParams) bool {
			return !hopeless(p.Err) && !errors.Is(p.Err, context.Canceled)
		},
		// attemptTimeout already restores the context after each attempt; this also makes
		// every attempt start from Retry's own context should a middleware that replaces it
		// ever sit between the two.
		ResetContextOnRetry: true,
		Logger:              b.wlog,
	}
	return []message.HandlerMiddleware{
		b.deadLetter,
		correlation,
		middleware.Recoverer,
		retry.Middleware,
		attemptTimeout(o.HandlerTimeout),
	}
}

// attemptTimeout bounds one attempt by d: the handler sees a context derived from the message's
// current one (the subscriber's, under Retry) that is cancelled after d or when the attempt
// returns. The message gets its original context back when the attempt returns, so the next
// attempt starts from a live context with a deadline of its own.
func attemptTimeout(d time.Duration) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			orig := msg.Context()
			ctx, cancel := context.WithTimeout(orig, d)
			msg.SetContext(ctx)
			defer func() {
				cancel()
				msg.SetContext(orig)
			}()
			return h(msg)
		}
	}
}

// correlation sets the correlation id of an ingress message that has none, then lets
// watermill's CorrelationID copy it to produced messages, so a whole sync can be traced.
func correlation(h message.HandlerFunc) message.HandlerFunc {
	next := middleware.CorrelationID(h)
	return func(msg *message.Message) ([]*message.Message, error) {
		if middleware.MessageCorrelationID(msg) == "" {
			id := msg.Metadata.Get(events.HeaderID)
			if id == "" {
				id = msg.UUID
			}
			middleware.SetCorrelationID(id, msg)
		}
		return next(msg)
	}
}

// deadLetter is the outermost middleware; see middlewareStack.
func (b *routerBuild) deadLetter(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		// The subscriber's context (attemptTimeout gives it back after each attempt).
		ctx := msg.Context()
		out, err := h(msg)
		if err == nil {
			return out, nil
		}
		handler := message.HandlerNameFromCtx(ctx)
		b.handlerErrors.WithLabelValues(b.opts.Stage, handler).Inc()

		attempts, _ := strconv.Atoi(msg.Metadata.Get(MetaNumDelivered))
		var reason string
		switch {
		case errors.Is(err, events.ErrUndecodable):
			reason = ReasonUndecodable
		case IsPermanent(err):
			reason = ReasonPermanent
		case attempts >= b.opts.MaxDeliver:
			reason = ReasonHandlerFailed
		default:
			return nil, err // NAK with delay → redelivered
		}
		// During shutdown a failure may be caused by the shutdown itself (cancelled
		// contexts); leave the message un-acked for the next run instead of burying it.
		if b.router.IsClosed() || ctx.Err() != nil {
			return nil, err
		}
		if dlErr := b.publishDeadLetter(msg, reason, err, attempts); dlErr != nil {
			return nil, errors.Join(err, dlErr)
		}
		b.deadLetters.WithLabelValues(b.opts.Stage, reason).Inc()
		b.log.Warn("message dead-lettered", "handler", handler, "reason", reason, "id", msg.UUID,
			"subject", msg.Metadata.Get(MetaSubject), "attempts", attempts, "err", err)
		return nil, nil // the dead letter holds it now: ack the original
	}
}

func (b *routerBuild) publishDeadLetter(msg *message.Message, reason string, cause error, attempts int) error {
	subject := msg.Metadata.Get(MetaSubject)
	account := events.AccountOf(subject)
	headers := make(map[string]string, len(msg.Metadata))
	for k, v := range msg.Metadata {
		if !strings.HasPrefix(k, "_") {
			headers[k] = v
		}
	}
	seq, _ := strconv.ParseUint(msg.Metadata.Get(MetaStreamSeq), 10, 64)
	now := time.Now().UTC()
	dl := events.DeadLetter{
		Stage:           b.opts.Stage,
		Account:         account,
		Reason:          reason,
		Error:           cause.Error(),
		OriginalSubject: subject,
		OriginalID:      msg.UUID,
		OriginalStream:  msg.Metadata.Get(MetaStream),
		OriginalSeq:     seq,
		Attempts:        attempts,
		Headers:         headers,
		Payload:         msg.Payload,
		FailedAt:        now,
	}
	// Deterministic id: a redelivered original that fails again for the same reason produces
	// the same dead letter, which the DLQ stream's duplicate window drops.
	dm, err := events.NewMessage(events.Meta{
		ID:      events.ID("deadletter", b.opts.Stage, msg.UUID, reason),
		Type:    events.TypeDeadLetter,
		Source:  "ionconnector/" + b.opts.Stage,
		Subject: subject,
		Time:    now,
	}, dl)
	if err != nil {
		return err
	}
	return b.opts.Publisher.Publish(events.DeadLetterSubject(b.opts.Stage, account), dm)
}

// counterVec registers c, or returns the collector already registered under its name, so that
// several routers (the all-in-one binary runs one per stage) share one registry.
func counterVec(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, err
	}
	return c, nil
}
