package events

import (
	"crypto/sha1"
	"time"

	"github.com/google/uuid"
)

// RecordIDKey computes RecordID from grouping parts added one at a time, each from pieces, so
// that normalizing a row builds no string per part and no joined key (it did, for every row).
// Use: k.Reset(account, start, mode, csv); k.Add("key", "=", "value")…; id := k.ID().
type RecordIDKey struct {
	b []byte // Namespace, then ID's input
}

// Reset starts a key for RecordID(account, billingPeriodStart, mode, columnSetVersion, …).
func (k *RecordIDKey) Reset(account string, billingPeriodStart time.Time, mode, columnSetVersion string) {
	k.b = append(k.b[:0], Namespace[:]...)
	k.b = append(k.b, "record\x1f"...)
	k.b = append(k.b, account...)
	k.b = append(k.b, '\x1f')
	k.b = billingPeriodStart.UTC().AppendFormat(k.b, time.RFC3339)
	k.b = append(k.b, '\x1f')
	k.b = append(k.b, mode...)
	k.b = append(k.b, '\x1f')
	k.b = append(k.b, columnSetVersion...)
}

// Add appends one grouping part: the concatenation of pieces.
func (k *RecordIDKey) Add(pieces ...string) {
	k.b = append(k.b, '\x1f')
	for _, p := range pieces {
		k.b = append(k.b, p...)
	}
}

// ID is uuid.NewSHA1(Namespace, key), as ID computes it.
func (k *RecordIDKey) ID() uuid.UUID {
	sum := sha1.Sum(k.b)
	var u uuid.UUID
	copy(u[:], sum[:])
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u
}
