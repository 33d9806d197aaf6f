package ionconnector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ionusage/connector/pkg/billingsim"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/ionsim"
)

// startDemoEnv starts the Ion sandbox, the billing receiver (its state kept in the demo dir, as a
// real platform keeps its own), and every service on the embedded server, configured for them.
func startDemoEnv(ctx context.Context, o demoEnvOptions) (env *demoEnv, err error) {
	env = &demoEnv{}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()
	env.sim, err = ionsim.New(ionsim.Options{
		Seed: o.Seed, Customers: o.Customers, Currency: "EUR", Periods: []string{o.Period},
		Variant: ionsim.Variant{Daily: true}, Logger: o.Logger,
		// Ion remembers the tokens it rotated; so does the sandbox across demo runs.
		TokenStateFile: filepath.Join(o.Dir, "ion-tokens.json"),
	})
	if err != nil {
		return env, err
	}
	// The sandbox outlives a cancelled ctx (SIGTERM): in-flight fetches finish against it while
	// the pipeline drains, and Close stops it last.
	if _, err = env.sim.Start(context.WithoutCancel(ctx), "127.0.0.1:0"); err != nil {
		return env, err
	}
	// The configured token file keeps the first token even after it has been spent: the
	// connector uses the rotated one it stored, as it must with a stale file in production.
	token := env.sim.CredentialsFor(demoAccount).RefreshToken
	tokenFile := filepath.Join(o.Dir, "refresh-token")
	if err = os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return env, err
	}
	keyFile := filepath.Join(o.Dir, "token-key")
	if _, err = readOrCreateSecret(keyFile, 32); err != nil {
		return env, err
	}
	secretFile := filepath.Join(o.Dir, "billing-secret")
	secret, err := readOrCreateSecret(secretFile, 32)
	if err != nil {
		return env, err
	}
	env.billing, err = billingsim.New(billingsim.Options{
		Secret: []byte(secret), FailRate: o.FailRate, Seed: uint64(o.Seed),
		StateFile: filepath.Join(o.Dir, "billing-state.json"), Logger: o.Logger,
	})
	if err != nil {
		return env, err
	}
	if env.billingURL, err = env.billing.Start("127.0.0.1:0"); err != nil {
		return env, err
	}

	cfg := config.Default()
	cfg.Embedded.DataDir = o.DataDir
	cfg.Embedded.Listen = o.Listen
	cfg.TokenKeyFile = keyFile
	// The sandbox is local: the production default (2 requests/s, Ion publishes no limits) would
	// only make the demo wait.
	cfg.Ion.RequestsPerSecond, cfg.Ion.Burst = 20, 10
	cfg.Accounts = []config.Account{{
		ID: demoAccount, Name: "Generated partner", Auth: config.AuthV3, IonURL: env.sim.BaseURL(),
		RefreshTokenFile: tokenFile, Currency: "EUR", ClosingDay: config.DefaultClosingDay,
	}}
	cfg.Sinks.HTTP = &config.HTTPSink{URL: env.billingURL + "/deliveries", SecretFile: secretFile, Timeout: config.DefaultSinkTimeout}
	cfg.Sinks.CSV = &config.CSVSink{Dir: filepath.Join(o.Dir, "focus")}
	if err = cfg.Validate(); err != nil {
		return env, fmt.Errorf("demo configuration: %w", err)
	}
	if env.host, err = startHost(ctx, cfg, o.Logger); err != nil {
		return env, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	env.stopRun, env.runDone = stop, make(chan error, 1)
	go func() { env.runDone <- runPipeline(runCtx, env.host.Deps) }()
	return env, nil
}
