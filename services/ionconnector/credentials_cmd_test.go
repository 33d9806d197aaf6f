package ionconnector

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/ionsim"
	"github.com/ionusage/connector/pkg/service"
)

// TestIntegrationCheckCredentials runs check-credentials and status --check-credentials
// against the Ion sandbox: a valid v3 refresh token and a valid v1 key pass; a refresh token
// Ion does not know (revoked) and a wrong v1 secret fail with a message naming the account,
// and no output ever contains a secret.
func TestIntegrationCheckCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("operator commands against the sandbox")
	}
	e := newOpEnv(t) // the embedded server; its own sandbox is not used
	e.deps(e.cfgA)   // provisions the buckets (the token store)
	sim, err := ionsim.New(ionsim.Options{Seed: 7, Customers: 2, Meters: 1, Accounts: []string{"20001", "20002", "20003", "20004"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := filepath.Join(dir, "token-key")
	if _, err := readOrCreateSecret(keyFile, 32); err != nil {
		t.Fatal(err)
	}
	revoked := "rt-revoked-7c1f0e9d4b2a"
	wrongSecret := "wrong-secret-5d8e2f"
	v3ok, v1ok, v1bad := sim.CredentialsFor("20001"), sim.CredentialsFor("20003"), sim.CredentialsFor("20004")
	secrets := []string{v3ok.RefreshToken, revoked, v1ok.APISecret, v1bad.APISecret, wrongSecret}
	y := fmt.Sprintf(`token_key_file: %s
ion:
  requests_per_second: 1000
  burst: 50
accounts:
  - id: "20001"
    auth: v3
    ion_url: ION_URL
    refresh_token_file: %s
    currency: EUR
  - id: "20002"
    auth: v3
    ion_url: ION_URL
    refresh_token_file: %s
    currency: EUR
  - id: "20003"
    auth: v1
    ion_url: ION_URL
    api_key_file: %s
    api_secret_file: %s
    currency: EUR
  - id: "20004"
    auth: v1
    ion_url: ION_URL
    api_key_file: %s
    api_secret_file: %s
    currency: EUR
`, keyFile, write("20001.rt", v3ok.RefreshToken), write("20002.rt", revoked),
		write("20003.key", v1ok.APIKey), write("20003.secret", v1ok.APISecret),
		write("20004.key", v1bad.APIKey), write("20004.secret", wrongSecret))
	y = strings.ReplaceAll(y, "ION_URL", sim.BaseURL())
	cfgFile := write("config.yaml", y)
	if _, err := config.Load(cfgFile, func(string) string { return "" }); err != nil {
		t.Fatalf("config: %v\n%s", err, y)
	}
	cli := func(args ...string) cmdResult {
		t.Helper()
		r := runCLI(t, map[string]string{"NATS_URL": e.url, "ION_CONNECTOR_CONFIG": cfgFile}, args...)
		for _, s := range secrets {
			if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
				t.Errorf("%v printed a secret (%.6s…):\n%s%s", args, s, r.stdout, r.stderr)
			}
		}
		return r
	}

	for _, c := range []struct {
		account string
		code    int
		want    string // in stdout when valid, stderr when not
	}{
		{"20001", service.ExitOK, "account 20001 (v3): credentials valid; access token expires in"},
		{"20002", service.ExitFailed, "check-credentials: account 20002 (v3): "},
		{"20003", service.ExitOK, "account 20003 (v1): credentials valid; 2 customers visible"},
		{"20004", service.ExitFailed, "check-credentials: account 20004 (v1): "},
	} {
		r := cli("check-credentials", "--account", c.account)
		out := r.stdout
		if c.code != service.ExitOK {
			out = r.stderr
		}
		if r.code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("check-credentials --account %s: exit %d, want %d and %q\n%s%s", c.account, r.code, c.code, c.want, r.stdout, r.stderr)
		}
		r = cli("check-credentials", "--account", c.account, "--json")
		var cc credentialCheck
		if err := json.Unmarshal([]byte(r.stdout), &cc); err != nil || r.code != c.code || cc.Account != c.account || cc.OK != (c.code == service.ExitOK) {
			t.Errorf("check-credentials --account %s --json: exit %d, %v: %+v\n%s", c.account, r.code, err, cc, r.stderr)
		}
		if !cc.OK && cc.Error == "" {
			t.Errorf("account %s: failed without a reason", c.account)
		}
		if cc.OK && cc.Auth == config.AuthV3 && (cc.RefreshExpiresAt == nil || cc.AccessExpiresIn == "") {
			t.Errorf("account %s: v3 check without expiries: %+v", c.account, cc)
		}
	}
	for _, args := range [][]string{{"check-credentials"}, {"check-credentials", "--account", "99999"}} {
		if r := cli(args...); r.code != service.ExitUsage {
			t.Errorf("%v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}

	r := cli("status", "--check-credentials", "--json")
	var st statusReport
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status --check-credentials --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	want := map[string]bool{"20001": true, "20002": false, "20003": true, "20004": false}
	for _, a := range st.Accounts {
		if a.Credentials == nil || a.Credentials.OK != want[a.Account] || a.Credentials.Account != a.Account {
			t.Errorf("status: account %s credentials %+v, want ok %v", a.Account, a.Credentials, want[a.Account])
		}
	}
	if len(st.Accounts) != len(want) {
		t.Errorf("status: %d accounts, want %d", len(st.Accounts), len(want))
	}
	r = cli("status", "--check-credentials")
	if r.code != 0 || strings.Count(r.stdout, "credentials FAILED") != 2 || !strings.Contains(r.stdout, "refresh token expires") {
		t.Errorf("status --check-credentials: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := cli("status"); strings.Contains(r.stdout, "credentials") {
		t.Errorf("status without --check-credentials checked them:\n%s", r.stdout)
	}
}
