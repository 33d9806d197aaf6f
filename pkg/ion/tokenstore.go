package ion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// StoredToken is the persisted state of one account's v3 credential. Refresh tokens are
// single-use and rotate on every refresh, so this record, not the configured file, is the
// source of truth once seeded.
type StoredToken struct {
	RefreshToken string    `json:"refreshToken"`
	AccessToken  string    `json:"accessToken,omitempty"`
	AccessExpiry time.Time `json:"accessExpiry,omitzero"`
	// RefreshedAt is when Ion last issued RefreshToken; the 32-day lifetime counts from here.
	RefreshedAt time.Time `json:"refreshedAt,omitzero"`
	// SeedHash is the hex SHA-256 of the configured refresh-token file content this record was
	// seeded from. A different file hash means an operator issued new credentials: reseed.
	SeedHash string `json:"seedHash,omitempty"`
	// OldSeedHashes are earlier seeds' hashes, so a replica still configured with an old file
	// (a rolling redeploy) does not "reseed" with an already spent token.
	OldSeedHashes []string `json:"oldSeedHashes,omitempty"`
}

// SeedHash returns the hex SHA-256 of a configured refresh token, as kept in StoredToken.
func SeedHash(refreshToken string) string {
	h := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(h[:])
}

// TokenStore persists StoredToken per account and serialises refreshes across clients and
// processes. Implementations: KVTokenStore (JetStream KV, shared) and MemoryTokenStore.
type TokenStore interface {
	// Load returns the stored token and its revision, or ErrTokenNotFound (revision 0).
	Load(ctx context.Context, account string) (StoredToken, uint64, error)
	// Lease takes the account's refresh lease with compare-and-set for at most ttl. It returns
	// ErrLeaseHeld at once when another holder has an unexpired lease. release is idempotent.
	Lease(ctx context.Context, account, holder string, ttl time.Duration) (release func(), err error)
	// Save writes tok if the stored revision is still rev (0: create). A lost race returns
	// ErrRevisionConflict.
	Save(ctx context.Context, account string, tok StoredToken, rev uint64) error
}

// TokenStore errors.
var (
	ErrTokenNotFound    = errors.New("ion: no stored token")
	ErrLeaseHeld        = errors.New("ion: token refresh lease held by another client")
	ErrRevisionConflict = errors.New("ion: stored token changed concurrently")
)

// MemoryTokenStore is a TokenStore for one process (tests, or several clients of one account
// in one binary). Its zero value is ready to use.
type MemoryTokenStore struct {
	mu     sync.Mutex
	tokens map[string]memToken
	leases map[string]memLease
	seq    uint64
}

type memToken struct {
	tok StoredToken
	rev uint64
}

type memLease struct {
	holder  string
	expires time.Time
	id      uint64
}

// Load implements TokenStore.
func (m *MemoryTokenStore) Load(ctx context.Context, account string) (StoredToken, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[account]
	if !ok {
		return StoredToken{}, 0, ErrTokenNotFound
	}
	return t.tok, t.rev, nil
}

// Save implements TokenStore.
func (m *MemoryTokenStore) Save(ctx context.Context, account string, tok StoredToken, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokens == nil {
		m.tokens = map[string]memToken{}
	}
	if m.tokens[account].rev != rev {
		return ErrRevisionConflict
	}
	m.tokens[account] = memToken{tok: tok, rev: rev + 1}
	return nil
}

// Lease implements TokenStore.
func (m *MemoryTokenStore) Lease(ctx context.Context, account, holder string, ttl time.Duration) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leases == nil {
		m.leases = map[string]memLease{}
	}
	now := time.Now()
	if l, ok := m.leases[account]; ok && now.Before(l.expires) {
		return nil, ErrLeaseHeld
	}
	m.seq++
	id := m.seq
	m.leases[account] = memLease{holder: holder, expires: now.Add(ttl), id: id}
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if l, ok := m.leases[account]; ok && l.id == id {
				delete(m.leases, account)
			}
		})
	}, nil
}
