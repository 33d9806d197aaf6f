package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeConfig writes a YAML file into a temporary directory and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// validationErrors loads and expects a *ValidationError.
func validationErrors(t *testing.T, path string, env func(string) string) []FieldError {
	t.Helper()
	_, err := Load(path, env)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Load: want *ValidationError, got %v", err)
	}
	return verr.Errors
}

func requireFields(t *testing.T, errs []FieldError, want ...string) {
	t.Helper()
	var got []string
	for _, e := range errs {
		got = append(got, e.Field)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("error fields = %q, want %q\n%s", got, want, (&ValidationError{errs}).Error())
	}
}

const minimalAccount = `
token_key_file: /k
accounts:
  - id: a1
    auth: v3
    refresh_token_file: /t
    currency: EUR
`

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		NATS:        NATS{Replicas: 1},
		Embedded:    Embedded{DataDir: "./ionconnector-data", Listen: "127.0.0.1:4222"},
		Streams:     Streams{MaxAge: 4464 * time.Hour, RawMaxAge: 9600 * time.Hour, DuplicateWindow: 10 * time.Minute},
		Log:         Log{Level: "info", Format: "json"},
		Ion:         Ion{Timeout: 30 * time.Second, MaxRetries: 5, RequestsPerSecond: 2, Burst: 2},
		Fetcher:     Fetcher{Workers: 4, MaxBacklog: 8},
		Transformer: Transformer{Workers: 4, MaxBacklog: 2_000},
		Publisher:   Publisher{Workers: 2, BatchSize: 500, BatchWait: 2 * time.Second},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if !reflect.DeepEqual(Default(), want) {
		t.Fatalf("Default() differs from Load(\"\")")
	}
	if err := Default().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestConfigAccountDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(writeConfig(t, minimalAccount), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := c.Account("a1")
	if !ok {
		t.Fatal("account a1 missing")
	}
	if a.Name != "a1" || a.IonURL != DefaultIonURL || a.ClosingDay != 10 {
		t.Fatalf("account defaults: %+v", a)
	}
}

func TestConfigComplete(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/complete.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		NATS: NATS{
			URL:       "nats://nats-1:4222,nats://nats-2:4222",
			CredsFile: "/run/secrets/nats.creds",
			TLS:       NATSTLS{CAFile: "/etc/nats/ca.pem", CertFile: "/etc/nats/client.pem", KeyFile: "/etc/nats/client-key.pem"},
			Replicas:  3,
		},
		Embedded: Embedded{DataDir: "/var/lib/ionconnector", Listen: "127.0.0.1:14222"},
		Streams:  Streams{MaxAge: 4400 * time.Hour, RawMaxAge: 10000 * time.Hour, DuplicateWindow: 30 * time.Minute},
		Log:      Log{Level: "debug", Format: "text"},
		HTTP:     HTTP{Listen: "0.0.0.0:9090"},
		Ion:      Ion{Timeout: 45 * time.Second, MaxRetries: 3, RequestsPerSecond: 1.5, Burst: 4},
		Accounts: []Account{
			{
				ID: "acme-eu", Name: "Acme Europe", Auth: AuthV3, IonURL: "https://ion.example.test",
				RefreshTokenFile: "/run/secrets/acme-eu.refresh", Currency: "EUR", ReportID: "4711",
				Schedules:        []string{"0 3 * * *", "30 12 1-5 * MON-FRI"},
				ApprovalRequired: true, ClosingDay: 5,
			},
			{
				ID: "acme-us", Name: "acme-us", Auth: AuthV1, IonURL: DefaultIonURL,
				APIKeyFile: "/run/secrets/acme-us.key", APISecretFile: "/run/secrets/acme-us.secret",
				Currency: "USD", ClosingDay: 10,
			},
		},
		Fetcher:     Fetcher{Workers: 8, MaxBacklog: 16},
		Transformer: Transformer{Workers: 6, MaxBacklog: BacklogOff},
		Publisher:   Publisher{Workers: 3, BatchSize: 250, BatchWait: 5 * time.Second},
		Sinks: Sinks{
			HTTP: &HTTPSink{URL: "https://billing.example.test/v1/deliveries", SecretFile: "/run/secrets/billing.hmac", Timeout: 10 * time.Second},
			CSV:  &CSVSink{Dir: "/var/lib/ionconnector/focus"},
		},
		TokenKeyFile: "/run/secrets/token.key",
	}
	if !reflect.DeepEqual(c, want) {
		gj, _ := json.MarshalIndent(c, "", " ")
		wj, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("complete.yaml:\n got %s\nwant %s", gj, wj)
	}
}

