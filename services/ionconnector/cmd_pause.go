package ionconnector

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/pause"
	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("pause", "hold an account: no scheduled syncs, requests and fetch tasks parked until resume", pauseCmd)
	register("resume", "resume a paused account and re-publish everything held for it", resumeCmd)
}

// accountFlag checks --account and, when the config lists accounts, that it is one of them.
func accountFlag(io IO, name, account string, cfg *config.Config) bool {
	if account == "" {
		fmt.Fprintf(io.Stderr, "%s: --account is required\n", name)
		return false
	}
	if err := events.CheckToken(account); err != nil {
		fmt.Fprintf(io.Stderr, "%s: --account: %v\n", name, err)
		return false
	}
	if cfg != nil && len(cfg.Accounts) > 0 {
		if _, ok := cfg.Account(account); !ok {
			fmt.Fprintf(io.Stderr, "%s: account %q is not configured\n", name, account)
			return false
		}
	}
	return true
}

func pauseCmd(ctx context.Context, io IO, args []string) int {
	return pauseResume(ctx, io, "pause", args)
}

func resumeCmd(ctx context.Context, io IO, args []string) int {
	return pauseResume(ctx, io, "resume", args)
}

func pauseResume(ctx context.Context, io IO, name string, args []string) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	account := fs.String("account", "", "Ion account id (required)")
	var reason, by *string
	if name == "pause" {
		reason = fs.String("reason", "", "why, shown by status")
		by = fs.String("by", io.Env("USER"), "who paused it (default $USER)")
	}
	asJSON := fs.Bool("json", false, "print the result as JSON")
	cfgPath, dataDir := storeFlags(fs, io)
	fs.Usage = func() {
		if name == "pause" {
			fmt.Fprintln(io.Stderr, "usage: ionconnector pause --account A [--reason R] [--json]\n\n"+
				"Pauses an account: the scheduler publishes no sync request for it, and the fetcher parks its\n"+
				"sync requests and fetch tasks (in KV periods/held.<account>.*) instead of calling Ion.\n"+
				"Nothing is lost: 'ionconnector resume' re-publishes everything parked.")
		} else {
			fmt.Fprintln(io.Stderr, "usage: ionconnector resume --account A [--json]\n\n"+
				"Resumes a paused account and re-publishes every sync request and fetch task parked while it\n"+
				"was paused, to its original subject.")
		}
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
	if !accountFlag(io, name, *account, cfg) {
		return service.ExitUsage
	}
	c, code := commandConnect(ctx, io, name, cfg)
	if c == nil {
		return code
	}
	defer c.Close()
	kv, err := pause.Bucket(ctx, c.JS)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	if name == "pause" {
		in := pause.Info{PausedAt: time.Now().UTC(), By: *by, Reason: *reason}
		created, err := pause.Pause(ctx, kv, *account, in)
		if err != nil {
			fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
			return service.ExitFailed
		}
		if !created {
			in, _, _ = pause.Get(ctx, kv, *account)
		}
		if *asJSON {
			return printJSON(io, name, map[string]any{"account": *account, "paused": true, "already": !created, "info": in})
		}
		if created {
			fmt.Fprintf(io.Stdout, "account %s paused\n", *account)
		} else {
			fmt.Fprintf(io.Stdout, "account %s was already paused since %s by %s\n", *account, in.PausedAt.Format(time.RFC3339), in.By)
		}
		return service.ExitOK
	}
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: c.JS})
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	n, was, err := pause.Resume(ctx, kv, pub, *account)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: re-published %d held messages, then: %v\n", name, n, err)
		return service.ExitFailed
	}
	if *asJSON {
		return printJSON(io, name, map[string]any{"account": *account, "was_paused": was, "republished": n})
	}
	if !was && n == 0 {
		fmt.Fprintf(io.Stdout, "account %s was not paused\n", *account)
		return service.ExitOK
	}
	fmt.Fprintf(io.Stdout, "account %s resumed: %d held messages re-published\n", *account, n)
	return service.ExitOK
}
