package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/pause"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/publisher"
)

func init() {
	register("status", "per account: last sync per period, open/closed periods, paused; consumer lag, DLQ depth", statusCmd)
}

type periodStatus struct {
	Period     string     `json:"period"`
	Open       bool       `json:"open"`
	ClosesAt   time.Time  `json:"closes_at"`
	LastSync   *time.Time `json:"last_sync,omitempty"` // when its latest sync completed (else when it was reconciled)
	SyncStatus string     `json:"sync_status,omitempty"`
	Reconciled *bool      `json:"reconciled,omitempty"`
	Records    int        `json:"records,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	// Approval, only for an approval_required account: "approved", "awaiting" (the publisher
	// holds AwaitingApproval records until 'ionconnector approve') or "not approved".
	Approval         string `json:"approval,omitempty"`
	AwaitingApproval int    `json:"awaiting_approval,omitempty"`
}

type accountStatus struct {
	Account     string           `json:"account"`
	Auth        string           `json:"auth"`
	Paused      bool             `json:"paused"`
	Pause       *pause.Info      `json:"pause,omitempty"`
	Periods     []periodStatus   `json:"periods"`
	DeadLetters map[string]int   `json:"dead_letters"` // by stage
	Credentials *credentialCheck `json:"credentials,omitempty"`
}

type consumerStatus struct {
	Stream      string `json:"stream"`
	Durable     string `json:"durable"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
	Error       string `json:"error,omitempty"`
}

type statusReport struct {
	At          time.Time                 `json:"at"`
	Accounts    []accountStatus           `json:"accounts"`
	Consumers   []consumerStatus          `json:"consumers"`
	DeadLetters map[string]map[string]int `json:"dead_letters"` // stage → account → count
}

// periodClose is when a period closes: its next month's closing day, 00:00 UTC.
func periodClose(period string, closingDay int) time.Time {
	start, _, err := events.ParsePeriod(period)
	if err != nil {
		return time.Time{}
	}
	if closingDay < 1 {
		closingDay = config.DefaultClosingDay
	}
	return events.PeriodCloses(start, closingDay)
}