func TestConfigUnknownKey(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, "nats:\n  replicas: 1\n  urll: nats://x:4222\nfoo: 1\n")
	errs := validationErrors(t, p, noEnv)
	requireFields(t, errs, "nats.urll", "foo")
	if errs[0].Line != 3 || errs[1].Line != 4 {
		t.Fatalf("lines = %d, %d; want 3, 4", errs[0].Line, errs[1].Line)
	}
	want := `config: nats.urll: unknown key (did you mean "url"?) (line 3)`
	if got := errs[0].String(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestConfigReportsEveryBadField(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, `
streams:
  raw_max_age: 720h
log:
  level: verbose
token_key_file: /k
accounts:
  - id: a1
    auth: v3
    refresh_token_file: /t
    currency: EUR
  - id: a2
    auth: v3
    refresh_token_file: /t2
    currency: eur
`)
	_, err := Load(p, noEnv)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	want := strings.Join([]string{
		`config: streams.raw_max_age: 720h0m0s is shorter than 13 months (9528h0m0s): ION_RAW is the audit log that replays need (line 3)`,
		`config: log.level: "verbose" is not one of debug, info, warn, error (line 5)`,
		`config: accounts[1].currency: "eur" is not an ISO 4217 code (three upper-case letters) (line 15)`,
	}, "\n")
	if err.Error() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", err, want)
	}
}

// A backlog bound is at least 1, or -1 for off; 0 is the default, so it never reaches Validate.
func TestConfigMaxBacklog(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, "fetcher:\n  max_backlog: -2\ntransformer:\n  max_backlog: -5\n")
	errs := validationErrors(t, p, noEnv)
	requireFields(t, errs, "fetcher.max_backlog", "transformer.max_backlog")
	c := Default()
	c.Fetcher.MaxBacklog, c.Transformer.MaxBacklog = BacklogOff, 1
	if err := c.Validate(); err != nil {
		t.Errorf("-1 (off) and 1: %v", err)
	}
}

// A delivery's pending records are written in one ledger value, so a batch is bounded.
func TestConfigBatchSizeBound(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, fmt.Sprintf("publisher:\n  batch_size: %d\n", MaxBatchSize+1))
	requireFields(t, validationErrors(t, p, noEnv), "publisher.batch_size")
	c := Default()
	c.Publisher.BatchSize = MaxBatchSize
	if err := c.Validate(); err != nil {
		t.Errorf("batch_size %d: %v", MaxBatchSize, err)
	}
}

func TestConfigTypeErrorsBesideSemanticOnes(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, `
ion:
  timeout: soon
fetcher:
  workers: [1, 2]
nats:
  replicas: 2
log: debug
`+minimalAccount+`    closing_day: 31
    schedules: ["61 * * * *"]
`)
	errs := validationErrors(t, p, noEnv)
	requireFields(t, errs, "ion.timeout", "fetcher.workers", "log",
		"nats.replicas", "accounts[0].schedules[0]", "accounts[0].closing_day")
	for _, e := range errs {
		if e.Line == 0 {
			t.Errorf("%s: no line", e)
		}
	}
	if got := errs[0].Message; got != `"soon" is not a duration (such as 30s or 720h)` {
		t.Errorf("ion.timeout message: %s", got)
	}
}

