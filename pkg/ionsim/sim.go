package ionsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// Defaults from the vendor text (ion-api.md §3.1) and the sandbox's own choices.
const (
	DefaultAccount         = "10001"
	DefaultCurrency        = "EUR"
	DefaultCustomers       = 12
	DefaultMeters          = 6
	DefaultAccessTokenTTL  = 7200 * time.Second
	DefaultRefreshTokenTTL = 32 * 24 * time.Hour

	// AzurePlanReportID is the id of the azure_plan_billing report on every simulated account
	// (the value seen on a real reseller account, ion-api.md §4.4).
	AzurePlanReportID = "49038"
	// OtherReportID is an unrelated (AWS) report listed beside it, so clients must pick by template.
	OtherReportID = "48696"
)

// Unauthorized body styles (Variant.UnauthorizedBody); the real 401 body is undocumented.
const (
	UnauthorizedEmpty    = ""
	UnauthorizedEnvelope = "envelope"
	UnauthorizedText     = "text"
)

// Variant holds one switch per unknown of ion-api.md §9, so a client can be tested against each
// plausible reading of the real service.
type Variant struct {
	// EndDateInclusive: a report range's endDate includes the whole end day (true) or is an exclusive
	// instant (false). Rows' usage_endtime follow the same convention.
	EndDateInclusive bool
	// Daily: one row per usage day (true) or usage dates carry the month's bounds, so the same
	// grouping yields one row per item and month (false).
	Daily bool
	// SubtotalRows: report data also carries subtotal rows (see package doc for their shape).
	SubtotalRows bool
	// UnauthorizedBody: body of a 401: "" (empty), "envelope" (v3 error envelope) or "text".
	UnauthorizedBody string
	// MaxPageSize caps customers pageSize; larger values are silently capped (0 = no cap).
	MaxPageSize int
	// RowsCap is the most report rows one data/CSV request returns (0 = no cap); beyond it
	// availableRowsCount > resultCount.
	RowsCap int
	// RateLimit429 enables a per-account request rate limit answered with 429 + Retry-After.
	RateLimit429 bool
	// RateLimitRPS is the limit's requests per second (default 5).
	RateLimitRPS int
	// MoneyAsString writes report moneyValue.value as a JSON string instead of a JSON number.
	MoneyAsString bool
	// UnlistedCustomers leaves the last N customers of every account out of /customers (v3 and
	// v1) and Truth.AllCustomers while their usage stays in reports: a client must take the
	// customer list from the control query too (DESIGN.md "Reconciliation").
	UnlistedCustomers int
}

// Faults are injected failures, picked deterministically from the seed and a request counter.
type Faults struct {
	Rate429 float64 // fraction of requests answered 429 with Retry-After
	Rate503 float64 // fraction of requests answered 503 UNAVAILABLE
	// RetryAfter is the Retry-After value in seconds (default 1).
	RetryAfter int
	Latency    time.Duration // added before every response
	// SlowBody, when > 0, writes bodies in SlowChunk-byte chunks with this pause between them.
	SlowBody  time.Duration
	SlowChunk int // default 1024
	// TruncateJSON is the fraction of report data/CSV responses cut mid-body. The cut body ends
	// cleanly (200, chunked, invalid JSON) unless TruncateAbort, which resets the connection instead.
	TruncateJSON  float64
	TruncateAbort bool
	// LoseTokenResponse is the fraction of successful refreshes whose response is lost (connection
	// reset) after the refresh token was rotated: the client's old token is then spent. This is the
	// lock-out case the client's lease-and-persist protocol must survive (ion-api.md §3.1).
	LoseTokenResponse float64
	// Token lifetimes (defaults 7200 s and 32 days); tests set seconds.
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
}

// Options configure a Sim.
type Options struct {
	Seed int64
	// Customers per account (default 12).
	Customers int
	// Meters is the number of usage items (resource × meter) per Azure entitlement (default 6);
	// it scales the row count: rows ≈ customers × 2 × Meters × days.
	Meters int
	// Accounts are the reseller account ids served; the first is the primary (default "10001").
	Accounts []string
	Currency string // ISO 4217, default EUR
	// Periods with data, "YYYY-MM" or a range "YYYY-MM..YYYY-MM". Default: the three months
	// before Now and the current month (incomplete: days before today only).
	Periods []string
	Now     func() time.Time
	Variant Variant
	Faults  Faults
	Logger  *slog.Logger
	// TokenStateFile, when set, keeps refresh-token state across restarts of the sandbox, as
	// Ion keeps it (tokenstate.go).
	TokenStateFile string
}

