package ion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// tokenSource hands out v3 access tokens. Refresh tokens are single-use and rotate, so every
// refresh follows one protocol, whoever runs it (another goroutine, Client or process):
//
//  1. take the account's lease in the TokenStore (compare-and-set) — waiters poll the store;
//  2. re-read the stored token: if someone else refreshed meanwhile, use theirs;
//  3. POST /oauth/token with the stored refresh token, within the lease's lifetime;
//  4. persist the new pair (CAS on the revision read in 2) before the access token is used;
//  5. release the lease.
type tokenSource struct {
	c        *Client
	auth     V3Auth
	holder   string
	seedHash string

	mu      sync.Mutex  // one refresh attempt per Client at a time
	cur     StoredToken // last token this Client used
	unsaved bool        // cur came from a refresh whose Save failed; save before reuse
	spent   []string    // refresh tokens this Client spent

	secMu sync.Mutex // guards known separately: redaction runs while mu is held
	known []string   // recent token strings, redacted from error messages
}

// TokenInfo is the cached token state, without secrets.
type TokenInfo struct {
	AccessExpiry time.Time
	RefreshedAt  time.Time
}

func (t *tokenSource) now() time.Time { return t.c.opts.Now() }

// fresh reports whether tok's access token can be used now without refreshing ahead.
func (t *tokenSource) fresh(tok StoredToken) bool {
	if tok.AccessToken == "" || tok.AccessExpiry.IsZero() {
		return false
	}
	margin := t.auth.RefreshBefore
	if !tok.RefreshedAt.IsZero() {
		if life := tok.AccessExpiry.Sub(tok.RefreshedAt); life > 0 && life/5 < margin {
			margin = life / 5
		}
	}
	return t.now().Add(margin).Before(tok.AccessExpiry)
}

