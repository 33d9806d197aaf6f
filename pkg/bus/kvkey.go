package bus

import "encoding/base64"

// KVToken makes s usable as one token of a KV key: as it is when it only holds letters, digits,
// '-' and '_', else "=" + base64url of it, which no plain token can start with.
func KVToken(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
		}
	}
	return s
}
