package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// Approval is an operator's approval of an account's billing period (docs/decisions.md 18),
// stored as JSON under ApprovalKey in the periods bucket. It covers the records fetched up to
// AsOf: a later re-read of the period needs a new approval.
type Approval struct {
	Account    string    `json:"account"`
	Period     string    `json:"period"`
	By         string    `json:"by"`
	ApprovedAt time.Time `json:"approved_at"`
	AsOf       time.Time `json:"as_of"` // the approval time: records with a later x_FetchedAt wait again
}

// Covers reports whether the approval lets rec be delivered.
func (a Approval) Covers(rec events.UsageRecord) bool { return !rec.FetchedAt.After(a.AsOf) }

// ApprovalKey is the approval of an account and period in the periods bucket, beside the
// pinned source mode "<account>.<period>.mode".
func ApprovalKey(account, period string) string { return account + "." + period + ".approval" }

// LoadApproval returns the approval of account and period, its KV revision (for
// compare-and-set) and whether one exists.
func LoadApproval(ctx context.Context, kv jetstream.KeyValue, account, period string) (Approval, uint64, bool, error) {
	e, err := kv.Get(ctx, ApprovalKey(account, period))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Approval{}, 0, false, nil
	}
	if err != nil {
		return Approval{}, 0, false, fmt.Errorf("publisher: read %s: %w", ApprovalKey(account, period), err)
	}
	var a Approval
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return Approval{}, 0, false, fmt.Errorf("publisher: stored %s: %w", e.Key(), err)
	}
	return a, e.Revision(), true, nil
}

// ErrApprovalChanged means another approve wrote the approval between read and write.
var ErrApprovalChanged = errors.New("approval changed concurrently")

// StoreApproval writes a with compare-and-set: it creates the key when rev is 0, else replaces
// revision rev. A concurrent writer makes it fail with ErrApprovalChanged.
func StoreApproval(ctx context.Context, kv jetstream.KeyValue, a Approval, rev uint64) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("publisher: encode approval: %w", err)
	}
	key := ApprovalKey(a.Account, a.Period)
	if rev == 0 {
		_, err = kv.Create(ctx, key, b)
	} else {
		_, err = kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("publisher: write %s: %w", key, ErrApprovalChanged)
	}
	if err != nil {
		return fmt.Errorf("publisher: write %s: %w", key, err)
	}
	return nil
}

// approvalGate opens the periods bucket and the ledger on first use, so New needs no change
// for it.
type approvalGate struct {
	mu     sync.Mutex
	kv     jetstream.KeyValue
	ledger *billing.Ledger
}

func (g *approvalGate) open(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, *billing.Ledger, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.kv == nil {
		kv, err := js.KeyValue(ctx, bus.BucketPeriods)
		if err != nil {
			return nil, nil, fmt.Errorf("publisher: KV bucket %s: %w", bus.BucketPeriods, err)
		}
		ledger, err := billing.OpenLedger(ctx, js)
		if err != nil {
			return nil, nil, err
		}
		g.kv, g.ledger = kv, ledger
	}
	return g.kv, g.ledger, nil
}

// holdUnapproved dead-letters (reason awaiting-approval, which acks) the items of one
// partition that an approval_required account has not approved yet, and returns the rest.
// Dead-lettering rather than NAKing keeps nothing waiting in USAGE, so other accounts flow,
// and `ionconnector approve` redrives exactly these. An item whose dead letter could not be
// published is NAKed for a later try; an approval that cannot be read holds the whole group.
// A re-read of a revision the sinks already hold passes: the ledger skips it, so there is
// nothing new to approve.
func (p *Publisher) holdUnapproved(ctx context.Context, account, period, customer string, its []item) []item {
	if a, ok := p.deps.Config.Account(account); !ok || !a.ApprovalRequired {
		return its
	}
	var ap Approval
	var approved bool
	var part *billing.Partition
	kv, ledger, err := p.approvals.open(ctx, p.deps.JS)
	if err == nil {
		ap, _, approved, err = LoadApproval(ctx, kv, account, period)
	}
	if err == nil && (!approved || slices.ContainsFunc(its, func(it item) bool { return !ap.Covers(it.rec) })) {
		part, _, err = ledger.Load(ctx, account, period, customer)
	}
	if err != nil {
		p.log.Warn("approval unreadable; batch will be redelivered", "account", account, "period", period, "err", err)
		nakAll(its)
		return nil
	}
	var pass []item
	for _, it := range its {
		if approved && ap.Covers(it.rec) || part.Records[it.rec.RecordID.String()].Revision == it.rec.Revision {
			pass = append(pass, it)
			continue
		}
		cause := fmt.Errorf("account %s period %s is not approved (run: ionconnector approve --account %s --period %s)", account, period, account, period)
		if approved {
			cause = fmt.Errorf("account %s period %s was approved as of %s, this record was fetched at %s (run approve again)",
				account, period, ap.AsOf.Format(time.RFC3339), it.rec.FetchedAt.Format(time.RFC3339))
		}
		if !p.deadLetter(ctx, it.msg, bus.ReasonAwaitingApproval, cause) {
			nakAll([]item{it})
		}
	}
	return pass
}
