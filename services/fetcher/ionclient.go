package fetcher

import (
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/ion"
)

// IonClientOptions are the inputs of NewIonClient.
type IonClientOptions struct {
	Config  *config.Config
	Account config.Account
	// Tokens is the shared token-store bucket (bus.BucketTokens); v3 only.
	Tokens     jetstream.KeyValue
	Holder     string // names this process in token-refresh leases
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// NewIonClient builds a configured account's Ion client: v3 with the shared encrypted token store
// (so every process spends a refresh token once), or v1 Basic. The fetcher and the operator CLI
// both use it, so a credential check exercises exactly what a sync will.
func NewIonClient(o IonClientOptions) (*ion.Client, error) {
	a, ic := o.Account, o.Config.Ion
	opts := ion.Options{
		BaseURL: a.IonURL, Account: a.ID, HTTPClient: o.HTTPClient,
		Timeout: ic.Timeout, MaxRetries: ic.MaxRetries, RequestsPerSecond: ic.RequestsPerSecond, Burst: ic.Burst,
		Logger: o.Logger,
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = -1 // config 0 means none; ion's 0 would mean its default
	}
	if a.Auth == config.AuthV3 {
		keyText, err := o.Config.TokenKey()
		if err != nil {
			return nil, err
		}
		key, err := ion.ParseKey([]byte(keyText.Reveal()))
		if err != nil {
			return nil, err
		}
		store, err := ion.NewKVTokenStore(o.Tokens, key)
		if err != nil {
			return nil, err
		}
		rt, err := a.RefreshToken()
		if err != nil {
			return nil, err
		}
		opts.V3 = &ion.V3Auth{RefreshToken: rt.Reveal(), Store: store, Holder: o.Holder}
	} else {
		k, sec, err := a.APIKey()
		if err != nil {
			return nil, err
		}
		opts.V1 = &ion.V1Auth{APIKey: k.Reveal(), APISecret: sec.Reveal()}
	}
	return ion.New(opts)
}
