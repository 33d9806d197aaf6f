package events

import (
	"time"

	"github.com/google/uuid"
)

// SyncRequest asks the fetcher to sync one account and period (ion.sync.v1.requested.<account>).
// The scheduler and the CLI publish it; anyone may.
type SyncRequest struct {
	// RequestID makes the request unique: the scheduler's trigger slot (so its replicas request
	// once) or a caller-supplied id, by default a new UUID (so two deliberate syncs both run).
	RequestID   string    `json:"request_id"`
	Account     string    `json:"account"`
	Period      string    `json:"period"`       // "YYYY-MM"
	Mode        string    `json:"mode"`         // ModeV1 or ModeV3; refused if the period is pinned to the other
	Reason      string    `json:"reason"`       // why: scheduled, manual, backfill, replay, ...
	RequestedBy string    `json:"requested_by"` // service or user that asked
	RequestedAt time.Time `json:"requested_at"`
	// Customers limits the sync to these Ion customer ids; empty means every customer. A filtered
	// sync is never a complete re-read, so it never produces reversals.
	Customers []string `json:"customers,omitempty"`
	DryRun    bool     `json:"dry_run"` // fetch and transform, deliver nothing
}

// SyncRequestID is the deterministic id of a sync request; it is also the sync id that every
// later event of the sync carries.
func SyncRequestID(account, period, requestID string) uuid.UUID {
	return ID(TypeSyncRequested, account, period, requestID)
}

// SyncID is the id of the sync this request starts (its event id).
func (r SyncRequest) SyncID() uuid.UUID { return SyncRequestID(r.Account, r.Period, r.RequestID) }

// EventMeta returns the CloudEvents context of the request.
func (r SyncRequest) EventMeta(source string) Meta {
	return Meta{
		ID:      r.SyncID(),
		Type:    TypeSyncRequested,
		Source:  source,
		Subject: subjectOf(r.Account, r.Period),
		Time:    r.RequestedAt,
	}
}

// NATSSubject is the subject the request is published on.
func (r SyncRequest) NATSSubject() string { return SyncRequestedSubject(r.Account) }