func TestConfigSyntaxError(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, "nats: [\n")
	_, err := Load(p, noEnv)
	var verr *ValidationError
	if err == nil || errors.As(err, &verr) || !strings.Contains(err.Error(), p) {
		t.Fatalf("want a plain error naming the file, got %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), noEnv); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestConfigAccountRules(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, `
accounts:
  - id: a.b
    auth: v3
    currency: EUR
    api_key_file: /k
  - id: dup
    auth: v1
    currency: EUR
    ion_url: https://user:hunter2@ion.example.test
  - id: dup
    auth: v2
    currency: EUR
    api_key_file: /k
    api_secret_file: /s
  - id: ""
sinks:
  http: {url: "ftp://billing"}
  csv: {}
`)
	errs := validationErrors(t, p, noEnv)
	requireFields(t, errs,
		"accounts[0].id", "accounts[0].refresh_token_file", "accounts[0].api_key_file",
		"accounts[1].api_key_file", "accounts[1].api_secret_file", "accounts[1].ion_url",
		"accounts[2].id", "accounts[2].auth",
		"accounts[3].id", "accounts[3].auth", "accounts[3].currency",
		"token_key_file", "sinks.http.url", "sinks.csv.dir")
	all := (&ValidationError{errs}).Error()
	if strings.Contains(all, "hunter2") {
		t.Fatalf("a password reached an error message:\n%s", all)
	}
}

func TestConfigEnvOverridesFile(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, "nats:\n  url: nats://file:4222\nlog:\n  level: warn\n  format: text\n")
	c, err := Load(p, envMap(map[string]string{
		"NATS_URL":                  "nats://env:4222",
		"ION_CONNECTOR_LOG_LEVEL":   " debug ",
		"ION_CONNECTOR_DATA_DIR":    "/data",
		"ION_CONNECTOR_HTTP_LISTEN": "127.0.0.1:0",
		"NATS_CREDS":                "/creds",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://env:4222" || c.Log.Level != "debug" || c.Log.Format != "text" ||
		c.Embedded.DataDir != "/data" || c.HTTP.Listen != "127.0.0.1:0" || c.NATS.CredsFile != "/creds" {
		t.Fatalf("env not applied: %+v", c)
	}

	errs := validationErrors(t, "", envMap(map[string]string{"ION_CONNECTOR_NATS_REPLICAS": "three"}))
	requireFields(t, errs, "nats.replicas")
	if !strings.Contains(errs[0].Message, "ION_CONNECTOR_NATS_REPLICAS") {
		t.Fatalf("message does not name the variable: %s", errs[0])
	}
}

func TestConfigEnvVars(t *testing.T) {
	t.Parallel()
	want := []EnvVar{
		{"NATS_URL", "nats.url"},
		{"NATS_CREDS", "nats.creds_file"},
		{"NATS_TLS_CA", "nats.tls.ca_file"},
		{"NATS_TLS_CERT", "nats.tls.cert_file"},
		{"NATS_TLS_KEY", "nats.tls.key_file"},
		{"ION_CONNECTOR_NATS_REPLICAS", "nats.replicas"},
		{"ION_CONNECTOR_DATA_DIR", "embedded.data_dir"},
		{"ION_CONNECTOR_NATS_LISTEN", "embedded.listen"},
		{"ION_CONNECTOR_LOG_LEVEL", "log.level"},
		{"ION_CONNECTOR_LOG_FORMAT", "log.format"},
		{"ION_CONNECTOR_HTTP_LISTEN", "http.listen"},
		{"ION_TOKEN_KEY_FILE", "token_key_file"},
		{"ION_TOKEN_KEY", "token_key_file (the key itself)"},
	}
	if got := EnvVars(); !reflect.DeepEqual(got, want) {
		t.Fatalf("EnvVars() = %v", got)
	}
}

func TestConfigTokenKeyFromEnv(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, strings.Replace(minimalAccount, "token_key_file: /k\n", "", 1))
	if errs := validationErrors(t, p, noEnv); len(errs) != 1 || errs[0].Field != "token_key_file" {
		t.Fatalf("want one token_key_file error, got %v", errs)
	}
	c, err := Load(p, envMap(map[string]string{"ION_TOKEN_KEY": "s3cr3t-key\n"}))
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.TokenKey()
	if err != nil || k.Reveal() != "s3cr3t-key" {
		t.Fatalf("TokenKey() = %q, %v", k.Reveal(), err)
	}
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(*c), fmt.Sprint(c.Redacted())} {
		if strings.Contains(out, "s3cr3t") {
			t.Fatalf("token key printed: %s", out)
		}
	}
}

func TestConfigRedacted(t *testing.T) {
	t.Parallel()
	c := Default()
	c.NATS.URL = "nats://bob:pa55@nats:4222"
	c.Sinks.HTTP = &HTTPSink{URL: "https://u:p4ss@billing/x", Timeout: time.Second}
	r := c.Redacted()
	b, _ := json.Marshal(r)
	s := string(b)
	if strings.Contains(s, "pa55") || strings.Contains(s, "p4ss") || strings.Contains(s, "bob") {
		t.Fatalf("credentials in Redacted(): %s", s)
	}
	if !strings.Contains(s, `"url":"nats://redacted@nats:4222"`) || !strings.Contains(s, `"raw_max_age":"9600h0m0s"`) {
		t.Fatalf("unexpected Redacted(): %s", s)
	}
	if c.NATS.URL != "nats://bob:pa55@nats:4222" {
		t.Fatal("Redacted changed the config")
	}
}

func TestSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte("  tok-VALUE-123\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSecretFile(p)
	if err != nil || s.Reveal() != "tok-VALUE-123" {
		t.Fatalf("ReadSecretFile = %q, %v", s.Reveal(), err)
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(empty); !errors.Is(err, ErrEmptySecret) || !strings.Contains(err.Error(), empty) {
		t.Fatalf("empty file: %v", err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := ReadSecretFile(missing); !errors.Is(err, os.ErrNotExist) || strings.Count(err.Error(), missing) != 1 {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSecretRedaction(t *testing.T) {
	t.Parallel()
	s := NewSecret("hunter2\n")
	type holder struct {
		Token  Secret
		hidden Secret
	}
	h := holder{Token: s, hidden: s}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "token", s, "holder", h)
	j, _ := json.Marshal(h)

	outs := map[string]string{
		"%v":   fmt.Sprintf("%v", s),
		"%s":   fmt.Sprintf("%s", s),
		"%q":   fmt.Sprintf("%q", s),
		"%x":   fmt.Sprintf("%x", s),
		"%+v":  fmt.Sprintf("%+v", h),
		"%#v":  fmt.Sprintf("%#v", h),
		"&%+v": fmt.Sprintf("%+v", &h),
		"json": string(j),
		"slog": logBuf.String(),
	}
	for name, out := range outs {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "68756e74") {
			t.Errorf("%s leaks: %s", name, out)
		}
	}
	if outs["%v"] != "[redacted]" || string(j) != `{"Token":"[redacted]"}` {
		t.Errorf("%%v = %s, json = %s", outs["%v"], j)
	}
	if !strings.Contains(logBuf.String(), `"token":"[redacted]"`) {
		t.Errorf("slog: %s", logBuf.String())
	}
	if s.Reveal() != "hunter2" || s.IsZero() || !(Secret{}).IsZero() {
		t.Error("Reveal/IsZero")
	}
}

func TestConfigNoNoiseBelowABadValue(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, "accounts:\n  - just-a-string\nnats:\n  url: \"nats://u:pa/ss@h\"\n")
	errs := validationErrors(t, p, noEnv)
	requireFields(t, errs, "accounts[0]", "nats.url")
	if all := (&ValidationError{errs}).Error(); strings.Contains(all, "pa/ss") {
		t.Fatalf("password echoed:\n%s", all)
	}
}

// TestEmbeddedListenOff: "off" is a valid embedded.listen (no TCP listener), anything else must
// be host:port.
func TestEmbeddedListenOff(t *testing.T) {
	c := Default()
	c.Embedded.Listen = ListenOff
	if err := c.Validate(); err != nil {
		t.Fatalf("listen off: %v", err)
	}
	c.Embedded.Listen = "of"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "embedded.listen") {
		t.Fatalf("listen %q: %v, want an embedded.listen error", c.Embedded.Listen, err)
	}
}

// The demo writes its config with YAML; Load must read back exactly what was written.
func TestYAMLRoundTrip(t *testing.T) {
	c, err := Load("testdata/complete.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "written.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("Load of the written config: %v\n%s", err, b)
	}
	// Redacted is the file's key tree (the unexported secret caches are not part of the file).
	if got, want := back.Redacted(), c.Redacted(); !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the config:\nwant %v\ngot  %v", want, got)
	}
}
