package ionconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ionusage/connector/pkg/billing"
	"github.com/ionusage/connector/pkg/bus"
	"github.com/ionusage/connector/pkg/events"
)

// dlqEntry is one stored dead letter with its place in the DLQ stream.
type dlqEntry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	events.DeadLetter
}

// dlqFilter selects dead letters; empty fields match everything.
type dlqFilter struct {
	Stage, Account, Reason string
}

func (f dlqFilter) subject() string {
	tok := func(s string) string {
		if s == "" {
			return "*"
		}
		return s
	}
	return "dlq.v1." + tok(f.Stage) + "." + tok(f.Account)
}

func (f dlqFilter) empty() bool { return f.Stage == "" && f.Account == "" && f.Reason == "" }

func (f dlqFilter) validate() error {
	for _, v := range []struct{ name, val string }{{"--stage", f.Stage}, {"--account", f.Account}} {
		if v.val != "" {
			if err := events.CheckToken(v.val); err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
		}
	}
	return nil
}

// wholeMessageReasons are the router's reasons: the dead letter's payload and headers are the
// original message. Any other reason is a stage's line-level dead letter (a bad or held line of
// a raw page), whose payload is the line, not a message.
var wholeMessageReasons = []string{bus.ReasonUndecodable, bus.ReasonPermanent, bus.ReasonHandlerFailed, bus.ReasonAwaitingApproval}

func (e dlqEntry) lineLevel() bool { return !slices.Contains(wholeMessageReasons, e.Reason) }

