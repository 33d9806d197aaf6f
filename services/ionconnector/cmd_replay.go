package ionconnector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/config"
	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/service"
	"github.com/ionusage/connector/services/transformer"
)

func init() {
	register("replay", "feed stored events through a stage again via a temporary consumer (e.g. re-transform raw pages)", replayCmd)
}

// replayTransformer lets tests change the transformer's mapping (charge table) the way a fixed
// build or config would.
var replayTransformer = func(o *transformer.Options) {}

// replayCounts is what a replay did.
type replayCounts struct {
	Stream       string `json:"stream"`
	Filter       string `json:"filter"`
	Stage        string `json:"stage"`
	Consumer     string `json:"consumer"`
	Matched      uint64 `json:"matched"`      // stored events the consumer selected
	Handled      int64  `json:"handled"`      // events the stage's handler processed
	Records      int64  `json:"records"`      // records the stage published
	NewRecords   int64  `json:"new_records"`  // of them, stored as new: a changed record (a new revision)
	DeadLetters  int64  `json:"dead_letters"` // dead letters published
	NewDeadLetts int64  `json:"new_dead_letters"`
}

// countingPublisher publishes synchronously, one message at a time, to learn from each PubAck
// whether the stream stored it or dropped it as a duplicate (same deterministic id): an
// unchanged record of a replayed page is such a duplicate. Beyond the stream's duplicate window
// an unchanged record is stored again, and the publisher's ledger skips it: nothing is
// delivered twice either way, only the counts here are exact within the window.
type countingPublisher struct {
	js                             jetstream.JetStream
	records, newRecords, dls, newD atomic.Int64
}

func (p *countingPublisher) PublishCtx(ctx context.Context, topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		nm := nats.NewMsg(topic)
		nm.Data = m.Payload
		for k, v := range m.Metadata {
			if k != "" && !strings.HasPrefix(k, "_") {
				nm.Header.Set(k, v)
			}
		}
		ack, err := p.js.PublishMsg(ctx, nm, jetstream.WithMsgID(m.UUID))
		if err != nil {
			return fmt.Errorf("replay: publish %s: %w", topic, err)
		}
		switch {
		case strings.HasPrefix(topic, "usage.v1.record."):
			p.records.Add(1)
			if !ack.Duplicate {
				p.newRecords.Add(1)
			}
		case strings.HasPrefix(topic, "dlq.v1."):
			p.dls.Add(1)
			if !ack.Duplicate {
				p.newD.Add(1)
			}
		}
	}
	return nil
}

