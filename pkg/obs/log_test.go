package obs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// secretValue prints as itself, as a careless type would.
type secretValue string

func (s secretValue) LogValue() slog.Value { return slog.StringValue(string(s)) }

func TestLoggerRedactsSecrets(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://svc:pw-url@billing.example.test/x")
	log.With("api_key", "k-111", "account", "acme").WithGroup("ion").Info(
		"dial nats://alice:pw-msg@nats:4222 failed",
		"refresh_token", "rt-222",
		"Authorization", "Bearer at-333",
		"ApiKey", "k-444",
		"db", slog.GroupValue(slog.String("password", "pw-555"), slog.String("host", "db")),
		"credentials", slog.GroupValue(slog.String("user", "u-666")),
		"client_secret", secretValue("cs-777"),
		"url", "nats://bob:pw-str@nats:4222",
		"target", u,
		"err", fmt.Errorf("post %q: %w", "https://x:pw-err@h/p", errors.New("refused")),
		"plain_err", errors.New("plain"),
		"customer", "c-1",
	)
	out := buf.String()
	for _, leak := range []string{"k-111", "rt-222", "at-333", "k-444", "pw-555", "u-666", "cs-777",
		"pw-msg", "pw-str", "pw-url", "pw-err", "alice", "bob", "svc:"} {
		if strings.Contains(out, leak) {
			t.Errorf("log leaks %q: %s", leak, out)
		}
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, out)
	}
	ion := rec["ion"].(map[string]any)
	for path, want := range map[string]any{
		"msg":               "dial nats://nats:4222 failed",
		"api_key":           Redacted,
		"account":           "acme",
		"ion.refresh_token": Redacted,
		"ion.Authorization": Redacted,
		"ion.ApiKey":        Redacted,
		"ion.credentials":   Redacted,
		"ion.client_secret": Redacted,
		"ion.url":           "nats://nats:4222",
		"ion.target":        "https://billing.example.test/x",
		"ion.err":           `post "https://h/p": refused`,
		"ion.plain_err":     "plain",
		"ion.customer":      "c-1",
		"ion.db.host":       "db",
		"ion.db.password":   Redacted,
	} {
		var got any
		switch {
		case strings.HasPrefix(path, "ion.db."):
			got = ion["db"].(map[string]any)[strings.TrimPrefix(path, "ion.db.")]
		case strings.HasPrefix(path, "ion."):
			got = ion[strings.TrimPrefix(path, "ion.")]
		default:
			got = rec[path]
		}
		if got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "warn", "text")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "token", "t-1")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "msg=shown token=[redacted]") {
		t.Fatalf("text output: %s", out)
	}
	if _, err := NewLogger(&buf, "verbose", ""); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := NewLogger(&buf, "", "xml"); err == nil {
		t.Error("bad format accepted")
	}
	if _, err := NewLogger(&buf, "", ""); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestStripUserinfo(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"nats://a:b@h:4222,nats://c:d@i:4222": "nats://h:4222,nats://i:4222",
		"see https://h/p?x=a@b":               "see https://h/p?x=a@b",
		"mail me@example.com":                 "mail me@example.com",
		`"wss://tok@h/"`:                      `"wss://h/"`,
		"plain":                               "plain",
	} {
		if got := StripUserinfo(in); got != want {
			t.Errorf("StripUserinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