func collectStatus(ctx context.Context, cfg *config.Config, js jetstream.JetStream, now time.Time, checkCreds bool) (statusReport, error) {
	rep := statusReport{At: now.UTC(), DeadLetters: map[string]map[string]int{}}
	st, err := js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		return rep, fmt.Errorf("stream %s: %w", events.StreamDLQ, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("dlq.v1.>"))
	if err != nil {
		return rep, fmt.Errorf("stream %s: %w", events.StreamDLQ, err)
	}
	for subj, n := range info.State.Subjects {
		t := strings.Split(subj, ".")
		if len(t) < 4 {
			continue
		}
		if rep.DeadLetters[t[2]] == nil {
			rep.DeadLetters[t[2]] = map[string]int{}
		}
		rep.DeadLetters[t[2]][t[3]] += int(n)
	}
	for _, c := range bus.DefaultConsumers() {
		cs := consumerStatus{Stream: c.Stream, Durable: c.Durable}
		if cons, err := js.Consumer(ctx, c.Stream, c.Durable); err != nil {
			cs.Error = err.Error()
		} else if ci, err := cons.Info(ctx); err != nil {
			cs.Error = err.Error()
		} else {
			cs.Pending, cs.AckPending, cs.Redelivered = ci.NumPending, ci.NumAckPending, ci.NumRedelivered
		}
		rep.Consumers = append(rep.Consumers, cs)
	}
	kv, err := pause.Bucket(ctx, js)
	if err != nil {
		return rep, err
	}
	for _, a := range cfg.Accounts {
		as := accountStatus{Account: a.ID, Auth: a.Auth, DeadLetters: map[string]int{}, Periods: []periodStatus{}}
		if in, paused, err := pause.Get(ctx, kv, a.ID); err != nil {
			return rep, err
		} else if paused {
			as.Paused, as.Pause = true, &in
		}
		for stage, byAcct := range rep.DeadLetters {
			if n := byAcct[a.ID]; n > 0 {
				as.DeadLetters[stage] = n
			}
		}
		// The periods to show: the current and previous month, and every period with a
		// stored reconciliation (the publisher's record of its latest completed sync).
		cur := now.UTC().Format("2006-01")
		prev := now.UTC().AddDate(0, 0, -now.UTC().Day()).Format("2006-01")
		periods := []string{cur, prev}
		if lister, err := kv.ListKeysFiltered(ctx, "recon."+a.ID+".*"); err == nil {
			for k := range lister.Keys() {
				periods = append(periods, strings.TrimPrefix(k, "recon."+a.ID+"."))
			}
		} else if !errors.Is(err, jetstream.ErrNoKeysFound) {
			return rep, err
		}
		// Completed syncs (the fetcher's manifests), the latest per period.
		synced := map[string]events.SyncCompleted{}
		err := scanStream(ctx, js, events.StreamSync, events.SyncCompletedSubject(a.ID), func(m jetstream.Msg) error {
			var c events.SyncCompleted
			if json.Unmarshal(m.Data(), &c) == nil && c.Period != "" {
				if old, ok := synced[c.Period]; !ok || !c.FinishedAt.Before(old.FinishedAt) {
					synced[c.Period] = c
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
		for p := range synced {
			periods = append(periods, p)
		}
		var waiting map[string][]awaitingEntry
		if a.ApprovalRequired {
			if waiting, err = awaitingApproval(ctx, js, a.ID); err != nil {
				return rep, err
			}
			for p := range waiting {
				periods = append(periods, p)
			}
		}
		slices.Sort(periods)
		periods = slices.Compact(periods)
		slices.Reverse(periods)
		for _, p := range periods {
			if _, _, err := events.ParsePeriod(p); err != nil {
				continue
			}
			ps := periodStatus{Period: p, ClosesAt: periodClose(p, a.ClosingDay)}
			ps.Open = now.Before(ps.ClosesAt)
			if c, ok := synced[p]; ok {
				t := c.FinishedAt
				ps.LastSync, ps.SyncStatus, ps.Reason = &t, c.Status, c.Reason
			}
			if e, err := kv.Get(ctx, "recon."+a.ID+"."+p); err == nil {
				var r events.Reconciliation
				if json.Unmarshal(e.Value(), &r) == nil {
					t := r.ComputedAt
					if t.IsZero() {
						t = e.Created()
					}
					rec := r.Reconciled
					if ps.LastSync == nil {
						ps.LastSync, ps.SyncStatus = &t, r.SyncStatus
					}
					ps.Reconciled, ps.Records, ps.Reason = &rec, r.Records, r.Reason
				}
			}
			if a.ApprovalRequired {
				_, _, approved, err := publisher.LoadApproval(ctx, kv, a.ID, p)
				if err != nil {
					return rep, err
				}
				ps.AwaitingApproval = awaitingRecords(waiting[p])
				switch {
				case ps.AwaitingApproval > 0:
					ps.Approval = "awaiting"
				case approved:
					ps.Approval = "approved"
				default:
					ps.Approval = "not approved"
				}
			}
			as.Periods = append(as.Periods, ps)
		}
		if checkCreds {
			cc := checkCredentials(ctx, cfg, js, a)
			as.Credentials = &cc
		}
		rep.Accounts = append(rep.Accounts, as)
	}
	return rep, nil
}

func statusCmd(ctx context.Context, io IO, args []string) int {
	const name = "status"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	checkCreds := fs.Bool("check-credentials", false, "also ask Ion how long each account's credentials stay valid")
	cfgPath, dataDir := storeFlags(fs, io)
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, "usage: ionconnector status [--json] [--check-credentials]\n\n"+
			"Per configured account: paused or not, dead letters by stage, and per period (current,\n"+
			"previous, and every period with a completed sync) open or closed (closing day), the last\n"+
			"completed sync and whether it reconciled. Then the lag of every durable consumer.")
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	cfg, code := commandConfig(io, name, *cfgPath, *dataDir)
	if cfg == nil {
		return code
	}
	c, code := commandConnect(ctx, io, name, cfg)
	if c == nil {
		return code
	}
	defer c.Close()
	rep, err := collectStatus(ctx, cfg, c.JS, time.Now(), *checkCreds)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	if *asJSON {
		return printJSON(io, name, rep)
	}
	printStatus(io.Stdout, rep)
	return service.ExitOK
}

func printStatus(w io.Writer, rep statusReport) {
	if len(rep.Accounts) == 0 {
		fmt.Fprintln(w, "no accounts configured")
	}
	for _, a := range rep.Accounts {
		state := "active"
		if a.Paused {
			state = "PAUSED"
			if a.Pause != nil {
				state += fmt.Sprintf(" since %s by %s", a.Pause.PausedAt.Format(time.RFC3339), a.Pause.By)
				if a.Pause.Reason != "" {
					state += ": " + a.Pause.Reason
				}
			}
		}
		fmt.Fprintf(w, "Account %s (%s): %s\n", a.Account, a.Auth, state)
		if c := a.Credentials; c != nil {
			if c.OK && c.RefreshExpiresAt != nil {
				fmt.Fprintf(w, "  credentials valid; refresh token expires %s (in %s)\n", c.RefreshExpiresAt.Format(time.RFC3339), c.RefreshExpiresIn)
			} else if c.OK {
				fmt.Fprintln(w, "  credentials valid")
			} else {
				fmt.Fprintf(w, "  credentials FAILED: %s\n", c.Error)
			}
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PERIOD\tSTATE\tCLOSES\tLAST SYNC\tSTATUS\tRECONCILED\tRECORDS\tAPPROVAL")
		for _, p := range a.Periods {
			open := "closed"
			if p.Open {
				open = "open"
			}
			last, status, recon, records := "never", "-", "-", "-"
			if p.LastSync != nil {
				last, status, records = p.LastSync.UTC().Format("2006-01-02 15:04Z"), p.SyncStatus, fmt.Sprint(p.Records)
				switch {
				case p.Reconciled == nil:
					recon, records = "pending", "-"
				case *p.Reconciled:
					recon = "yes"
				default:
					recon = "NO"
				}
			}
			approval := "-"
			switch p.Approval {
			case "":
			case "awaiting":
				approval = fmt.Sprintf("AWAITING (%d records)", p.AwaitingApproval)
			default:
				approval = p.Approval
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Period, open, p.ClosesAt.Format("2006-01-02"), last, status, recon, records, approval)
		}
		_ = tw.Flush()
		stages := make([]string, 0, len(a.DeadLetters))
		for s := range a.DeadLetters {
			stages = append(stages, s)
		}
		slices.Sort(stages)
		parts := []string{}
		for _, s := range stages {
			parts = append(parts, fmt.Sprintf("%s %d", s, a.DeadLetters[s]))
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		fmt.Fprintf(w, "  dead letters: %s\n\n", strings.Join(parts, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tSTREAM\tPENDING\tACK PENDING\tREDELIVERED")
	for _, c := range rep.Consumers {
		if c.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\n", c.Durable, c.Stream, "error: "+c.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", c.Durable, c.Stream, c.Pending, c.AckPending, c.Redelivered)
	}
	_ = tw.Flush()
	total := 0
	for _, byAcct := range rep.DeadLetters {
		for _, n := range byAcct {
			total += n
		}
	}
	fmt.Fprintf(w, "DLQ depth: %d\n", total)
}
