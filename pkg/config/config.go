// Package config is the one typed configuration of the connector. Every service reads the same
// file and uses its own sections; Load reads it once (file, then environment, then defaults) and
// validates all of it, so a bad deployment fails at start-up with every problem listed instead of
// failing later, one field at a time.
//
// The configuration holds only paths to secrets, never their values: the helpers in secret.go
// read them when they are needed, as Secret values that cannot be printed.
package config

import (
	"time"
)

// Config is the whole system's configuration. The yaml tags are the file's keys; the env tags
// name the environment variables that override them (see EnvVars for the full list).
type Config struct {
	NATS        NATS        `yaml:"nats"`
	Embedded    Embedded    `yaml:"embedded"`
	Streams     Streams     `yaml:"streams"`
	Log         Log         `yaml:"log"`
	HTTP        HTTP        `yaml:"http"`
	Ion         Ion         `yaml:"ion"`
	Accounts    []Account   `yaml:"accounts"`
	Fetcher     Fetcher     `yaml:"fetcher"`
	Transformer Transformer `yaml:"transformer"`
	Publisher   Publisher   `yaml:"publisher"`
	Sinks       Sinks       `yaml:"sinks"`

	// TokenKeyFile holds the AES-256 key that encrypts the stored Ion refresh tokens. The key
	// may instead come from ION_TOKEN_KEY; TokenKey reads whichever is set.
	TokenKeyFile string `yaml:"token_key_file" env:"ION_TOKEN_KEY_FILE"`

	// tokenKey is ION_TOKEN_KEY as Load found it. It is unexported so that it never reaches a
	// marshalled config, and a Secret so that printing the Config cannot show it.
	tokenKey Secret
}

// NATS is how standalone services reach the broker. An empty URL means "use the embedded
// server" for the ionconnector binary, and is an error for the standalone services.
type NATS struct {
	URL       string  `yaml:"url" env:"NATS_URL"`
	CredsFile string  `yaml:"creds_file" env:"NATS_CREDS"`
	TLS       NATSTLS `yaml:"tls"`
	// Replicas of every stream and bucket: 1, or 3 on a cluster.
	Replicas int `yaml:"replicas" env:"ION_CONNECTOR_NATS_REPLICAS"`
}

// NATSTLS are file paths; all empty means plain TCP (or the scheme of the URL decides).
type NATSTLS struct {
	CAFile   string `yaml:"ca_file" env:"NATS_TLS_CA"`
	CertFile string `yaml:"cert_file" env:"NATS_TLS_CERT"`
	KeyFile  string `yaml:"key_file" env:"NATS_TLS_KEY"`
}

// Embedded configures the in-process nats-server that only the ionconnector binary starts.
type Embedded struct {
	DataDir string `yaml:"data_dir" env:"ION_CONNECTOR_DATA_DIR"`
	// Listen is loopback by default: the embedded broker is for this host's tools only.
	Listen string `yaml:"listen" env:"ION_CONNECTOR_NATS_LISTEN"`
}

// Streams sets JetStream retention. RawMaxAge applies to ION_RAW and its object store (the
// audit log that replays need); MaxAge to every other stream.
type Streams struct {
	MaxAge          time.Duration `yaml:"max_age"`
	RawMaxAge       time.Duration `yaml:"raw_max_age"`
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level" env:"ION_CONNECTOR_LOG_LEVEL"`   // debug, info, warn, error
	Format string `yaml:"format" env:"ION_CONNECTOR_LOG_FORMAT"` // json, text
}

// HTTP is this process's health and metrics listener. Empty means off; in a shared file it is
// usually set per process through ION_CONNECTOR_HTTP_LISTEN.
type HTTP struct {
	Listen string `yaml:"listen" env:"ION_CONNECTOR_HTTP_LISTEN"`
}

// Ion tunes the Ion API client, per account.
type Ion struct {
	Timeout           time.Duration `yaml:"timeout"`
	MaxRetries        int           `yaml:"max_retries"`
	RequestsPerSecond float64       `yaml:"requests_per_second"`
	Burst             int           `yaml:"burst"`
}

// Auth is the Ion credential kind of an account.
const (
	AuthV1 = "v1" // API key + secret, monthly azureplan report
	AuthV3 = "v3" // OAuth refresh token, daily azure_plan_billing report
)

// DefaultIonURL is the production Ion endpoint.
const DefaultIonURL = "https://ion.tdsynnex.com"

// Account is one Ion reseller account. Its ID is a subject token, so it must be stable: renaming
// it starts a new history.
type Account struct {
	ID               string   `yaml:"id"`
	Name             string   `yaml:"name"`
	Auth             string   `yaml:"auth"`
	IonURL           string   `yaml:"ion_url"`
	RefreshTokenFile string   `yaml:"refresh_token_file"` // v3
	APIKeyFile       string   `yaml:"api_key_file"`       // v1
	APISecretFile    string   `yaml:"api_secret_file"`    // v1
	Currency         string   `yaml:"currency"`           // invoice currency, ISO 4217
	ReportID         string   `yaml:"report_id"`          // optional: otherwise found by name
	Schedules        []string `yaml:"schedules"`          // cron, UTC
	ApprovalRequired bool     `yaml:"approval_required"`
	// ClosingDay is the day of the next month on which a period closes; later changes become
	// corrections in the next open period. At most 28 so that every month has it.
	ClosingDay int `yaml:"closing_day"`
}

// Fetcher, Transformer and Publisher size each stage's worker pool.
type Fetcher struct {
	Workers int `yaml:"workers"`
	// MaxBacklog is backpressure: fetch tasks wait while more than this many raw pages wait
	// for the transformer (ION_RAW). -1 turns it off.
	MaxBacklog int `yaml:"max_backlog"`
}

