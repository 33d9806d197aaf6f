package ionconnector

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/fetcher"
)

func init() {
	register("check-credentials", "check an account's Ion credentials (v3: access and refresh token expiry)", checkCredentialsCmd)
}

// credentialCheck is the result of checking one account's credentials.
type credentialCheck struct {
	Account          string     `json:"account"`
	Auth             string     `json:"auth"`
	OK               bool       `json:"ok"`
	Error            string     `json:"error,omitempty"`
	AccessExpiresIn  string     `json:"access_expires_in,omitempty"`
	RefreshExpiresIn string     `json:"refresh_expires_in,omitempty"`
	RefreshExpiresAt *time.Time `json:"refresh_expires_at,omitempty"`
	Customers        *int       `json:"customers,omitempty"` // v1: customers the key can see
}

// checkCredentials asks Ion whether the account's credentials work. v3 calls validateAccess
// (obtaining an access token first, which may rotate the refresh token: the rotated token is
// stored in the shared encrypted token store under a lease, exactly as the fetcher does); v1
// lists the customers, the cheapest authenticated call.
func checkCredentials(ctx context.Context, cfg *config.Config, js jetstream.JetStream, a config.Account) credentialCheck {
	res := credentialCheck{Account: a.ID, Auth: a.Auth}
	fail := func(err error) credentialCheck { res.Error = err.Error(); return res }
	var tokens jetstream.KeyValue
	if a.Auth == config.AuthV3 {
		kv, err := js.KeyValue(ctx, bus.BucketTokens)
		if err != nil {
			return fail(fmt.Errorf("KV bucket %s: %w", bus.BucketTokens, err))
		}
		tokens = kv
	}
	c, err := fetcher.NewIonClient(fetcher.IonClientOptions{Config: cfg, Account: a, Tokens: tokens, Holder: "ionconnector-cli"})
	if err != nil {
		return fail(err)
	}
	if a.Auth == config.AuthV3 {
		info, err := c.ValidateAccess(ctx)
		if err != nil {
			return fail(err)
		}
		at := time.Now().UTC().Add(info.RefreshExpiresIn).Truncate(time.Second)
		res.OK, res.AccessExpiresIn, res.RefreshExpiresIn, res.RefreshExpiresAt = true, info.AccessExpiresIn.String(), info.RefreshExpiresIn.String(), &at
		return res
	}
	cs, err := c.ListCustomersV1(ctx)
	if err != nil {
		return fail(err)
	}
	n := len(cs)
	res.OK, res.Customers = true, &n
	return res
}

func checkCredentialsCmd(ctx context.Context, io IO, args []string) int {
	const name = "check-credentials"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	account := fs.String("account", "", "Ion account id (required)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	cfgPath, dataDir := storeFlags(fs, io)
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, "usage: ionconnector check-credentials --account A [--json]\n\n"+
			"Checks the account's Ion credentials. v3: POST /oauth/validateAccess prints how long the access\n"+
			"and refresh tokens stay valid (a rotated refresh token is stored in the shared token store,\n"+
			"which is why the command needs the deployment's NATS). v1: one authenticated customer list.\n"+
			"Exit 0 valid, 1 rejected or unreachable, 2 usage or configuration error.")
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	cfg, code := commandConfig(io, name, *cfgPath, *dataDir)
	if cfg == nil {
		return code
	}
	if *account == "" {
		fmt.Fprintf(io.Stderr, "%s: --account is required\n", name)
		return service.ExitUsage
	}
	a, ok := cfg.Account(*account)
	if !ok {
		fmt.Fprintf(io.Stderr, "%s: account %q is not configured\n", name, *account)
		return service.ExitUsage
	}
	c, code := commandConnect(ctx, io, name, cfg)
	if c == nil {
		return code
	}
	defer c.Close()
	res := checkCredentials(ctx, cfg, c.JS, a)
	if *asJSON {
		printJSON(io, name, res)
	} else if res.OK {
		if res.Auth == config.AuthV3 {
			fmt.Fprintf(io.Stdout, "account %s (v3): credentials valid; access token expires in %s, refresh token in %s (%s)\n",
				res.Account, res.AccessExpiresIn, res.RefreshExpiresIn, res.RefreshExpiresAt.Format(time.RFC3339))
		} else {
			fmt.Fprintf(io.Stdout, "account %s (v1): credentials valid; %d customers visible\n", res.Account, *res.Customers)
		}
	} else {
		fmt.Fprintf(io.Stderr, "%s: account %s (%s): %s\n", name, res.Account, res.Auth, res.Error)
	}
	if !res.OK {
		return service.ExitFailed
	}
	return service.ExitOK
}
