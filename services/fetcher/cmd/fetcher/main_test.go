package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the real fetcher once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fetcher-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "fetcher")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return binPath
}

// TestBinaryReportsEveryBadField builds the real binary and runs it on a config with three bad
// fields: it must exit 2 and print one line per field, naming each.
func TestBinaryReportsEveryBadField(t *testing.T) {
	dir := t.TempDir()
	bin := binary(t)
	cfg := filepath.Join(dir, "config.yaml")
	const bad = `nats:
  replicas: 2
log:
  level: loud
accounts:
  - id: "10001"
    auth: v1
    api_key_file: /run/secrets/key
    api_secret_file: /run/secrets/secret
    currency: euro
`
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Env = append(os.Environ(), "NATS_URL=nats://127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want code 2; output:\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"nats.replicas", "log.level", "accounts[0].currency"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d (one per bad field):\n%s", len(lines), len(want), out)
	}
	for i, field := range want {
		if !strings.Contains(lines[i], field) {
			t.Errorf("line %d = %q, want it to name %s", i+1, lines[i], field)
		}
	}
}

// TestBinaryNeedsNATSURL: a standalone service refuses to start without a broker address.
func TestBinaryNeedsNATSURL(t *testing.T) {
	bin := binary(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "NATS_URL=")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "NATS_URL is required") {
		t.Fatalf("exit: %v, output %q; want code 2 naming NATS_URL", err, out)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