func replayCmd(ctx context.Context, io IO, args []string) int {
	const name = "replay"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	stream := fs.String("stream", events.StreamRaw, "stream to read (ION_RAW for --to transformer)")
	since := fs.String("since", "", "replay events stored at or after this time (RFC 3339, or YYYY-MM-DD)")
	fromSeq := fs.Uint64("from-seq", 0, "replay events from this stream sequence on")
	subject := fs.String("subject", "", "subject filter within the stream (default: every raw page, ion.raw.v1.page.>; e.g. ion.raw.v1.page.<account>)")
	to := fs.String("to", "", "stage whose handler gets the events: transformer (required)")
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	cfgPath, dataDir := storeFlags(fs, io)
	fs.Usage = func() {
		fmt.Fprintln(io.Stderr, "usage: ionconnector replay --stream S (--since TIME | --from-seq N) [--subject FILTER] --to STAGE [--json]\n\n"+
			"Feeds stored events through a stage's handler in this process, via a temporary consumer that is\n"+
			"deleted afterwards; the originals are never re-published and Ion is never called. E.g. after a\n"+
			"mapping fix: replay --stream ION_RAW --since 2025-03-01 --to transformer. Ids are deterministic,\n"+
			"so only changed records become new revisions, and only those reach the billing sinks.\n"+
			"Run it with the fixed build and config. Supported: --to transformer (stream ION_RAW).")
		fmt.Fprintln(io.Stderr)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, io, args); done {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(io.Stderr, name+": "+format+"\n", a...)
		return service.ExitUsage
	}
	if *to != transformer.Name {
		return usageErr("--to: %q is not supported (supported: transformer)", *to)
	}
	if *stream != events.StreamRaw {
		return usageErr("--to transformer reads raw pages: --stream must be %s, not %q", events.StreamRaw, *stream)
	}
	if *subject == "" {
		*subject = "ion.raw.v1.page.>"
	}
	if !strings.HasPrefix(*subject, "ion.raw.v1.page.") {
		return usageErr("--subject %q is not a raw page subject (ion.raw.v1.page.<account> or ion.raw.v1.page.>)", *subject)
	}
	if (*since == "") == (*fromSeq == 0) {
		return usageErr("give exactly one of --since and --from-seq")
	}
	var start time.Time
	if *since != "" {
		var err error
		if start, err = time.Parse(time.RFC3339, *since); err != nil {
			if start, err = time.Parse(time.DateOnly, *since); err != nil {
				return usageErr("--since %q: want RFC 3339 (2025-03-01T00:00:00Z) or YYYY-MM-DD", *since)
			}
		}
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
	counts, err := replayTransform(ctx, cfg, c, c.Logger, *subject, start, *fromSeq, newReplayProgress(io.Stderr))
	if err != nil {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
		return service.ExitFailed
	}
	if *asJSON {
		return printJSON(io, name, counts)
	}
	fmt.Fprintf(io.Stdout, "replayed %d of %d raw pages through the transformer\n", counts.Handled, counts.Matched)
	fmt.Fprintf(io.Stdout, "  records: %d, of which %d changed (new revisions, to be delivered) and %d unchanged\n",
		counts.Records, counts.NewRecords, counts.Records-counts.NewRecords)
	fmt.Fprintf(io.Stdout, "  dead letters: %d, of which %d new\n", counts.DeadLetters, counts.NewDeadLetts)
	return service.ExitOK
}

// replayTransform runs the transformer's handler, inside a router with the stage's own
// middleware (so failures dead-letter as in the service), on a uniquely named durable consumer
// of ION_RAW that starts at the given time or sequence. The consumer is deleted when the replay
// ends, and expires on the server if this process dies first.
func replayTransform(ctx context.Context, cfg *config.Config, c *cmdConn, logger *slog.Logger, filter string, start time.Time, fromSeq uint64, prog *replayProgress) (replayCounts, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	durable := "replay-" + transformer.Name + "-" + hex.EncodeToString(b[:])
	counts := replayCounts{Stream: events.StreamRaw, Filter: filter, Stage: transformer.Name, Consumer: durable}
	cc := jetstream.ConsumerConfig{
		Durable: durable, Description: "ionconnector replay (temporary)", FilterSubjects: []string{filter},
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 10, MaxAckPending: 1,
		InactiveThreshold: 5 * time.Minute,
	}
	if fromSeq > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, fromSeq
	} else {
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := c.JS.CreateConsumer(ctx, events.StreamRaw, cc)
	if err != nil {
		return counts, fmt.Errorf("create temporary consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = c.JS.DeleteConsumer(dctx, events.StreamRaw, durable)
	}()
	counts.Matched = cons.CachedInfo().NumPending
	if counts.Matched == 0 {
		return counts, nil
	}
	deps := service.Deps{Config: cfg, Logger: logger, Conn: c.NC, JS: c.JS}
	st, err := service.NewStage(deps, transformer.Name)
	if err != nil {
		return counts, err
	}
	pub := &countingPublisher{js: c.JS}
	opts := transformer.Options{JS: c.JS, Publisher: pub, Logger: logger, Accounts: cfg.Accounts}
	replayTransformer(&opts)
	tr, err := transformer.New(opts)
	if err != nil {
		return counts, err
	}
	var handled atomic.Int64
	if err := st.Consume(events.StreamRaw, durable, filter, func(m *message.Message) error {
		err := tr.Handle(m)
		if err == nil || errors.Is(err, events.ErrUndecodable) {
			handled.Add(1)
		}
		return err
	}); err != nil {
		return counts, err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(rctx) }()
	var runErr error
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case err := <-done:
			runErr = err
			break loop
		case <-ctx.Done():
			stop()
			<-done
			return counts, ctx.Err()
		case <-tick.C:
		}
		info, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		acked := counts.Matched - min(counts.Matched, info.NumPending+uint64(info.NumAckPending))
		prog.update(acked, counts.Matched)
		if info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
	}
	prog.done()
	stop()
	if runErr == nil {
		runErr = <-done
	}
	counts.Handled = handled.Load()
	counts.Records, counts.NewRecords = pub.records.Load(), pub.newRecords.Load()
	counts.DeadLetters, counts.NewDeadLetts = pub.dls.Load(), pub.newD.Load()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return counts, runErr
	}
	return counts, nil
}

// replayProgress draws a bar on a terminal and a line per tenth elsewhere.
type replayProgress struct {
	w    io.Writer
	tty  bool
	last uint64
}

func newReplayProgress(w io.Writer) *replayProgress {
	p := newProgress(w)
	return &replayProgress{w: w, tty: p.tty}
}

func (p *replayProgress) update(done, total uint64) {
	if p == nil || total == 0 || done == p.last {
		return
	}
	n := int(24 * done / total)
	line := fmt.Sprintf("[%s%s] %d/%d events", strings.Repeat("█", n), strings.Repeat("·", 24-n), done, total)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else if done*10/total != p.last*10/total {
		fmt.Fprintln(p.w, line)
	}
	p.last = done
}

func (p *replayProgress) done() {
	if p != nil && p.tty {
		fmt.Fprintln(p.w)
	}
}
