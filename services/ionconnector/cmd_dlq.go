package ionconnector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ionusage/connector/pkg/service"
)

func init() {
	register("dlq", "dead letters: list, show, redrive, purge", dlqCmd)
}

const dlqUsage = `usage: ionconnector dlq <list|show|redrive|purge> [flags]

  list    [--stage S] [--account A] [--reason R] [--json]
          every stored dead letter, held out-of-period rows included (--reason out-of-period)
  show    SEQ [--json]
          one dead letter in full, its payload pretty-printed
  redrive (SEQ... | --stage S --account A --reason R) [--json]
          feed dead letters back to their stage, each exactly once, and remove them
  purge   (SEQ... | --stage S --account A --reason R) --yes
          delete dead letters for good

Reads NATS_URL when set, else the embedded data dir (--data-dir) of a stopped ionconnector.
Run 'ionconnector dlq <subcommand> --help' for details.`

func dlqCmd(ctx context.Context, io IO, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(io.Stderr, dlqUsage)
		if len(args) == 0 {
			return service.ExitUsage
		}
		return service.ExitOK
	}
	switch args[0] {
	case "list", "show", "redrive", "purge":
		return dlqSub(ctx, io, args[0], args[1:])
	}
	fmt.Fprintf(io.Stderr, "dlq: unknown subcommand %q\n\n%s\n", args[0], dlqUsage)
	return service.ExitUsage
}

// parseInterleaved parses flags that may come before, between or after positional arguments.
func parseInterleaved(fs *flag.FlagSet, io IO, args []string) (pos []string, code int, done bool) {
	fs.SetOutput(io.Stderr)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, service.ExitOK, true
			}
			return nil, service.ExitUsage, true
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, 0, false
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func dlqSub(ctx context.Context, io IO, sub string, args []string) int {
	name := "dlq " + sub
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f dlqFilter
	if sub != "show" {
		fs.StringVar(&f.Stage, "stage", "", "only dead letters of this stage (fetcher, transformer, publisher, ...)")
		fs.StringVar(&f.Account, "account", "", "only dead letters of this account")
		fs.StringVar(&f.Reason, "reason", "", "only this reason (undecodable, permanent, handler-failed, out-of-period, bad-number, ...)")
	}
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	yes := false
	if sub == "purge" {
		fs.BoolVar(&yes, "yes", false, "really delete (without it, purge only says what it would delete)")
	}
	cfgPath, dataDir := storeFlags(fs, io)
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, dlqSubUsage[sub])
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	pos, code, done := parseInterleaved(fs, io, args)
	if done {
		return code
	}
	if err := f.validate(); err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitUsage
	}
	var seqs []uint64
	for _, p := range pos {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n == 0 {
			fmt.Fprintf(io.Stderr, "%s: %q is not a DLQ sequence number\n", name, p)
			return service.ExitUsage
		}
		seqs = append(seqs, n)
	}
	switch {
	case sub == "list" && len(seqs) > 0:
		fmt.Fprintf(io.Stderr, "%s: takes no sequence numbers (use dlq show SEQ)\n", name)
		return service.ExitUsage
	case sub == "show" && len(seqs) != 1:
		fmt.Fprintf(io.Stderr, "%s: exactly one sequence number, please (see dlq list)\n", name)
		return service.ExitUsage
	case (sub == "redrive" || sub == "purge") && len(seqs) > 0 && !f.empty():
		fmt.Fprintf(io.Stderr, "%s: give sequence numbers or filters, not both\n", name)
		return service.ExitUsage
	case (sub == "redrive" || sub == "purge") && len(seqs) == 0 && f.empty():
		fmt.Fprintf(io.Stderr, "%s: say which dead letters: sequence numbers, or at least one of --stage, --account, --reason\n", name)
		return service.ExitUsage
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

	if sub == "show" {
		e, err := getDLQ(ctx, c.JS, seqs[0])
		if err != nil {
			fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
			return service.ExitFailed
		}
		if *asJSON {
			return printJSON(io, name, e)
		}
		printDeadLetter(io.Stdout, e)
		return service.ExitOK
	}

	// list, redrive, purge: select.
	var sel []dlqEntry
	if len(seqs) > 0 {
		for _, s := range seqs {
			e, err := getDLQ(ctx, c.JS, s)
			if err != nil {
				fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
				return service.ExitFailed
			}
			sel = append(sel, e)
		}
	} else {
		var err error
		if sel, err = readDLQ(ctx, c.JS, f); err != nil {
			fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
			return service.ExitFailed
		}
	}
	switch sub {
	case "list":
		if *asJSON {
			if sel == nil {
				sel = []dlqEntry{}
			}
			return printJSON(io, name, sel)
		}
		printDLQTable(io.Stdout, sel)
		return service.ExitOK
	case "purge":
		if !yes {
			fmt.Fprintf(io.Stderr, "%s: would delete %d dead letters for good; run again with --yes\n", name, len(sel))
			printDLQTable(io.Stderr, sel)
			return service.ExitUsage
		}
		n, err := purgeDLQ(ctx, c.JS, sel)
		if err != nil {
			fmt.Fprintf(io.Stderr, "%s: deleted %d, then: %v\n", name, n, err)
			return service.ExitFailed
		}
		if *asJSON {
			return printJSON(io, name, map[string]int{"purged": n})
		}
		fmt.Fprintf(io.Stdout, "purged %d dead letters\n", n)
		return service.ExitOK
	}
	// redrive
	if len(sel) == 0 {
		fmt.Fprintf(io.Stderr, "%s: no dead letters match\n", name)
		return service.ExitFailed
	}
	r, err := newRedriver(ctx, c.JS)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	res, err := r.redrive(ctx, sel)
	if *asJSON {
		if res == nil {
			res = []redriveResult{}
		}
		printJSON(io, name, res)
	} else {
		for _, r := range res {
			what := fmt.Sprintf("dead letter %d", r.Seqs[0])
			if r.Page != "" {
				what = fmt.Sprintf("raw page %s (dead letters %s)", r.Page, joinSeqs(r.Seqs))
			}
			fmt.Fprintf(io.Stdout, "redriven %s → %s (id %s)\n", what, r.Subject, r.ID)
		}
	}
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	return service.ExitOK
}