type Transformer struct {
	Workers int `yaml:"workers"`
	// MaxBacklog is backpressure: raw pages wait while more than this many usage records wait
	// for the publisher (USAGE). -1 turns it off.
	MaxBacklog int `yaml:"max_backlog"`
}

type Publisher struct {
	Workers   int           `yaml:"workers"`
	BatchSize int           `yaml:"batch_size"`
	BatchWait time.Duration `yaml:"batch_wait"`
}

// Sinks are the billing destinations; a nil sink is off.
type Sinks struct {
	HTTP *HTTPSink `yaml:"http"`
	CSV  *CSVSink  `yaml:"csv"`
}

// HTTPSink posts deliveries to a billing API, signed with the secret in SecretFile.
type HTTPSink struct {
	URL        string        `yaml:"url"`
	SecretFile string        `yaml:"secret_file"`
	Timeout    time.Duration `yaml:"timeout"`
}

// CSVSink writes FOCUS CSV files into Dir.
type CSVSink struct {
	Dir string `yaml:"dir"`
}

// USAGE retention. MinMaxAge covers the longest reach back into USAGE: a Correction or a reversal
// reads the delivered revision back from it until the last re-read of a closed period (31 days of
// the period + closing day ≤ 28 + three months of re-reads ≤ 92 days = 151 days), plus margin.
const (
	DefaultMaxAge = 186 * 24 * time.Hour // six months; the other streams can be rebuilt from ION_RAW
	MinMaxAge     = 160 * 24 * time.Hour
)

// Defaults. Exported so that docs, tests and the CLI's help agree with the code.
const (
	DefaultReplicas        = 1
	DefaultDataDir         = "./ionconnector-data"
	DefaultEmbeddedListen  = "127.0.0.1:4222"
	ListenOff              = "off"                // embedded.listen value for no TCP listener (bus.ListenOff)
	DefaultRawMaxAge       = 9600 * time.Hour     // a little over 13 months
	MinRawMaxAge           = 397 * 24 * time.Hour // the longest 13 months (the audit requirement); equals bus.MinRawMaxAge
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "json"
	DefaultIonTimeout      = 30 * time.Second
	DefaultIonMaxRetries   = 5
	DefaultIonRPS          = 2.0
	DefaultIonBurst        = 2
	DefaultClosingDay      = 10
	DefaultWorkers         = 4
	DefaultPublishWorkers  = 2
	DefaultBatchSize       = 500
	// MaxBatchSize bounds publisher.batch_size: a delivery's pending members (~300 B each) are
	// written in its ledger partition's head, which must stay under the 1 MiB value limit.
	MaxBatchSize       = 2000
	DefaultBatchWait   = 2 * time.Second
	DefaultSinkTimeout = 30 * time.Second
)

// Backpressure bounds (fetcher.max_backlog, transformer.max_backlog; see bus.Backlog): a few
// pages' worth, so a stage reads what the previous one just wrote from the server's cache
// instead of loading old compressed blocks. Records: 1,000 to 4,000 ran alike at 1M, 10,000
// ~5 % slower with ~50 MB more RSS (docs/performance.md).
const (
	DefaultFetcherMaxBacklog     = 8     // raw pages
	DefaultTransformerMaxBacklog = 2_000 // usage records
	BacklogOff                   = -1
)

// setDefaults fills every field the file and the environment left at its zero value.
func (c *Config) setDefaults() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.NATS.Replicas, DefaultReplicas)
	defS(&c.Embedded.DataDir, DefaultDataDir)
	defS(&c.Embedded.Listen, DefaultEmbeddedListen)
	defD(&c.Streams.MaxAge, DefaultMaxAge)
	defD(&c.Streams.RawMaxAge, DefaultRawMaxAge)
	defD(&c.Streams.DuplicateWindow, DefaultDuplicateWindow)
	defS(&c.Log.Level, DefaultLogLevel)
	defS(&c.Log.Format, DefaultLogFormat)
	defD(&c.Ion.Timeout, DefaultIonTimeout)
	def(&c.Ion.MaxRetries, DefaultIonMaxRetries)
	if c.Ion.RequestsPerSecond == 0 {
		c.Ion.RequestsPerSecond = DefaultIonRPS
	}
	def(&c.Ion.Burst, DefaultIonBurst)
	for i := range c.Accounts {
		a := &c.Accounts[i]
		defS(&a.Name, a.ID)
		defS(&a.IonURL, DefaultIonURL)
		def(&a.ClosingDay, DefaultClosingDay)
	}
	def(&c.Fetcher.Workers, DefaultWorkers)
	def(&c.Transformer.Workers, DefaultWorkers)
	def(&c.Fetcher.MaxBacklog, DefaultFetcherMaxBacklog)
	def(&c.Transformer.MaxBacklog, DefaultTransformerMaxBacklog)
	def(&c.Publisher.Workers, DefaultPublishWorkers)
	def(&c.Publisher.BatchSize, DefaultBatchSize)
	defD(&c.Publisher.BatchWait, DefaultBatchWait)
	if c.Sinks.HTTP != nil {
		defD(&c.Sinks.HTTP.Timeout, DefaultSinkTimeout)
	}
}

// Default returns the configuration of an empty file and an empty environment.
func Default() *Config {
	c := &Config{}
	c.setDefaults()
	return c
}

// Account returns the account with the given id.
func (c *Config) Account(id string) (Account, bool) {
	for _, a := range c.Accounts {
		if a.ID == id {
			return a, true
		}
	}
	return Account{}, false
}
