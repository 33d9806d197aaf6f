package ion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Sentinels for classification with errors.Is. *APIError and *OAuthError match them by status.
var (
	// ErrPermission is a 403: wrong account, RBAC, or API access not enabled. Never retried and
	// never answered with a token refresh: only a human can fix it.
	ErrPermission = errors.New("ion: permission denied")
	// ErrUnauthorized is a 401 that persisted after one refresh, or a refresh token Ion rejected.
	ErrUnauthorized = errors.New("ion: unauthorized")
	// ErrNotFound is a 404.
	ErrNotFound = errors.New("ion: not found")
	// ErrRateLimited is a 429 that outlasted the retry budget.
	ErrRateLimited = errors.New("ion: rate limited")
	// ErrUnavailable is a 502/503/504 that outlasted the retry budget.
	ErrUnavailable = errors.New("ion: unavailable")
	// ErrBadBody is a response body that is truncated or not the JSON we expect. On report data
	// the whole report must be requested again (IsRetryable reports true).
	ErrBadBody = errors.New("ion: invalid response body")
	// ErrNoCredentials means the call needs a credential kind the client was not given.
	ErrNoCredentials = errors.New("ion: no credentials for this API version")
	// ErrTruncated means availableRowsCount > resultCount: Ion dropped rows. The data is valid
	// but incomplete; split the request (by customer, entitlement, then date).
	ErrTruncated = errors.New("ion: report data truncated")
)

// APIError is the v3 error envelope
// {"error":"PERMISSION_DENIED","message":"…","code":403,"details":[{"@type":…,"requestId":"…"}]},
// or any other non-2xx answer (then Code is empty and Message a sanitised excerpt).
type APIError struct {
	Status    int    // HTTP status
	Code      string // envelope "error", e.g. NOT_FOUND
	Message   string // envelope "message", secrets redacted
	RequestID string // details[].requestId, for support tickets
	Method    string
	Path      string // URL path without query
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ion: %s %s: HTTP %d", e.Method, e.Path, e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request " + e.RequestID + ")")
	}
	return b.String()
}

// Is maps the status onto the sentinels.
func (e *APIError) Is(target error) bool { return statusIs(e.Status, target) }

// OAuthError is the flat {"error":"text"} body of /oauth/token and /oauth/validateAccess.
type OAuthError struct {
	Status  int
	Message string // secrets redacted
	Path    string
}

func (e *OAuthError) Error() string {
	return fmt.Sprintf("ion: POST %s: HTTP %d: %s", e.Path, e.Status, e.Message)
}

// Is maps the status onto the sentinels. A 400 from /oauth/token is a rejected refresh token,
// which is an authorization failure, so it also matches ErrUnauthorized.
func (e *OAuthError) Is(target error) bool {
	if target == ErrUnauthorized && e.Status == http.StatusBadRequest {
		return true
	}
	return statusIs(e.Status, target)
}

func statusIs(status int, target error) bool {
	switch target {
	case ErrPermission:
		return status == http.StatusForbidden
	case ErrUnauthorized:
		return status == http.StatusUnauthorized
	case ErrNotFound:
		return status == http.StatusNotFound
	case ErrRateLimited:
		return status == http.StatusTooManyRequests
	case ErrUnavailable:
		return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
	}
	return false
}

// BodyError wraps ErrBadBody with where decoding stopped.
type BodyError struct {
	Path   string
	Reason string
	Rows   int // rows already handed to the callback before the failure
}

func (e *BodyError) Error() string {
	s := fmt.Sprintf("ion: %s: invalid response body: %s", e.Path, e.Reason)
	if e.Rows > 0 {
		s += fmt.Sprintf(" (after %d rows; discard them and request the report again)", e.Rows)
	}
	return s
}

func (e *BodyError) Unwrap() error { return ErrBadBody }

// IsRetryable reports whether repeating the same request may succeed: rate limits, gateway
// errors, bad bodies and network failures, but never 4xx auth or permission errors.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrPermission) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoCredentials) {
		return false
	}
	var ms *maybeSpentError
	if errors.As(err, &ms) {
		return false
	}
	if errors.Is(err, ErrRateLimited) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBadBody) {
		return true
	}
	var ne *netError
	return errors.As(err, &ne)
}

// maybeSpentError marks a failed refresh that Ion may have acted on (a 2xx with an unusable
// body, a 502/504): the refresh token may be spent, so no caller may repeat the refresh.
type maybeSpentError struct{ err error }

func (e *maybeSpentError) Error() string { return e.err.Error() }
func (e *maybeSpentError) Unwrap() error { return e.err }

// netError marks a transport failure (connection refused, reset, timeout of one attempt).
type netError struct{ err error }

func (e *netError) Error() string { return "ion: network: " + e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// envelope covers the three error shapes: v3 envelope, flat OAuth, and v1 {success,message}.
type envelope struct {
	Error   json.RawMessage `json:"error"`
	Message string          `json:"message"`
	Code    json.RawMessage `json:"code"`
	Details []struct {
		RequestID string `json:"requestId"`
	} `json:"details"`
}

// DecodeError turns a non-2xx response body into *APIError or *OAuthError. It never fails:
// unknown bodies become an APIError with a short, sanitised excerpt. redact removes secrets the
// server might have echoed.
func DecodeError(status int, method, path string, body []byte, redact func(string) string) error {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	oauth := strings.HasPrefix(path, "/oauth/")
	var env envelope
	if err := json.Unmarshal(body, &env); err == nil {
		var code string
		if len(env.Error) > 0 {
			if s, err := scalarText(env.Error); err == nil {
				code = s
			}
		}
		// The flat shape has only "error"; OAuth endpoints use it always, and a v3 path may too
		// (the 401 body is undocumented).
		flat := code != "" && env.Message == "" && len(env.Details) == 0 && len(env.Code) == 0
		if oauth || flat {
			msg := code
			if msg == "" {
				msg = env.Message
			}
			return &OAuthError{Status: status, Message: clean(redact(msg)), Path: path}
		}
		e := &APIError{Status: status, Code: clean(code), Message: clean(redact(env.Message)), Method: method, Path: path}
		for _, d := range env.Details {
			if d.RequestID != "" {
				e.RequestID = clean(d.RequestID)
				break
			}
		}
		return e
	}
	msg := clean(redact(string(bytes.TrimSpace(body))))
	if oauth {
		return &OAuthError{Status: status, Message: msg, Path: path}
	}
	return &APIError{Status: status, Message: msg, Method: method, Path: path}
}

// clean keeps error text short and printable: bodies can be HTML error pages.
func clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	const max = 300
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
