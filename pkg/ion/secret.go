package ion

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

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
