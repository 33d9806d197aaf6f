package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/pause"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/publisher"
)

func init() {
	register("approve", "approve an account's period: deliver what the publisher holds for approval", approveCmd)
}

// approveResult is what approve did (--json).
type approveResult struct {
	Account  string             `json:"account"`
	Period   string             `json:"period"`
	Approval publisher.Approval `json:"approval"`
	// Already: the period was approved and nothing waited, so nothing was written or redriven.
	Already  bool `json:"already"`
	Redriven int  `json:"redriven"` // awaiting-approval dead letters handed back to the publisher
	// StillWaiting were fetched after this approval (a re-read racing it): approve again.
	StillWaiting int    `json:"still_waiting"`
	ReconcileOf  string `json:"reconcile_sync,omitempty"` // the completed sync reconciled again
}

const approveUsage = `usage: ionconnector approve --account A --period YYYY-MM [--by NAME] [--json]

Approves a billing period of an account whose config sets approval_required: true. Until then
the publisher delivers none of the period's records: it dead-letters each with reason
awaiting-approval (see 'ionconnector dlq list --reason awaiting-approval'), so nothing is lost
and other accounts keep flowing. approve records who approved and when (KV periods/
<account>.<period>.approval; the approval covers records fetched until now), redrives every
awaiting-approval dead letter of the period to the publisher, each exactly once, and asks the
reconciler to reconcile the period's latest sync again. A re-read fetched after the approval
waits for a new one. Approving a period that is approved and has nothing waiting does nothing.
Reads NATS_URL when set, else the data dir of a stopped ionconnector.`

func approveCmd(ctx context.Context, io IO, args []string) int {
	const name = "approve"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	account := fs.String("account", "", "Ion account id (required)")
	period := fs.String("period", "", "billing period YYYY-MM (required)")
	by := fs.String("by", io.Env("USER"), "who approves (default $USER)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	cfgPath, dataDir := storeFlags(fs, io)
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, approveUsage)
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	if !accountPeriodFlags(io, name, *account, *period) {
		return service.ExitUsage
	}
	cfg, code := commandConfig(io, name, *cfgPath, *dataDir)
	if cfg == nil {
		return code
	}
	a, ok := cfg.Account(*account)
	if !ok {
		fmt.Fprintf(io.Stderr, "%s: account %q is not configured\n", name, *account)
		return service.ExitUsage
	}
	if !a.ApprovalRequired {
		fmt.Fprintf(io.Stderr, "%s: account %s does not require approval: its records are delivered without one (set approval_required: true in its config to hold them until approved)\n", name, *account)
		return service.ExitUsage
	}
	if *by == "" {
		fmt.Fprintf(io.Stderr, "%s: --by is required ($USER is not set)\n", name)
		return service.ExitUsage
	}
	c, code := commandConnect(ctx, io, name, cfg)
	if c == nil {
		return code
	}
	defer c.Close()
	res, err := approve(ctx, c.JS, *account, *period, *by, time.Now().UTC())
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	if *asJSON {
		return printJSON(io, name, res)
	}
	ap := res.Approval
	if res.Already {
		fmt.Fprintf(io.Stdout, "account %s period %s was already approved by %s at %s; nothing awaits approval\n",
			res.Account, res.Period, ap.By, ap.ApprovedAt.Format(time.RFC3339))
		return service.ExitOK
	}
	fmt.Fprintf(io.Stdout, "account %s period %s approved by %s as of %s: %d records redriven to the publisher\n",
		res.Account, res.Period, ap.By, ap.AsOf.Format(time.RFC3339), res.Redriven)
	if res.StillWaiting > 0 {
		fmt.Fprintf(io.Stdout, "%d records fetched after this approval still wait: run approve again\n", res.StillWaiting)
	}
	if res.ReconcileOf != "" {
		fmt.Fprintf(io.Stdout, "reconciliation of sync %s requested again (see: ionconnector reconcile --account %s --period %s)\n",
			res.ReconcileOf, res.Account, res.Period)
	}
	return service.ExitOK
}

// approveScans and approveSettle: approve scans the DLQ this many times, this long apart, so a
// dead letter the publisher decided on before the approval was stored is redriven too.
const (
	approveScans  = 2
	approveSettle = 2 * time.Second
)