func (t *tokenSource) access(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.unsaved {
		t.retrySave(ctx)
	}
	if t.fresh(t.cur) && !t.seedChanged(t.cur) {
		return t.cur.AccessToken, nil
	}
	tok, err := t.refreshLocked(ctx, t.fresh)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// invalidate is called after a 401 with the access token Ion rejected: use a newer stored one
// if another client already refreshed, otherwise refresh.
func (t *tokenSource) invalidate(ctx context.Context, rejected string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tok, err := t.refreshLocked(ctx, func(s StoredToken) bool {
		return s.AccessToken != rejected && t.fresh(s)
	})
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// seedChanged reports whether the configured refresh token is new to the store: neither the
// current seed nor an earlier one.
func (t *tokenSource) seedChanged(tok StoredToken) bool {
	return t.seedHash != "" && tok.SeedHash != t.seedHash && !slices.Contains(tok.OldSeedHashes, t.seedHash)
}

// refreshLocked returns a stored token satisfying good, refreshing under the lease if none does.
func (t *tokenSource) refreshLocked(ctx context.Context, good func(StoredToken) bool) (StoredToken, error) {
	store, account := t.auth.Store, t.c.opts.Account
	waited := time.Duration(0)
	for {
		tok, _, err := store.Load(ctx, account)
		if err != nil && !errors.Is(err, ErrTokenNotFound) {
			return StoredToken{}, err
		}
		found := err == nil
		if found && !t.seedChanged(tok) && good(tok) {
			t.learn(tok.AccessToken, tok.RefreshToken)
			t.cur = tok
			return tok, nil
		}
		if !found && t.seedHash == "" {
			return StoredToken{}, fmt.Errorf("ion: account %s: no stored refresh token and none configured", account)
		}
		release, err := store.Lease(ctx, account, t.holder, t.auth.LeaseTTL)
		if errors.Is(err, ErrLeaseHeld) {
			// Someone else is refreshing: wait and re-read rather than spend the same token.
			d := 50*time.Millisecond + rand.N(150*time.Millisecond)
			waited += d
			if waited > 2*t.auth.LeaseTTL {
				return StoredToken{}, fmt.Errorf("ion: account %s: token lease still held after %s", account, waited.Round(time.Second))
			}
			if err := sleep(ctx, d); err != nil {
				return StoredToken{}, err
			}
			continue
		}
		if err != nil {
			return StoredToken{}, err
		}
		tok, err = t.refreshLeased(ctx, good)
		release()
		return tok, err
	}
}

// refreshLeased runs steps 2–4 while holding the lease.
func (t *tokenSource) refreshLeased(ctx context.Context, good func(StoredToken) bool) (StoredToken, error) {
	store, account := t.auth.Store, t.c.opts.Account
	// The refresh and the save must finish before the lease can be overtaken; leave a margin.
	lctx, cancel := context.WithTimeout(ctx, t.auth.LeaseTTL*3/4)
	defer cancel()
	tok, rev, err := store.Load(lctx, account)
	if err != nil && !errors.Is(err, ErrTokenNotFound) {
		return StoredToken{}, err
	}
	seedHash, oldSeeds := tok.SeedHash, tok.OldSeedHashes
	switch {
	case errors.Is(err, ErrTokenNotFound) || t.seedChanged(tok):
		if t.seedHash == "" {
			return StoredToken{}, fmt.Errorf("ion: account %s: no stored refresh token and none configured", account)
		}
		t.c.log.Info("ion: seeding refresh token from configuration", "reason", map[bool]string{true: "none stored", false: "configured token changed"}[err != nil])
		if tok.SeedHash != "" {
			oldSeeds = append(slices.Clone(tok.OldSeedHashes), tok.SeedHash)
			if len(oldSeeds) > 8 {
				oldSeeds = oldSeeds[len(oldSeeds)-8:]
			}
		}
		tok = StoredToken{RefreshToken: t.auth.RefreshToken}
		seedHash = t.seedHash
	case good(tok):
		t.learn(tok.AccessToken, tok.RefreshToken)
		t.cur = tok
		return tok, nil
	}
	if t.unsaved && t.isSpent(tok.RefreshToken) && t.cur.RefreshToken != "" {
		// Our last rotation never reached the store, which still holds the token we spent:
		// refresh from the rotated one kept in memory rather than spend that one again.
		tok.RefreshToken = t.cur.RefreshToken
	}
	t.learn(tok.RefreshToken)
	next, err := t.c.refreshCall(lctx, tok.RefreshToken)
	if errors.Is(err, ErrUnauthorized) {
		// Spent, expired (32 days) or revoked: only a human can issue a new one.
		t.c.log.Error("ion: refresh token rejected; request new OAuth credentials in the Ion portal and update the configured refresh token")
		return StoredToken{}, fmt.Errorf("ion: account %s: refresh token rejected, new credentials needed: %w", account, err)
	}
	if err != nil {
		return StoredToken{}, err
	}
	t.learn(next.AccessToken, next.RefreshToken)
	next.SeedHash, next.OldSeedHashes = seedHash, oldSeeds
	t.remember(tok.RefreshToken)
	t.cur = next
	if err := store.Save(lctx, account, next, rev); err != nil {
		// The old refresh token is spent; the new one lives only in memory now. Keep using it and
		// retry the save, but fail this call so the problem is seen.
		t.unsaved = true
		t.c.log.Error("ion: refreshed token NOT persisted; will retry", "err", err)
		return StoredToken{}, fmt.Errorf("ion: account %s: persist rotated token: %w", account, err)
	}
	t.unsaved = false
	t.c.log.Debug("ion: access token refreshed", "expires", next.AccessExpiry)
	return next, nil
}

// retrySave persists t.cur after an earlier failed Save, if the store still holds the token we
// spent (otherwise a reseed or another client took over and ours is moot).
func (t *tokenSource) retrySave(ctx context.Context) {
	store, account := t.auth.Store, t.c.opts.Account
	release, err := store.Lease(ctx, account, t.holder, t.auth.LeaseTTL)
	if err != nil {
		return
	}
	defer release()
	tok, rev, err := store.Load(ctx, account)
	if err != nil && !errors.Is(err, ErrTokenNotFound) {
		return
	}
	if err == nil && tok.RefreshToken != t.cur.RefreshToken && !t.isSpent(tok.RefreshToken) {
		t.unsaved = false // the store moved on without us
		return
	}
	if store.Save(ctx, account, t.cur, rev) == nil {
		t.unsaved = false
		t.c.log.Info("ion: rotated token persisted after retry")
	}
}

func (t *tokenSource) remember(spent string) {
	t.spent = append(t.spent, spent)
	if len(t.spent) > 8 {
		t.spent = t.spent[1:]
	}
}

func (t *tokenSource) isSpent(s string) bool {
	for _, x := range t.spent {
		if x == s {
			return true
		}
	}
	return false
}

// learn records token strings for redaction.
func (t *tokenSource) learn(secrets ...string) {
	t.secMu.Lock()
	defer t.secMu.Unlock()
	for _, s := range secrets {
		if s != "" {
			t.known = append(t.known, s)
		}
	}
	if n := len(t.known); n > 16 {
		t.known = append([]string(nil), t.known[n-16:]...)
	}
}

// secrets lists token strings to redact from error text.
func (t *tokenSource) secrets() []string {
	t.secMu.Lock()
	defer t.secMu.Unlock()
	return append([]string{t.auth.RefreshToken}, t.known...)
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    Int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
}

// refreshCall spends refreshToken at POST /oauth/token. It is retried only on answers that
// show the server did not act (429, 503): after a lost response a retry would spend the same
// single-use token twice.
func (c *Client) refreshCall(ctx context.Context, refreshToken string) (StoredToken, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	var tr tokenResponse
	now := c.opts.Now()
	err := c.doOAuth(ctx, "/oauth/token", form, &tr)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && (ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusServiceUnavailable) {
			return StoredToken{}, err // Ion did not act: the token is unspent
		}
		if errors.Is(err, ErrBadBody) || errors.Is(err, ErrUnavailable) {
			return StoredToken{}, &maybeSpentError{err}
		}
		return StoredToken{}, err
	}
	if tr.AccessToken == "" {
		return StoredToken{}, &maybeSpentError{&BodyError{Path: "/oauth/token", Reason: "no access_token"}}
	}
	next := StoredToken{
		RefreshToken: tr.RefreshToken,
		AccessToken:  tr.AccessToken,
		AccessExpiry: now.Add(time.Duration(tr.ExpiresIn) * time.Second),
		RefreshedAt:  now,
	}
	if tr.ExpiresIn <= 0 {
		next.AccessExpiry = now.Add(7200 * time.Second) // the documented lifetime
	}
	if next.RefreshToken == "" {
		// Not rotated (not Ion's documented behaviour); keep the one we have.
		c.log.Warn("ion: token response without refresh_token; keeping the current one")
		next.RefreshToken = refreshToken
	}
	return next, nil
}

// doOAuth posts a form to an OAuth endpoint (no Authorization header) and decodes the reply.
func (c *Client) doOAuth(ctx context.Context, path string, form url.Values, out any) error {
	cl := call{
		method: http.MethodPost,
		path:   path,
		spends: path == "/oauth/token",
		body:   []byte(form.Encode()),
		ctype:  "application/x-www-form-urlencoded",
		handle: func(resp *http.Response) error {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				return &BodyError{Path: path, Reason: "malformed JSON"}
			}
			return nil
		},
	}
	err := c.do(ctx, cl)
	if err == nil {
		return nil
	}
	var ne *netError
	if errors.As(err, &ne) {
		// Never echo transport details that might quote the form.
		return fmt.Errorf("ion: POST %s: network error", path)
	}
	return err
}

