package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
)

const redacted = "[redacted]"

// Secret is a credential read from a file or the environment. Every way of printing or
// marshalling it gives "[redacted]"; only Reveal returns the value.
//
// The value sits behind a pointer: when a Secret is an unexported field of a struct printed
// with %v, fmt cannot call String and prints the field's contents, and for a pointer those
// contents are an address, not the secret.
type Secret struct {
	v *string
}

// NewSecret trims surrounding whitespace (files usually end in a newline) and wraps s.
func NewSecret(s string) Secret {
	s = strings.TrimSpace(s)
	return Secret{v: &s}
}

// Reveal returns the value. Call it only where the value is sent to its one destination.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

// Every printing and marshalling path says "[redacted]". Format covers every fmt verb (%x
// would otherwise hex-encode the value); the rest cover encoders and slog.
func (s Secret) String() string                { return redacted }
func (s Secret) GoString() string              { return redacted }
func (s Secret) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (s Secret) MarshalJSON() ([]byte, error)  { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalYAML() (any, error)     { return redacted, nil }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

var _ slog.LogValuer = Secret{}

// ErrEmptySecret is returned for a secret file that holds only whitespace.
var ErrEmptySecret = errors.New("secret file is empty")

// ReadSecretFile reads and trims a secret file. Errors name the path and never the content.
func ReadSecretFile(path string) (Secret, error) {
	if path == "" {
		return Secret{}, errors.New("config: no secret file configured")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		// os errors already carry the path; unwrap to avoid saying it twice.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return Secret{}, fmt.Errorf("config: secret file %q: %w", path, err)
	}
	s := NewSecret(string(b))
	if s.IsZero() {
		return Secret{}, fmt.Errorf("config: secret file %q: %w", path, ErrEmptySecret)
	}
	return s, nil
}

// TokenKey returns the token-store key: ION_TOKEN_KEY if Load saw it, else token_key_file.
// The key's encoding is the token store's business.
func (c *Config) TokenKey() (Secret, error) {
	if !c.tokenKey.IsZero() {
		return c.tokenKey, nil
	}
	if c.TokenKeyFile == "" {
		return Secret{}, errors.New("config: no token key: set token_key_file or ION_TOKEN_KEY")
	}
	return ReadSecretFile(c.TokenKeyFile)
}

// RefreshToken reads a v3 account's refresh token file.
func (a Account) RefreshToken() (Secret, error) {
	return ReadSecretFile(a.RefreshTokenFile)
}

// APIKey reads a v1 account's key and secret files.
func (a Account) APIKey() (key, secret Secret, err error) {
	if key, err = ReadSecretFile(a.APIKeyFile); err != nil {
		return Secret{}, Secret{}, err
	}
	if secret, err = ReadSecretFile(a.APISecretFile); err != nil {
		return Secret{}, Secret{}, err
	}
	return key, secret, nil
}

// Secret reads the HTTP sink's signing secret.
func (h HTTPSink) Secret() (Secret, error) {
	return ReadSecretFile(h.SecretFile)
}
