package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ionusage/connector/pkg/atomicfile"
	"github.com/ionusage/connector/pkg/events"
)

// Sink is one billing destination. Deliver must be idempotent by p.DeliveryID: a delivery
// resent after a crash carries the same id and the same body.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, p Payload, body []byte) (events.SinkResult, error)
}

// RejectedError is a sink's permanent refusal of a delivery (a 4xx other than 408/409/429, or
// a 409 for a different body). The batch is dead-lettered with Response, which never holds
// our secrets (the receiver's body only, truncated).
type RejectedError struct {
	Sink     string
	Status   int
	Response string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("billing: sink %s rejected the delivery: HTTP %d: %s", e.Sink, e.Status, e.Response)
}

// IsRejected reports whether err is (or wraps) a RejectedError.
func IsRejected(err error) bool {
	var r *RejectedError
	return errors.As(err, &r)
}

// HTTPSinkOptions configures NewHTTPSink.
type HTTPSinkOptions struct {
	Name    string // default "http"
	URL     string // POST target
	Secret  []byte // HMAC key
	Timeout time.Duration
	// Attempts bounds tries per Deliver on 5xx, 429, 408 and network errors (default 6);
	// after them the error is transient and the delivery is resent on redelivery.
	Attempts     int
	RetryInitial time.Duration // default 100ms, doubling, capped at RetryMax
	RetryMax     time.Duration // default 2s
	Client       *http.Client
	Logger       *slog.Logger
	Now          func() time.Time
}

// HTTPSink posts deliveries to a billing API (package doc).
type HTTPSink struct{ o HTTPSinkOptions }

// NewHTTPSink checks the options and returns the sink.
func NewHTTPSink(o HTTPSinkOptions) (*HTTPSink, error) {
	if o.URL == "" {
		return nil, errors.New("billing: http sink: URL is required")
	}
	if len(o.Secret) == 0 {
		return nil, errors.New("billing: http sink: secret is required")
	}
	if o.Name == "" {
		o.Name = "http"
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 6
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 100 * time.Millisecond
	}
	if o.RetryMax < o.RetryInitial {
		o.RetryMax = max(2*time.Second, o.RetryInitial)
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &HTTPSink{o: o}, nil
}

// Name implements Sink.
func (s *HTTPSink) Name() string { return s.o.Name }

// conflictBody is what a receiver answers on 409: the hash of the body it stored under the key.
type conflictBody struct {
	BodySHA256 string `json:"body_sha256"`
}

// Deliver implements Sink.
func (s *HTTPSink) Deliver(ctx context.Context, p Payload, body []byte) (events.SinkResult, error) {
	wait := s.o.RetryInitial
	var last error
	for attempt := 1; attempt <= s.o.Attempts; attempt++ {
		res, retry, err := s.post(ctx, p, body)
		if err == nil || !retry {
			return res, err
		}
		last = err
		s.o.Logger.Debug("billing sink retry", "sink", s.o.Name, "delivery", p.DeliveryID, "attempt", attempt, "err", err)
		if attempt == s.o.Attempts {
			break
		}
		select {
		case <-ctx.Done():
			return events.SinkResult{}, errors.Join(last, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, s.o.RetryMax)
	}
	return events.SinkResult{}, fmt.Errorf("billing: sink %s: gave up after %d attempts: %w", s.o.Name, s.o.Attempts, last)
}

// post makes one attempt; retry reports a transient failure.
func (s *HTTPSink) post(ctx context.Context, p Payload, body []byte) (res events.SinkResult, retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(body))
	if err != nil {
		return res, false, &RejectedError{Sink: s.o.Name, Response: "bad request: " + err.Error()}
	}
	ts := strconv.FormatInt(s.o.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderIdempotencyKey, p.DeliveryID.String())
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(s.o.Secret, ts, body))
	resp, err := s.o.Client.Do(req)
	if err != nil {
		// Timeouts, resets, refused connections: the receiver may have stored the body or may
		// come back; the idempotency key makes the retry safe either way.
		return res, true, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return events.SinkResult{Sink: s.o.Name, Result: events.SinkAccepted, Ref: p.DeliveryID.String()}, false, nil
	case c == http.StatusConflict:
		var cb conflictBody
		if json.Unmarshal(rb, &cb) == nil && cb.BodySHA256 == BodyHash(body) {
			// The receiver stored exactly this body earlier (our earlier attempt's answer was lost).
			return events.SinkResult{Sink: s.o.Name, Result: events.SinkDuplicate, Ref: p.DeliveryID.String()}, false, nil
		}
		return res, false, &RejectedError{Sink: s.o.Name, Status: c, Response: truncate(string(rb))}
	case c == http.StatusTooManyRequests || c == http.StatusRequestTimeout || c >= 500:
		return res, true, fmt.Errorf("HTTP %d: %s", c, truncate(string(rb)))
	default:
		return res, false, &RejectedError{Sink: s.o.Name, Status: c, Response: truncate(string(rb))}
	}
}

func truncate(s string) string {
	const n = 512
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// CSVSinkOptions configures NewCSVSink.
type CSVSinkOptions struct {
	Name string // default "csv"
	Dir  string
}

// CSVSink writes one FOCUS CSV file per delivery, named by the delivery id, atomically.
type CSVSink struct{ o CSVSinkOptions }

// NewCSVSink creates Dir if needed.
func NewCSVSink(o CSVSinkOptions) (*CSVSink, error) {
	if o.Dir == "" {
		return nil, errors.New("billing: csv sink: Dir is required")
	}
	if o.Name == "" {
		o.Name = "csv"
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("billing: csv sink: %w", err)
	}
	return &CSVSink{o: o}, nil
}

// Name implements Sink.
func (s *CSVSink) Name() string { return s.o.Name }

// Deliver implements Sink. A file that already exists is this delivery's (the name is its
// id, and the content is a function of the id), so it counts as a duplicate.
func (s *CSVSink) Deliver(ctx context.Context, p Payload, _ []byte) (events.SinkResult, error) {
	name := p.DeliveryID.String() + ".csv"
	path := filepath.Join(s.o.Dir, name)
	if _, err := os.Stat(path); err == nil {
		return events.SinkResult{Sink: s.o.Name, Result: events.SinkDuplicate, Ref: name}, nil
	}
	if err := atomicfile.Write(path, func(w io.Writer) error { return WriteFOCUSCSV(w, p.Records) }); err != nil {
		return events.SinkResult{}, fmt.Errorf("billing: csv sink: %w", err)
	}
	return events.SinkResult{Sink: s.o.Name, Result: events.SinkAccepted, Ref: name}, nil
}
