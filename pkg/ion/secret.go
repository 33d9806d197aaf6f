package ion

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ReadSecretFile returns the file's content trimmed of surrounding whitespace (editors and
// `echo` add newlines). Errors name the path and the failure, never the content.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("ion: read secret file %s: %w", path, pe.Err)
		}
		return "", fmt.Errorf("ion: read secret file %s: unreadable", path)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("ion: secret file %s is empty", path)
	}
	return s, nil
}

// ParseKey reads a 32-byte AES-256 key given as 32 raw bytes, 64 hex characters, or base64
// (standard or URL alphabet, padded or not). Surrounding whitespace is ignored unless the raw
// form is exactly 32 bytes. Errors never include the key material.
func ParseKey(b []byte) ([]byte, error) {
	if len(b) == 32 {
		return append([]byte(nil), b...), nil
	}
	s := strings.TrimSpace(string(b))
	if len(s) == 32 {
		return []byte(s), nil
	}
	if len(s) == 64 {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, fmt.Errorf("ion: token key must be 32 bytes raw, 64 hex characters or base64 of 32 bytes (got %d characters)", len(s))
}

// ReadKeyFile reads a key file in any form ParseKey accepts.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("ion: read key file %s: %w", path, pe.Err)
		}
		return nil, fmt.Errorf("ion: read key file %s: unreadable", path)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