var dlqSubUsage = map[string]string{
	"list": "usage: ionconnector dlq list [--stage S] [--account A] [--reason R] [--json]\n\n" +
		"Lists stored dead letters: sequence, time, stage, account, reason, original subject, line, error.\n" +
		"Rows held because their charge dates fall outside the period are dead letters with reason\n" +
		"out-of-period: list them with --reason out-of-period.",
	"show": "usage: ionconnector dlq show SEQ [--json]\n\nPrints one dead letter in full, its payload pretty-printed.",
	"redrive": "usage: ionconnector dlq redrive (SEQ... | [--stage S] [--account A] [--reason R]) [--json]\n\n" +
		"Feeds dead letters back to their stage, each exactly once, then removes them from the DLQ\n" +
		"(a removed dead letter cannot be redriven twice; if the stage fails again it dead-letters anew).\n" +
		"A whole message is re-published to its original subject with its original headers under a\n" +
		"new deterministic message id. A line-level transformer dead letter (out-of-period, bad lines)\n" +
		"re-publishes the raw page it came from; every line-level dead letter of that page is removed\n" +
		"and the transformer dead-letters again whatever still fails. Fix the cause first (config,\n" +
		"charge table) and restart the stage.",
	"purge": "usage: ionconnector dlq purge (SEQ... | [--stage S] [--account A] [--reason R]) --yes [--json]\n\n" +
		"Deletes dead letters for good. Without --yes it lists what it would delete and exits 2.",
}

func printJSON(io IO, name string, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	fmt.Fprintln(io.Stdout, string(b))
	return service.ExitOK
}

func joinSeqs(s []uint64) string {
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(parts, ",")
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func printDLQTable(w io.Writer, sel []dlqEntry) {
	if len(sel) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tSTAGE\tACCOUNT\tREASON\tORIGINAL SUBJECT\tLINE\tERROR")
	for _, e := range sel {
		line := ""
		if e.Line > 0 {
			line = strconv.Itoa(e.Line)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format("2006-01-02 15:04:05Z"), e.Stage, e.Account,
			e.Reason, e.OriginalSubject, line, shorten(e.Error, 60))
	}
	_ = tw.Flush()
	counts := map[string]int{}
	for _, e := range sel {
		counts[e.Reason]++
	}
	reasons := make([]string, 0, len(counts))
	for r := range counts {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", r, counts[r])
	}
	fmt.Fprintf(w, "%d dead letters (%s)\n", len(sel), strings.Join(parts, ", "))
}

func printDeadLetter(w io.Writer, e dlqEntry) {
	kv := func(k string, v any) { fmt.Fprintf(w, "%-18s %v\n", k+":", v) }
	kv("seq", e.Seq)
	kv("stored", e.Time.Format(time.RFC3339))
	kv("subject", e.Subject)
	kv("stage", e.Stage)
	kv("account", e.Account)
	kv("reason", e.Reason)
	kv("error", e.Error)
	kv("original subject", e.OriginalSubject)
	kv("original id", e.OriginalID)
	if e.OriginalStream != "" {
		kv("original", fmt.Sprintf("%s seq %d", e.OriginalStream, e.OriginalSeq))
	}
	if e.Line > 0 {
		kv("line", e.Line)
	}
	kv("attempts", e.Attempts)
	kv("failed at", e.FailedAt.Format(time.RFC3339Nano))
	if e.lineLevel() {
		kv("redrive", "re-publishes the raw page "+e.OriginalID)
	} else {
		kv("redrive", "re-publishes the original message to "+e.OriginalSubject)
	}
	keys := make([]string, 0, len(e.Headers))
	for k := range e.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintln(w, "headers:")
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, e.Headers[k])
	}
	fmt.Fprintln(w, "payload:")
	var buf bytes.Buffer
	if json.Valid(e.Payload) && json.Indent(&buf, e.Payload, "  ", "  ") == nil {
		fmt.Fprintf(w, "  %s\n", buf.String())
	} else {
		fmt.Fprintf(w, "  %q\n", e.Payload)
	}
}