// AccessInfo is the remaining lifetime Ion reports for the current tokens.
type AccessInfo struct {
	AccessExpiresIn  time.Duration
	RefreshExpiresIn time.Duration
}

// ValidateAccess asks Ion how long the current access token and its refresh token remain valid
// (POST /oauth/validateAccess). It obtains an access token first if needed.
func (c *Client) ValidateAccess(ctx context.Context) (AccessInfo, error) {
	if c.tokens == nil {
		return AccessInfo{}, fmt.Errorf("%w: ValidateAccess needs v3 credentials", ErrNoCredentials)
	}
	tok, err := c.tokens.access(ctx)
	if err != nil {
		return AccessInfo{}, err
	}
	var r struct {
		Access  Int64 `json:"access_expires_in"`
		Refresh Int64 `json:"refresh_expires_in"`
	}
	if err := c.doOAuth(ctx, "/oauth/validateAccess", url.Values{"access_token": {tok}}, &r); err != nil {
		return AccessInfo{}, err
	}
	return AccessInfo{
		AccessExpiresIn:  time.Duration(r.Access) * time.Second,
		RefreshExpiresIn: time.Duration(r.Refresh) * time.Second,
	}, nil
}

// RefreshIfOlderThan refreshes the v3 token if the stored one was issued more than d ago (or
// its issue time is unknown). Run it well inside the refresh token's 32-day lifetime so idle
// accounts do not lose their credential.
func (c *Client) RefreshIfOlderThan(ctx context.Context, d time.Duration) error {
	if c.tokens == nil {
		return fmt.Errorf("%w: RefreshIfOlderThan needs v3 credentials", ErrNoCredentials)
	}
	t := c.tokens
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.refreshLocked(ctx, func(s StoredToken) bool {
		return !s.RefreshedAt.IsZero() && t.now().Sub(s.RefreshedAt) < d && s.AccessToken != ""
	})
	return err
}

// KeepFresh calls RefreshIfOlderThan(ctx, every) every `every` until ctx ends, logging
// failures (they are retried on the next tick). It returns ctx.Err().
func (c *Client) KeepFresh(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return errors.New("ion: KeepFresh: interval must be positive")
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if err := c.RefreshIfOlderThan(ctx, every); err != nil && ctx.Err() == nil {
			c.log.Error("ion: scheduled token refresh failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// TokenInfo returns the expiry and issue time of the token this Client last used.
func (c *Client) TokenInfo() TokenInfo {
	if c.tokens == nil {
		return TokenInfo{}
	}
	c.tokens.mu.Lock()
	defer c.tokens.mu.Unlock()
	return TokenInfo{AccessExpiry: c.tokens.cur.AccessExpiry, RefreshedAt: c.tokens.cur.RefreshedAt}
}
