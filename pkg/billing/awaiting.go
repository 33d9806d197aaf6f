package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// AwaitingApproval returns the records of an account and period that the publisher holds for
// an operator's approval (dead letters dlq.v1.publisher.<account> with reason
// awaiting-approval), the newest revision per record id: a record re-read twice before its
// approval waits twice, but is one record.
func AwaitingApproval(ctx context.Context, js jetstream.JetStream, account, period string) (map[string]events.UsageRecord, error) {
	out := map[string]events.UsageRecord{}
	cons, err := ReadConsumer(ctx, js, events.StreamDLQ, "dlq.v1.publisher."+account)
	if err != nil {
		return nil, fmt.Errorf("billing: read awaiting-approval dead letters of %s: %w", account, err)
	}
	defer cons.Delete()
	_, err = cons.Each(ctx, func(m jetstream.Msg) error {
		var dl events.DeadLetter
		var rec events.UsageRecord
		if json.Unmarshal(m.Data(), &dl) != nil || dl.Reason != bus.ReasonAwaitingApproval || json.Unmarshal(dl.Payload, &rec) != nil {
			return nil
		}
		if events.PeriodOf(rec.BillingPeriodStart) != period {
			return nil
		}
		id := rec.RecordID.String()
		if old, ok := out[id]; !ok || old.FetchedAt.Before(rec.FetchedAt) {
			out[id] = rec
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("billing: read awaiting-approval dead letters of %s: %w", account, err)
	}
	return out, nil
}

// awaiting is what records held for approval add to a reconciliation.
type awaiting struct {
	count      int
	held       map[rowKey]decimal.Decimal // their amounts, reported as held
	superseded map[rowKey]decimal.Decimal // older delivered revisions they replace in the comparison
	totals     map[string]decimal.Decimal // their amounts per currency, for the reason
}

// heldForApproval reads the records of an account and period awaiting approval and
// attributes them to rows. A waiting revision stands in for an older delivered revision of the
// same record (Ion's control total counts the newer one); a waiting revision no newer than the
// delivered one is stale and ignored.
func heldForApproval(ctx context.Context, js jetstream.JetStream, account, period string) (awaiting, error) {
	a := awaiting{held: map[rowKey]decimal.Decimal{}, superseded: map[rowKey]decimal.Decimal{}, totals: map[string]decimal.Decimal{}}
	waiting, err := AwaitingApproval(ctx, js, account, period)
	if err != nil || len(waiting) == 0 {
		return a, err
	}
	ledger, err := OpenLedger(ctx, js)
	if err != nil {
		return a, err
	}
	parts := map[string]*Partition{}
	for id, w := range waiting {
		p, ok := parts[w.IonCustomerID]
		if !ok {
			if p, _, err = ledger.Load(ctx, account, period, w.IonCustomerID); err != nil {
				return a, err
			}
			parts[w.IonCustomerID] = p
		}
		if h, ok := p.Records[id]; ok {
			if !h.AsOf.Before(w.FetchedAt) {
				continue
			}
			k := rowKey{w.IonCustomerID, h.Currency}
			a.superseded[k] = a.superseded[k].Add(h.Billed)
		}
		k := rowKey{w.IonCustomerID, w.BillingCurrency}
		a.held[k] = a.held[k].Add(w.BilledCost)
		a.totals[w.BillingCurrency] = a.totals[w.BillingCurrency].Add(w.BilledCost)
		a.count++
	}
	return a, nil
}

// reason says why a period whose rows balance is still not reconciled.
func (a awaiting) reason(account, period string) string {
	curs := make([]string, 0, len(a.totals))
	for c := range a.totals {
		curs = append(curs, c)
	}
	slices.Sort(curs)
	amounts := make([]string, len(curs))
	for i, c := range curs {
		amounts[i] = a.totals[c].String() + " " + c
	}
	return fmt.Sprintf("%d records (%s) await approval: ionconnector approve --account %s --period %s",
		a.count, strings.Join(amounts, ", "), account, period)
}
