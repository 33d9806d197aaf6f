package ion

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeError(t *testing.T) {
	t.Parallel()
	redact := func(s string) string { return strings.ReplaceAll(s, "SECRET-TOKEN", "[redacted]") }
	cases := []struct {
		name   string
		status int
		path   string
		body   string
		check  func(t *testing.T, err error)
	}{
		{"envelope 403", 403, "/api/v3/accounts/1/customers",
			`{"error":"PERMISSION_DENIED","message":"permission denied to access accounts/10001","code":403,"details":[{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"176efaa5115cd4d84048"}]}`,
			func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "PERMISSION_DENIED" || ae.RequestID != "176efaa5115cd4d84048" ||
					ae.Message != "permission denied to access accounts/10001" {
					t.Fatalf("%#v", err)
				}
				if !errors.Is(err, ErrPermission) || errors.Is(err, ErrUnauthorized) || IsRetryable(err) {
					t.Fatal("classification")
				}
			}},
		{"envelope 404", 404, "/api/v3/accounts/1/customers/9", `{"error":"NOT_FOUND","message":"resource 'accounts/10001/customers/10054' not found","code":404,"details":[]}`,
			func(t *testing.T, err error) {
				if !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			}},
		{"grpc code variant", 400, "/api/v3/accounts/1/orders", `{"error":"INVALID_ARGUMENT","message":"bad","code":3,"details":[{"@type":"type.googleapis.com/v3orberrors.ErrorBody","requestId":"r1","errors":[{"code":"COMM-VL-001"}]}]}`,
			func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Code != "INVALID_ARGUMENT" || ae.RequestID != "r1" {
					t.Fatalf("%#v", err)
				}
			}},
		{"flat oauth", 400, "/oauth/token", `{"error":"cannot validate token: redis: nil"}`,
			func(t *testing.T, err error) {
				var oe *OAuthError
				if !errors.As(err, &oe) || oe.Message != "cannot validate token: redis: nil" || !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("%#v", err)
				}
			}},
		{"flat on v3 401", 401, "/api/v3/accounts/1/reports", `{"error":"token expired"}`,
			func(t *testing.T, err error) {
				var oe *OAuthError
				if !errors.As(err, &oe) || !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("%#v", err)
				}
			}},
		{"empty 401", 401, "/api/v3/accounts/1/reports", ``,
			func(t *testing.T, err error) {
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("%#v", err)
				}
			}},
		{"html 503", 503, "/api/v3/accounts/1/reports", "<html>\n<body>Service Unavailable</body></html>",
			func(t *testing.T, err error) {
				if !errors.Is(err, ErrUnavailable) || !IsRetryable(err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("%v", err)
				}
			}},
		{"429", 429, "/api/v3/accounts/1/reports", `{"error":"RESOURCE_EXHAUSTED","message":"slow down","code":429}`,
			func(t *testing.T, err error) {
				if !errors.Is(err, ErrRateLimited) || !IsRetryable(err) {
					t.Fatalf("%v", err)
				}
			}},
		{"echoed secret redacted", 400, "/oauth/token", `{"error":"invalid token SECRET-TOKEN"}`,
			func(t *testing.T, err error) {
				if strings.Contains(err.Error(), "SECRET-TOKEN") {
					t.Fatalf("secret leaked: %v", err)
				}
			}},
		{"huge body clipped", 500, "/x", strings.Repeat("x", 10000),
			func(t *testing.T, err error) {
				if len(err.Error()) > 400 {
					t.Fatalf("error is %d bytes", len(err.Error()))
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.check(t, DecodeError(c.status, "GET", c.path, []byte(c.body), redact))
		})
	}
}