var periodRe = regexp.MustCompile(`^\d{4}-(0[1-9]|1[0-2])$`)

// Validate reports every invalid option at once.
func (o Options) Validate() error {
	var errs []error
	if o.Customers < 0 || o.Customers > 100000 {
		errs = append(errs, fmt.Errorf("customers: %d out of range 0..100000", o.Customers))
	}
	if o.Meters < 0 || o.Meters > 10000 {
		errs = append(errs, fmt.Errorf("meters: %d out of range", o.Meters))
	}
	seen := map[string]bool{}
	for _, a := range o.Accounts {
		if !isDigits(a) {
			errs = append(errs, fmt.Errorf("accounts: %q is not a numeric reseller id", a))
		}
		if seen[a] {
			errs = append(errs, fmt.Errorf("accounts: %q twice", a))
		}
		seen[a] = true
	}
	if o.Currency != "" && (len(o.Currency) != 3 || strings.ToUpper(o.Currency) != o.Currency) {
		errs = append(errs, fmt.Errorf("currency: %q is not an ISO 4217 code", o.Currency))
	}
	if _, err := expandPeriods(o.Periods); err != nil {
		errs = append(errs, fmt.Errorf("periods: %w", err))
	}
	switch o.Variant.UnauthorizedBody {
	case UnauthorizedEmpty, UnauthorizedEnvelope, UnauthorizedText:
	default:
		errs = append(errs, fmt.Errorf("variant.unauthorizedBody: %q (want \"\", envelope or text)", o.Variant.UnauthorizedBody))
	}
	if o.Variant.MaxPageSize < 0 || o.Variant.RowsCap < 0 || o.Variant.RateLimitRPS < 0 || o.Variant.UnlistedCustomers < 0 {
		errs = append(errs, errors.New("variant: negative limit"))
	}
	for name, r := range map[string]float64{"rate429": o.Faults.Rate429, "rate503": o.Faults.Rate503, "truncateJSON": o.Faults.TruncateJSON, "loseTokenResponse": o.Faults.LoseTokenResponse} {
		if r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("faults.%s: %v not in [0,1]", name, r))
		}
	}
	if o.Faults.Latency < 0 || o.Faults.SlowBody < 0 || o.Faults.AccessTokenTTL < 0 || o.Faults.RefreshTokenTTL < 0 {
		errs = append(errs, errors.New("faults: negative duration"))
	}
	return errors.Join(errs...)
}

