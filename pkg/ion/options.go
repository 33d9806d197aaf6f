package ion

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/time/rate"
)

// DefaultBaseURL is Ion's production host (portal and API).
const DefaultBaseURL = "https://ion.tdsynnex.com"

// Options configure a Client. One Client serves one Ion account.
type Options struct {
	BaseURL string // default DefaultBaseURL
	Account string // Ion account (reseller) id; required for v3 paths
	V3      *V3Auth
	V1      *V1Auth

	HTTPClient *http.Client  // default: a client without its own timeout (Timeout governs)
	Timeout    time.Duration // per attempt, including reading the body; default 30s
	MaxRetries int           // retries after the first attempt; default 5, negative: none

	// Per-account request rate. Reports are heavy POSTs and Ion publishes no limits: keep it low.
	RequestsPerSecond float64       // default 2
	Burst             int           // default 2
	Limiter           *rate.Limiter // optional, to share one budget between Clients of an account

	MinBackoff time.Duration // first retry delay without Retry-After; default 500ms
	MaxBackoff time.Duration // cap of the backoff and of an honoured Retry-After; default 60s

	Logger *slog.Logger     // default slog.Default()
	Now    func() time.Time // default time.Now
}

// V3Auth is the OAuth refresh-token credential of the v3 API.
type V3Auth struct {
	// RefreshToken is the configured (seed) refresh token, e.g. from ReadSecretFile. The token in
	// Store wins unless this value changed since it was seeded. May be empty when Store already
	// holds a token.
	RefreshToken string
	// Store persists rotated tokens and serialises refreshes; default a MemoryTokenStore, which
	// is only safe when no other process uses the credential.
	Store TokenStore
	// Holder names this client in leases; default a random id.
	Holder string
	// RefreshBefore: refresh when the access token has less than this left (capped at a fifth of
	// the token's lifetime so short-lived tokens are not refreshed on every call); default 5m.
	RefreshBefore time.Duration
	// LeaseTTL bounds one refresh (the token call plus persisting its result); default 3×Timeout.
	LeaseTTL time.Duration
}

// V1Auth is the API key and secret of the v1 API (HTTP Basic).
type V1Auth struct {
	APIKey    string
	APISecret string
}

// Validate reports every configuration error at once.
func (o Options) Validate() error {
	var errs []error
	if o.BaseURL != "" {
		u, err := url.Parse(o.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("BaseURL must be an absolute http(s) URL"))
		}
	}
	if o.V3 == nil && o.V1 == nil {
		errs = append(errs, errors.New("one of V3 or V1 credentials is required"))
	}
	if o.V3 != nil {
		if o.Account == "" {
			errs = append(errs, errors.New("Account is required for v3"))
		}
		if o.V3.RefreshToken == "" && o.V3.Store == nil {
			errs = append(errs, errors.New("V3 needs a RefreshToken or a Store holding one"))
		}
		if o.V3.RefreshBefore < 0 || o.V3.LeaseTTL < 0 {
			errs = append(errs, errors.New("V3 durations must not be negative"))
		}
	}
	if o.V1 != nil && (o.V1.APIKey == "" || o.V1.APISecret == "") {
		errs = append(errs, errors.New("V1 needs APIKey and APISecret"))
	}
	if o.Timeout < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if o.RequestsPerSecond < 0 || o.Burst < 0 {
		errs = append(errs, errors.New("RequestsPerSecond and Burst must not be negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("ion: options: %w", errors.Join(errs...))
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	switch {
	case o.MaxRetries == 0:
		o.MaxRetries = 5
	case o.MaxRetries < 0:
		o.MaxRetries = 0
	}
	if o.RequestsPerSecond == 0 {
		o.RequestsPerSecond = 2
	}
	if o.Burst == 0 {
		o.Burst = 2
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.V3 != nil {
		v := *o.V3 // never mutate the caller's struct
		if v.Store == nil {
			v.Store = &MemoryTokenStore{}
		}
		if v.RefreshBefore == 0 {
			v.RefreshBefore = 5 * time.Minute
		}
		if v.LeaseTTL == 0 {
			v.LeaseTTL = 3 * o.Timeout
		}
		o.V3 = &v
	}
}
