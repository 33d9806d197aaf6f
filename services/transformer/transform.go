package transformer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/ionusage/connector/pkg/events"
	"github.com/ionusage/connector/pkg/usage"
)

// Reasons of line-level dead letters that pkg/usage does not define.
const (
	ReasonBadCustomerID = "bad-customer-id" // the customer id cannot be a subject token
)

// origin is where the raw page came from, copied into line-level dead letters.
type origin struct {
	Subject string
	ID      string
	Stream  string
	Seq     uint64
	Attempt int
}

// pageInput is everything a page transformation depends on. It is a pure function of these:
// the same input gives the same record ids, revisions and event ids.
type pageInput struct {
	Page        events.RawPage
	Body        []byte
	Charges     usage.ChargeTable
	Currency    string // fallback when the request names none (the account's configured currency)
	AccountName string
	Source      string // ce-source
	Origin      origin
	Now         time.Time // dead-letter failed_at and summary processed_at: not part of any id
}

// pageOutput is what one page produces, ready to publish: messages grouped by subject in a
// stable order, and the summary that must go last.
type pageOutput struct {
	Records  []usage.Record
	Held     []events.DeadLetter
	Bad      []events.DeadLetter
	Summary  events.PageSummary
	Decoded  decoded
	Messages []subjectBatch // records (by customer) and then dead letters; the summary is not included
	SummaryM *message.Message
}

type subjectBatch struct {
	Subject string
	Msgs    []*message.Message
}

var currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)

// transformPage decodes and normalizes one page. An error is about the whole page: it wraps
// events.ErrUndecodable when the page can never be processed.
func transformPage(in pageInput) (pageOutput, error) {
	p := in.Page
	dec, err := decodePage(p, in.Body)
	if err != nil {
		return pageOutput{}, err
	}
	cur := dec.Currency
	if cur == "" {
		cur = in.Currency
	}
	pc := usage.PageContext{
		Account: p.Account, AccountName: in.AccountName, Period: p.Period, Mode: p.Mode,
		ColumnSetVersion: p.ColumnSetVersion, Currency: cur, SourcePageID: p.PageID, FetchedAt: p.FetchedAt,
	}
	res, err := usage.NormalizePage(pc, dec.Lines, in.Charges)
	if err != nil {
		// The page context is unusable (no account, period or column-set version).
		return pageOutput{}, fmt.Errorf("%w: transformer: %v", events.ErrUndecodable, err)
	}
	out := pageOutput{Decoded: dec}
	out.Summary = events.PageSummary{
		Stage: events.StageTransformer, PageID: p.PageID, SyncID: p.SyncID, Account: p.Account,
		Period: p.Period, Customer: p.PageKey.Customer, ProcessedAt: in.Now.UTC(),
		Good: events.Tally{BilledCost: map[string]decimal.Decimal{}},
		Held: events.Tally{BilledCost: map[string]decimal.Decimal{}},
		Bad:  events.Tally{BilledCost: map[string]decimal.Decimal{}},
	}
	byNumber := make(map[int]usage.Line, len(dec.Lines))
	for _, l := range dec.Lines {
		byNumber[l.Number] = l
	}

	// Bad lines: every error of one line in one dead letter, the first reason as its code.
	badErrs := map[int][]*usage.LineError{}
	for _, e := range res.Errors {
		if e.Reason != usage.ReasonOutOfPeriod {
			badErrs[e.Line] = append(badErrs[e.Line], e)
		}
	}
	// Records whose customer id cannot be a subject token are bad lines too. Merged records keep
	// the first line's customer, and every line of a record id shares its customer id.
	for _, r := range res.Records {
		if err := events.CheckToken(r.IonCustomerID); err != nil {
			out.badRecordCustomer(in, r, err)
			continue
		}
		out.Records = append(out.Records, r)
		out.Summary.Good.Add(r.BillingCurrency, r.BilledCost)
	}
	out.Summary.RecordIDs = recordIDs(out.Records)
	numbers := make([]int, 0, len(badErrs))
	for n := range badErrs {
		numbers = append(numbers, n)
	}
	sort.Ints(numbers)
	for _, n := range numbers {
		errs := badErrs[n]
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		l := byNumber[n]
		out.Bad = append(out.Bad, deadLetter(in, l, errs[0].Reason, strings.Join(msgs, "; ")))
		c, amt := lineAmount(l)
		out.Summary.Bad.Add(c, amt)
	}
	for i, r := range res.Held {
		n := res.HeldLines[i]
		out.Held = append(out.Held, deadLetter(in, byNumber[n], usage.ReasonOutOfPeriod,
			fmt.Sprintf("line %d: charge period %s..%s is outside billing period %s: held, not billed",
				n, r.ChargePeriodStart.Format(time.DateOnly), r.ChargePeriodEnd.Format(time.DateOnly), p.Period)))
		out.Summary.Held.Add(r.BillingCurrency, r.BilledCost)
	}
	if err := out.build(in); err != nil {
		return pageOutput{}, err
	}
	return out, nil
}

