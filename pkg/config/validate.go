package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ionusage/connector/pkg/cron"
	"github.com/ionusage/connector/pkg/events"
)

// FieldError is one problem with one field.
type FieldError struct {
	Field   string // YAML path, such as accounts[1].currency; "" when unknown
	Message string
	Line    int // line in the file, 0 when the value did not come from it
}

func (e FieldError) String() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// ValidationError lists every problem Load or Validate found, one per line.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.String()
	}
	return strings.Join(lines, "\n")
}

// Validate checks the meaning of every field, assuming defaults are applied (Load and Default
// do that). It returns a *ValidationError naming every problem, or nil.
func (c *Config) Validate() error {
	var v validator

	if c.NATS.URL != "" {
		// nats.go takes a comma-separated list of servers.
		for u := range strings.SplitSeq(c.NATS.URL, ",") {
			v.url("nats.url", strings.TrimSpace(u), "nats", "tls", "ws", "wss")
		}
	}
	if r := c.NATS.Replicas; r != 1 && r != 3 {
		v.add("nats.replicas", "%d is not 1 or 3", r)
	}
	if (c.NATS.TLS.CertFile == "") != (c.NATS.TLS.KeyFile == "") {
		v.add("nats.tls", "cert_file and key_file go together: set both or neither")
	}
	v.required("embedded.data_dir", c.Embedded.DataDir)
	if c.Embedded.Listen != ListenOff { // "off": no TCP listener, in-process connections only
		v.hostPort("embedded.listen", c.Embedded.Listen)
	}

	s := c.Streams
	if v.positive("streams.max_age", s.MaxAge) && s.MaxAge < MinMaxAge {
		v.add("streams.max_age", "%s is shorter than %s: corrections and reversals read the delivered revision back from USAGE until the last re-read of a closed period",
			s.MaxAge, MinMaxAge)
	}
	if s.RawMaxAge < MinRawMaxAge {
		v.add("streams.raw_max_age", "%s is shorter than 13 months (%s): ION_RAW is the audit log that replays need",
			s.RawMaxAge, MinRawMaxAge)
	}
	if v.positive("streams.duplicate_window", s.DuplicateWindow) && s.DuplicateWindow > min(s.MaxAge, s.RawMaxAge) {
		v.add("streams.duplicate_window", "%s is longer than streams.max_age (%s)", s.DuplicateWindow, min(s.MaxAge, s.RawMaxAge))
	}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "text")
	if c.HTTP.Listen != "" {
		v.hostPort("http.listen", c.HTTP.Listen)
	}

	v.positive("ion.timeout", c.Ion.Timeout)
	if c.Ion.MaxRetries < 0 {
		v.add("ion.max_retries", "%d is negative", c.Ion.MaxRetries)
	}
	if c.Ion.RequestsPerSecond <= 0 {
		v.add("ion.requests_per_second", "%g is not positive", c.Ion.RequestsPerSecond)
	}
	if c.Ion.Burst < 1 {
		v.add("ion.burst", "%d is less than 1", c.Ion.Burst)
	}

	ids := map[string]int{}
	needKey := false
	for i, a := range c.Accounts {
		p := fmt.Sprintf("accounts[%d].", i)
		if v.required(p+"id", a.ID) {
			if err := events.CheckToken(a.ID); err != nil {
				v.add(p+"id", "%q cannot be a subject token (no '.', '*', '>', spaces or control characters)", a.ID)
			} else if j, dup := ids[a.ID]; dup {
				v.add(p+"id", "%q is also the id of accounts[%d]", a.ID, j)
			} else {
				ids[a.ID] = i
			}
		}
		switch a.Auth {
		case AuthV3:
			needKey = true
			v.required(p+"refresh_token_file", a.RefreshTokenFile)
			v.unused(p+"api_key_file", a.APIKeyFile, "v1")
			v.unused(p+"api_secret_file", a.APISecretFile, "v1")
		case AuthV1:
			v.required(p+"api_key_file", a.APIKeyFile)
			v.required(p+"api_secret_file", a.APISecretFile)
			v.unused(p+"refresh_token_file", a.RefreshTokenFile, "v3")
		case "":
			v.add(p+"auth", "is required (v1 or v3)")
		default:
			v.add(p+"auth", "%q is not v1 or v3", a.Auth)
		}
		v.url(p+"ion_url", a.IonURL, "https", "http")
		if v.required(p+"currency", a.Currency) && !isCurrency(a.Currency) {
			v.add(p+"currency", "%q is not an ISO 4217 code (three upper-case letters)", a.Currency)
		}
		for j, sch := range a.Schedules {
			if _, err := cron.Parse(sch); err != nil {
				v.add(fmt.Sprintf("%sschedules[%d]", p, j), "%q: %v", sch, err)
			}
		}
		if a.ClosingDay < 1 || a.ClosingDay > 28 {
			v.add(p+"closing_day", "%d is not a day from 1 to 28", a.ClosingDay)
		}
	}
	if needKey && c.TokenKeyFile == "" && c.tokenKey.IsZero() {
		v.add("token_key_file", "is required when an account uses auth v3 (or set %s)", tokenKeyEnv)
	}

	v.workers("fetcher.workers", c.Fetcher.Workers)
	v.workers("transformer.workers", c.Transformer.Workers)
	v.workers("publisher.workers", c.Publisher.Workers)
	v.backlog("fetcher.max_backlog", c.Fetcher.MaxBacklog)
	v.backlog("transformer.max_backlog", c.Transformer.MaxBacklog)
	if c.Publisher.BatchSize < 1 {
		v.add("publisher.batch_size", "%d is less than 1", c.Publisher.BatchSize)
	} else if c.Publisher.BatchSize > MaxBatchSize {
		v.add("publisher.batch_size", "%d is more than %d (a pending delivery's records must fit in one ledger value)", c.Publisher.BatchSize, MaxBatchSize)
	}
	v.positive("publisher.batch_wait", c.Publisher.BatchWait)

	if h := c.Sinks.HTTP; h != nil {
		if v.required("sinks.http.url", h.URL) {
			v.url("sinks.http.url", h.URL, "https", "http")
		}
		v.positive("sinks.http.timeout", h.Timeout)
	}
	if s := c.Sinks.CSV; s != nil {
		v.required("sinks.csv.dir", s.Dir)
	}

	if len(v.errs) > 0 {
		return &ValidationError{Errors: v.errs}
	}
	return nil
}