func (o *Options) setDefaults() {
	if o.Customers == 0 {
		o.Customers = DefaultCustomers
	}
	if o.Meters == 0 {
		o.Meters = DefaultMeters
	}
	if len(o.Accounts) == 0 {
		o.Accounts = []string{DefaultAccount}
	}
	if o.Currency == "" {
		o.Currency = DefaultCurrency
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Variant.RateLimitRPS == 0 {
		o.Variant.RateLimitRPS = 5
	}
	if o.Faults.RetryAfter == 0 {
		o.Faults.RetryAfter = 1
	}
	if o.Faults.SlowChunk == 0 {
		o.Faults.SlowChunk = 1024
	}
	if o.Faults.AccessTokenTTL == 0 {
		o.Faults.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if o.Faults.RefreshTokenTTL == 0 {
		o.Faults.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
}

// Sim is a deterministic, in-process StreamOne Ion.
type Sim struct {
	opts     Options
	log      *slog.Logger
	periods  []string
	accounts map[string]*dataset
	primary  string
	cols     []column // azure_plan_billing catalogue
	awsCols  []column
	handler  http.Handler

	mu      sync.Mutex
	tokens  *tokenStore
	stats   Stats
	restate map[string][]restatement // period → restatements, applied in order
	reqN    uint64
	rl      map[string][]time.Time // account → recent request times (RateLimit429)
	truth   map[string]Truth       // cache: account|period|generation

	srvMu sync.Mutex
	srv   *http.Server
	addr  string
}

// New builds a Sim; all data is a pure function of the options.
func New(opts Options) (*Sim, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("ionsim: invalid options: %w", err)
	}
	opts.setDefaults()
	periods, _ := expandPeriods(opts.Periods)
	if len(periods) == 0 {
		periods = defaultPeriods(opts.Now().UTC())
	}
	s := &Sim{
		opts:     opts,
		log:      opts.Logger,
		periods:  periods,
		accounts: map[string]*dataset{},
		primary:  opts.Accounts[0],
		restate:  map[string][]restatement{},
		rl:       map[string][]time.Time{},
		truth:    map[string]Truth{},
	}
	s.stats = newStats()
	s.cols = catalogue()
	s.awsCols = []column{
		{id: "810001", key: "customer_id", display: "Customer ID", valueType: vtInt, get: func(*dataset, *Variant, *atom) string { return "" }},
		{id: "810002", key: "cost", display: "Cost", valueType: vtMoney, sum: func(*atom) decimal.Decimal { return decimal.Zero }},
	}
	s.tokens = newTokenStore(uint64(opts.Seed))
	for i, a := range opts.Accounts {
		s.accounts[a] = newDataset(uint64(opts.Seed), a, i, opts)
		s.tokens.issueInitial(a, opts.Now(), opts.Faults.RefreshTokenTTL)
	}
	if opts.TokenStateFile != "" {
		if err := s.tokens.load(opts.TokenStateFile); err != nil {
			return nil, err
		}
		if err := s.tokens.save(opts.TokenStateFile); err != nil {
			return nil, fmt.Errorf("ionsim: token state: %w", err)
		}
	}
	s.handler = s.routes()
	return s, nil
}

// Handler serves the whole API (OAuth, v3, v1) with faults applied.
func (s *Sim) Handler() http.Handler { return s.handler }

// Start listens on listen (e.g. "127.0.0.1:0") and serves until ctx ends or Close; it returns the
// bound address.
func (s *Sim) Start(ctx context.Context, listen string) (string, error) {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.srv != nil {
		return "", errors.New("ionsim: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return "", fmt.Errorf("ionsim: listen %s: %w", listen, err)
	}
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.srv, s.addr = srv, ln.Addr().String()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ionsim: serve", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = s.Close()
	}()
	s.log.Info("ionsim: listening", "addr", s.addr, "account", s.primary)
	return s.addr, nil
}

// Close stops a started server; it is safe to call more than once.
func (s *Sim) Close() error {
	s.srvMu.Lock()
	srv := s.srv
	s.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

// BaseURL is "http://<addr>" once started, else "".
func (s *Sim) BaseURL() string {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.addr == "" {
		return ""
	}
	return "http://" + s.addr
}

// Periods are the months that have data, ascending.
func (s *Sim) Periods() []string { return append([]string(nil), s.periods...) }

// Credentials are what a human would copy from the Ion portal for one account.
type Credentials struct {
	AccountID    string
	RefreshToken string // the initial v3 refresh token (single-use)
	APIKey       string // v1 Basic user
	APISecret    string // v1 Basic password
}

// Credentials of the primary account.
func (s *Sim) Credentials() Credentials { return s.CredentialsFor(s.primary) }

// CredentialsFor returns the initial credentials of account (zero value if unknown).
func (s *Sim) CredentialsFor(account string) Credentials {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, sec := s.tokens.apiKey(account)
	if k == "" {
		return Credentials{}
	}
	return Credentials{AccountID: account, RefreshToken: s.tokens.initial[account], APIKey: k, APISecret: sec}
}

// IssueRefreshToken mints a new refresh token for account, like a human pressing
// "Request New Credentials" after a client lost its rotated token.
func (s *Sim) IssueRefreshToken(account string) (string, error) {
	if _, ok := s.accounts[account]; !ok {
		return "", fmt.Errorf("ionsim: unknown account %q", account)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens.newRefresh(account, s.opts.Now(), s.opts.Faults.RefreshTokenTTL)
	return t, s.tokens.save(s.opts.TokenStateFile)
}

// Describe prints what `ionconnector ionsim` shows: base URL, account, credentials, a curl.
func (s *Sim) Describe(w io.Writer) error {
	base := s.BaseURL()
	if base == "" {
		base = "http://<listen address>"
	}
	c := s.Credentials()
	_, err := fmt.Fprintf(w, `Ion sandbox (seed %d, %d customers, currency %s, periods %s)
  base URL       %s
  account id     %s
  refresh token  %s   (single-use: every POST /oauth/token returns a new one)
  v1 API key     %s
  v1 API secret  %s
  report id      %s (azure_plan_billing)

  curl -s -X POST %s/oauth/token -d grant_type=refresh_token -d refresh_token=%s
  curl -s -H "Authorization: Bearer <access_token>" '%s/api/v3/accounts/%s/customers?pageSize=100'
  curl -s -u %s:%s '%s/api/v1/reports/billing/azureplan?filter[date_range]=m-%s'
`, s.opts.Seed, s.opts.Customers, s.opts.Currency, strings.Join(s.periods, ","),
		base, c.AccountID, c.RefreshToken, c.APIKey, c.APISecret, AzurePlanReportID,
		base, c.RefreshToken, base, c.AccountID, c.APIKey, c.APISecret, base, v1Period(s.periods[0]))
	return err
}

func v1Period(p string) string {
	t, _ := time.Parse("2006-01", p)
	return fmt.Sprintf("%d-%d", int(t.Month()), t.Year())
}

// Stats count what clients did; tests assert on them.
type Stats struct {
	Requests       map[string]int // by endpoint, e.g. "POST /oauth/token", "GET v3 customers"
	Pages          map[string]int // by page key: customers page token, subscriptions offset, report body
	RefreshOK      int
	RefreshReuse   int // a refresh token presented again after it was rotated
	RefreshInvalid int // unknown or expired refresh tokens
	Unauthorized   int // 401s served
	Forbidden      int // 403s served
	Served429      int
	Served503      int
	Truncated      int   // report bodies cut by TruncateJSON
	LostTokens     int   // refresh responses dropped after rotation (LoseTokenResponse)
	RowsServed     int64 // report rows written (JSON and CSV)
}

func newStats() Stats { return Stats{Requests: map[string]int{}, Pages: map[string]int{}} }

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.stats
	c.Requests = make(map[string]int, len(s.stats.Requests))
	for k, v := range s.stats.Requests {
		c.Requests[k] = v
	}
	c.Pages = make(map[string]int, len(s.stats.Pages))
	for k, v := range s.stats.Pages {
		c.Pages[k] = v
	}
	return c
}

// ResetStats zeroes the counters (token state is kept).
func (s *Sim) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = newStats()
	s.cols = catalogue()
	s.awsCols = []column{
		{id: "810001", key: "customer_id", display: "Customer ID", valueType: vtInt, get: func(*dataset, *Variant, *atom) string { return "" }},
		{id: "810002", key: "cost", display: "Cost", valueType: vtMoney, sum: func(*atom) decimal.Decimal { return decimal.Zero }},
	}
}

func (s *Sim) count(f func(st *Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// expandPeriods validates and expands "YYYY-MM" and "YYYY-MM..YYYY-MM" entries, sorted, unique.
func expandPeriods(in []string) ([]string, error) {
	set := map[string]bool{}
	for _, p := range in {
		from, to, isRange := strings.Cut(p, "..")
		if !isRange {
			to = from
		}
		if !periodRe.MatchString(from) || !periodRe.MatchString(to) {
			return nil, fmt.Errorf("%q is not YYYY-MM or YYYY-MM..YYYY-MM", p)
		}
		a, _ := time.Parse("2006-01", from)
		b, _ := time.Parse("2006-01", to)
		if b.Before(a) {
			return nil, fmt.Errorf("%q: range ends before it starts", p)
		}
		for t := a; !t.After(b); t = t.AddDate(0, 1, 0) {
			set[t.Format("2006-01")] = true
			if len(set) > 240 {
				return nil, errors.New("more than 240 periods")
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

func defaultPeriods(now time.Time) []string {
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	var out []string
	for i := 3; i >= 0; i-- {
		out = append(out, first.AddDate(0, -i, 0).Format("2006-01"))
	}
	return out
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