// approve records the approval with compare-and-set and redrives the period's awaiting-approval
// dead letters. Written first, so the publisher's later checks pass what it covers; the second
// scan catches a record dead-lettered on a check made just before.
func approve(ctx context.Context, js jetstream.JetStream, account, period, by string, now time.Time) (approveResult, error) {
	res := approveResult{Account: account, Period: period}
	kv, err := pause.Bucket(ctx, js)
	if err != nil {
		return res, err
	}
	cur, rev, approved, err := publisher.LoadApproval(ctx, kv, account, period)
	if err != nil {
		return res, err
	}
	waiting, err := awaitingApproval(ctx, js, account)
	if err != nil {
		return res, err
	}
	if approved && len(waiting[period]) == 0 {
		res.Approval, res.Already = cur, true
		return res, nil
	}
	res.Approval = publisher.Approval{Account: account, Period: period, By: by, ApprovedAt: now, AsOf: now}
	if err := publisher.StoreApproval(ctx, kv, res.Approval, rev); errors.Is(err, publisher.ErrApprovalChanged) {
		// Another approve won the race: go on with its (as recent) approval; redriving twice is safe.
		if res.Approval, _, _, err = publisher.LoadApproval(ctx, kv, account, period); err != nil {
			return res, err
		}
	} else if err != nil {
		return res, err
	}
	// A publisher that read "not approved" just before the approval was stored may publish its
	// dead letter just after a scan: scan again once it has had time to finish that decision.
	// Redriven dead letters are deleted, so a later scan finds only new ones.
	r, err := newRedriver(ctx, js)
	if err != nil {
		return res, err
	}
	for round := range approveScans {
		if round > 0 {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(approveSettle):
			}
		}
		if waiting, err = awaitingApproval(ctx, js, account); err != nil {
			return res, err
		}
		var sel []dlqEntry
		res.StillWaiting = 0
		for _, w := range waiting[period] {
			if res.Approval.Covers(w.rec) {
				sel = append(sel, w.dlqEntry)
			} else {
				res.StillWaiting++
			}
		}
		done, err := r.redrive(ctx, sel)
		for _, d := range done {
			res.Redriven += len(d.Seqs)
		}
		if err != nil {
			return res, fmt.Errorf("approval stored; redrove %d records, then: %w (run approve again)", res.Redriven, err)
		}
	}
	if res.Redriven > 0 {
		if res.ReconcileOf, err = reconcileAgain(ctx, js, account, period, res.Approval.AsOf); err != nil {
			return res, fmt.Errorf("approval stored, %d records redriven; reconciling again: %w", res.Redriven, err)
		}
	}
	return res, nil
}

// awaitingEntry is an awaiting-approval dead letter with its record decoded.
type awaitingEntry struct {
	dlqEntry
	rec events.UsageRecord
}

// awaitingApproval returns the account's awaiting-approval dead letters by billing period.
func awaitingApproval(ctx context.Context, js jetstream.JetStream, account string) (map[string][]awaitingEntry, error) {
	sel, err := readDLQ(ctx, js, dlqFilter{Stage: publisher.Name, Account: account, Reason: bus.ReasonAwaitingApproval})
	if err != nil {
		return nil, err
	}
	out := map[string][]awaitingEntry{}
	for _, e := range sel {
		w := awaitingEntry{dlqEntry: e}
		if err := json.Unmarshal(e.Payload, &w.rec); err != nil {
			return nil, fmt.Errorf("dead letter %d: record: %w", e.Seq, err)
		}
		p := events.PeriodOf(w.rec.BillingPeriodStart)
		out[p] = append(out[p], w)
	}
	return out, nil
}

// awaitingRecords counts the records among ws (a record re-read while it waits has a dead letter
// per revision), as reconcile counts them.
func awaitingRecords(ws []awaitingEntry) int {
	ids := map[string]bool{}
	for _, w := range ws {
		ids[w.rec.RecordID.String()] = true
	}
	return len(ids)
}

// reconcileAgain re-publishes the period's latest successful completion under a new id (one per
// approval), so the reconciler waits for the redriven records to be delivered and stores a
// reconciliation that counts them. It returns the sync id, or "" when no sync has succeeded.
func reconcileAgain(ctx context.Context, js jetstream.JetStream, account, period string, asOf time.Time) (string, error) {
	var latest *events.SyncCompleted
	err := scanStream(ctx, js, events.StreamSync, events.SyncCompletedSubject(account), func(m jetstream.Msg) error {
		var c events.SyncCompleted
		if json.Unmarshal(m.Data(), &c) == nil && c.Period == period && c.Status == events.SyncSucceeded && !c.DryRun &&
			(latest == nil || !c.FinishedAt.Before(latest.FinishedAt)) {
			latest = &c
		}
		return nil
	})
	if err != nil || latest == nil {
		return "", err
	}
	meta := latest.EventMeta("ionconnector/approve")
	meta.ID = events.ID("approval-reconcile", latest.SyncID.String(), asOf.Format(time.RFC3339Nano))
	m, err := events.NewMessage(meta, latest)
	if err != nil {
		return "", err
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js})
	if err != nil {
		return "", err
	}
	if err := pub.PublishCtx(ctx, latest.NATSSubject(), m); err != nil {
		return "", err
	}
	return latest.SyncID.String(), nil
}