type validator struct {
	errs []FieldError
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// required reports an empty value and returns whether the value is present, so that callers
// check its form only then.
func (v *validator) required(field, s string) bool {
	if strings.TrimSpace(s) == "" {
		v.add(field, "is required")
		return false
	}
	return true
}

func (v *validator) unused(field, s, auth string) {
	if s != "" {
		v.add(field, "is only used with auth %s", auth)
	}
}

func (v *validator) positive(field string, d time.Duration) bool {
	if d <= 0 {
		v.add(field, "%s is not a positive duration", d)
		return false
	}
	return true
}

func (v *validator) oneOf(field, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.add(field, "%q is not one of %s", s, strings.Join(allowed, ", "))
}

func (v *validator) hostPort(field, s string) {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		v.add(field, "%q is not host:port", s)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(field, "%q has no valid port", s)
	}
}

func (v *validator) workers(field string, n int) {
	if n < 1 || n > 1024 {
		v.add(field, "%d is not from 1 to 1024", n)
	}
}

func (v *validator) backlog(field string, n int) {
	if n < 1 && n != BacklogOff {
		v.add(field, "%d is not at least 1 (or %d: off)", n, BacklogOff)
	}
}

// url checks an absolute URL with one of the schemes. Credentials in a URL would end up in
// logs and process listings; they belong in the credentials or secret files.
func (v *validator) url(field, s string, schemes ...string) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		if strings.Contains(s, "@") {
			// Unparsable, so where its password ends is unknown: do not echo it.
			v.add(field, "is not an absolute URL")
		} else {
			v.add(field, "%q is not an absolute URL", s)
		}
		return
	}
	if u.User != nil {
		v.add(field, "%q must not carry credentials: use a credentials or secret file", redactURL(s))
	}
	for _, sc := range schemes {
		if u.Scheme == sc {
			return
		}
	}
	v.add(field, "scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))
}

func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// userinfo matches the credentials part of URLs inside any text. It does not need the URL to
// parse, because a malformed URL must not leak its password in the error that rejects it.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@`)

// redactURL replaces the userinfo of every URL in s with "redacted".
func redactURL(s string) string {
	return userinfo.ReplaceAllString(s, "${1}redacted@")
}
