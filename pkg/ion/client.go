// Package ion is a client for TD SYNNEX StreamOne Ion: the v3 API (OAuth refresh tokens that
// rotate on every use; customers, subscriptions, reports) and the v1 billing API (HTTP Basic;
// the monthly azureplan report). Money is decoded to exact decimals, report data is streamed
// row by row, and every call is rate-limited, retried where safe, and bounded by a timeout.
package ion

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Client talks to one Ion account. It is safe for concurrent use.
type Client struct {
	opts    Options
	base    *url.URL
	limiter *rate.Limiter
	log     *slog.Logger
	tokens  *tokenSource // nil without V3

	mu      sync.Mutex
	reports map[string]*Report // report metadata by id, for column resolution
}

// New validates opts and returns a Client.
func New(opts Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	base, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("ion: BaseURL: %w", err)
	}
	c := &Client{
		opts:    opts,
		base:    base,
		limiter: opts.Limiter,
		log:     opts.Logger.With("component", "ion", "account", opts.Account),
		reports: map[string]*Report{},
	}
	if c.limiter == nil {
		c.limiter = rate.NewLimiter(rate.Limit(opts.RequestsPerSecond), opts.Burst)
	}
	if opts.V3 != nil {
		holder := opts.V3.Holder
		if holder == "" {
			var b [8]byte
			_, _ = cryptoRead(b[:])
			holder = "ion-" + hex.EncodeToString(b[:])
		}
		c.tokens = &tokenSource{c: c, auth: *opts.V3, holder: holder}
		if opts.V3.RefreshToken != "" {
			c.tokens.seedHash = SeedHash(opts.V3.RefreshToken)
		}
	}
	return c, nil
}

var cryptoRead = crand.Read

type authKind int

const (
	authNone authKind = iota
	authV3
	authV1
)

// call is one logical API call; do turns it into attempts.
type call struct {
	method string
	path   string // absolute path below BaseURL, e.g. /api/v3/accounts/1/customers
	query  url.Values
	body   []byte
	ctype  string
	auth   authKind
	// spends marks a request that consumes something single-use (the refresh token): it is
	// retried only on answers proving the server did not act (429, 503), never after a network
	// error or a 502/504, where the server may have rotated the token and the reply got lost.
	spends bool
	// handle consumes a 2xx response. A *BodyError with Rows == 0 is retried like a 503:
	// nothing reached the caller yet, so repeating the whole request is invisible to it.
	handle func(*http.Response) error
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

func (c *Client) do(ctx context.Context, cl call) error {
	refreshed := false
	for attempt := 0; ; attempt++ {
		retry, wait, err := c.attempt(ctx, cl, &refreshed)
		if err == nil {
			return nil
		}
		if !retry || attempt >= c.opts.MaxRetries {
			return err
		}
		if wait <= 0 {
			wait = c.backoff(attempt)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("%w (retry in %s would pass the deadline)", err, wait.Round(time.Millisecond))
		}
		c.log.Debug("ion: retrying", "method", cl.method, "path", cl.path, "attempt", attempt+1, "wait", wait, "err", err)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// attempt makes one HTTP exchange. A 401 on v3 refreshes the token once and repeats inside the
// same attempt, so the refresh does not consume the retry budget.
func (c *Client) attempt(ctx context.Context, cl call, refreshed *bool) (retry bool, wait time.Duration, err error) {
	for {
		if err := c.limiter.Wait(ctx); err != nil {
			return false, 0, err
		}
		var token string
		switch cl.auth {
		case authV3:
			if c.tokens == nil {
				return false, 0, fmt.Errorf("%w: %s needs v3 (OAuth) credentials", ErrNoCredentials, cl.path)
			}
			if token, err = c.tokens.access(ctx); err != nil {
				return IsRetryable(err), 0, err
			}
		case authV1:
			if c.opts.V1 == nil {
				return false, 0, fmt.Errorf("%w: %s needs v1 (API key) credentials", ErrNoCredentials, cl.path)
			}
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		req, err := c.newRequest(actx, cl, token)
		if err != nil {
			cancel()
			return false, 0, err
		}
		resp, err := c.opts.HTTPClient.Do(req)
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return false, 0, ctx.Err()
			}
			// url.Error repeats the URL, which carries no secrets (they travel in headers and
			// form bodies), but keep only the cause for short messages.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return !cl.spends, 0, &netError{fmt.Errorf("%s %s: %w", cl.method, cl.path, err)}
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			err = cl.handle(resp)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
			resp.Body.Close()
			cancel()
			if err == nil {
				return false, 0, nil
			}
			if ctx.Err() != nil {
				return false, 0, ctx.Err()
			}
			var be *BodyError
			if errors.As(err, &be) {
				// A 2xx on a spending call means the server acted: never repeat it.
				return be.Rows == 0 && !cl.spends, 0, err
			}
			return false, 0, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		cancel()
		apiErr := DecodeError(resp.StatusCode, cl.method, cl.path, body, c.redact)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			if cl.auth == authV3 && !*refreshed {
				*refreshed = true
				c.log.Info("ion: access token rejected; refreshing once", "path", cl.path)
				if _, err := c.tokens.invalidate(ctx, token); err != nil {
					return IsRetryable(err), 0, err
				}
				continue
			}
			return false, 0, apiErr
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			return true, c.retryAfter(resp.Header.Get("Retry-After")), apiErr
		case http.StatusBadGateway, http.StatusGatewayTimeout:
			return !cl.spends, c.retryAfter(resp.Header.Get("Retry-After")), apiErr
		}
		return false, 0, apiErr
	}
}

func (c *Client) newRequest(ctx context.Context, cl call, token string) (*http.Request, error) {
	u := *c.base
	u.Path = strings.TrimRight(c.base.Path, "/") + cl.path
	u.RawQuery = cl.query.Encode()
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("ion: build request %s %s: %w", cl.method, cl.path, err)
	}
	req.Header.Set("Accept", "application/json")
	if cl.body != nil {
		ct := cl.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	switch cl.auth {
	case authV3:
		req.Header.Set("Authorization", "Bearer "+token)
	case authV1:
		req.SetBasicAuth(c.opts.V1.APIKey, c.opts.V1.APISecret)
	}
	return req, nil
}

// backoff is exponential with jitter in [d/2, d], so synchronised clients spread out.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.opts.MinBackoff << min(attempt, 20)
	if d <= 0 || d > c.opts.MaxBackoff {
		d = c.opts.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter parses Retry-After as seconds or an HTTP date; 0 when absent or unusable. A small
// jitter is added so clients told the same second do not return together.
func (c *Client) retryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		d = time.Duration(min(n, 1<<20)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(c.opts.Now())
	} else {
		return 0
	}
	if d <= 0 {
		return time.Millisecond // "retry now": still not zero, which means "use backoff"
	}
	if d > c.opts.MaxBackoff {
		d = c.opts.MaxBackoff
	}
	return d + rand.N(d/10+1)
}

// redact removes credentials a server might echo in an error message.
func (c *Client) redact(s string) string {
	var secrets []string
	if c.opts.V1 != nil {
		secrets = append(secrets, c.opts.V1.APISecret, c.opts.V1.APIKey)
	}
	if c.tokens != nil {
		secrets = append(secrets, c.tokens.secrets()...)
	}
	for _, sec := range secrets {
		if len(sec) >= 6 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// v3 builds an account-scoped v3 path.
func (c *Client) v3(format string, args ...any) string {
	return "/api/v3/accounts/" + url.PathEscape(c.opts.Account) + fmt.Sprintf(format, args...)
}
