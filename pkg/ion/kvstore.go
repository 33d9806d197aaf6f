package ion

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TokenBucket is the JetStream KV bucket KVTokenStore expects; provisioning creates it.
const TokenBucket = "ion_tokens"

// kvFormat is the first byte of a stored value, so the layout can change later.
const kvFormat byte = 1

// KVTokenStore is a TokenStore on a JetStream KV bucket, shared by every process of a
// deployment. Values are sealed with AES-256-GCM (random nonce, account id as additional data,
// so a record copied to another account's key does not decrypt). Leases are plain records
// updated with compare-and-set; they carry their own expiry so a crashed holder is overtaken.
type KVTokenStore struct {
	kv   jetstream.KeyValue
	aead cipher.AEAD
}

// NewKVTokenStore returns a store on kv sealing values under key (32 bytes; see ParseKey).
func NewKVTokenStore(kv jetstream.KeyValue, key []byte) (*KVTokenStore, error) {
	if kv == nil {
		return nil, errors.New("ion: KVTokenStore: nil KeyValue")
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("ion: KVTokenStore: key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ion: KVTokenStore: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("ion: KVTokenStore: %w", err)
	}
	return &KVTokenStore{kv: kv, aead: aead}, nil
}

// kvKey maps an account id onto a valid KV key. Ion account ids are digits; anything else is
// base64url-encoded so no account can address another's key.
func kvKey(kind, account string) string {
	ok := account != ""
	for _, r := range account {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_') {
			ok = false
			break
		}
	}
	if !ok {
		account = "b64-" + base64.RawURLEncoding.EncodeToString([]byte(account))
	}
	return kind + "." + account
}

func (s *KVTokenStore) seal(account string, tok StoredToken) ([]byte, error) {
	plain, err := json.Marshal(tok)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("ion: nonce: %w", err)
	}
	out := make([]byte, 0, 1+len(nonce)+len(plain)+s.aead.Overhead())
	out = append(out, kvFormat)
	out = append(out, nonce...)
	return s.aead.Seal(out, nonce, plain, []byte(account)), nil
}

func (s *KVTokenStore) open(account string, b []byte) (StoredToken, error) {
	ns := s.aead.NonceSize()
	if len(b) < 1+ns+s.aead.Overhead() || b[0] != kvFormat {
		return StoredToken{}, fmt.Errorf("ion: stored token for account %s: unknown format", account)
	}
	plain, err := s.aead.Open(nil, b[1:1+ns], b[1+ns:], []byte(account))
	if err != nil {
		// Deliberately vague: a wrong key, a tampered value and a value moved from another
		// account all look alike.
		return StoredToken{}, fmt.Errorf("ion: stored token for account %s cannot be decrypted (wrong key?)", account)
	}
	var tok StoredToken
	if err := json.Unmarshal(plain, &tok); err != nil {
		return StoredToken{}, fmt.Errorf("ion: stored token for account %s: malformed record", account)
	}
	return tok, nil
}

// Load implements TokenStore.
func (s *KVTokenStore) Load(ctx context.Context, account string) (StoredToken, uint64, error) {
	e, err := s.kv.Get(ctx, kvKey("token", account))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return StoredToken{}, 0, ErrTokenNotFound
	}
	if err != nil {
		return StoredToken{}, 0, fmt.Errorf("ion: load token: %w", err)
	}
	tok, err := s.open(account, e.Value())
	if err != nil {
		return StoredToken{}, 0, err
	}
	return tok, e.Revision(), nil
}

// Save implements TokenStore.
func (s *KVTokenStore) Save(ctx context.Context, account string, tok StoredToken, rev uint64) error {
	val, err := s.seal(account, tok)
	if err != nil {
		return err
	}
	key := kvKey("token", account)
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, val)
	} else {
		_, err = s.kv.Update(ctx, key, val, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return ErrRevisionConflict
	}
	if err != nil {
		return fmt.Errorf("ion: save token: %w", err)
	}
	return nil
}

type kvLease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// Lease implements TokenStore.
func (s *KVTokenStore) Lease(ctx context.Context, account, holder string, ttl time.Duration) (func(), error) {
	key := kvKey("lease", account)
	val, err := json.Marshal(kvLease{Holder: holder, Expires: time.Now().Add(ttl)})
	if err != nil {
		return nil, err
	}
	rev, err := s.kv.Create(ctx, key, val)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Someone holds or held it: take it over only if it has expired, with CAS so two
		// takers cannot both win.
		e, gerr := s.kv.Get(ctx, key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			return nil, ErrLeaseHeld // released in between; the caller retries soon
		case gerr != nil:
			return nil, fmt.Errorf("ion: read lease: %w", gerr)
		}
		var cur kvLease
		if json.Unmarshal(e.Value(), &cur) == nil && time.Now().Before(cur.Expires) {
			return nil, ErrLeaseHeld
		}
		rev, err = s.kv.Update(ctx, key, val, e.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, ErrLeaseHeld
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ion: take lease: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// Own context: release must happen even when the caller's is done. Deleting at our
			// revision only, so an overtaken lease is not removed from its new holder.
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.kv.Delete(rctx, key, jetstream.LastRevision(rev))
		})
	}, nil
}