// recordIDs is the summary's sorted list of the page's good record ids, or nil above
// events.MaxSummaryRecordIDs (the sync then makes no reversals rather than exceed the message limit).
func recordIDs(recs []usage.Record) []uuid.UUID {
	if len(recs) == 0 || len(recs) > events.MaxSummaryRecordIDs {
		return nil
	}
	ids := make([]uuid.UUID, len(recs))
	for i, r := range recs {
		ids[i] = r.RecordID
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// badRecordCustomer dead-letters the lines behind a record whose customer id is unusable.
// Such a record comes from a single line unless merged; the line number is not kept on
// records, so the dead letter carries the record itself.
func (out *pageOutput) badRecordCustomer(in pageInput, r usage.Record, cause error) {
	body, _ := json.Marshal(r)
	dl := deadLetterOf(in, 0, body, ReasonBadCustomerID, fmt.Sprintf("record %s: customer id: %v", r.RecordID, cause))
	dl.Line = 0
	out.Bad = append(out.Bad, dl)
	out.Summary.Bad.Add(r.BillingCurrency, r.BilledCost)
}

// lineAmount is the seller cost of a bad line when it can be read, for the summary's sums;
// a line whose amount or currency is unreadable is counted with no amount.
func lineAmount(l usage.Line) (string, decimal.Decimal) {
	c := strings.ToUpper(l.Get(usage.ColInvoiceCurrency))
	d, err := decimal.NewFromString(l.Get(usage.ColSellerCostInvoice))
	if !currencyRe.MatchString(c) || err != nil {
		return "XXX", decimal.Zero // ISO 4217 "no currency"
	}
	return c, d
}

func deadLetter(in pageInput, l usage.Line, reason, text string) events.DeadLetter {
	body, _ := json.Marshal(l) // a map of strings always encodes
	return deadLetterOf(in, l.Number, body, reason, text)
}

func deadLetterOf(in pageInput, line int, payload []byte, reason, text string) events.DeadLetter {
	return events.DeadLetter{
		Stage: Name, Account: in.Page.Account, Reason: reason, Error: text,
		OriginalSubject: in.Origin.Subject, OriginalID: in.Page.PageID.String(),
		OriginalStream: in.Origin.Stream, OriginalSeq: in.Origin.Seq, Attempts: in.Origin.Attempt,
		Headers: map[string]string{
			"page_id": in.Page.PageID.String(), "period": in.Page.Period,
			"column_set_version": in.Page.ColumnSetVersion, "mode": in.Page.Mode,
		},
		Payload: payload, Line: line, FailedAt: in.Now.UTC(),
	}
}

// build encodes every event. Records are grouped by subject (one per customer) in order of
// first appearance, so each subject is one asynchronous Publish call.
func (out *pageOutput) build(in pageInput) error {
	idx := map[string]int{}
	add := func(subject string, m *message.Message) {
		i, ok := idx[subject]
		if !ok {
			i = len(out.Messages)
			idx[subject] = i
			out.Messages = append(out.Messages, subjectBatch{Subject: subject})
		}
		out.Messages[i].Msgs = append(out.Messages[i].Msgs, m)
	}
	for i := range out.Records {
		r := &out.Records[i]
		// The ledger assigns the readable sequence; 1 is "first revision this stage knows of".
		if r.RevisionSeq == 0 {
			r.RevisionSeq = 1
		}
		m, err := events.NewMessage(r.EventMeta(in.Source), r)
		if err != nil {
			return err
		}
		add(r.NATSSubject(), m)
	}
	for _, dls := range [][]events.DeadLetter{out.Bad, out.Held} {
		for _, dl := range dls {
			m, err := events.NewMessage(events.Meta{
				// Deterministic: a re-transformed page produces the same dead letters.
				ID:     events.ID("deadletter", Name, in.Page.PageID.String(), strconv.Itoa(dl.Line), dl.Reason, string(dl.Payload)),
				Type:   events.TypeDeadLetter,
				Source: in.Source, Subject: in.Page.Account + "/" + in.Page.Period, Time: dl.FailedAt,
			}, dl)
			if err != nil {
				return err
			}
			add(dl.NATSSubject(), m)
		}
	}
	m, err := events.NewMessage(out.Summary.EventMeta(in.Source), out.Summary)
	if err != nil {
		return err
	}
	out.SummaryM = m
	return nil
}

// errPublish distinguishes publish failures (transient: retried) from page failures.
var errPublish = errors.New("transformer: publish")