// readDLQ returns the stored dead letters matching f, in stream order.
func readDLQ(ctx context.Context, js jetstream.JetStream, f dlqFilter) ([]dlqEntry, error) {
	var out []dlqEntry
	err := scanStream(ctx, js, events.StreamDLQ, f.subject(), func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		e, err := decodeDLQ(md.Sequence.Stream, md.Timestamp, m.Subject(), m.Data())
		if err != nil {
			return err
		}
		if f.Reason == "" || e.Reason == f.Reason {
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

func decodeDLQ(seq uint64, t time.Time, subject string, data []byte) (dlqEntry, error) {
	e := dlqEntry{Seq: seq, Time: t.UTC(), Subject: subject}
	if err := json.Unmarshal(data, &e.DeadLetter); err != nil {
		return e, fmt.Errorf("DLQ seq %d: not a dead letter: %w", seq, err)
	}
	return e, nil
}

// getDLQ reads one dead letter by stream sequence.
func getDLQ(ctx context.Context, js jetstream.JetStream, seq uint64) (dlqEntry, error) {
	st, err := js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		return dlqEntry{}, fmt.Errorf("stream %s: %w", events.StreamDLQ, err)
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return dlqEntry{}, fmt.Errorf("%w: seq %d (already redriven or purged, or aged out)", errNoDeadLetter, seq)
	}
	if err != nil {
		return dlqEntry{}, fmt.Errorf("DLQ seq %d: %w", seq, err)
	}
	return decodeDLQ(m.Sequence, m.Time, m.Subject, m.Data)
}

var errNoDeadLetter = errors.New("no such dead letter")

// scanStream calls fn for every message of stream on filter, through a short-lived consumer
// that is deleted afterwards.
func scanStream(ctx context.Context, js jetstream.JetStream, stream, filter string, fn func(jetstream.Msg) error) error {
	cons, err := billing.ReadConsumer(ctx, js, stream, filter)
	if err != nil {
		return fmt.Errorf("read %s %s: %w", stream, filter, err)
	}
	defer cons.Delete()
	if _, err := cons.Each(ctx, fn); err != nil {
		return fmt.Errorf("read %s %s: %w", stream, filter, err)
	}
	return nil
}

// redriveResult is what one redrive did.
type redriveResult struct {
	Seqs    []uint64 `json:"dead_letters"` // DLQ sequences removed
	Subject string   `json:"subject"`      // where the message went again
	ID      string   `json:"id"`           // its new Nats-Msg-Id
	Page    string   `json:"page_id,omitempty"`
}

// redriver re-publishes dead letters (see redrive).
type redriver struct {
	js        jetstream.JetStream
	pub       *bus.Publisher
	dupWindow time.Duration
	now       func() time.Time
}

// newRedriver is the redriver of dlq redrive and approve: the DLQ's own duplicate window.
func newRedriver(ctx context.Context, js jetstream.JetStream) (redriver, error) {
	pub, err := bus.NewPublisher(bus.PublisherOptions{JS: js})
	if err != nil {
		return redriver{}, err
	}
	dup := bus.DefaultDuplicateWindow
	if st, err := js.Stream(ctx, events.StreamDLQ); err == nil {
		dup = st.CachedInfo().Config.Duplicates
	}
	return redriver{js: js, pub: pub, dupWindow: dup, now: time.Now}, nil
}

// redrive feeds the selected dead letters back to their stage, each exactly once:
//
//   - a whole-message dead letter (undecodable, permanent, handler-failed): its original
//     payload and headers are published again to the original subject under a new,
//     deterministic Nats-Msg-Id (UUIDv5 of the DLQ sequence), so two concurrent redrives of it
//     store one message; then the dead letter is deleted from the DLQ. Deleting it is what
//     marks it redriven: a second redrive finds nothing and is refused. If the stage fails
//     again it dead-letters the message anew, under a new sequence.
//   - a line-level transformer dead letter (out-of-period, bad-line codes): its payload is one
//     line, which no stage consumes. The raw page it came from (original stream and sequence,
//     checked against its page id) is published again instead; the transformer handles it
//     idempotently (deterministic record ids and revisions, the ledger skips what it holds),
//     so only the lines that now pass produce new records. Every line-level dead letter of
//     that page is removed, because the re-transformed page dead-letters again whatever still
//     fails. A line-level dead letter younger than the DLQ duplicate window is refused: its
//     re-creation would carry the same id and be dropped as a duplicate, losing the row.
func (r redriver) redrive(ctx context.Context, sel []dlqEntry) ([]redriveResult, error) {
	var out []redriveResult
	pages := map[string]bool{}
	for _, e := range sel {
		if !e.lineLevel() {
			res, err := r.redriveMessage(ctx, e)
			if err != nil {
				return out, err
			}
			out = append(out, res)
			continue
		}
		key := e.OriginalStream + "/" + strconv.FormatUint(e.OriginalSeq, 10)
		if pages[key] {
			continue
		}
		pages[key] = true
		res, err := r.redrivePage(ctx, e)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

func redriveID(seq uint64) string {
	return events.ID("redrive", events.StreamDLQ, strconv.FormatUint(seq, 10)).String()
}

// republishHeaders drops the headers that belong to the original publish.
func republishHeaders(m *message.Message, h map[string]string, from string) {
	for k, v := range h {
		if k == jetstream.MsgIDHeader || strings.HasPrefix(k, "Nats-Expected") || strings.HasPrefix(k, "_") {
			continue
		}
		m.Metadata.Set(k, v)
	}
	m.Metadata.Set("ionconnector-redriven-from", from)
}

func (r redriver) redriveMessage(ctx context.Context, e dlqEntry) (redriveResult, error) {
	if e.OriginalSubject == "" {
		return redriveResult{}, fmt.Errorf("dead letter %d names no original subject", e.Seq)
	}
	id := redriveID(e.Seq)
	m := message.NewMessage(id, e.Payload)
	republishHeaders(m, e.Headers, fmt.Sprintf("%s/%d", events.StreamDLQ, e.Seq))
	if err := r.pub.PublishCtx(ctx, e.OriginalSubject, m); err != nil {
		return redriveResult{}, fmt.Errorf("redrive dead letter %d: %w", e.Seq, err)
	}
	if err := r.delete(ctx, e.Seq); err != nil {
		return redriveResult{}, err
	}
	return redriveResult{Seqs: []uint64{e.Seq}, Subject: e.OriginalSubject, ID: id}, nil
}

func (r redriver) redrivePage(ctx context.Context, e dlqEntry) (redriveResult, error) {
	if e.OriginalStream == "" || e.OriginalSeq == 0 {
		return redriveResult{}, fmt.Errorf("dead letter %d (%s) names no raw page to redrive", e.Seq, e.Reason)
	}
	// Every line-level dead letter of this page goes, so each must be old enough.
	all, err := readDLQ(ctx, r.js, dlqFilter{Stage: e.Stage, Account: e.Account})
	if err != nil {
		return redriveResult{}, err
	}
	var group []dlqEntry
	for _, o := range all {
		if o.lineLevel() && o.OriginalStream == e.OriginalStream && o.OriginalSeq == e.OriginalSeq {
			group = append(group, o)
		}
	}
	if len(group) == 0 {
		group = []dlqEntry{e}
	}
	for _, o := range group {
		if age := r.now().Sub(o.Time); age < r.dupWindow {
			return redriveResult{}, fmt.Errorf("dead letter %d is %s old, inside the DLQ duplicate window %s: its page's re-transformation would be dropped as a duplicate; redrive it after %s",
				o.Seq, age.Round(time.Second), r.dupWindow, o.Time.Add(r.dupWindow).UTC().Format(time.RFC3339))
		}
	}
	st, err := r.js.Stream(ctx, e.OriginalStream)
	if err != nil {
		return redriveResult{}, fmt.Errorf("dead letter %d: stream %s: %w", e.Seq, e.OriginalStream, err)
	}
	raw, err := st.GetMsg(ctx, e.OriginalSeq)
	if err != nil {
		return redriveResult{}, fmt.Errorf("dead letter %d: raw page %s/%d: %w", e.Seq, e.OriginalStream, e.OriginalSeq, err)
	}
	if got := raw.Header.Get(events.HeaderID); e.OriginalID != "" && got != e.OriginalID {
		return redriveResult{}, fmt.Errorf("dead letter %d: %s/%d is event %s, not page %s", e.Seq, e.OriginalStream, e.OriginalSeq, got, e.OriginalID)
	}
	h := map[string]string{}
	for k, v := range raw.Header {
		if len(v) > 0 {
			h[k] = v[0]
		}
	}
	id := redriveID(group[0].Seq)
	m := message.NewMessage(id, raw.Data)
	republishHeaders(m, h, fmt.Sprintf("%s/%d", events.StreamDLQ, group[0].Seq))
	if err := r.pub.PublishCtx(ctx, raw.Subject, m); err != nil {
		return redriveResult{}, fmt.Errorf("redrive page of dead letter %d: %w", e.Seq, err)
	}
	res := redriveResult{Subject: raw.Subject, ID: id, Page: e.OriginalID}
	for _, o := range group {
		if err := r.delete(ctx, o.Seq); err != nil {
			return res, err
		}
		res.Seqs = append(res.Seqs, o.Seq)
	}
	return res, nil
}

func (r redriver) delete(ctx context.Context, seq uint64) error {
	st, err := r.js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove dead letter %d: %w", seq, err)
	}
	return nil
}

// purgeDLQ deletes the given dead letters.
func purgeDLQ(ctx context.Context, js jetstream.JetStream, sel []dlqEntry) (int, error) {
	r := redriver{js: js}
	for i, e := range sel {
		if err := r.delete(ctx, e.Seq); err != nil {
			return i, err
		}
	}
	return len(sel), nil
}

// jetstreamMsg is a stored message as scanStream hands it over.
type jetstreamMsg = jetstream.Msg
