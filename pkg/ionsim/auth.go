package ionsim

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"time"
)

// tokenStore holds OAuth state. Tokens are derived from the seed and a counter, so a seeded run
// hands out the same tokens in the same order. Used refresh tokens are kept to detect reuse.
type tokenStore struct {
	seed    uint64
	n       uint64
	refresh map[string]*refreshToken
	access  map[string]*accessToken
	initial map[string]string // account → first refresh token
	keys    map[string][2]string
}

type refreshToken struct {
	account string
	expires time.Time
	used    bool
}

type accessToken struct {
	account string
	expires time.Time
	pair    *refreshToken // issued in the same response; validateAccess reports its lifetime
}

func newTokenStore(seed uint64) *tokenStore {
	return &tokenStore{seed: seed, refresh: map[string]*refreshToken{}, access: map[string]*accessToken{},
		initial: map[string]string{}, keys: map[string][2]string{}}
}

func (ts *tokenStore) mint(kind uint64, n int) string {
	ts.n++
	b := make([]byte, 0, 8*n)
	for i := 0; i < n; i++ {
		b = binary.BigEndian.AppendUint64(b, hash(ts.seed, kind, ts.n, uint64(i)))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ts *tokenStore) issueInitial(account string, now time.Time, ttl time.Duration) {
	ts.initial[account] = ts.newRefresh(account, now, ttl)
	key := "ak_" + ts.mint(3, 2)
	ts.keys[account] = [2]string{key, ts.mint(4, 4)}
}

func (ts *tokenStore) newRefresh(account string, now time.Time, ttl time.Duration) string {
	t := ts.mint(1, 4)
	ts.refresh[t] = &refreshToken{account: account, expires: now.Add(ttl)}
	return t
}

func (ts *tokenStore) apiKey(account string) (string, string) {
	k := ts.keys[account]
	return k[0], k[1]
}

type oauthError struct {
	Error string `json:"error"`
}

// handleToken implements POST /oauth/token: refresh_token grant only, single-use rotation.
func (s *Sim) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"cannot parse form: " + err.Error()})
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "refresh_token" {
		writeJSON(w, http.StatusBadRequest, oauthError{"unsupported grant_type: " + gt})
		return
	}
	rt := strings.TrimSpace(r.PostForm.Get("refresh_token"))
	now := s.opts.Now()
	s.mu.Lock()
	old, ok := s.tokens.refresh[rt]
	switch {
	case !ok:
		s.stats.RefreshInvalid++
		s.mu.Unlock()
		// The vendor's own example error text.
		writeJSON(w, http.StatusBadRequest, oauthError{"cannot validate token: redis: nil"})
		return
	case old.used:
		s.stats.RefreshReuse++
		s.mu.Unlock()
		s.log.Warn("ionsim: refresh token reused", "account", old.account)
		writeJSON(w, http.StatusBadRequest, oauthError{"cannot validate token: refresh token already used"})
		return
	case !now.Before(old.expires):
		s.stats.RefreshInvalid++
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, oauthError{"cannot validate token: refresh token expired"})
		return
	}
	old.used = true
	newRT := s.tokens.newRefresh(old.account, now, s.opts.Faults.RefreshTokenTTL)
	at := s.tokens.mint(2, 4)
	s.tokens.access[at] = &accessToken{account: old.account, expires: now.Add(s.opts.Faults.AccessTokenTTL), pair: s.tokens.refresh[newRT]}
	s.stats.RefreshOK++
	n, _ := r.Context().Value(reqNKey).(uint64)
	lose := frac(hash(uint64(s.opts.Seed), n, 999)) < s.opts.Faults.LoseTokenResponse
	if lose {
		s.stats.LostTokens++
	}
	if err := s.tokens.save(s.opts.TokenStateFile); err != nil {
		s.log.Error("ionsim: save token state", "err", err)
	}
	s.mu.Unlock()
	if lose {
		// Rotated, but the client never hears of it.
		panic(http.ErrAbortHandler)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  at,
		"expires_in":    int64(s.opts.Faults.AccessTokenTTL / time.Second),
		"refresh_token": newRT,
		"token_type":    "Bearer",
	})
}

// handleValidate implements POST /oauth/validateAccess.
func (s *Sim) handleValidate(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"cannot parse form: " + err.Error()})
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	at, ok := s.tokens.access[strings.TrimSpace(r.PostForm.Get("access_token"))]
	if !ok || !now.Before(at.expires) {
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, oauthError{"cannot validate token: redis: nil"})
		return
	}
	refreshLeft := int64(0)
	if !at.pair.used && now.Before(at.pair.expires) {
		refreshLeft = int64(at.pair.expires.Sub(now) / time.Second)
	}
	accessLeft := int64(at.expires.Sub(now) / time.Second)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]int64{"access_expires_in": accessLeft, "refresh_expires_in": refreshLeft})
}

// bearer guards /api/v3/**: missing, unknown or expired tokens → 401 (body per Variant);
// a token of another account → 403 PERMISSION_DENIED envelope.
func (s *Sim) bearer(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		account := r.PathValue("account")
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		now := s.opts.Now()
		s.mu.Lock()
		at, known := s.tokens.access[strings.TrimSpace(tok)]
		valid := ok && known && now.Before(at.expires)
		s.mu.Unlock()
		if !valid {
			s.count(func(st *Stats) { st.Unauthorized++ })
			s.unauthorized(w)
			return
		}
		if at.account != account {
			s.count(func(st *Stats) { st.Forbidden++ })
			writeEnvelope(w, r, http.StatusForbidden, "PERMISSION_DENIED", "permission denied to access accounts/"+account)
			return
		}
		if _, exists := s.accounts[account]; !exists {
			writeEnvelope(w, r, http.StatusNotFound, "NOT_FOUND", "resource 'accounts/"+account+"' not found")
			return
		}
		next(w, r)
	}
}

func (s *Sim) unauthorized(w http.ResponseWriter) {
	switch s.opts.Variant.UnauthorizedBody {
	case UnauthorizedEnvelope:
		writeJSON(w, http.StatusUnauthorized, envelope{Error: "UNAUTHENTICATED", Message: "access token is invalid or expired", Code: 401,
			Details: []detail{{Type: requestInfoType, RequestID: "0"}}})
	case UnauthorizedText:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("Unauthorized\n"))
	default:
		w.WriteHeader(http.StatusUnauthorized)
	}
}

// basic guards /api/v1/** with the account's API key and secret.
func (s *Sim) basic(next func(w http.ResponseWriter, r *http.Request, d *dataset)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if ok {
			s.mu.Lock()
			for acct, k := range s.tokens.keys {
				if subtle.ConstantTimeCompare([]byte(user), []byte(k[0])) == 1 && subtle.ConstantTimeCompare([]byte(pass), []byte(k[1])) == 1 {
					d := s.accounts[acct]
					s.mu.Unlock()
					next(w, r, d)
					return
				}
			}
			s.mu.Unlock()
		}
		s.count(func(st *Stats) { st.Unauthorized++ })
		w.Header().Set("WWW-Authenticate", `Basic realm="ion"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"success": false, "message": "Invalid API credentials"})
	}
}
